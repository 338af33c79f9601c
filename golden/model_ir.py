"""The IntegerDeployable model in memory: its input, its layers and the checks of every field.

Each layer carries the golden parameter objects themselves (:class:`intdeploy.golden.requantizer.RequantParams`,
:class:`intdeploy.golden.add.AddParams`, :class:`Threshold`); constructing one checks its fields and
raises :class:`ModelFormatError` with one line naming the field. The graph (:class:`IntegerModel`)
and the file (:func:`load`, :func:`save`) are in :mod:`intdeploy.golden.model_file`, the range proofs in
:mod:`intdeploy.golden.model_ranges`; docs/model-format.md specifies all of it."""

from dataclasses import dataclass
import math
import re

import numpy as np

from intdeploy.golden.add import AddParams
from intdeploy.golden.checks import check_int
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams

__all__ = ['FORMAT', 'VERSION', 'DTYPES', 'LAYER_KINDS', 'REQUANT_FIELDS', 'MAX_DIM', 'ACC_BITS', 'ModelFormatError', 'InputSpec', 'Threshold', 'MacLayer', 'AddLayer', 'RequantLayer', 'PoolLayer', 'FlattenLayer', 'SoftmaxLayer', 'TensorInfo']

FORMAT = "intdeploy-model"
VERSION = 1
#: Storage dtypes of tensors and their inclusive value ranges.
DTYPES = {
    "int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
    "int32": (INT32_MIN, INT32_MAX),
}
LAYER_KINDS = ("conv2d", "linear", "add", "requant", "maxpool2d", "avgpool2d", "flatten", "softmax")
#: The integer fields of a requantizer, in file order (plus ``rounding``).
REQUANT_FIELDS = ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
#: Largest tensor dimension accepted (keeps validation and evaluation of a hostile file bounded).
MAX_DIM = 1 << 16
ACC_BITS = 32


class ModelFormatError(ValueError):
    """A model (file) that violates the format. The message is one line naming the field."""


# --- small checkers shared by the dataclasses and the loader ------------------------------------

def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name: {name!r} is not a valid name; allowed: a letter or '_', then letters, "
                         f"digits, '_', '.', '-' (at most 128 characters)")


def _check_inputs(inputs, n):
    if not isinstance(inputs, (tuple, list)) or len(inputs) != n or not all(isinstance(s, str) for s in inputs):
        raise ValueError(f"inputs: expected a list of {n} tensor name(s), got {inputs!r}")
    return tuple(inputs)


def _check_dtype(dtype, name="output.dtype"):
    if dtype not in DTYPES:
        raise ValueError(f"{name}: {dtype!r} is not one of {', '.join(DTYPES)}")


def _check_eps(name, eps, per_channel=None):
    """Reporting quanta: None, a positive finite float, or (``per_channel``) a positive float array."""
    if eps is None:
        return None
    if per_channel is not None and isinstance(eps, np.ndarray) and eps.ndim == 1:
        if eps.dtype.kind != "f" or eps.shape != (per_channel,) or not np.all(np.isfinite(eps) & (eps > 0)):
            raise ValueError(f"{name}: expected {per_channel} positive finite floats, got {eps.dtype} {eps.shape}")
        return eps.astype(np.float64)
    try:
        ok = not isinstance(eps, bool) and isinstance(eps, (int, float, np.floating, np.integer)) \
            and math.isfinite(eps) and eps > 0
    except OverflowError:          # an integer beyond the float range
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected null or a positive finite number, got {eps!r}")
    return float(eps)


def _pair(name, v, minimum):
    if not isinstance(v, (tuple, list)) or len(v) != 2 or not all(_is_int(e) for e in v):
        raise ValueError(f"{name}: expected a pair of integers, got {v!r}")
    if min(v) < minimum or max(v) > MAX_DIM:
        raise ValueError(f"{name}: {list(v)} is out of range; allowed integers in [{minimum}, {MAX_DIM}]")
    return int(v[0]), int(v[1])


def _padding(v):
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"padding: expected [[top, bottom], [left, right]], got {v!r}")
    return _pair("padding", v[0], 0), _pair("padding", v[1], 0)


def _requant_zero_point(name, rq):
    if rq.zero_point.ndim != 0:
        raise ValueError(f"{name}.zero_point: must be a per-tensor integer (it is the output tensor's zero point)")


