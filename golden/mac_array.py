"""The MAC array: integer image of linear and convolution layers (NEMO report Eq. 15-17).

A linear layer on integer images computes, per output channel ``m``,

    acc[..., m] = sum_k (x[..., k] - x_zero_point) * (w[m, k] - w_zero_point[m])

exactly (Eq. 16 with zero points; TFLite / ONNX Runtime / PyTorch integer GEMM). The zero points
let an 8-bit datapath carry asymmetric integer images: uint8-style activations stored as int8,
and NEMO's asymmetric weights (whose integer image spans e.g. [-147, 108], Eq. 15) stored as
int8 with a weight zero point. Convolution is lowered to the same GEMM by :func:`im2col`, exactly
as the hardware does, so both share one arithmetic definition.

Widths: operands are any integers whose worst-case accumulation fits int64 (checked; always true
for 8- and 16-bit data); results are int64 and are *not* wrapped. Whether an accumulation fits
the hardware's int32 accumulator is decided per layer by :func:`accumulator_range` /
:func:`check_accumulator`, before anything runs.

Layouts: activations channels-last (``(..., K)``, NHWC); weights output-channel-first
(``(M, K)``, OHWI ``(Cout, KH, KW, Cin)`` as in TFLite).
"""

import numpy as np

from intdeploy.golden.requantizer import _as_int_array

__all__ = ["linear", "im2col", "conv2d", "accumulator_range", "accumulator_bits", "check_accumulator"]

_INT64_MAX = (1 << 63) - 1


def _pair(name, value, minimum):
    """``value`` (int or pair of ints) as a tuple of two Python ints >= ``minimum``."""
    v = value if isinstance(value, (tuple, list, np.ndarray)) else (value, value)
    if len(v) != 2 or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(v) < minimum:
        raise ValueError(f"{name}: {value!r} is out of range; allowed integers >= {minimum}")
    return int(v[0]), int(v[1])


