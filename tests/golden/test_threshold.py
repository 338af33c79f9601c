"""intdeploy.golden.threshold against exact-rational batch-norm + linear quantization."""

from fractions import Fraction
import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN
from intdeploy.golden.threshold import EXACT_RANGE, bn_thresholds, threshold


def lq_bn_literal(x, g, b, mu, s, eps_phi, eps_y, bits):
    """clip(floor((gamma/sigma*(x*eps_phi - mu) + beta)/eps_y), 0, 2**Q-1), literally, in Fractions."""
    F = lambda v: Fraction(float(v))
    val = (F(g) / F(s) * (x * F(eps_phi) - F(mu)) + F(b)) / F(eps_y)
    return min(max(math.floor(val), 0), (1 << bits) - 1)


def lq_bn_vector(xs, g, b, mu, s, eps_phi, eps_y, bits):
    """The same function on many integers: BN + LQ is p*x + r with rationals p, r; evaluate
    floor((p.num*r.den*x + r.num*p.den) / (p.den*r.den)) on Python ints (object arrays)."""
    F = lambda v: Fraction(float(v))
    p = F(g) * F(eps_phi) / (F(s) * F(eps_y))
    r = (F(b) - F(g) * F(mu) / F(s)) / F(eps_y)
    xo = np.asarray(xs).astype(object)
    y = (xo * (p.numerator * r.denominator) + r.numerator * p.denominator) // (p.denominator * r.denominator)
    return np.clip(y.astype(np.int64), 0, (1 << bits) - 1)


def random_channel(rng, bits, sign, eps_y):
    """BN parameters whose 2**Q - 1 levels span between ~N/2 (repeated thresholds) and 2**15
    accumulator steps."""
    n = (1 << bits) - 1
    gamma = sign * rng.uniform(0.2, 3.0)
    sigma = rng.uniform(0.1, 4.0)
    span = np.exp(rng.uniform(np.log(n / 2), np.log(2 ** 15)))
    eps_phi = (n / span) * sigma * eps_y / abs(gamma)       # n / span levels per accumulator step
    mu = rng.uniform(-100, 100) * eps_phi
    beta = rng.uniform(-2, 2)
    return gamma, beta, mu, sigma, eps_phi


@pytest.mark.parametrize("bits", range(1, 9))
def test_exhaustive_vs_exact_bn(bits):
    """2**16 consecutive accumulators per channel, covering every level, vs exact rationals."""
    rng = np.random.default_rng(bits)
    n = (1 << bits) - 1
    ey = rng.uniform(0.005, 0.5)
    chans = [random_channel(rng, bits, sign, ey) for sign in (1, -1, 1, -1, 1, -1)]
    chans += [(0.0, 0.6 * n * ey, 3.0, 1.0, 0.01), (-0.0, -1.0, 3.0, 1.0, 0.01)]   # gamma == 0: constant
    g, b, mu, s, ephi = (np.array(v) for v in zip(*chans))
    th, neg = bn_thresholds(g, b, mu, s, ephi, ey, bits)
    assert th.shape == (len(chans), n) and th.dtype == np.int64
    np.testing.assert_array_equal(neg, g < 0)
    for c in range(len(chans)):
        p = g[c] * ephi[c] / (s[c] * ey)
        centre = 0 if p == 0 else int((n / 2 - (b[c] - g[c] * mu[c] / s[c]) / ey) / p)
        xs = np.arange(centre - (1 << 15), centre + (1 << 15), dtype=np.int64)
        x = np.zeros((xs.size, len(chans)), dtype=np.int64)
        x[:, c] = xs
        got = threshold(x, th, neg)[:, c]
        want = lq_bn_vector(xs, g[c], b[c], mu[c], s[c], ephi[c], ey, bits)
        np.testing.assert_array_equal(got, want, err_msg=f"channel {c}")
        if p != 0:
            assert want.min() == 0 and want.max() == n         # the window covers every level
        # the vector oracle against the literal formula, next to every threshold and at random
        at = th[c] * (-1 if neg[c] else 1)
        probe = np.unique(np.concatenate([at - 1, at, at + 1, rng.choice(xs, 50)]))
        probe = probe[(probe >= xs[0]) & (probe <= xs[-1])]
        lit = [lq_bn_literal(int(v), g[c], b[c], mu[c], s[c], ephi[c], ey, bits) for v in probe]
        np.testing.assert_array_equal(got[probe - xs[0]], lit, err_msg=f"channel {c} (literal)")


@settings(max_examples=150, deadline=None)
@given(g=st.floats(-8, 8).filter(lambda v: abs(v) > 1e-3), b=st.floats(-50, 50), mu=st.floats(-1e4, 1e4),
       s=st.floats(1e-3, 10), ephi=st.floats(1e-6, 10), ey=st.floats(1e-4, 10), bits=st.integers(1, 8),
       xs=st.lists(st.integers(-(1 << 31) + 2, (1 << 31) - 2), min_size=1, max_size=30))
