"""The add unit: element-wise integer Add of two branches (NEMO report Eq. 24, TFLite int8 Add).

Both conventions fit one form. For each branch ``i``,

    v_i = requantize(wrap32((x_i - zp_i) << left_shift), branches[i])
    s   = wrap32(v_0 + v_1) >> sum_shift                 (arithmetic shift: floor)
    y   = requantize(s, output)

* NEMO ``PACT_IntegerAdd`` (Eq. 24): ``y = (mult_a*a + mult_b*b) >> d`` with floor; the branch
  requantizers are exact multiplications (shift 0), the output one divides by ``2**d``.
  See :meth:`AddParams.nemo`. The division may instead be the ``sum_shift``, which frees the
  output requantizer for the activation requantizer that follows a NEMO Add
  (:meth:`AddParams.then`).
* TFLite int8 Add (reference ``integer_ops/add.h``): inputs offset by their zero points,
  shifted left by 20, each scaled by a Q31 multiplier smaller than one, summed in int32, scaled
  by the output multiplier, offset by the output zero point and clamped. See
  :meth:`AddParams.tflite`.

Widths: inputs and zero points int32; ``(x - zp) << left_shift`` and the sum are int32 and wrap
(two's complement) as TFLite's C code does on the machines it runs on (C leaves signed overflow
undefined; for int8 inputs with ``left_shift = 20`` it cannot happen: ``|x - zp| <= 255``,
``255 * 2**20 < 2**28``, and each scaled branch is at most half of that).
"""

from dataclasses import dataclass, replace
import math

import numpy as np

from intdeploy.golden.requantizer import (INT32_MAX, INT32_MIN, RequantParams, _as_int_array, _check_range, _wrap32,
                                          quantize_multiplier, requantize)

__all__ = ["AddParams", "add"]

_MASK32 = 0xFFFFFFFF


def _shift_wrap32(d, shift):
    """``wrap32(d << shift)`` for int64 ``d`` and ``0 <= shift <= 31``, without int64 overflow."""
    # Only the low 32 - shift bits of d survive, so shifting the low 32 bits is enough and stays
    # below 2**63.
    return _wrap32(((d & _MASK32) << shift) & _MASK32)


