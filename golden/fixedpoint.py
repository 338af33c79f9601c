"""gemmlowp's int32 fixed-point primitives (``fixedpoint/fixedpoint.h``), on int64 numpy arrays.

Used by TFLite's integer kernels: golden's softmax (:mod:`intdeploy.golden.softmax`) and the
transcribed reference-kernel formulas the importers prove golden's requantizer against
(:mod:`intdeploy.golden.importers.litert_kernels`). Golden's requantizer has its own ``tflite``
mode (:func:`intdeploy.golden.requantizer.requantize`), so those proofs compare two codes.
Arguments hold int32 values; results are int32 values in int64 arrays.
"""

import numpy as np

__all__ = ["INT32_MIN", "INT32_MAX", "wrap32", "srdhm", "rdbpot", "saturating_shl"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def wrap32(x):
    """``x`` (a Python int or an int64 array) wrapped to int32 as C's int32 arithmetic wraps it."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul: ``a * b / 2**31`` rounded half away from zero (a nudge
    of +-2**30, then C's truncating division); ``INT32_MIN * INT32_MIN`` saturates to ``INT32_MAX``."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    s = a * b + np.where(a * b >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(s >= 0, s >> 31, -((-s) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rdbpot(x, exponent):
    """RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero (``exponent`` >= 0,
    an int or an array)."""
    x = np.asarray(x, dtype=np.int64)
    mask = (np.int64(1) << np.asarray(exponent, dtype=np.int64)) - 1
    return (x >> exponent) + ((x & mask) > (mask >> 1) + (x < 0))


def saturating_shl(x, n):
    """SaturatingRoundingMultiplyByPOT with a positive exponent: ``x * 2**n`` saturated to int32."""
    return np.clip(np.asarray(x, dtype=np.int64) << n, INT32_MIN, INT32_MAX)
