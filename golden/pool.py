"""The pooling unit: max and average pooling on integer images (NEMO report sec. 3.6, TFLite).

Pooling is defined on *windows*, ``(..., T, C)`` arrays holding the ``T`` taps of each output
(channels last), so the hardware's window reduction and the 2-D functions share one arithmetic
(:func:`pool_windows`); the 2-D functions only extract windows with
:func:`intdeploy.golden.mac_array.im2col`.

* ``max``: maximum over the taps. Quantization preserves order, so max pooling commutes with it
  (report sec. 3.6).
* ``avg_nemo``: report Eq. 25, ``(floor(2**d / (K1*K2)) * sum) >> d``, floor. NEMO's code
  (``PACT_IntegerAvgPool2d``) rounds the factor to nearest instead of flooring it; the two agree
  whenever ``2**d / (K1*K2)`` has a fractional part below 1/2 (e.g. K1*K2 a power of two).
* ``avg_tflite``: TFLite reference int8 ``AveragePool``: the sum of the valid taps divided by
  their number, rounded half away from zero with C integer division, then clamped.

Widths: taps int32; sums are exact in int64.
"""

import numpy as np

from intdeploy.golden.mac_array import _padding, _pair, im2col
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, _as_int_array, _check_range

__all__ = ["POOL_MODES", "pool_windows", "max_pool2d", "avg_pool2d_nemo", "avg_pool2d_tflite"]

POOL_MODES = ("max", "avg_nemo", "avg_tflite")

_INT64_MIN = -(1 << 63)


def _c_div(n, d):
    """C integer division (truncation toward zero) of int64 arrays, ``d > 0``."""
    q = np.abs(n) // d
    return np.where(n < 0, -q, q)