def test_random_params_random_x(g, b, mu, s, ephi, ey, bits, xs):
    th, neg = bn_thresholds([g], [b], [mu], [s], ephi, ey, bits)
    # also the accumulators right at the thresholds that are inside the exact range
    xs = xs + [int(t) * (-1 if neg[0] else 1) + d for t in th[0][:: max(1, th.shape[1] // 8)] for d in (-1, 0)]
    xs = [v for v in xs if EXACT_RANGE[0] <= v <= EXACT_RANGE[1]]
    got = threshold(np.array(xs)[:, None], th, neg)[:, 0]
    np.testing.assert_array_equal(got, [lq_bn_literal(v, g, b, mu, s, ephi, ey, bits) for v in xs])


def test_accumulator_equal_to_threshold_counts():
    # y = floor(x / 4) on [0, 3]: levels start exactly at x = 4, 8, 12.
    th, neg = bn_thresholds([1.0], [0.0], [0.0], [1.0], 1.0, 4.0, 2)
    np.testing.assert_array_equal(th, [[4, 8, 12]])
    x = np.array([[3], [4], [7], [8], [11], [12], [100]])
    np.testing.assert_array_equal(threshold(x, th, neg)[:, 0], [0, 1, 1, 2, 2, 3, 3])
    # decreasing: y = floor(-x / 4): levels start at x = -4, -8, -12 (compared as -x >= 4, ...)
    th, neg = bn_thresholds([-1.0], [0.0], [0.0], [1.0], 1.0, 4.0, 2)
    np.testing.assert_array_equal(th, [[4, 8, 12]])
    assert neg.tolist() == [True]
    np.testing.assert_array_equal(threshold(-x, th, neg)[:, 0], [0, 1, 1, 2, 2, 3, 3])


def test_threshold_semantics_direct():
    th = np.array([[-5, 2, 2], [0, 0, 0], [1, 2, 3]])
    x = np.array([[-6, -1, 0], [-5, 0, 1], [1, 1, 2], [2, -1, 3], [9, 9, 9]])
    want = [[0, 0, 0], [1, 3, 1], [1, 3, 2], [3, 0, 3], [3, 3, 3]]
    np.testing.assert_array_equal(threshold(x, th), want)
    # negate per channel: channel 2 counts t <= -x
    np.testing.assert_array_equal(threshold(x, th, np.array([False, False, True]))[:, 2], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(threshold(-x, th, np.array([False, False, True]))[:, 2], [0, 1, 2, 3, 3])
    # a 255-threshold (8-bit) channel
    th8 = np.arange(255)[None, :]
    np.testing.assert_array_equal(threshold(np.array([[-1], [0], [100], [254], [1000]]), th8)[:, 0], [0, 1, 101, 255, 255])


def test_clamped_thresholds_exact_in_range():
    # tiny gamma: thresholds far outside int32 on both sides, clamped
    g = np.array([1e-12, -1e-12, 1e-12])
    b = np.array([0.3, 0.3, -0.3])
    th, neg = bn_thresholds(g, b, [0.0, 0.0, 0.0], [1.0] * 3, 1.0, 0.1, 3)
    assert th.min() >= INT32_MIN and th.max() <= INT32_MAX
    assert INT32_MIN in th and INT32_MAX in th
    lo, hi = EXACT_RANGE
    xs = [lo, lo + 1, -1, 0, 1, hi - 1, hi]
    got = threshold(np.array(xs)[:, None].repeat(3, 1), th, neg)
    for c in range(3):
        want = [lq_bn_literal(v, g[c], b[c], 0.0, 1.0, 1.0, 0.1, 3) for v in xs]
        np.testing.assert_array_equal(got[:, c], want)


# 0.7 / 0.1 is just below 7 in binary floats (0.7 rounds down, 0.1 rounds up): exactly 6.
@pytest.mark.parametrize("beta, level", [(-5.0, 0), (0.0, 0), (0.26, 2), (0.7, 6), (0.75, 7), (100.0, 7)])
def test_gamma_zero_is_constant(beta, level):
    th, neg = bn_thresholds([0.0], [beta], [1.0], [1.0], 0.5, 0.1, 3)
    lo, hi = EXACT_RANGE
    x = np.array([[lo], [-1], [0], [12345], [hi]])
    np.testing.assert_array_equal(threshold(x, th, neg)[:, 0], [level] * 5)


@pytest.mark.parametrize("kw, name", [
    (dict(sigma=[0.0]), "sigma"), (dict(sigma=[-1.0]), "sigma"), (dict(eps_phi=0.0), "eps_phi"),
    (dict(eps_phi=[-1.0]), "eps_phi"), (dict(eps_y=0.0), "eps_y"), (dict(eps_y=-2.0), "eps_y"),
    (dict(eps_y=[0.1, 0.2]), "eps_y"), (dict(bits=0), "bits"), (dict(bits=9), "bits"), (dict(bits=2.0), "bits"),
    (dict(gamma=[float("nan")]), "gamma"), (dict(beta=[1.0, 2.0]), "beta"), (dict(mu="x"), "mu"),
    (dict(gamma=1.0), "gamma"), (dict(mu=[float("inf")]), "mu"),
])
def test_bn_thresholds_bad_params(kw, name):
    args = dict(gamma=[1.0], beta=[0.0], mu=[0.0], sigma=[1.0], eps_phi=1.0, eps_y=1.0, bits=2) | kw
    with pytest.raises(ValueError, match=f"^{name}:"):
        bn_thresholds(**args)


def test_threshold_bad_inputs():
    th = np.array([[0, 1, 2], [0, 2, 1]])
    with pytest.raises(ValueError, match="^thresholds: channel 1 "):
        threshold(np.zeros((1, 2), dtype=np.int64), th)
    with pytest.raises(ValueError, match="^thresholds: T = 4"):
        threshold(np.zeros((1, 1), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="^thresholds:"):
        threshold(np.zeros((1, 1), dtype=np.int64), np.zeros((1, 511), dtype=np.int64))
    with pytest.raises(ValueError, match="^x:"):
        threshold(np.zeros((1, 3), dtype=np.int64), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="^x:"):
        threshold(np.zeros((1, 2)), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="^negate:"):
        threshold(np.zeros((1, 2), dtype=np.int64), np.zeros((2, 3), dtype=np.int64), negate=[1, 0])
    with pytest.raises(ValueError, match="^thresholds:"):
        threshold(np.zeros((1, 2), dtype=np.int64), np.zeros((2, 3)))
