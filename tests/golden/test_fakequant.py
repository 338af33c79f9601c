"""intdeploy.golden.fakequant: forward values and straight-through gradients, against per-element Python."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.fakequant import (fake_quantize, fake_quantize_backward, lsq_backward, lsq_forward, pact_backward,
                                        pact_forward)
from intdeploy.golden.quantizers import pact_quantize

floats = st.floats(-20, 20, allow_nan=False)


# --- affine fake quantization -----------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(x=st.lists(floats, min_size=1, max_size=30), scale=st.floats(1e-3, 4), zp=st.integers(-10, 10),
       rng=st.sampled_from([(-128, 127), (0, 255), (-7, 7)]))
def test_fake_quantize_vs_python(x, scale, zp, rng):
    qmin, qmax = rng
    zp = min(max(zp, qmin), qmax)
    g = [float(i + 1) for i in range(len(x))]
    y = fake_quantize(np.array(x), scale, zp, qmin, qmax)
    gx = fake_quantize_backward(np.array(x), np.array(g), scale, zp, qmin, qmax)
    for v, yv, gv, gy in zip(x, y.tolist(), gx.tolist(), g):
        code = round(v / scale) + zp                 # Python round: half to even, like torch
        assert yv == (min(max(code, qmin), qmax) - zp) * scale
        assert gv == (gy if qmin <= code <= qmax else 0.0)


def test_fake_quantize_ste_boundaries():
    scale, zp, qmin, qmax = 0.5, 0, -4, 3
    x = np.array([-2.25, -2.0, -1.0, 0.0, 1.5, 1.74, 1.76, 2.0, 9.0])
    # codes:       -4(-4.5 -> -4) -4   -2    0    3    3      4     4    18
    gx = fake_quantize_backward(x, np.ones_like(x), scale, zp, qmin, qmax)
    np.testing.assert_array_equal(gx, [1, 1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(fake_quantize(x, scale, zp, qmin, qmax), [-2, -2, -1, 0, 1.5, 1.5, 1.5, 1.5, 1.5])


# --- PACT -------------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(x=st.lists(floats, min_size=1, max_size=30), beta=st.floats(0.1, 10), bits=st.integers(1, 8))
def test_pact_vs_python(x, beta, bits):
    eps = beta / (2 ** bits - 1)
    g = [0.5 * (i + 1) for i in range(len(x))]
    y = pact_forward(np.array(x), beta, bits)
    gx, gbeta = pact_backward(np.array(x), np.array(g), beta, bits)
    assert y.tolist() == [eps * min(max(math.floor(v / eps), 0), 2 ** bits - 1) for v in x]
    assert gx.tolist() == [gy if 0 <= v < beta else 0.0 for v, gy in zip(x, g)]
    assert gbeta == pytest.approx(sum(gy for v, gy in zip(x, g) if v >= beta), abs=1e-12)


def test_pact_gradients_zero_outside_clip():
    beta, bits = 2.0, 2
    x = np.array([-1.0, -1e-9, 0.0, 1.0, 2.0 - 1e-9, 2.0, 3.0])
    gy = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    gx, gbeta = pact_backward(x, gy, beta, bits)
    np.testing.assert_array_equal(gx, [0, 0, 4, 8, 16, 0, 0])
    assert gbeta == 96.0
    assert pact_forward(np.array([2.0, 5.0]), beta, bits).tolist() == [2.0, 2.0]   # top level reachable


def test_pact_top_level_reachable_when_beta_over_eps_rounds_down():
    # 4.3 / (4.3 / 15) == 14.999999999999998 in float64: clipping x to beta before the floor
    # would give code 14 for every x >= beta; the code is clipped to 15 instead (Eq. 10).
    beta, bits = 4.3, 4
    eps = beta / 15
    assert math.floor(beta / eps) == 14
    assert pact_forward(np.array([beta, 2 * beta]), beta, bits).tolist() == [14 * eps, 15 * eps]
    # The same integer image as the deployment quantizer (Eq. 10).
    assert pact_quantize(np.array([beta, 2 * beta]), beta, bits)[0].tolist() == [14, 15]


# --- LSQ (weekly report) ----------------------------------------------------------------------

def lsq_report(x, gy, s, nbit, weight):
    """The weekly report's LsqQuanAct / LsqQuanWeight, element by element in Python floats."""
    nlevel = 2 ** (nbit - 1) - 1
    y, gx, gs = [], [], 0.0
    for v, g in zip(x, gy):
        x_scale = v / s
        x_bin = round(min(max(x_scale, -nlevel), nlevel))
        y.append(x_bin * s)
        x_isclip = abs(x_scale) < nlevel
        gx.append(g if (weight or x_isclip) else 0.0)
        gs += (round(x_scale) - x_scale if x_isclip else x_bin) * g
    return y, gx, gs


@settings(max_examples=120, deadline=None)
@given(x=st.lists(floats, min_size=1, max_size=40), s=st.floats(1e-2, 3), bits=st.integers(2, 8), weight=st.booleans())
def test_lsq_vs_report(x, s, bits, weight):
    gy = [math.sin(i + 1.0) for i in range(len(x))]
    y_want, gx_want, gs_want = lsq_report(x, gy, s, bits, weight)
    y = lsq_forward(np.array(x), s, bits)
    gx, gs = lsq_backward(np.array(x), np.array(gy), s, bits, weight=weight)
    assert y.tolist() == y_want
    assert gx.tolist() == gx_want
    assert gs.shape == (1,)
    assert gs[0] == pytest.approx(gs_want, rel=1e-12, abs=1e-12)


def test_lsq_act_zeroes_outside_weight_passes():
    s, bits = 0.5, 3                                    # nlevel 3: inside |x/s| < 3, i.e. |x| < 1.5
    x = np.array([-2.0, -1.5, -1.0, 0.2, 1.49, 1.5, 4.0])
    gy = np.ones_like(x)
    gx_act, gs = lsq_backward(x, gy, s, bits)
    gx_w, gs_w = lsq_backward(x, gy, s, bits, weight=True)
    np.testing.assert_array_equal(gx_act, [0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(gx_w, np.ones_like(x))
    # grad_s: outside -> the clipped level (-3, -3, +3, +3); inside -> round(x/s) - x/s
    inside = [round(v / s) - v / s for v in (-1.0, 0.2, 1.49)]
    assert gs[0] == pytest.approx(-3 - 3 + sum(inside) + 3 + 3) and gs_w[0] == gs[0]
    np.testing.assert_array_equal(lsq_forward(x, s, bits), [-1.5, -1.5, -1.0, 0.0, 1.5, 1.5, 1.5])


@pytest.mark.parametrize("call, name", [
    (lambda: fake_quantize([1.0], 0.0, 0, -128, 127), "scale"),
    (lambda: fake_quantize([1.0], 1.0, 200, -128, 127), "zero_point"),
    (lambda: fake_quantize([1.0], 1.0, 0, 5, 4), "qmin, qmax"),
    (lambda: pact_forward([1.0], -1.0, 8), "beta"), (lambda: pact_backward([1.0], [1.0], 1.0, 0), "bits"),
    (lambda: lsq_forward([1.0], 0.0, 8), "s"), (lambda: lsq_forward([1.0], 1.0, 1), "bits"),
    (lambda: lsq_backward([1.0], [1.0], [1.0, 2.0], 8), "s"),
])
def test_bad_inputs(call, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        call()