@dataclass(frozen=True, kw_only=True, eq=False)
class AddParams:
    """Parameters of one integer Add (keyword-only).

    Attributes
    ----------
    in_zero_points : (int, int)
        Zero points subtracted from the two inputs, int32.
    left_shift : int
        0..31; applied to ``x - zp`` in int32 (wrapping) before the branch requantizers.
    branches : (RequantParams, RequantParams)
        Per-branch requantizers, each with its own rounding.
    output : RequantParams
        Requantizer of the shifted int32 sum (with the output zero point and the clamp).
    sum_shift : int
        0..31 (default 0); the int32 sum is shifted right by it (floor) before ``output``.
    """
    in_zero_points: tuple = (0, 0)
    left_shift: int = 0
    branches: tuple
    output: RequantParams
    sum_shift: int = 0

    def __post_init__(self):
        zps = self.in_zero_points
        if not isinstance(zps, (tuple, list)) or len(zps) != 2:
            raise ValueError(f"in_zero_points: expected a pair of int32 zero points, got {zps!r}")
        arr = _as_int_array("in_zero_points", list(zps))
        _check_range("in_zero_points", arr, INT32_MIN, INT32_MAX)
        object.__setattr__(self, "in_zero_points", (int(arr[0]), int(arr[1])))
        ls = self.left_shift
        if not isinstance(ls, (int, np.integer)) or isinstance(ls, bool) or not 0 <= ls <= 31:
            raise ValueError(f"left_shift: expected an integer in 0..31, got {ls!r}")
        object.__setattr__(self, "left_shift", int(ls))
        ss = self.sum_shift
        if not isinstance(ss, (int, np.integer)) or isinstance(ss, bool) or not 0 <= ss <= 31:
            raise ValueError(f"sum_shift: expected an integer in 0..31, got {ss!r}")
        object.__setattr__(self, "sum_shift", int(ss))
        br = self.branches
        if not isinstance(br, (tuple, list)) or len(br) != 2 or not all(isinstance(b, RequantParams) for b in br):
            raise ValueError(f"branches: expected a pair of RequantParams, got {br!r}")
        object.__setattr__(self, "branches", tuple(br))
        if not isinstance(self.output, RequantParams):
            raise ValueError(f"output: expected RequantParams, got {type(self.output).__name__}")

    def then(self, requant):
        """The Add followed by the element-wise requantizer ``requant``, as one AddParams, or None.

        ``requantize(add(a, b, self), requant)`` equals ``add(a, b, self.then(requant))`` for every
        input when ``output`` is a plain floor division by ``2**shift`` (mult 1, no bias, offset
        or zero point, no clamp: NEMO's Eq. 24 output) and ``sum_shift`` is 0: the division
        becomes the ``sum_shift`` (``s >> k`` equals ``s >> 31`` for ``k >= 31`` and int32
        ``s``) and ``requant`` the output requantizer. Otherwise returns None.
        """
        o = self.output
        if not isinstance(requant, RequantParams):
            raise ValueError(f"requant: expected RequantParams, got {type(requant).__name__}")
        plain = (o.channels is None and self.sum_shift == 0 and int(o.mult) == 1 and int(o.bias) == 0
                 and int(o.offset) == 0 and int(o.zero_point) == 0 and int(o.lo) == INT32_MIN
                 and int(o.hi) == INT32_MAX
                 and (o.rounding == "floor" or (int(o.shift) == 0 and o.rounding != "tflite")))
        if not plain:
            return None
        return replace(self, output=requant, sum_shift=min(int(o.shift), 31))

    @classmethod
    def nemo(cls, mult_a, mult_b, d, lo=None, hi=None):
        """NEMO ``PACT_IntegerAdd``: ``y = floor((mult_a*a + mult_b*b) / 2**d)``, clipped to [lo, hi] if given.

        NEMO picks ``D = 2**d = 2**ceil(log2(rf * eps_out / min(eps_in)))`` and
        ``mult_i = round(D * eps_in_i / eps_out)`` (``requantizer.nemo_multiplier``); no clip (the
        next layer's activation clips), unless ``lo`` / ``hi`` are given. Both products and their
        sum must fit int32 for every 8-bit input, signed or unsigned (x in [-128, 255]), else
        ValueError: the hardware adds in int32.
        """
        for name, m in (("mult_a", mult_a), ("mult_b", mult_b)):
            if not isinstance(m, (int, np.integer)) or isinstance(m, bool):
                raise ValueError(f"{name}: expected an integer, got {m!r}")
        mult_a, mult_b = int(mult_a), int(mult_b)
        xs = (-128, 255)
        for name, m in (("mult_a", mult_a), ("mult_b", mult_b)):
            ext = [m * x for x in xs]
            if min(ext) < INT32_MIN or max(ext) > INT32_MAX:
                raise ValueError(f"{name}: {m} * x overflows int32 for 8-bit x in [-128, 255]")
        sums = [mult_a * x + mult_b * y for x in xs for y in xs]
        if min(sums) < INT32_MIN or max(sums) > INT32_MAX:
            raise ValueError(f"mult_a, mult_b: {mult_a}*a + {mult_b}*b overflows int32 for 8-bit a, b")
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or not 0 <= d <= 31:
            raise ValueError(f"d: expected an integer in 0..31, got {d!r}")
        branch = lambda m: RequantParams(mult=m, shift=0, rounding="floor")   # exact product
        out = RequantParams(mult=1, shift=int(d), rounding="floor",
                            lo=INT32_MIN if lo is None else lo, hi=INT32_MAX if hi is None else hi)
        return cls(in_zero_points=(0, 0), left_shift=0, branches=(branch(mult_a), branch(mult_b)), output=out)

    @classmethod
    def tflite(cls, scale_a, zp_a, scale_b, zp_b, scale_out, zp_out, lo=-128, hi=127):
        """TFLite int8 Add, transcribing its ``Prepare`` (``kernels/add.cc``).

        Scales are rounded to float32 first (a TFLite model stores them as float32); then, in
        double as TFLite does: ``left_shift = 20``, ``twice_max = 2*max(scale_a, scale_b)``,
        ``real_i = scale_i / twice_max``, ``real_out = twice_max / (2**20 * scale_out)``, each
        turned into ``(mult, shift)`` by ``QuantizeMultiplierSmallerThanOneExp``
        (:func:`intdeploy.golden.requantizer.quantize_multiplier` plus TFLite's checks that the real
        multiplier is in (0, 1) and its exponent <= 0). Rounding is ``tflite`` throughout:
        ``MultiplyByQuantizedMultiplierSmallerThanOneExp`` equals ``MultiplyByQuantizedMultiplier``
        for a non-positive exponent. ``lo``/``hi`` are the fused activation's clamp.
        """
        s = {}
        for name, v in (("scale_a", scale_a), ("scale_b", scale_b), ("scale_out", scale_out)):
            try:
                f = float(np.float32(v))
            except (TypeError, ValueError):
                raise ValueError(f"{name}: expected a positive real number, got {v!r}") from None
            if not math.isfinite(f) or f <= 0:
                raise ValueError(f"{name}: must be a positive finite float32, got {v!r}")
            s[name] = f
        twice_max = 2.0 * max(s["scale_a"], s["scale_b"])
        left_shift = 20
        reals = {"scale_a": s["scale_a"] / twice_max, "scale_b": s["scale_b"] / twice_max,
                 "scale_out": twice_max / ((1 << left_shift) * s["scale_out"])}
        qm = {}
        for name, real in reals.items():
            if not 0 < real < 1:
                raise ValueError(f"{name}: TFLite Add needs a real multiplier in (0, 1), got {real!r} "
                                 f"(input/output scale ratio too large)")
            mult, shift = quantize_multiplier(real)
            if shift < 31:      # QuantizeMultiplierSmallerThanOneExp: TFLITE_CHECK_LE(exponent, 0)
                raise ValueError(f"{name}: multiplier {real!r} rounds up to 1.0; TFLite refuses it")
            qm[name] = (mult, shift)
        branch = lambda name: RequantParams(mult=qm[name][0], shift=qm[name][1], rounding="tflite")
        out = RequantParams(mult=qm["scale_out"][0], shift=qm["scale_out"][1], rounding="tflite",
                            zero_point=zp_out, lo=lo, hi=hi)
        return cls(in_zero_points=(zp_a, zp_b), left_shift=left_shift,
                   branches=(branch("scale_a"), branch("scale_b")), output=out)


def add(a, b, params):
    """Integer Add of ``a`` and ``b`` (same shape ``(..., C)``, int32 values); returns int64.

    Computes ``requantize(wrap32(v_0 + v_1) >> params.sum_shift, params.output)`` with
    ``v_i = requantize(wrap32((x_i - zp_i) << left_shift), params.branches[i])``; see the module
    docstring. Per-channel requantizers broadcast along the last axis.
    """
    if not isinstance(params, AddParams):
        raise ValueError(f"params: expected AddParams, got {type(params).__name__}")
    a = _as_int_array("a", a)
    b = _as_int_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a, b: shapes must be equal, got {a.shape} and {b.shape}")
    _check_range("a", a, INT32_MIN, INT32_MAX, "int32")
    _check_range("b", b, INT32_MIN, INT32_MAX, "int32")
    v = [requantize(_shift_wrap32(x - zp, params.left_shift), br)
         for x, zp, br in zip((a, b), params.in_zero_points, params.branches)]
    # The branch results are int32 (the requantizer clamps to int32 at most); TFLite adds them
    # in int32.
    return requantize(_wrap32(v[0] + v[1]) >> params.sum_shift, params.output)