# --- parameter objects ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Threshold:
    """Threshold epilogue (report Eq. 19-20, :func:`intdeploy.golden.threshold.threshold`).

    ``thresholds``: integer ``(C, T)``, ``T = 2**Q - 1`` (Q in 1..8), non-decreasing per channel,
    within int32; ``negate``: bool ``(C,)``. Output = number of thresholds ``t <= x`` (``-x`` on
    negated channels), in ``[0, T]``.
    """
    thresholds: np.ndarray
    negate: np.ndarray

    def __post_init__(self):
        th, neg = self.thresholds, self.negate
        if not isinstance(th, np.ndarray) or th.dtype.kind not in "iu" or th.ndim != 2 or th.shape[0] == 0:
            raise ValueError(f"thresholds: expected an integer array (C, T), got "
                             f"{getattr(th, 'dtype', type(th).__name__)} {getattr(th, 'shape', '')}")
        if th.shape[1] not in {(1 << q) - 1 for q in range(1, 9)}:
            raise ValueError(f"thresholds: T = {th.shape[1]} per channel; allowed 2**Q - 1 for Q in 1..8")
        if th.size and (int(th.min()) < INT32_MIN or int(th.max()) > INT32_MAX):
            bad = int(th.min()) if int(th.min()) < INT32_MIN else int(th.max())
            raise ValueError(f"thresholds: {bad} is out of range; allowed int32 [{INT32_MIN}, {INT32_MAX}]")
        th = th.astype(np.int64)
        down = np.nonzero(np.any(np.diff(th, axis=1) < 0, axis=1))[0]
        if down.size:
            raise ValueError(f"thresholds: channel {int(down[0])} is not non-decreasing")
        if not isinstance(neg, np.ndarray) or neg.dtype != bool or neg.shape != (th.shape[0],):
            raise ValueError(f"negate: expected a bool array ({th.shape[0]},), got "
                             f"{getattr(neg, 'dtype', type(neg).__name__)} {getattr(neg, 'shape', '')}")
        object.__setattr__(self, "thresholds", th)

    @property
    def levels(self):
        return self.thresholds.shape[1]


