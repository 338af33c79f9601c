"""intdeploy.golden.pool against direct loops (TFLite reference pooling, NEMO Eq. 25) on Python ints."""

from fractions import Fraction
import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.pool import avg_pool2d_nemo, avg_pool2d_tflite, max_pool2d, pool_windows


def c_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def pool_direct(x, kernel, stride, pads, reduce):
    """TFLite reference pooling loop: clamp the filter to the image, reduce the valid taps."""
    n, h, w, c = x.shape
    kh, kw = kernel
    sh, sw = stride
    (pt, pb), (pl, pr) = pads
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    out = np.zeros((n, oh, ow, c), dtype=np.int64)
    for b, oy, ox, ch in itertools.product(range(n), range(oh), range(ow), range(c)):
        in_y_origin, in_x_origin = oy * sh - pt, ox * sw - pl
        fy0, fy1 = max(0, -in_y_origin), min(kh, h - in_y_origin)
        fx0, fx1 = max(0, -in_x_origin), min(kw, w - in_x_origin)
        taps = [int(x[b, in_y_origin + fy, in_x_origin + fx, ch]) for fy in range(fy0, fy1) for fx in range(fx0, fx1)]
        out[b, oy, ox, ch] = reduce(taps)
    return out


def tflite_avg(taps, lo=-128, hi=127):
    acc, filter_count = sum(taps), len(taps)
    acc = c_div(acc + filter_count // 2, filter_count) if acc > 0 else c_div(acc - filter_count // 2, filter_count)
    return min(max(acc, lo), hi)


POOL_CASES = [
    ((2, 2), None, 0, ((0, 0), (0, 0))),
    ((3, 3), (2, 2), 1, ((1, 1), (1, 1))),
    ((3, 3), (1, 1), 1, ((1, 1), (1, 1))),
    ((2, 3), (1, 2), (1, 0), ((1, 1), (0, 0))),
    ((3, 3), (2, 2), ((0, 1), (0, 1)), ((0, 1), (0, 1))),      # TFLite SAME on an even input
    ((7, 6), None, 0, ((0, 0), (0, 0))),                        # global pooling
]


@pytest.mark.parametrize("kernel, stride, padding, pads", POOL_CASES)
def test_max_and_tflite_avg_vs_direct(kernel, stride, padding, pads):
    rng = np.random.default_rng(abs(hash((kernel, str(stride), str(padding)))) % 2**32)
    x = rng.integers(-128, 127, (2, 7, 6, 3), endpoint=True)
    s = kernel if stride is None else stride
    np.testing.assert_array_equal(max_pool2d(x, kernel, stride, padding), pool_direct(x, kernel, s, pads, max))
    np.testing.assert_array_equal(avg_pool2d_tflite(x, kernel, stride, padding), pool_direct(x, kernel, s, pads, tflite_avg))
    # a relu6-style clamp is honoured
    np.testing.assert_array_equal(avg_pool2d_tflite(x, kernel, stride, padding, lo=-10, hi=20),
                                  pool_direct(x, kernel, s, pads, lambda t: tflite_avg(t, -10, 20)))


def test_max_pool_all_negative_with_padding():
    """Padding must not win a max: with every value negative, a 0 from padding would."""
    x = -np.arange(1, 1 + 4 * 4).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(max_pool2d(x, 3, 2, 1), pool_direct(x, (3, 3), (2, 2), ((1, 1), (1, 1)), max))
    assert max_pool2d(x, 3, 2, 1).max() < 0


@pytest.mark.parametrize("count", [2, 4, 6, 8])
def test_tflite_avg_ties_half_away_from_zero(count):
    """sum = +-(2k+1) * count/2 is an exact .5 tie: it rounds away from zero, both signs."""
    for k in range(0, 5):
        s = (2 * k + 1) * count // 2
        for sign in (1, -1):
            taps = np.zeros((count, 1), dtype=np.int64)
            taps[0, 0] = sign * s
            want = sign * (k + 1)                                # |s / count| = k + 1/2 -> k + 1
            assert pool_windows(taps, "avg_tflite").tolist() == [want]
            assert want == tflite_avg([sign * s] + [0] * (count - 1))
    # and non-ties round to nearest: 5/4 -> 1, -7/4 -> -2, 6/4 -> 2, -6/4 -> -2
    for s, want in ((5, 1), (-7, -2), (6, 2), (-6, -2), (1, 0), (-1, 0)):
        assert pool_windows(np.array([[s], [0], [0], [0]]), "avg_tflite").tolist() == [want]


def test_tflite_avg_count_excludes_padding():
    x = np.full((1, 2, 2, 1), 10)
    x[0, 0, 0, 0] = 11
    # 3x3 window centred on (0, 0) with padding 1 sees 4 real taps: 41 / 4 = 10.25 -> 10,
    # not 41 / 9 (which counting padding would give: 4.6 -> 5)
    assert avg_pool2d_tflite(x, 3, 1, 1)[0, 0, 0, 0] == 10


@settings(max_examples=120, deadline=None)
@given(taps=st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=16), d=st.integers(0, 26),
       count=st.one_of(st.none(), st.integers(1, 16)))
