"""intdeploy.golden.mac_array against Python-int loops and direct (non-im2col) convolution."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.mac_array import accumulator_bits, accumulator_range, check_accumulator, conv2d, im2col, linear

DTYPES = {"int8": (-128, 127), "uint8": (0, 255)}


def linear_loops(x, w, zpx, zpw):
    """sum_k (x - zpx)(w - zpw) with Python ints, one output at a time."""
    x = x.tolist()
    w = w.tolist()
    zpw = [zpw] * len(w) if np.ndim(zpw) == 0 else list(zpw)
    return [[sum((int(a) - zpx) * (int(b) - zpw[m]) for a, b in zip(row, w[m])) for m in range(len(w))] for row in x]


@pytest.mark.parametrize("xdt, wdt", [("int8", "int8"), ("uint8", "int8"), ("uint8", "uint8"), ("int8", "uint8")])
@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_vs_loops(xdt, wdt, per_channel):
    rng = np.random.default_rng(hash((xdt, wdt, per_channel)) % 2**32)
    m, k = 6, 37
    x = rng.integers(*DTYPES[xdt], (4, 3, k), endpoint=True)
    w = rng.integers(*DTYPES[wdt], (m, k), endpoint=True)
    zpx = int(rng.integers(*DTYPES[xdt], endpoint=True))
    zpw = rng.integers(*DTYPES[wdt], m, endpoint=True) if per_channel else int(rng.integers(*DTYPES[wdt], endpoint=True))
    got = linear(x, w, zpx, zpw)
    assert got.dtype == np.int64 and got.shape == (4, 3, m)
    want = linear_loops(x.reshape(-1, k), w, zpx, zpw)
    np.testing.assert_array_equal(got.reshape(-1, m), want)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), k=st.integers(1, 20), m=st.integers(1, 6), n=st.integers(1, 4),
       bits=st.sampled_from([8, 16]))
def test_linear_random_widths(data, k, m, n, bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    ints = st.integers(lo, hi)
    x = np.array(data.draw(st.lists(st.lists(ints, min_size=k, max_size=k), min_size=n, max_size=n)))
    w = np.array(data.draw(st.lists(st.lists(ints, min_size=k, max_size=k), min_size=m, max_size=m)))
    zpx, zpw = data.draw(ints), data.draw(ints)
    np.testing.assert_array_equal(linear(x, w, zpx, zpw), linear_loops(x, w, zpx, zpw))


def conv_direct(x, w, stride, pads, zpx, zpw):
    """Direct convolution: for each output and tap, read x or (outside the image) skip the tap,
    i.e. a padded tap equals zpx and contributes (zpx - zpx) * ... = 0."""
    n, h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    (pt, pb), (pl, pr) = pads
    sh, sw = stride
    oh = (h + pt + pb - kh) // sh + 1
    ow = (wd + pl + pr - kw) // sw + 1
    zpw = [zpw] * cout if np.ndim(zpw) == 0 else list(zpw)
    out = np.zeros((n, oh, ow, cout), dtype=object)
    for b, oy, ox, co in itertools.product(range(n), range(oh), range(ow), range(cout)):
        acc = 0
        for ky, kx, ci in itertools.product(range(kh), range(kw), range(cin)):
            iy, ix = oy * sh - pt + ky, ox * sw - pl + kx
            if 0 <= iy < h and 0 <= ix < wd:
                acc += (int(x[b, iy, ix, ci]) - zpx) * (int(w[co, ky, kx, ci]) - zpw[co])
        out[b, oy, ox, co] = acc
    return out


CONV_CASES = [
    # kernel (KH, KW), stride, padding as given to conv2d, explicit pads
    ((3, 3), 1, 0, ((0, 0), (0, 0))),
    ((3, 3), 1, 1, ((1, 1), (1, 1))),
    ((3, 3), 2, 1, ((1, 1), (1, 1))),
    ((2, 3), (2, 1), (1, 0), ((1, 1), (0, 0))),
    ((3, 2), (1, 3), ((0, 1), (1, 0)), ((0, 1), (1, 0))),     # TFLite SAME-style asymmetric
    ((1, 1), 1, 0, ((0, 0), (0, 0))),
    ((5, 5), 2, 2, ((2, 2), (2, 2))),
]


@pytest.mark.parametrize("kernel, stride, padding, pads", CONV_CASES)
def test_conv2d_vs_direct(kernel, stride, padding, pads):
    rng = np.random.default_rng(abs(hash((kernel, str(stride), str(padding)))) % 2**32)
    x = rng.integers(0, 255, (2, 7, 6, 3), endpoint=True)
    w = rng.integers(-128, 127, (4, *kernel, 3), endpoint=True)
    zpx = 131                                  # uint8-style activations with a zero point
    zpw = rng.integers(-5, 5, 4, endpoint=True)
    s = stride if isinstance(stride, tuple) else (stride, stride)
    got = conv2d(x, w, stride=stride, padding=padding, x_zero_point=zpx, w_zero_point=zpw)
    want = conv_direct(x, w, s, pads, zpx, zpw)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_im2col_layout():
    """Patch element (ky, kx, c) sits at column (ky*KW + kx)*C + c; padding holds pad_value."""
    x = np.arange(1 * 4 * 5 * 2).reshape(1, 4, 5, 2)
    cols = im2col(x, (2, 3), stride=(2, 1), padding=((1, 0), (0, 1)), pad_value=-9)
    xp = np.full((1, 5, 6, 2), -9)
    xp[:, 1:, :5] = x
    assert cols.shape == (1, 2, 4, 12)
    for oy, ox, ky, kx, c in itertools.product(range(2), range(4), range(2), range(3), range(2)):
        assert cols[0, oy, ox, (ky * 3 + kx) * 2 + c] == xp[0, oy * 2 + ky, ox + kx, c]


@pytest.mark.parametrize("xrange, zpx", [((-128, 127), 0), ((0, 255), 128), ((-128, 127), -3), ((0, 15), 0)])
def test_accumulator_range_is_attained(xrange, zpx):
    rng = np.random.default_rng(xrange[1] + zpx)
    m, k = 7, 50
    w = rng.integers(-128, 127, (m, k), endpoint=True)
    w[0] = -128                                  # a channel of all -128
    w[1] = 0
    zpw = rng.integers(-3, 3, m, endpoint=True)
    zpw[1] = 0                                   # an all-zero channel: range [0, 0]
    bias = rng.integers(-1000, 1000, m)
    lo, hi = accumulator_range(w, *xrange, x_zero_point=zpx, w_zero_point=zpw, bias=bias)
    c = w - zpw[:, None]
    # The adversarial input for channel m puts every x_k at the end that maximises (minimises)
    # its term; linear() must reach exactly hi (lo) there.
    x_hi = np.where(c > 0, xrange[1], xrange[0])
    x_lo = np.where(c > 0, xrange[0], xrange[1])
    assert x_hi.min() >= xrange[0] and x_hi.max() <= xrange[1]
    got_hi = np.diagonal(linear(x_hi, w, zpx, zpw)) + bias
    got_lo = np.diagonal(linear(x_lo, w, zpx, zpw)) + bias
    np.testing.assert_array_equal(got_hi, hi)
    np.testing.assert_array_equal(got_lo, lo)
    assert lo[1] == hi[1] == bias[1]
    # and no input goes outside it
    xs = rng.integers(*xrange, (500, k), endpoint=True)
    acc = linear(xs, w, zpx, zpw) + bias
    assert np.all(acc >= lo) and np.all(acc <= hi)


def test_accumulator_range_ohwi_matches_flat():
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 127, (5, 3, 3, 4), endpoint=True)
    a = accumulator_range(w, -128, 127)
    b = accumulator_range(w.reshape(5, -1), -128, 127)
    np.testing.assert_array_equal(a, b)


def test_accumulator_bits_values():
    # one tap of -128 against x in [-128, 127]: [-16256, 16384]; 16384 needs 16 signed bits.
    assert accumulator_bits(np.array([[-128]]), -128, 127) == 16
    assert accumulator_bits(np.array([[127]]), -128, 127) == 15     # [-16256, 16129] fits [-2**14, 2**14 - 1]
    assert accumulator_bits(np.array([[1]]), -128, 127) == 8
    assert accumulator_bits(np.array([[0]]), -128, 127) == 1
    assert accumulator_bits(np.array([[1]]), 0, 128) == 9
    assert accumulator_bits(np.array([[-1]]), 0, 128) == 8          # [-128, 0]


def test_check_accumulator_limit_k():
    """-128 x -128 = 2**14: K = 2**17 - 1 taps reach 2**31 - 2**14 (fits int32), K = 2**17 reach 2**31."""
    limit = (1 << 17) - 1
    assert check_accumulator(np.full((1, limit), -128), -128, 127) == 32
    with pytest.raises(ValueError, match=r"^conv3: accumulator needs 33 bits, hardware has 32 \(worst channel 0: "
                                         r"\[-2130706432, 2147483648\]\)$"):
        check_accumulator(np.full((1, limit + 1), -128), -128, 127, name="conv3")
    # the worst channel is reported, and a bias can push a channel over
    w = np.zeros((3, limit), dtype=np.int64)
    w[2] = -128
    assert check_accumulator(w, -128, 127) == 32
    with pytest.raises(ValueError, match=r"worst channel 2: "):
        check_accumulator(w, -128, 127, bias=[0, 0, 1 << 14])
    with pytest.raises(ValueError, match="hardware has 16"):
        check_accumulator(np.full((1, 2), -128), -128, 127, bits=16)


def test_bad_inputs():
    w = np.zeros((3, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="^x:"):
        linear(np.zeros((2, 5), dtype=np.int64), w)
    with pytest.raises(ValueError, match="^x:"):
        linear(np.zeros((2, 4)), w)
    with pytest.raises(ValueError, match="^w:"):
        linear(np.zeros((2, 4), dtype=np.int64), np.zeros((3, 4, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="^w_zero_point:"):
        linear(np.zeros((2, 4), dtype=np.int64), w, w_zero_point=[1, 2])
    with pytest.raises(ValueError, match="^x_zero_point:"):
        linear(np.zeros((2, 4), dtype=np.int64), w, x_zero_point=[1, 2])
    with pytest.raises(ValueError, match="int64"):
        linear(np.full((1, 4), 1 << 40), np.full((1, 4), 1 << 22))
    with pytest.raises(ValueError, match="^kernel:"):
        im2col(np.zeros((1, 2, 2, 1), dtype=np.int64), 3)
    with pytest.raises(ValueError, match="^stride:"):
        im2col(np.zeros((1, 4, 4, 1), dtype=np.int64), 3, stride=0)
    with pytest.raises(ValueError, match="^padding:"):
        im2col(np.zeros((1, 4, 4, 1), dtype=np.int64), 3, padding=-1)
    with pytest.raises(ValueError, match="^x:"):
        conv2d(np.zeros((1, 4, 4, 2), dtype=np.int64), np.zeros((1, 3, 3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="^x_min, x_max:"):
        accumulator_range(w, 5, 4)
    with pytest.raises(ValueError, match="^bias:"):
        accumulator_range(w, 0, 4, bias=[1, 2])
    with pytest.raises(ValueError, match="^bits:"):
        check_accumulator(w, 0, 4, bits=0)