def pool_windows(windows, mode, count=None, d=None, lo=None, hi=None):
    """Reduce pooling windows ``(..., T, C)`` to outputs ``(..., C)`` (int64).

    Parameters
    ----------
    windows : integer array ``(..., T, C)``, int32 values
        The taps of each output. For the average modes, taps that are padding must be 0 and
        ``count`` must say how many taps are real; ``max`` ignores taps equal to the int64
        minimum (the 2-D functions fill padding with it).
    mode : ``"max"``, ``"avg_nemo"`` or ``"avg_tflite"``
    count : int or integer array broadcastable to ``(..., C)``, optional
        Divisor: the number of valid taps (``avg_tflite``) or ``K1*K2`` (``avg_nemo``); defaults
        to ``T``. Must be >= 1.
    d : int, 0..62
        ``avg_nemo`` only (required): ``D = 2**d``, with ``2**d >= count``.
    lo, hi : int, optional
        Inclusive clamp of the result. ``avg_tflite`` defaults to the int8 range [-128, 127]
        (TFLite's activation range); the other modes clamp only when given.

    ``avg_nemo`` = ``(floor(2**d / count) * sum) >> d`` (report Eq. 25); ``avg_tflite`` =
    ``(sum + count//2) / count`` if ``sum > 0`` else ``(sum - count//2) / count``, C division.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(POOL_MODES)}")
    w = _as_int_array("windows", windows)
    if w.ndim < 2 or w.shape[-2] == 0:
        raise ValueError(f"windows: expected shape (..., T, C) with T >= 1, got {w.shape}")
    taps = w.shape[-2]
    valid = w if mode != "max" else w[w != _INT64_MIN]
    _check_range("windows", valid, INT32_MIN, INT32_MAX, "int32")
    if mode == "max":
        if count is not None or d is not None:
            raise ValueError("count, d: not used by max pooling")
        out = w.max(axis=-2)
    else:
        cnt = _as_int_array("count", taps if count is None else count)
        _check_range("count", cnt, 1, taps, f"[1, T = {taps}]")
        try:
            cnt = np.broadcast_to(cnt, w.shape[:-2] + w.shape[-1:])
        except ValueError:
            raise ValueError(f"count: shape {cnt.shape} does not broadcast to {w.shape[:-2] + w.shape[-1:]}") from None
        total = w.sum(axis=-2)
        if mode == "avg_tflite":
            if d is not None:
                raise ValueError("d: not used by avg_tflite")
            half = cnt // 2
            out = _c_div(np.where(total > 0, total + half, total - half), cnt)
            lo = -128 if lo is None else lo
            hi = 127 if hi is None else hi
        else:
            if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or not 0 <= d <= 62:
                raise ValueError(f"d: avg_nemo needs an integer in 0..62, got {d!r}")
            if (1 << int(d)) < int(cnt.max()):
                raise ValueError(f"d: 2**{d} < count {int(cnt.max())}: the factor floor(2**d/count) would be 0")
            factor = (np.int64(1) << np.int64(d)) // cnt
            # |sum| <= T * 2**31 and factor <= 2**d / count: |product| <= 2**(31 + d) * T / count.
            if total.size and int(np.abs(total).max()) * int(factor.max()) >= 1 << 63:
                raise ValueError(f"d: factor * sum does not fit int64 with d = {d}")
            out = (factor * total) >> np.int64(d)
    if lo is not None or hi is not None:
        lo_ = INT32_MIN if lo is None else lo
        hi_ = INT32_MAX if hi is None else hi
        for name, v in (("lo", lo_), ("hi", hi_)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ValueError(f"{name}: expected an integer, got {v!r}")
        if lo_ > hi_:
            raise ValueError(f"lo, hi: lo must be <= hi, got {lo_} > {hi_}")
        out = np.clip(out, lo_, hi_)
    return out.astype(np.int64)


def _windows(x, kernel, stride, padding, pad_value):
    """NHWC ``x`` -> windows ``(N, OH, OW, KH*KW, C)`` via im2col, and the number of real taps."""
    x = _as_int_array("x", x)
    if x.ndim != 4:
        raise ValueError(f"x: expected NHWC (N, H, W, C), got shape {x.shape}")
    kh, kw = _pair("kernel", kernel, 1)
    stride = (kh, kw) if stride is None else _pair("stride", stride, 1)
    (pt, pb), (pl, pr) = _padding(padding)
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        raise ValueError(f"padding: {padding!r} must be smaller than the kernel ({kh}, {kw}) "
                         "so that every window has a real tap")
    cols = im2col(x, (kh, kw), stride, padding, pad_value=pad_value)
    n, oh, ow, _ = cols.shape
    win = cols.reshape(n, oh, ow, kh * kw, x.shape[3])
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    count = im2col(ones, (kh, kw), stride, padding, pad_value=0).sum(axis=-1, keepdims=True)
    return win, count


def max_pool2d(x, kernel, stride=None, padding=0):
    """Max pooling of NHWC int ``x``; ``stride`` defaults to ``kernel``; padded taps are ignored."""
    win, _ = _windows(x, kernel, stride, padding, pad_value=_INT64_MIN)
    return pool_windows(win, "max")


def avg_pool2d_nemo(x, kernel, stride=None, d=16, padding=0):
    """NEMO integer average pooling (report Eq. 25) of NHWC int ``x``: ``(floor(2**d/(K1*K2)) * sum) >> d``.

    ``stride`` defaults to ``kernel``. Padding is not supported (``padding`` other than 0 raises
    ValueError): Eq. 25 divides by the full ``K1*K2``.
    """
    if padding != 0:
        raise ValueError(f"padding: avg_pool2d_nemo supports only 0, got {padding!r}")
    win, _ = _windows(x, kernel, stride, 0, pad_value=0)
    return pool_windows(win, "avg_nemo", d=d)


def avg_pool2d_tflite(x, kernel, stride=None, padding=0, lo=-128, hi=127):
    """TFLite reference int8 average pooling of NHWC int ``x``.

    Each output divides the sum of its *valid* taps by their number (padding excluded, as
    TFLite's ``filter_count``), rounding half away from zero, then clamps to ``[lo, hi]``.
    ``stride`` defaults to ``kernel``; ``padding`` as in :func:`intdeploy.golden.mac_array.im2col`
    (use the explicit ``((top, bottom), (left, right))`` form for TFLite SAME padding).
    """
    win, count = _windows(x, kernel, stride, padding, pad_value=0)
    return pool_windows(win, "avg_tflite", count=count, lo=lo, hi=hi)
