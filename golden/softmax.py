"""int8 softmax as TFLite's reference kernel computes it, in integers (no float).

The accelerator has no softmax unit: a network's final SOFTMAX runs on the host, in this function.
It transcribes ``reference_ops::Softmax`` for int8 input and output (TFLite
``kernels/internal/reference/softmax.h``) with gemmlowp's fixed-point ``exp_on_negative_values``,
``one_over_one_plus_x_for_x_in_0_1`` (``fixedpoint/fixedpoint.h``) and TFLite's ``GetReciprocal``
(``kernels/internal/common.h``); the parameters come from ``PreprocessSoftmaxScaling`` and
``CalculateInputRadius`` (``quantization_util.cc``), :func:`softmax_params`.

Per row (the last axis): ``d = x - max(row)``; where ``d >= diff_min``, ``d`` is rescaled to a Q5.26
fixed-point value by ``SaturatingRoundingDoublingHighMul(d * 2**left_shift, multiplier)`` and
exponentiated (Q0.31); the exponentials are summed in Q12.19 (each rounded by ``2**-12``); the
reciprocal of the sum is found by three Newton-Raphson steps; each output is
``RoundingDivideByPOT(exp * reciprocal, bits_over_unit + 23) - 128`` clamped to [-128, 127]
(output scale 1/256, zero point -128, as TFLite requires of an int8 softmax). Elements below
``diff_min`` give -128. Exact for every int8 input: :func:`softmax` is int64 numpy throughout,
each intermediate wrapped or saturated as the int32 C code does.
"""

import math

import numpy as np

from intdeploy.golden.fixedpoint import INT32_MAX, rdbpot, saturating_shl, srdhm, wrap32

__all__ = ["softmax", "softmax_params", "SCALED_DIFF_INTEGER_BITS"]

#: Integer bits of the rescaled input difference (Q5.26) and of the sum of exponentials (Q12.19).
SCALED_DIFF_INTEGER_BITS, _ACCUM_INTEGER_BITS = 5, 12


def softmax_params(beta, input_scale):
    """``(multiplier, left_shift, diff_min)`` of an int8 softmax (TFLite's Prepare): ``beta`` and
    ``input_scale`` are float32 values, multiplied in double."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)),
               (1 << 31) - 1.0)
    if not real >= 1.0:
        raise ValueError(f"beta * input_scale: {real / (1 << 26)!r} is below 2**-26; TFLite requires a multiplier "
                         f">= 1 here")
    q, e = math.frexp(real)
    mult = int(math.floor(q * (1 << 31) + 0.5))             # std::round; q * 2**31 is exact
    if mult == 1 << 31:
        mult, e = mult // 2, e + 1
    radius = ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << e)
    return mult, e, -int(math.floor(radius))


def _exp_quarter(a):
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (a Taylor expansion around -1/8)."""
    constant_term, one_third = 1895147668, 715827883          # exp(-1/8), 1/3 in Q0.31
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


#: exp(-2**k) in Q0.31 for k = -2..4: the barrel shifter of exp_on_negative_values.
_EXP_POW2 = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
             (4, 242))


def _exp_negative(a):
    """exp(a) for a <= 0 in Q5.26, result Q0.31 (gemmlowp exp_on_negative_values)."""
    frac = 31 - SCALED_DIFF_INTEGER_BITS
    quarter = 1 << (frac - 2)
    a_mod = wrap32((a & (quarter - 1)) - quarter)
    result = _exp_quarter(saturating_shl(a_mod, SCALED_DIFF_INTEGER_BITS))
    remainder = wrap32(a_mod - a)
    for k, mult in _EXP_POW2:
        result = np.where(remainder & (1 << (frac + k)), srdhm(result, mult), result)
    return np.where(a == 0, INT32_MAX, result)


def _reciprocal(x):
    """TFLite GetReciprocal of a positive Q12.19 sum: ``(Q0.31 1 / (1 + f), bits_over_unit)``."""
    x = np.asarray(x, dtype=np.int64)
    headroom = 32 - np.floor(np.log2(np.maximum(x, 1))).astype(np.int64) - 1      # leading zeros of uint32
    bits_over_unit = _ACCUM_INTEGER_BITS - headroom
    shifted_minus_one = wrap32(((x << headroom) & 0xFFFFFFFF) - (1 << 31))
    # one_over_one_plus_x_for_x_in_0_1: half_denominator in Q0.31, Newton-Raphson in Q2.29
    s = shifted_minus_one + INT32_MAX
    half_den = np.where(s >= 0, (s + 1) >> 1, -((1 - s) >> 1))                # RoundingHalfSum: (sum + sign) / 2
    r = wrap32(1515870810 + srdhm(half_den, -1010580540))                        # 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = wrap32((1 << 29) - srdhm(half_den, r))
        r = wrap32(r + saturating_shl(srdhm(r, one_minus), 2))
    return saturating_shl(r, 1), bits_over_unit


def softmax(x, multiplier, left_shift, diff_min):
    """int8 softmax of ``x`` (int8 values, any shape, rows along the last axis) with the integer
    parameters of :func:`softmax_params`; returns int64 values in [-128, 127] (scale 1/256, zero
    point -128)."""
    x = np.asarray(x, dtype=np.int64)
    d = x - x.max(axis=-1, keepdims=True)
    live = d >= diff_min
    scaled = srdhm(wrap32(d * (1 << left_shift)), multiplier)
    e = _exp_negative(np.where(live, scaled, 0))
    total = np.where(live, rdbpot(e, _ACCUM_INTEGER_BITS), 0).sum(axis=-1, keepdims=True)
    recip, bits = _reciprocal(wrap32(total))
    out = rdbpot(srdhm(recip, e), bits + 31 - 8) - 128
    return np.where(live, np.clip(out, -128, 127), -128)
