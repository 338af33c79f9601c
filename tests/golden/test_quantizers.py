"""intdeploy.golden.quantizers: NEMO linear quantization, weight storage with a zero point, affine quantization."""

import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.mac_array import linear
from intdeploy.golden.quantizers import (affine_dequantize, affine_params, affine_quantize, asymmetric_weight_quantize,
                                         int8_storage, linear_quantize, pact_quantize, qrange)

# --- NEMO ------------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(t=st.lists(st.floats(-100, 100), min_size=1, max_size=30), eps=st.floats(1e-3, 2.0),
       lo=st.integers(-300, 0), n=st.integers(0, 300))
def test_linear_quantize_vs_python(t, eps, lo, n):
    alpha, beta = lo * eps, (lo + n) * eps
    got = linear_quantize(np.array(t), eps, alpha, beta)
    want = [min(max(math.floor(v / eps), round(alpha / eps)), round(beta / eps)) for v in t]
    assert got.tolist() == want and got.dtype == np.int64


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_pact_upper_bound_inclusive(bits):
    beta = 6.0
    n = (1 << bits) - 1
    q, eps = pact_quantize(np.array([-1.0, 0.0, beta * (1 - 1e-12), beta, beta + eps_(beta, bits) / 2, 1e9]), beta, bits)
    assert eps == beta / n
    assert q.tolist() == [0, 0, n - 1, n, n, n]
    assert q.max() == n                          # 2**Q - 1 is reachable


def eps_(beta, bits):
    return beta / ((1 << bits) - 1)


@settings(max_examples=120, deadline=None)
@given(x=st.lists(st.floats(0, 10), min_size=1, max_size=30), beta=st.floats(0.1, 10), bits=st.integers(1, 8))
def test_pact_floor_property(x, beta, bits):
    q, eps = pact_quantize(np.array(x), beta, bits)
    for v, k in zip(x, q.tolist()):
        c = min(v, beta)
        # floor: k*eps <= c < (k+1)*eps, up to one rounding of the float division
        assert k * eps <= c * (1 + 1e-12) + 1e-300 and c < (k + 1) * eps * (1 + 1e-12)


def test_nemo_weights_stored_as_int8():
    """NEMO asymmetric 8-bit weights spanning [-147, 108] run on the int8 MAC with zero point 19."""
    eps = 0.01
    rng = np.random.default_rng(0)
    w = rng.uniform(-1.47, 1.08, (4, 30))
    w[0, 0], w[0, 1] = -1.47, 1.08
    q, eps_w = asymmetric_weight_quantize(w, -1.47, 1.08, 8)
    assert eps_w == pytest.approx(eps, rel=1e-12)
    assert q.min() == -147 and q.max() == 108
    stored, zp = int8_storage(q, 8)
    assert zp == 19 and stored.min() == -128 and stored.max() == 127 and stored.dtype == np.int64
    np.testing.assert_array_equal(stored - zp, q)
    x = rng.integers(0, 255, (5, 30), endpoint=True)
    np.testing.assert_array_equal(linear(x, stored, 0, zp), x @ q.T)


@settings(max_examples=150, deadline=None)
@given(alpha=st.floats(-5, -1e-3), beta=st.floats(1e-3, 5), bits=st.integers(2, 8), seed=st.integers(0, 1000))
def test_asymmetric_weights_span_and_floor(alpha, beta, bits, seed):
    w = np.random.default_rng(seed).uniform(alpha * 1.2, beta * 1.2, 200)
    w = np.concatenate([w, [alpha, beta]])
    q, eps = asymmetric_weight_quantize(w, alpha, beta, bits)
    assert eps == (beta - alpha) / ((1 << bits) - 1)
    assert q.max() - q.min() <= (1 << bits) - 1            # never more than 2**bits codes
    c = np.clip(w, alpha, beta)
    inner = (c > alpha + eps) & (c < beta - eps)
    assert np.all(q[inner] * eps <= c[inner] + 1e-9 * eps) and np.all(c[inner] < (q[inner] + 1) * eps + 1e-9 * eps)
    stored, zp = int8_storage(q, bits)
    assert stored.min() >= -(1 << (bits - 1)) and stored.max() <= (1 << (bits - 1)) - 1
    np.testing.assert_array_equal(stored - zp, q)


def test_asymmetric_per_channel_matches_per_tensor_rows():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2, 2, 5))
    a, b = np.array([-1.0, -2.0, -0.5]), np.array([1.5, 0.3, 2.0])
    q, eps = asymmetric_weight_quantize(w, a, b, 6)
    assert eps.shape == (3,)
    for c in range(3):
        qc, ec = asymmetric_weight_quantize(w[c], a[c], b[c], 6)
        np.testing.assert_array_equal(q[c], qc)
        assert ec == eps[c]
    stored, zp = int8_storage(q, 6, axis=0)
    assert zp.shape == (3,)
    np.testing.assert_array_equal(stored - zp[:, None, None, None], q)
    assert stored.min() >= -32 and stored.max() <= 31


@pytest.mark.parametrize("q, bits, zp", [([-147, 108], 8, 19), ([-100, 100], 8, 0), ([0, 255], 8, -128),
                                         ([3, 200], 8, -73), ([-128, 127], 8, 0), ([-9, 4], 4, 1), ([-5, 10], 4, -3)])
def test_int8_storage_minimal_zero_point(q, bits, zp):
    stored, got = int8_storage(np.array(q), bits)
    assert got == zp
    np.testing.assert_array_equal(stored, np.array(q) + zp)