@dataclass(frozen=True, kw_only=True, eq=False)
class InputSpec:
    """The network input: per-sample ``shape`` (e.g. ``(H, W, C)``), storage ``dtype``, the integer
    image's ``zero_point`` and accepted value range ``[lo, hi]`` (defaults: the dtype's range),
    and its quantum ``eps`` (reporting; None if unknown)."""
    shape: tuple
    dtype: str = "uint8"
    zero_point: int = 0
    lo: int = None
    hi: int = None
    eps: float = None
    name: str = "input"

    def __post_init__(self):
        _check_name(self.name)
        if not isinstance(self.shape, (tuple, list)) or not 1 <= len(self.shape) <= 3 \
                or not all(_is_int(d) and 1 <= d <= MAX_DIM for d in self.shape):
            raise ValueError(f"shape: expected 1 to 3 dimensions in [1, {MAX_DIM}], got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        _check_dtype(self.dtype, "dtype")
        dlo, dhi = DTYPES[self.dtype]
        lo = dlo if self.lo is None else check_int("lo", self.lo, dlo, dhi)
        hi = dhi if self.hi is None else check_int("hi", self.hi, dlo, dhi)
        if lo > hi:
            raise ValueError(f"lo, hi: lo must be <= hi, got {lo} > {hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "zero_point", check_int("zero_point", self.zero_point, dlo, dhi))
        object.__setattr__(self, "eps", _check_eps("eps", self.eps))


class _Layer:
    """Checks shared by all layers (name, inputs, output dtype and reporting eps)."""
    n_inputs = 1

    def _check_common(self):
        _check_name(self.name)
        object.__setattr__(self, "inputs", _check_inputs(self.inputs, self.n_inputs))
        _check_dtype(self.dtype)
        object.__setattr__(self, "eps", _check_eps("output.eps", self.eps))


@dataclass(frozen=True, kw_only=True, eq=False)
class MacLayer(_Layer):
    """A conv2d or linear layer: MAC array (:mod:`intdeploy.golden.mac_array`) then one epilogue.

    ``weight`` int8, OHWI ``(Cout, KH, KW, Cin)`` (conv2d) or ``(M, K)`` (linear), values within
    ``weight_bits`` signed bits; ``weight_zero_point`` int or ``(Cout,)``, in [-128, 127];
    ``input_zero_point``: the input tensor's zero point (also the padding value). Exactly one of
    ``requant`` (:class:`RequantParams`, per-tensor ``zero_point``) or ``threshold``.
    ``weight_eps`` (reporting): None, a float or ``(Cout,)`` floats.
    """
    kind: str
    name: str
    inputs: tuple
    weight: np.ndarray
    weight_zero_point: object = 0
    weight_bits: int = 8
    input_zero_point: int = 0
    stride: tuple = (1, 1)
    padding: tuple = ((0, 0), (0, 0))
    requant: RequantParams = None
    threshold: Threshold = None
    dtype: str = "uint8"
    eps: float = None
    weight_eps: object = None

    def __post_init__(self):
        if self.kind not in ("conv2d", "linear"):
            raise ValueError(f"kind: {self.kind!r} is not conv2d or linear")
        self._check_common()
        w = self.weight
        ndim = 4 if self.kind == "conv2d" else 2
        if not isinstance(w, np.ndarray) or w.dtype != np.int8:
            raise ValueError(f"weight: expected an int8 array, got {getattr(w, 'dtype', type(w).__name__)}")
        if w.ndim != ndim or w.size == 0 or max(w.shape) > MAX_DIM:
            raise ValueError(f"weight: expected {ndim} non-empty dimensions "
                             f"({'(Cout, KH, KW, Cin)' if ndim == 4 else '(M, K)'}), got shape {w.shape}")
        bits = check_int("weight_bits", self.weight_bits, 2, 8)
        if int(w.min()) < -(1 << (bits - 1)) or int(w.max()) > (1 << (bits - 1)) - 1:
            bad = int(w.min()) if int(w.min()) < -(1 << (bits - 1)) else int(w.max())
            raise ValueError(f"weight: {bad} is out of range; allowed [{-(1 << (bits - 1))}, "
                             f"{(1 << (bits - 1)) - 1}] (weight_bits {bits})")
        cout = w.shape[0]
        zp = self.weight_zero_point
        if isinstance(zp, np.ndarray) and zp.ndim == 1:
            if zp.dtype.kind not in "iu" or zp.shape != (cout,):
                raise ValueError(f"weight_zero_point: expected an integer or {cout} integers, got {zp.dtype} {zp.shape}")
            if int(zp.min()) < -128 or int(zp.max()) > 127:
                bad = int(zp.min()) if int(zp.min()) < -128 else int(zp.max())
                raise ValueError(f"weight_zero_point: {bad} is out of range; allowed [-128, 127]")
            zp = zp.astype(np.int64)
        else:
            zp = check_int("weight_zero_point", zp, -128, 127)
        object.__setattr__(self, "weight_zero_point", zp)
        object.__setattr__(self, "input_zero_point", check_int("input_zero_point", self.input_zero_point,
                                                                INT32_MIN, INT32_MAX))
        if self.kind == "conv2d":
            object.__setattr__(self, "stride", _pair("stride", self.stride, 1))
            object.__setattr__(self, "padding", _padding(self.padding))
        if (self.requant is None) == (self.threshold is None):
            raise ValueError("requant, threshold: a layer has exactly one epilogue; give one of them")
        if self.requant is not None:
            if not isinstance(self.requant, RequantParams):
                raise ValueError(f"requant: expected RequantParams, got {type(self.requant).__name__}")
            if self.requant.channels not in (None, cout):
                raise ValueError(f"requant: {self.requant.channels} channels, the layer has {cout}")
            _requant_zero_point("requant", self.requant)
        else:
            if not isinstance(self.threshold, Threshold):
                raise ValueError(f"threshold: expected Threshold, got {type(self.threshold).__name__}")
            if self.threshold.thresholds.shape[0] != cout:
                raise ValueError(f"threshold.thresholds: {self.threshold.thresholds.shape[0]} channels, "
                                 f"the layer has {cout}")
        object.__setattr__(self, "weight_eps", _check_eps("weight_eps", self.weight_eps, cout))

    @property
    def out_channels(self):
        return self.weight.shape[0]

    @property
    def in_channels(self):
        return self.weight.shape[-1]


@dataclass(frozen=True, kw_only=True, eq=False)
class AddLayer(_Layer):
    """Integer Add of two tensors (:func:`intdeploy.golden.add.add`); ``params.in_zero_points`` must be the
    inputs' zero points and ``params.output.zero_point`` is per-tensor."""
    name: str
    inputs: tuple
    params: AddParams
    dtype: str = "int32"
    eps: float = None
    kind = "add"
    n_inputs = 2

    def __post_init__(self):
        self._check_common()
        if not isinstance(self.params, AddParams):
            raise ValueError(f"params: expected AddParams, got {type(self.params).__name__}")
        _requant_zero_point("requant", self.params.output)


@dataclass(frozen=True, kw_only=True, eq=False)
class RequantLayer(_Layer):
    """An element-wise requantizer (e.g. NEMO's activation after an Add): ``requantize(x, requant)``."""
    name: str
    inputs: tuple
    requant: RequantParams
    dtype: str = "uint8"
    eps: float = None
    kind = "requant"

    def __post_init__(self):
        self._check_common()
        if not isinstance(self.requant, RequantParams):
            raise ValueError(f"requant: expected RequantParams, got {type(self.requant).__name__}")
        _requant_zero_point("requant", self.requant)


#: Pooling modes of :class:`PoolLayer` (names of :data:`intdeploy.golden.pool.POOL_MODES`) and file names.
_POOL_FILE_MODE = {"avg_nemo": "nemo", "avg_tflite": "tflite"}


@dataclass(frozen=True, kw_only=True, eq=False)
class PoolLayer(_Layer):
    """2-D pooling of an ``(H, W, C)`` tensor: ``mode`` ``max`` (kind maxpool2d), ``avg_nemo``
    (Eq. 25 with ``d``, no padding) or ``avg_tflite`` (padding excluded, clamp ``[lo, hi]``)
    (kind avgpool2d). ``lo``/``hi``: optional clamp (required for ``avg_tflite``)."""
    name: str
    inputs: tuple
    mode: str
    kernel: tuple
    stride: tuple = None
    padding: tuple = ((0, 0), (0, 0))
    d: int = None
    lo: int = None
    hi: int = None
    dtype: str = "uint8"
    eps: float = None

    def __post_init__(self):
        if self.mode not in ("max", "avg_nemo", "avg_tflite"):
            raise ValueError(f"mode: {self.mode!r} is not one of max, avg_nemo, avg_tflite")
        self._check_common()
        k = _pair("kernel", self.kernel, 1)
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", k if self.stride is None else _pair("stride", self.stride, 1))
        pad = _padding(self.padding)
        object.__setattr__(self, "padding", pad)
        if max(pad[0]) >= k[0] or max(pad[1]) >= k[1]:
            raise ValueError(f"padding: {[list(p) for p in pad]} must be smaller than the kernel {list(k)}")
        if self.mode == "avg_nemo":
            if pad != ((0, 0), (0, 0)):
                raise ValueError("padding: NEMO average pooling (Eq. 25) has no padding; allowed [[0, 0], [0, 0]]")
            d = check_int("d", self.d, 0, 31)
            if (1 << d) < k[0] * k[1]:
                raise ValueError(f"d: 2**{d} < kernel area {k[0] * k[1]}; allowed d >= log2(KH*KW)")
        elif self.d is not None:
            raise ValueError(f"d: only NEMO average pooling has d; expected null, got {self.d!r}")
        for nm in ("lo", "hi"):
            v = getattr(self, nm)
            if v is not None:
                check_int(nm, v, INT32_MIN, INT32_MAX)
        if self.mode == "avg_tflite" and (self.lo is None or self.hi is None):
            raise ValueError("lo, hi: TFLite average pooling clamps; both are required")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"lo, hi: lo must be <= hi, got {self.lo} > {self.hi}")

    @property
    def kind(self):
        return "maxpool2d" if self.mode == "max" else "avgpool2d"


@dataclass(frozen=True, kw_only=True, eq=False)
class FlattenLayer(_Layer):
    """Flatten a per-sample tensor in row-major (``h, w, c``) order."""
    name: str
    inputs: tuple
    dtype: str = "uint8"
    eps: float = None
    kind = "flatten"

    def __post_init__(self):
        self._check_common()


@dataclass(frozen=True, kw_only=True, eq=False)
class SoftmaxLayer(_Layer):
    """int8 softmax along the last axis, TFLite's integer kernel (:func:`intdeploy.golden.softmax.softmax`):
    ``multiplier`` (Q31, [2**30, 2**31)), ``left_shift`` (0..31) and ``diff_min`` (<= 0) from
    :func:`intdeploy.golden.softmax.softmax_params`. Output int8, scale 1/256, zero point -128. The
    accelerator has no softmax unit: the host runs it."""
    name: str
    inputs: tuple
    multiplier: int
    left_shift: int
    diff_min: int
    dtype: str = "int8"
    eps: float = None
    kind = "softmax"

    def __post_init__(self):
        self._check_common()
        object.__setattr__(self, "multiplier", check_int("multiplier", self.multiplier, 1 << 30, (1 << 31) - 1))
        object.__setattr__(self, "left_shift", check_int("left_shift", self.left_shift, 0, 31))
        object.__setattr__(self, "diff_min", check_int("diff_min", self.diff_min, INT32_MIN, 0))
        if self.dtype != "int8":
            raise ValueError(f"output.dtype: {self.dtype!r}; a softmax layer outputs int8")


@dataclass(frozen=True)
class TensorInfo:
    """What validation proved about a tensor: per-sample ``shape``, storage ``dtype``, ``zero_point``,
    the exact-or-wider value range ``[lo, hi]`` every input in range can produce, and ``eps``."""
    shape: tuple
    dtype: str
    zero_point: int
    lo: int
    hi: int
    eps: float
