"""LiteRT's reference-kernel integer formulas, transcribed as the framework side of a proof.

The TFLite importer (:mod:`intdeploy.golden.importers.from_tflite`) and the cross-check
(:mod:`intdeploy.sim.crosscheck`) compare golden's requantizer with these, so they are written
independently of :mod:`intdeploy.golden.requantizer` (on gemmlowp's primitives,
:mod:`intdeploy.golden.fixedpoint`), from the C sources: ``tensorflow/lite/kernels/
internal/common.h`` ``MultiplyByQuantizedMultiplier`` (double rounding: gemmlowp ``fixedpoint.h``
``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``) and
``quantization_util.cc`` ``QuantizeMultiplier``.

Which formula each operator uses was measured on the LiteRT interpreter with the reference kernels
(``OpResolverType.BUILTIN_REF``, ai-edge-litert) on tie-heavy power-of-two scales: CONV_2D, ADD and
QUANTIZE round twice (:func:`multiply`); FULLY_CONNECTED rounds once, ties away from zero
(:func:`multiply_once`); a formula of the other kind differs on 1-2 % of those elements
(``tests/test_importers.py`` measures it again).

All arrays are int64; ``x`` holds int32 values; ``mult`` is a Q31 multiplier in [0, 2**31) and
``e`` TFLite's signed exponent (``real ~= mult * 2**(e - 31)``).
"""

import math

import numpy as np

from intdeploy.golden.fixedpoint import rdbpot, srdhm, wrap32 as int32

__all__ = ["srdhm", "rdbpot", "int32", "multiply", "multiply_once", "quantize_multiplier"]


def multiply(x, mult, e):
    """MultiplyByQuantizedMultiplier(int32 x, mult, e), double rounding (CONV_2D, ADD, QUANTIZE)."""
    left, right = max(e, 0), max(-e, 0)
    return rdbpot(srdhm(int32(np.asarray(x, dtype=np.int64) * (1 << left)), mult), right)


def multiply_once(x, mult, e):
    """``x * mult / 2**(31 - e)`` rounded once, ties away from zero (FULLY_CONNECTED)."""
    shift = 31 - e
    p = np.asarray(x, dtype=np.int64) * np.int64(mult)
    half = np.int64(1) << (shift - 1)
    magnitude = (np.abs(p) + half) >> shift
    return np.where(p < 0, -magnitude, magnitude)


def quantize_multiplier(real):
    """QuantizeMultiplier(double real) -> ``(quantized_multiplier, e)``."""
    if real == 0:
        return 0, 0
    q, e = math.frexp(real)
    q_fixed = int(round(q * (1 << 31)))      # TfLiteRound = std::round; q * 2**31 is exact, no tie
    if q_fixed == 1 << 31:
        q_fixed //= 2
        e += 1
    if e < -31:
        return 0, 0
    return q_fixed, e