def test_nemo_eq25_floor(taps, d, count):
    k = len(taps) if count is None or count > len(taps) else count
    if (1 << d) < k:
        d = k.bit_length()
    w = np.array(taps)[:, None]
    got = pool_windows(w, "avg_nemo", count=None if count is None or count > len(taps) else count, d=d)
    assert got.tolist() == [((1 << d) // k * sum(taps)) >> d]           # Python >>: floor
    assert got.tolist() == [math.floor(Fraction((1 << d) // k * sum(taps), 1 << d))]


def test_nemo_floor_examples():
    # sum -1 over 4 taps, d = 4: factor 4, -4 >> 4 = -1 (floor), not 0 (truncation).
    assert pool_windows(np.array([[-1], [0], [0], [0]]), "avg_nemo", d=4).tolist() == [-1]
    # 9 taps, d = 4: factor floor(16/9) = 1, so the "average" of nine 5s is 45 >> 4 = 2 (Eq. 25's
    # approximation error at small d); d = 16 gives floor(65536/9) = 7281, 45*7281 >> 16 = 4.
    nine = np.full((9, 1), 5)
    assert pool_windows(nine, "avg_nemo", d=4).tolist() == [2]
    assert pool_windows(nine, "avg_nemo", d=16).tolist() == [4]


@pytest.mark.parametrize("kernel, stride, d", [((2, 2), None, 16), ((3, 3), (1, 1), 8), ((2, 3), (2, 1), 5), ((7, 6), None, 12)])
def test_avg_pool2d_nemo_vs_direct(kernel, stride, d):
    rng = np.random.default_rng(d)
    x = rng.integers(0, 255, (2, 7, 6, 3), endpoint=True)
    s = kernel if stride is None else stride
    k = kernel[0] * kernel[1]
    want = pool_direct(x, kernel, s, ((0, 0), (0, 0)), lambda t: ((1 << d) // k * sum(t)) >> d)
    np.testing.assert_array_equal(avg_pool2d_nemo(x, kernel, stride, d), want)


def test_count_per_output():
    w = np.array([[[4], [4], [0]], [[4], [4], [4]]])          # (2 outputs, T = 3, C = 1)
    got = pool_windows(w, "avg_tflite", count=np.array([[2], [3]]))
    assert got.tolist() == [[4], [4]]


def test_bad_inputs():
    x = np.zeros((1, 4, 4, 1), dtype=np.int64)
    with pytest.raises(ValueError, match="^mode:"):
        pool_windows(np.zeros((2, 1), dtype=np.int64), "mean")
    with pytest.raises(ValueError, match="^padding:"):
        avg_pool2d_nemo(x, 2, padding=1)
    with pytest.raises(ValueError, match="^padding:"):
        max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="^d:"):
        pool_windows(np.zeros((2, 1), dtype=np.int64), "avg_nemo")
    with pytest.raises(ValueError, match="^d:"):
        pool_windows(np.zeros((9, 1), dtype=np.int64), "avg_nemo", d=3)
    with pytest.raises(ValueError, match="^count:"):
        pool_windows(np.zeros((2, 1), dtype=np.int64), "avg_tflite", count=0)
    with pytest.raises(ValueError, match="^count:"):
        pool_windows(np.zeros((2, 1), dtype=np.int64), "avg_tflite", count=3)
    with pytest.raises(ValueError, match="^windows:"):
        pool_windows(np.array([[1 << 31]]), "avg_tflite")
    with pytest.raises(ValueError, match="^windows:"):
        pool_windows(np.zeros((2, 1)), "max")
    with pytest.raises(ValueError, match="^x:"):
        max_pool2d(np.zeros((4, 4, 1), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="^lo, hi:"):
        pool_windows(np.zeros((2, 1), dtype=np.int64), "max", lo=3, hi=2)