def test_int8_storage_refuses_wide_span():
    with pytest.raises(ValueError, match="^q:"):
        int8_storage(np.array([-129, 127]), 8)
    with pytest.raises(ValueError, match="^bits:"):
        int8_storage(np.array([0]), 1)


# --- affine -----------------------------------------------------------------------------------

def test_qrange_table():
    assert qrange(8, True, False) == (-128, 127)
    assert qrange(8, True, True) == (-127, 127)
    assert qrange(8, False, False) == (0, 255)
    assert qrange(8, False, True) == (0, 254)
    assert qrange(4, True, True) == (-7, 7)


def test_affine_params_values():
    assert affine_params(-1.0, 1.0) == (2.0 / 255, 0)                   # -1/scale = -127.5 -> -128 (even)
    assert affine_params(-1.0, 1.0, symmetric=True) == (1.0 / 127.5, 0)
    assert affine_params(-1.0, 1.0, reduced_range=True, symmetric=True) == (1.0 / 127, 0)
    assert affine_params(0.5, 2.0, signed=False) == (2.0 / 255, 0)       # range extended to [0, 2]
    assert affine_params(-2.0, -0.5) == (2.0 / 255, 127)                 # extended to [-2, 0]
    assert affine_params(-1.0, 1.0, signed=False, symmetric=True) == (1.0 / 127.5, 128)
    assert affine_params(0.0, 0.0)[0] == np.finfo(np.float32).eps
    s, z = affine_params(np.array([-1.0, -3.0]), np.array([1.0, 1.0]))
    assert s.shape == z.shape == (2,)
    assert (float(s[1]), int(z[1])) == affine_params(-3.0, 1.0)


CONFIGS = [(s, r, y) for s in (True, False) for r in (False, True) for y in (False, True)]


@settings(max_examples=120, deadline=None)
@given(cfg=st.sampled_from(CONFIGS), rmin=st.floats(-100, 0), rmax=st.floats(0, 100), bits=st.sampled_from([4, 8, 16]),
       u=st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_affine_roundtrip_error_at_most_half_scale(cfg, rmin, rmax, bits, u):
    signed, reduced, symmetric = cfg
    assume(rmax - rmin > 1e-6)
    scale, zp = affine_params(rmin, rmax, bits, signed, reduced, symmetric)
    x = np.array([rmin + f * (rmax - rmin) for f in u] + [rmin, rmax, 0.0])
    q = affine_quantize(x, scale, zp, bits, signed, reduced)
    qmin, qmax = qrange(bits, signed, reduced)
    assert q.min() >= qmin and q.max() <= qmax
    # Every x in [rmin, rmax] is within half a step of a code (at the ends the clip costs at most
    # the half step that rounding of the zero point or the 127.5 of a full symmetric range leaves).
    err = np.abs(affine_dequantize(q, scale, zp) - x)
    assert np.all(err <= scale / 2 * (1 + 1e-9))
    assert affine_quantize(0.0, scale, zp, bits, signed, reduced) == zp          # real zero is exact


def test_reduced_range_bounds():
    scale, zp = 0.1, 0
    assert affine_quantize(np.array([-1e6, 1e6]), scale, zp, reduced_range=True).tolist() == [-127, 127]
    assert affine_quantize(np.array([-1e6, 1e6]), scale, zp).tolist() == [-128, 127]
    assert affine_quantize(np.array([-1e6, 1e6]), scale, 10, signed=False, reduced_range=True).tolist() == [0, 254]


def test_affine_quantize_rounds_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]) * 0.25                   # exact ties with scale 1/4
    assert affine_quantize(x, 0.25, 0).tolist() == [-2, -2, 0, 0, 2, 2]
    assert affine_quantize(x, 0.25, 3).tolist() == [1, 1, 3, 3, 5, 5]       # zero point after rounding


def test_affine_per_channel_axis():
    x = np.arange(12.0).reshape(3, 4)
    s, z = np.array([1.0, 2.0, 4.0, 8.0]), np.array([0, 1, 2, 3])
    q = affine_quantize(x, s, z, axis=1)
    for c in range(4):
        np.testing.assert_array_equal(q[:, c], affine_quantize(x[:, c], float(s[c]), int(z[c])))
    np.testing.assert_array_equal(affine_dequantize(q, s, z, axis=1), (q - z) * s)


@pytest.mark.parametrize("call, name", [
    (lambda: affine_quantize([1.0], 0.0, 0), "scale"), (lambda: affine_quantize([1.0], -1.0, 0), "scale"),
    (lambda: affine_dequantize([1], 0.0, 0), "scale"), (lambda: affine_quantize([1.0], 1.0, 0.5), "zero_point"),
    (lambda: affine_quantize([1.0], [1.0, 2.0], 0), "scale"), (lambda: linear_quantize([1.0], 0.0, 0, 1), "eps"),
    (lambda: linear_quantize([1.0], 1.0, 2, 1), "alpha, beta"), (lambda: pact_quantize([1.0], 0.0, 8), "beta"),
    (lambda: pact_quantize([1.0], 1.0, 0), "bits"), (lambda: asymmetric_weight_quantize([1.0], 1, 1, 8), "alpha_w, beta_w"),
    (lambda: affine_params(-1, 1, bits=1), "bits"), (lambda: affine_params([-1, -2], [1, 2, 3]), "rmin, rmax"),
    (lambda: affine_quantize(["a"], 1.0, 0), "x"),
])
def test_bad_inputs(call, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        call()