def _padding(value):
    """``padding`` as ``((top, bottom), (left, right))``: int, ``(ph, pw)`` or the explicit form."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (tuple, list)) for v in value):
        (t, b), (l, r) = (_pair("padding", value[0], 0), _pair("padding", value[1], 0))
        return (t, b), (l, r)
    ph, pw = _pair("padding", value, 0)
    return (ph, ph), (pw, pw)


def _scalar_int(name, value):
    arr = _as_int_array(name, value)
    if arr.ndim != 0:
        raise ValueError(f"{name}: expected a scalar integer, got shape {arr.shape}")
    return int(arr)


def _weight_zero_point(w_zero_point, m):
    zp = _as_int_array("w_zero_point", w_zero_point)
    if zp.ndim > 1 or (zp.ndim == 1 and zp.shape[0] != m):
        raise ValueError(f"w_zero_point: expected a scalar or shape ({m},), got shape {zp.shape}")
    return zp


def _flat_weights(w):
    w = _as_int_array("w", w)
    if w.ndim == 4:
        w = w.reshape(w.shape[0], -1)
    if w.ndim != 2 or w.shape[1] == 0:
        raise ValueError(f"w: expected (M, K) or OHWI (Cout, KH, KW, Cin) with K > 0, got shape {w.shape}")
    return w


def linear(x, w, x_zero_point=0, w_zero_point=0):
    """Integer linear layer: ``sum_k (x[..., k] - x_zero_point) * (w[m, k] - w_zero_point[m])``.

    Parameters
    ----------
    x : integer array ``(..., K)``
        Input integer image, channels last.
    w : integer array ``(M, K)``
        Weights, output channel first.
    x_zero_point : int
        Subtracted from every input (per tensor).
    w_zero_point : int or integer array ``(M,)``
        Subtracted from the weights, per tensor or per output channel.

    Returns
    -------
    int64 array ``(..., M)``, exact (no wrap, no saturation).

    Raises
    ------
    ValueError
        Non-integer operands, mismatched ``K``, a zero point of the wrong shape, or operands whose
        worst-case sum of ``K`` products could exceed int64.
    """
    x = _as_int_array("x", x)
    w = _as_int_array("w", w)
    if w.ndim != 2:
        raise ValueError(f"w: expected shape (M, K), got shape {w.shape}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x: last axis must be K = {w.shape[1]} (w is {w.shape}), got shape {x.shape}")
    zpx = _scalar_int("x_zero_point", x_zero_point)
    zpw = _weight_zero_point(w_zero_point, w.shape[0])
    xc = x - zpx
    wc = w - (zpw[:, None] if zpw.ndim else zpw)
    if xc.size and wc.size:
        # Bound the worst case with Python ints: max|x - zpx| * max|w - zpw| * K < 2**63.
        xmax = max(abs(int(x.min()) - zpx), abs(int(x.max()) - zpx))
        wmax = max(abs(int(wc.min())), abs(int(wc.max())))
        if xmax * wmax * w.shape[1] > _INT64_MAX:
            raise ValueError(f"x, w: worst-case accumulation {xmax}*{wmax}*{w.shape[1]} does not fit int64")
    return np.matmul(xc, wc.T)


def im2col(x, kernel, stride=1, padding=0, pad_value=0):
    """Patches of an NHWC image as rows of a GEMM operand: ``(N, OH, OW, KH*KW*C)``.

    Each patch is flattened in ``(kh, kw, c)`` order, so ``im2col(x, ...) @ w.reshape(Cout, -1).T``
    is the convolution with OHWI weights ``w``. ``OH = (H + top + bottom - KH) // sh + 1`` and
    likewise ``OW``.

    Parameters
    ----------
    x : integer array ``(N, H, W, C)``
    kernel : int or ``(KH, KW)``
    stride : int or ``(sh, sw)``, >= 1
    padding : int, ``(ph, pw)`` (symmetric) or ``((top, bottom), (left, right))``
        The explicit form expresses TFLite's SAME padding, which puts the odd extra row/column
        at the bottom/right.
    pad_value : int
        Value of the padded taps (the input zero point for a convolution, so that padding is a
        real zero).
    """
    x = _as_int_array("x", x)
    if x.ndim != 4:
        raise ValueError(f"x: expected NHWC (N, H, W, C), got shape {x.shape}")
    kh, kw = _pair("kernel", kernel, 1)
    sh, sw = _pair("stride", stride, 1)
    (pt, pb), (pl, pr) = _padding(padding)
    pad_value = _scalar_int("pad_value", pad_value)
    n, h, w, c = x.shape
    hp, wp = h + pt + pb, w + pl + pr
    if hp < kh or wp < kw:
        raise ValueError(f"kernel: ({kh}, {kw}) is larger than the padded input ({hp}, {wp})")
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    oh, ow = win.shape[1], win.shape[2]
    # sliding_window_view puts the window axes last: (N, OH, OW, C, KH, KW) -> (kh, kw, c) order.
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n, oh, ow, kh * kw * c)


def conv2d(x, w, stride=1, padding=0, x_zero_point=0, w_zero_point=0):
    """Integer 2-D convolution, NHWC x OHWI -> NHWC int64, as :func:`im2col` + :func:`linear`.

    Padded taps hold ``x_zero_point`` (a real zero), so they contribute nothing, as in TFLite's
    and ONNX Runtime's integer convolutions. ``padding`` as in :func:`im2col`.
    """
    w = _as_int_array("w", w)
    if w.ndim != 4:
        raise ValueError(f"w: expected OHWI (Cout, KH, KW, Cin), got shape {w.shape}")
    x = _as_int_array("x", x)
    if x.ndim != 4 or x.shape[3] != w.shape[3]:
        raise ValueError(f"x: expected NHWC with C = Cin = {w.shape[3]}, got shape {x.shape}")
    cols = im2col(x, (w.shape[1], w.shape[2]), stride, padding, pad_value=x_zero_point)
    return linear(cols, w.reshape(w.shape[0], -1), x_zero_point, w_zero_point)


def accumulator_range(w, x_min, x_max, x_zero_point=0, w_zero_point=0, bias=None):
    """Exact per-output-channel ``(lo, hi)`` of the accumulator over all inputs in ``[x_min, x_max]``.

    Each term ``(x_k - zpx) * (w_mk - zpw_m)`` is linear in ``x_k``, so its extremes are at
    ``x_k = x_min`` or ``x_max`` and the channel's extremes are the sums of the per-term
    extremes; both are attained (by the input that picks each term's extreme), so the range is
    exact, not a bound. ``bias`` (scalar or ``(M,)``) is added to both ends if given.

    A padded convolution tap holds ``x_zero_point``; it stays inside this range when
    ``x_min <= x_zero_point <= x_max`` (always so for TFLite / ONNX zero points).

    Parameters
    ----------
    w : integer array ``(M, K)`` or OHWI ``(Cout, KH, KW, Cin)`` (flattened per output channel)
    x_min, x_max : int, ``x_min <= x_max``
    x_zero_point, w_zero_point, bias : as in :func:`linear`; ``bias`` scalar or ``(M,)``

    Returns
    -------
    (lo, hi) : two int64 arrays ``(M,)``
    """
    w = _flat_weights(w)
    x_min = _scalar_int("x_min", x_min)
    x_max = _scalar_int("x_max", x_max)
    if x_min > x_max:
        raise ValueError(f"x_min, x_max: need x_min <= x_max, got {x_min} > {x_max}")
    zpx = _scalar_int("x_zero_point", x_zero_point)
    zpw = _weight_zero_point(w_zero_point, w.shape[0])
    wc = w - (zpw[:, None] if zpw.ndim else zpw)
    a, b = x_min - zpx, x_max - zpx
    cmax = max(abs(int(wc.min())), abs(int(wc.max())))
    if max(abs(a), abs(b)) * cmax * wc.shape[1] > _INT64_MAX:
        wc = wc.astype(object)          # exact Python-int arithmetic for out-of-int64 cases
    ta, tb = wc * a, wc * b
    lo = np.minimum(ta, tb).sum(axis=1).tolist()
    hi = np.maximum(ta, tb).sum(axis=1).tolist()
    if bias is not None:
        bias = _as_int_array("bias", bias)
        if bias.ndim > 1 or (bias.ndim == 1 and bias.shape[0] != w.shape[0]):
            raise ValueError(f"bias: expected a scalar or shape ({w.shape[0]},), got shape {bias.shape}")
        bb = np.broadcast_to(bias, (w.shape[0],)).tolist()
        lo = [v + c for v, c in zip(lo, bb)]
        hi = [v + c for v, c in zip(hi, bb)]
    if min(lo) < -(1 << 63) or max(hi) > _INT64_MAX:
        raise ValueError("w: accumulator range does not fit int64")
    return np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)


def _signed_bits(lo, hi):
    """Smallest ``n >= 1`` with ``-2**(n-1) <= lo`` and ``hi <= 2**(n-1) - 1``."""
    lo, hi = int(lo), int(hi)
    need_lo = (~lo).bit_length() + 1 if lo < 0 else 1     # ~lo == -lo - 1
    need_hi = hi.bit_length() + 1 if hi > 0 else 1
    return max(need_lo, need_hi)


def accumulator_bits(w, x_min, x_max, x_zero_point=0, w_zero_point=0, bias=None):
    """Signed bits the accumulator needs for the worst output channel (see :func:`accumulator_range`)."""
    lo, hi = accumulator_range(w, x_min, x_max, x_zero_point, w_zero_point, bias)
    return max(_signed_bits(l, h) for l, h in zip(lo.tolist(), hi.tolist()))


def check_accumulator(w, x_min, x_max, x_zero_point=0, w_zero_point=0, bias=None, bits=32, name="layer"):
    """Refuse a layer whose accumulator could overflow a ``bits``-bit signed accumulator.

    Returns the bits needed (<= ``bits``); raises ``ValueError("<name>: accumulator needs N bits,
    hardware has B (worst channel c: [lo, hi])")`` otherwise. The worst channel is the first
    one needing the most bits.
    """
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= 64:
        raise ValueError(f"bits: expected an integer in [1, 64], got {bits!r}")
    lo, hi = accumulator_range(w, x_min, x_max, x_zero_point, w_zero_point, bias)
    need = [_signed_bits(l, h) for l, h in zip(lo.tolist(), hi.tolist())]
    worst = int(np.argmax(need))
    if need[worst] > bits:
        raise ValueError(f"{name}: accumulator needs {need[worst]} bits, hardware has {bits} "
                         f"(worst channel {worst}: [{int(lo[worst])}, {int(hi[worst])}])")
    return need[worst]
