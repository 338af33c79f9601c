"""The integer requantizer: accumulator -> output activation, in five rounding conventions.

Every layer of an IntegerDeployable network ends in one of two epilogues: this requantizer or
the threshold unit (:mod:`intdeploy.golden.threshold`). The requantizer computes, per output channel,

    x = wrap32(acc + bias)
    y = clip(round_mode((x * mult + offset) / 2**shift) + zero_point, lo, hi)

which covers

* NEMO's requantization RQ (report Eq. 11-13, ``floor``, ``offset = 0``) and its folded integer
  batch-norm (Eq. 21-22: ``mult = kappa * m_act``, ``offset = lambda * m_act``), which is why
  ``mult`` is allowed 32 bits and ``offset`` 48 bits;
* TFLite / TFLite-Micro (``bias`` is the int32 bias added to the accumulator, ``mult`` a Q31
  multiplier, ``tflite`` or ``half_up`` rounding, zero point, clamp) and LiteRT's reference
  FULLY_CONNECTED (``half_away``: one rounding, ties away from zero);
* ONNX Runtime QLinearConv / QLinearMatMul and PyTorch fbgemm (``half_even``).

The channel axis is the **last** axis of ``acc`` everywhere in golden/; per-channel parameters
have shape ``(C,)`` and per-tensor ones shape ``()``.

Integer widths (the hardware :class:`intdeploy.hw.requantizer.Requantizer` has exactly these):

============  =====================  ==================================================
name          range                  note
============  =====================  ==================================================
acc           int32                  ValueError if outside (the accumulator is int32)
bias          int32                  ``acc + bias`` wraps to int32 (two's complement)
mult          int32 (``tflite``:     signed, so that NEMO's folded BN with gamma < 0 fits
              [0, 2**31 - 1])
offset        int48 (``tflite``: 0)  added to the 64-bit product before the shift
shift         0..62 (``tflite``:     right shift; for ``tflite`` it is ``31 - exponent``
              1..62)                 with TFLite's signed exponent in [-31, 30]
zero_point    int32                  added after rounding
lo, hi        int32, lo <= hi        inclusive clip bounds
============  =====================  ==================================================

``x * mult + offset`` lies within +-(2**62 + 2**47), so every step is exact in int64.
"""

from dataclasses import dataclass
from fractions import Fraction
import math

import numpy as np

from intdeploy.golden.fixedpoint import wrap32

__all__ = [
    "ROUNDING_MODES", "RequantParams", "requantize", "ties", "round_shift",
    "rq", "nemo_shift_for_eta", "nemo_multiplier", "quantize_multiplier", "exact_multiplier",
    "INT32_MIN", "INT32_MAX",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT48_MIN = -(1 << 47)
INT48_MAX = (1 << 47) - 1
MAX_SHIFT = 62

#: The rounding conventions, with the software each one reproduces bit for bit.
ROUNDING_MODES = {
    "floor": "floor division, also for negatives: NEMO IntegerDeployable (Eq. 13, '>> d')",
    "half_up": "single rounding (t + 2**(s-1)) >> s: TFLite built with TFLITE_SINGLE_ROUNDING",
    "half_even": "round half to even on the shifted product, zero point after rounding: "
                 "ONNX Runtime QLinearConv/QLinearMatMul, PyTorch fbgemm/qnnpack",
    "tflite": "gemmlowp double rounding: SaturatingRoundingDoublingHighMul then "
              "RoundingDivideByPOT: TFLite / TFLite-Micro reference kernels",
    "half_away": "single rounding, ties away from zero: sign(t) * ((|t| + 2**(s-1)) >> s): LiteRT's "
                 "reference FULLY_CONNECTED (BUILTIN_REF)",
}


def _as_int_array(name, value):
    """``value`` as an int64 array; ValueError naming ``name`` for non-integers."""
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind == "f":
        # Python ints beyond int64 become object arrays; integral floats are not accepted
        # either: a float here is nearly always a forgotten conversion.
        if arr.dtype.kind == "f" or not all(isinstance(v, (int, np.integer)) for v in arr.flat):
            raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: value {int(arr.max())} does not fit int64")
    try:
        return arr.astype(np.int64)
    except OverflowError:
        raise ValueError(f"{name}: value does not fit int64") from None


def _check_range(name, arr, lo, hi, what=None):
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        bad = int(arr.min()) if int(arr.min()) < lo else int(arr.max())
        raise ValueError(f"{name}: {bad} is out of range; allowed {what or f'[{lo}, {hi}]'}")


def _per_channel(name, arr):
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or a 1-D per-channel array, got shape {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class RequantParams:
    """Parameters of one requantizer; each numeric field is a scalar or a per-channel ``(C,)`` array.

    Constructing one validates every field against the table in the module docstring and raises
    ``ValueError`` naming the field and the allowed range. Fields are stored as int64 arrays.
    """
    mult: np.ndarray
    shift: np.ndarray
    bias: np.ndarray = 0
    offset: np.ndarray = 0
    zero_point: np.ndarray = 0
    lo: np.ndarray = INT32_MIN
    hi: np.ndarray = INT32_MAX
    rounding: str = "floor"

    def __post_init__(self):
        if not isinstance(self.rounding, str) or self.rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding: {self.rounding!r} is not one of {', '.join(ROUNDING_MODES)}")
        tfl = self.rounding == "tflite"
        fields = {
            "mult": (0 if tfl else INT32_MIN, INT32_MAX),
            "shift": (1 if tfl else 0, MAX_SHIFT),
            "bias": (INT32_MIN, INT32_MAX),
            "offset": ((0, 0) if tfl else (INT48_MIN, INT48_MAX)),
            "zero_point": (INT32_MIN, INT32_MAX),
            "lo": (INT32_MIN, INT32_MAX),
            "hi": (INT32_MIN, INT32_MAX),
        }
        channels = {}
        for name, (lo, hi) in fields.items():
            arr = _per_channel(name, _as_int_array(name, getattr(self, name)))
            what = "0 (tflite rounding has no post-multiplier offset)" if name == "offset" and tfl else None
            _check_range(name, arr, lo, hi, what)
            if arr.ndim == 1:
                channels[name] = arr.shape[0]
            object.__setattr__(self, name, arr)
        if len(set(channels.values())) > 1:
            counts = ", ".join(f"{n}: {c}" for n, c in channels.items())
            raise ValueError(f"{', '.join(channels)}: per-channel fields disagree on the channel count ({counts})")
        if np.any(self.lo > self.hi):
            raise ValueError(f"lo, hi: lo must be <= hi, got lo={self.lo.tolist()} hi={self.hi.tolist()}")

    @property
    def channels(self):
        """Number of channels, or None for a per-tensor requantizer."""
        for name in _FIELDS:
            arr = getattr(self, name)
            if arr.ndim == 1:
                return arr.shape[0]
        return None

    def select(self, channels):
        """The parameters of the channels ``channels`` (indices): per-channel fields indexed,
        per-tensor fields kept."""
        return RequantParams(rounding=self.rounding, **{
            name: getattr(self, name)[channels] if getattr(self, name).ndim else getattr(self, name)
            for name in _FIELDS})


#: The integer fields of :class:`RequantParams`, each per tensor or per channel.
_FIELDS = ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi")


def round_shift(t, shift, rounding):
    """``t / 2**shift`` rounded by ``rounding`` (``floor``, ``half_up``, ``half_even`` or
    ``half_away``), int64.

    ``t`` must satisfy ``|t| + 2**(shift-1) < 2**63``; ``shift`` is 0..62 (broadcast with ``t``).
    ``floor`` is an arithmetic right shift; ``half_up`` adds half then shifts (ties toward
    +infinity); ``half_even`` sends exact ties to the even neighbour; ``half_away`` rounds the
    magnitude half up and restores the sign (ties away from zero).
    """
    if not isinstance(rounding, str) or rounding not in _SINGLE:
        raise ValueError(f"rounding: {rounding!r} is not one of {', '.join(_SINGLE)}")
    t = _as_int_array("t", t)
    shift = _as_int_array("shift", shift)
    _check_range("shift", shift, 0, MAX_SHIFT)
    q = t >> shift
    if rounding == "floor":
        return q
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    if rounding == "half_up":
        return (t + half) >> shift
    if rounding == "half_even":
        rem = t - (q << shift)
        up = (rem > half) | ((rem == half) & (half > 0) & ((q & 1) == 1))
        return q + up
    magnitude = (np.abs(t) + half) >> shift
    return np.where(t < 0, -magnitude, magnitude)


#: The modes that round the product once (:func:`round_shift`); ``tflite`` rounds twice.
_SINGLE = ("floor", "half_up", "half_even", "half_away")


_wrap32 = wrap32             # the name the other golden modules and the host import


def _tflite_steps(x, mult, shift):
    """gemmlowp's two steps on int32 ``x``: ``(ab, high, right)`` with ``ab`` the doubled product,
    ``high`` ``SaturatingRoundingDoublingHighMul``'s result and ``right`` the exponent of the
    ``RoundingDivideByPOT`` that follows (see :func:`_tflite_multiply`)."""
    left = np.maximum(31 - shift, 0)
    right = np.maximum(shift - 31, 0)
    xl = _wrap32(x << left)
    ab = xl * mult
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    v = ab + nudge
    high = np.where(v >= 0, v >> 31, -((-v) >> 31))            # C division: toward zero
    return ab, high, right


def _tflite_multiply(x, mult, shift):
    """TFLite ``MultiplyByQuantizedMultiplier(x, mult, 31 - shift)`` on int32 ``x``, in int64.

    Transcribes gemmlowp: the left shift ``x * (1 << left_shift)`` is done in int32 by the C
    code, so it wraps here too; ``SaturatingRoundingDoublingHighMul`` divides by 2**31 with C
    truncation after a nudge of +-2**30; ``RoundingDivideByPOT`` rounds half away from zero.
    ``mult >= 0`` so the one saturating case (INT32_MIN * INT32_MIN) cannot occur.
    """
    _, high, right = _tflite_steps(x, mult, shift)
    mask = (np.int64(1) << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + (remainder > threshold)


def _checked(acc, params):
    if not isinstance(params, RequantParams):
        raise ValueError(f"params: expected RequantParams, got {type(params).__name__}")
    acc = _as_int_array("acc", acc)
    _check_range("acc", acc, INT32_MIN, INT32_MAX, "int32 [-2**31, 2**31 - 1]")
    channels = params.channels
    if channels is not None and (acc.ndim == 0 or acc.shape[-1] != channels):
        raise ValueError(f"acc: last axis must be the {channels} channels of params, got shape {acc.shape}")
    return acc


def ties(acc, params):
    """Where requantizing ``acc`` meets an exact halfway point: a bool array of ``acc``'s shape.

    Only there can the rounding conventions disagree on an in-range result. ``floor``,
    ``half_up``, ``half_even``: ``(wrap32(acc + bias) * mult + offset) / 2**shift`` is exactly
    ``k + 1/2`` (``shift >= 1``). ``tflite``: either of gemmlowp's two roundings meets one: the
    doubled product ``ab / 2**31`` (``SaturatingRoundingDoublingHighMul``) or, after it,
    ``high / 2**(shift - 31)`` (``RoundingDivideByPOT``). Arguments as :func:`requantize`.
    """
    acc = _checked(acc, params)
    x = _wrap32(acc + params.bias)
    if params.rounding == "tflite":
        ab, high, right = _tflite_steps(x, params.mult, params.shift)
        half = np.left_shift(np.int64(1), np.maximum(right - 1, 0))
        return ((ab & ((1 << 31) - 1)) == (1 << 30)) | ((right > 0) & ((high & ((np.int64(1) << right) - 1)) == half))
    shift = np.asarray(params.shift, dtype=np.int64)
    t = x * params.mult + params.offset
    half = np.left_shift(np.int64(1), np.maximum(shift - 1, 0))
    return (shift > 0) & ((t & ((np.int64(1) << shift) - 1)) == half)


def requantize(acc, params):
    """Requantize int32 accumulators ``acc`` (channel axis last) with ``params``; returns int64.

    Implements ``clip(round((wrap32(acc + bias) * mult + offset) / 2**shift) + zero_point, lo, hi)``
    in the rounding convention ``params.rounding`` (see :data:`ROUNDING_MODES`). For ``tflite``
    the multiply-and-shift is gemmlowp's ``MultiplyByQuantizedMultiplier`` with exponent
    ``31 - shift`` (double rounding), as in TFLite's reference integer kernels.

    Raises ValueError if ``acc`` is not integer, is outside int32, or its last axis does not
    match the per-channel parameters.
    """
    acc = _checked(acc, params)
    x = _wrap32(acc + params.bias)
    if params.rounding == "tflite":
        q = _tflite_multiply(x, params.mult, params.shift)
    else:
        q = round_shift(x * params.mult + params.offset, params.shift, params.rounding)
    return np.clip(q + params.zero_point, params.lo, params.hi)


# --- parameter helpers: real scale ratio -> (mult, shift) in each convention -----------------

def _check_positive(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive real number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be a positive finite real number, got {value!r}")
    return v


def nemo_shift_for_eta(eps_in, eps_out, eta):
    """Smallest ``d >= 0`` with ``2**d >= eps_out / (eps_in * eta)`` (NEMO report Eq. 14).

    With ``D = 2**d`` the requantization factor of Eq. 12 has relative error at most ``eta``.
    """
    eps_in, eps_out, eta = (_check_positive(n, v) for n, v in
                            (("eps_in", eps_in), ("eps_out", eps_out), ("eta", eta)))
    bound = Fraction(eps_out) / (Fraction(eps_in) * Fraction(eta))
    d = 0
    while Fraction(1 << d) < bound:
        d += 1
    return d


def rq(q, eps_in, eps_out, d):
    """NEMO requantization RQ (report Eq. 12-13): ``floor(eps_in * 2**d / eps_out) * q >> d``.

    ``q`` is an integer image in the space of ``eps_in``; the result approximates its image in
    the space of ``eps_out`` with relative error at most ``2**-d * eps_out / eps_in`` (Eq. 14).
    The factor is computed exactly from the binary values of the floats (no float rounding);
    the product is exact in int64 for ``|q * factor| < 2**63``.
    """
    eps_in = _check_positive("eps_in", eps_in)
    eps_out = _check_positive("eps_out", eps_out)
    if not isinstance(d, (int, np.integer)) or not 0 <= d <= MAX_SHIFT:
        raise ValueError(f"d: must be an integer in [0, {MAX_SHIFT}], got {d!r}")
    factor = math.floor(Fraction(eps_in) * (1 << int(d)) / Fraction(eps_out))
    if factor >= 1 << 62:
        raise ValueError(f"d: factor floor(eps_in*2**d/eps_out) = {factor} does not fit int64 arithmetic")
    q = _as_int_array("q", q)
    return (q * np.int64(factor)) >> np.int64(d)


def nemo_multiplier(eps_in, eps_out, requantization_factor=16):
    """NEMO's ``PACT_IntegerAct`` parameters: ``D = 2**ceil(log2(rf * eps_out / eps_in))``,
    ``mult = round(D * eps_in / eps_out)``; returns ``(mult, d)`` for ``floor`` requantization.

    ``requantization_factor`` (rf) is ``1 / eta`` of Eq. 14 (NEMO's default 16). Computed with
    exact rationals; ``round`` is Python's half-to-even, as torch.round.
    """
    eps_in = _check_positive("eps_in", eps_in)
    eps_out = _check_positive("eps_out", eps_out)
    rf = _check_positive("requantization_factor", requantization_factor)
    ratio = Fraction(rf) * Fraction(eps_out) / Fraction(eps_in)
    d = 0
    while Fraction(1 << d) < ratio:
        d += 1
    if d > MAX_SHIFT:
        raise ValueError(f"requantization_factor: needs d = {d} > {MAX_SHIFT}")
    mult = round(Fraction(1 << d) * Fraction(eps_in) / Fraction(eps_out))
    return int(mult), d


def quantize_multiplier(real):
    """TFLite ``QuantizeMultiplier``: a real multiplier -> ``(mult, shift)`` for ``tflite`` rounding.

    TFLite returns a Q31 ``quantized_multiplier`` in [2**30, 2**31) and a signed exponent
    ``e`` with ``real ~= quantized_multiplier * 2**(e - 31)``; here ``shift = 31 - e``. As in
    TFLite, ``e < -31`` flushes to ``mult = 0``; ``e > 30`` saturates to ``(2**31 - 1, e = 30)``
    as TFLite's single-rounding build does (its double-rounding build would shift left by 31 or
    more, which C leaves undefined). ``real`` must be >= 0 (0 gives ``mult = 0``).
    """
    try:
        real = float(real)
    except (TypeError, ValueError):
        raise ValueError(f"real: expected a real number, got {real!r}") from None
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"real: must be a finite number >= 0, got {real!r}")
    if real == 0:
        return 0, 31
    frac, exp = math.frexp(real)                       # real = frac * 2**exp, frac in [0.5, 1)
    q = math.floor(frac * (1 << 31) + 0.5)             # TfLiteRound (std::round), exact here
    if q == 1 << 31:
        q //= 2
        exp += 1
    if exp < -31:
        return 0, 31
    if exp > 30:
        exp, q = 30, (1 << 31) - 1
    shift = 31 - exp
    if not 1 <= shift <= MAX_SHIFT:
        raise ValueError(f"real: {real!r} needs shift {shift}, outside 1..{MAX_SHIFT}")
    return int(q), int(shift)


def exact_multiplier(real, mult_bits=32):
    """``(mult, shift)`` with ``mult / 2**shift == real`` exactly, ``|mult| < 2**(mult_bits-1)``.

    For a scale that is itself a float32 (ONNX, PyTorch) this reproduces ``acc * scale`` with
    no approximation of the scale. Raises ValueError if no ``shift`` in 0..62 represents
    ``real`` exactly within ``mult_bits`` signed bits.
    """
    if not isinstance(mult_bits, (int, np.integer)) or isinstance(mult_bits, bool) or not 2 <= mult_bits <= 63:
        raise ValueError(f"mult_bits: expected an integer in 2..63, got {mult_bits!r}")
    try:
        fr = Fraction(float(real))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"real: expected a finite real number, got {real!r}") from None
    limit = 1 << (mult_bits - 1)
    for shift in range(MAX_SHIFT + 1):
        m = fr * (1 << shift)
        if m.denominator == 1:
            if -limit <= m.numerator < limit:
                return int(m.numerator), shift
            break
    raise ValueError(f"real: {float(real)!r} is not exactly mult/2**shift with a {mult_bits}-bit "
                     f"signed mult and shift in 0..{MAX_SHIFT}")
