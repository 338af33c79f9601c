"""intdeploy.golden.qat: the PyTorch PACT/LSQ autograd functions against the numpy references of
intdeploy.golden.fakequant bit for bit, BN folding, a short QAT run exported to a model file, and the bundled
QAT models of the digits network against the accuracy table of the README."""

import os
from pathlib import Path
import re
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
import torch

from intdeploy.golden import digits, qat
from intdeploy.golden.fakequant import lsq_backward, lsq_forward, pact_backward, pact_forward
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import MacLayer, load, same_model, save
from intdeploy.golden.network import FullPrecision, accuracy, agreement

ROOT = Path(__file__).resolve().parent.parent
F64 = torch.float64
floats = st.floats(-20, 20, allow_nan=False)
grads = st.integers(-8, 8)


def _t(v, grad=False):
    return torch.tensor(np.asarray(v, dtype=np.float64), dtype=F64, requires_grad=grad)


# --- PACT ---------------------------------------------------------------------------------------
# Cotangents are small integers, so the one reduction (grad_beta) is exact in any summation order
# (numpy sums pairwise, torch in vectorized blocks); every other value is element-wise.

def _pact_edges(beta, bits):
    levels = (1 << bits) - 1
    eps = beta / levels
    return [beta, np.nextafter(beta, 0), np.nextafter(beta, np.inf), 0.0, -0.0, np.nextafter(0, -1),
            eps, np.nextafter(eps, 0), eps * levels, (levels - 1) * eps, 2 * beta]


@settings(max_examples=100, deadline=None)
@given(x=st.lists(floats, min_size=1, max_size=30), beta=st.floats(0.05, 10), bits=st.integers(1, 8),
       data=st.data())
def test_pact_matches_reference(x, beta, bits, data):
    x = np.array(x + _pact_edges(beta, bits))
    g = np.array(data.draw(st.lists(grads, min_size=len(x), max_size=len(x))), dtype=np.float64)
    act = qat.PactActivation(bits, beta)
    xt = _t(x, grad=True)
    y = act(xt)
    y.backward(_t(g))
    gx, gbeta = pact_backward(x, g, beta, bits)
    np.testing.assert_array_equal(y.detach().numpy(), pact_forward(x, beta, bits))
    np.testing.assert_array_equal(xt.grad.numpy(), gx)
    assert act.beta.grad.item() == gbeta and act.beta.grad.shape == ()


def test_pact_code_clip_when_beta_over_eps_rounds_down():
    """For some beta, beta / eps rounds just below 2**Q - 1 in floating point: x = beta then gets
    code 2**Q - 2, and anything above beta still reaches the top code (the code is clipped, not
    x, so the top level stays reachable). x = beta feeds grad_beta, not grad_x (NEMO sec. 2.2)."""
    bits, levels = 4, 15
    beta = next(b for b in np.linspace(0.1, 3, 3001) if b / (b / levels) < levels)
    eps = beta / levels
    x = np.array([beta, np.nextafter(beta, 0), 1.01 * beta])
    act = qat.PactActivation(bits, beta)
    xt = _t(x, grad=True)
    y = act(xt)
    y.backward(_t([1.0, 2.0, 4.0]))
    np.testing.assert_array_equal(y.detach().numpy(), [eps * (levels - 1), eps * (levels - 1), eps * levels])
    np.testing.assert_array_equal(y.detach().numpy(), pact_forward(x, beta, bits))
    np.testing.assert_array_equal(xt.grad.numpy(), [0.0, 2.0, 0.0])
    assert act.beta.grad.item() == 5.0


# --- LSQ ----------------------------------------------------------------------------------------

def _lsq_run(x, s, bits, weight, g):
    xt, st_ = _t(x, grad=True), _t([s], grad=True)
    y = qat.LsqFunction.apply(xt, st_, bits, weight)
    y.backward(_t(g))
    return y.detach().numpy(), xt.grad.numpy(), st_.grad.numpy()


@settings(max_examples=80, deadline=None)
@given(x=st.lists(floats, min_size=1, max_size=24), s=st.floats(1e-3, 4), bits=st.integers(2, 8),
       weight=st.booleans(), data=st.data())
def test_lsq_matches_reference(x, s, bits, weight, data):
    """Random steps: forward and grad_x element-wise; grad_s is a sum of inexact products, so it
    is compared per element (one-hot cotangents), where no summation order is involved."""
    nlevel = 2 ** (bits - 1) - 1
    x = np.array(x + [nlevel * s, -nlevel * s, np.nextafter(nlevel * s, 0), 0.5 * s, 2.5 * s, -1.5 * s])
    g = np.array(data.draw(st.lists(grads, min_size=len(x), max_size=len(x))), dtype=np.float64)
    y, gx, _ = _lsq_run(x, s, bits, weight, g)
    np.testing.assert_array_equal(y, lsq_forward(x, s, bits))
    np.testing.assert_array_equal(gx, lsq_backward(x, g, s, bits, weight)[0])
    for i in range(len(x)):
        onehot = np.eye(len(x))[i]
        assert _lsq_run(x, s, bits, weight, onehot)[2] == lsq_backward(x, onehot, s, bits, weight)[1]


@settings(max_examples=80, deadline=None)
@given(k=st.lists(st.integers(-200, 200), min_size=1, max_size=40), e=st.integers(-6, 3), bits=st.integers(2, 8),
       weight=st.booleans(), data=st.data())
def test_lsq_ties_and_range_edge_exact(k, e, bits, weight, data):
    """Power-of-two steps and x = s * k / 4: x / s is exact, every other one is a tie (.5), some
    sit exactly on +-nlevel; all sums are exact, so the whole backward is compared bit for bit."""
    s = 2.0 ** e
    nlevel = 2 ** (bits - 1) - 1
    k = np.array(k + [4 * nlevel, -4 * nlevel, 2, 6, 10, -2, -6])
    x = s * k / 4
    g = np.array(data.draw(st.lists(grads, min_size=len(x), max_size=len(x))), dtype=np.float64)
    y, gx, gs = _lsq_run(x, s, bits, weight, g)
    ref_gx, ref_gs = lsq_backward(x, g, s, bits, weight)
    np.testing.assert_array_equal(y, lsq_forward(x, s, bits))
    np.testing.assert_array_equal(gx, ref_gx)
    np.testing.assert_array_equal(gs, ref_gs)
    # Independent of the reference: ties round to even, the range is symmetric.
    codes = y / s
    expect = [float(min(max(round(v / 4), -nlevel), nlevel)) for v in k.tolist()]   # Python: half even
    np.testing.assert_array_equal(codes, expect)


def test_lsq_tie_rounding_and_ste_mask_literal():
    """Hand-checked: 3 bits (nlevel 3), s = 1: ties go to even; |x/s| = nlevel is outside the
    activation's STE mask (``lt``), and its grad_s term is the clipped code."""
    x = np.array([-3.5, -3.0, -2.5, -0.5, 0.5, 1.5, 2.5, 2.9, 3.0, 7.0])
    y, gx, _ = _lsq_run(x, 1.0, 3, False, np.ones_like(x))
    np.testing.assert_array_equal(y, [-3, -3, -2, -0.0, 0, 2, 2, 3, 3, 3])
    np.testing.assert_array_equal(gx, [0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    _, gx_w, _ = _lsq_run(x, 1.0, 3, True, np.ones_like(x))
    np.testing.assert_array_equal(gx_w, np.ones_like(x))
    per = [_lsq_run(x, 1.0, 3, False, np.eye(len(x))[i])[2][0] for i in range(len(x))]
    np.testing.assert_array_equal(per, [-3, -3, 0.5, 0.5, -0.5, 0.5, -0.5, 3 - 2.9, 3, 3])


@pytest.mark.parametrize("weight", [True, False])
def test_lsq_quantizer_per_channel_with_gradient_scale(weight):
    """LsqQuantizer per output channel: each channel is the reference on its own step; the step
    gradient is the reference's times g = 1 / sqrt(N * Qp); GradScale's forward is the identity."""
    rng = np.random.default_rng(5)
    bits, c = 4, 6
    q = qat.LsqQuantizer(bits, channels=c, weight=weight)
    steps = 2.0 ** rng.integers(-4, 1, c)
    with torch.no_grad():
        q.step.copy_(_t(steps))
    k = rng.integers(-40, 41, (c, 3, 3, 2))
    w = steps.reshape(-1, 1, 1, 1) * k / 4
    g = rng.integers(-8, 9, w.shape).astype(np.float64)
    wt = _t(w, grad=True)
    y = q(wt)
    y.backward(_t(g))
    gscale = 1 / np.sqrt(w[0].size * q.nlevel)
    assert gscale == q.grad_scale(wt)
    for i in range(c):
        ref_gx, ref_gs = lsq_backward(w[i], g[i], steps[i], bits, weight)
        np.testing.assert_array_equal(y[i].detach().numpy(), lsq_forward(w[i], steps[i], bits))
        np.testing.assert_array_equal(wt.grad[i].numpy(), ref_gx)
        assert q.step.grad[i].item() == ref_gs[0] * gscale
        np.testing.assert_array_equal(q.codes(wt)[i].numpy(), y[i].detach().numpy() / steps[i])
    s = _t(rng.normal(size=c))
    assert torch.equal(qat.GradScale.apply(s, 0.37), s)


def test_quantizer_arguments_refused():
    with pytest.raises(ValueError, match="bits"):
        qat.LsqQuantizer(1)
    with pytest.raises(ValueError, match="bits"):
        qat.PactActivation(0)
    with pytest.raises(ValueError, match="bits"):
        qat.train(6)


# --- BN folding ---------------------------------------------------------------------------------

def test_fold_bn_equals_conv_then_bn():
    """Folding (Eq. 18) reassociates: gamma/sigma * (w . x + b - mean) + beta becomes
    (gamma/sigma * w) . x + (gamma/sigma * (b - mean) + beta). In float64 the two differ only by
    the rounding of the reordered products and sums, a few ulp of the largest intermediate (the
    tolerance below is ~1e4 ulp of values of order 10); a wrong axis or sign is off by O(1)."""
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(5, 3, 3, 3)), rng.normal(size=5)
    gamma, beta, mean = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    var, eps = rng.uniform(0.1, 3, 5), 1e-5
    x = _t(rng.normal(size=(4, 3, 7, 7)))
    conv = torch.nn.functional.conv2d(x, _t(w), _t(b), padding=1)
    sigma = np.sqrt(var + eps)
    ref = _t(gamma / sigma).reshape(1, -1, 1, 1) * (conv - _t(mean).reshape(1, -1, 1, 1)) + _t(beta).reshape(1, -1, 1, 1)
    wf, bf = qat.fold_bn(*map(_t, (w, b, gamma, beta, mean, var)), eps)
    got = torch.nn.functional.conv2d(x, wf, bf, padding=1)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=1e-12 * float(ref.abs().max()) * 100)
    # numpy and torch inputs: the same operations, the same bits.
    wn, bn = qat.fold_bn(w, b, gamma, beta, mean, var, eps)
    np.testing.assert_array_equal(wn, wf.numpy())
    np.testing.assert_array_equal(bn, bf.numpy())
    wn0, bn0 = qat.fold_bn(w, None, gamma, beta, mean, var, eps)
    np.testing.assert_array_equal(wn0, wn)
    np.testing.assert_array_equal(bn0, gamma / sigma * -mean + beta)


@pytest.mark.parametrize("fold", [True, False])
def test_qat_network_unquantized_is_the_float_network(fold):
    """DigitsQat without quantizers is the FullPrecision digits network (layouts, BN, fc column
    order); folded or not, float64, to rounding (a layout error changes the logits by O(1))."""
    with np.load(digits.FLOAT_PARAMS) as f:
        params = {k: f[k] for k in f.files}
    _, _, x_test, _ = digits.load_split()
    ref = FullPrecision(digits.float_network()).run(x_test / 16.0)
    with torch.no_grad():
        got = qat.DigitsQat(params, 8, fold)(_t(x_test / 16.0), quantize=False).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref).max())


# --- a short QAT run, exported ------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 4])
def test_short_qat_run_exports_a_deployable_model(bits, tmp_path):
    from intdeploy.host.driver import Driver
    from intdeploy.sim.accel_model import ModelEngine

    x_train, _, x_test, _ = digits.load_split()
    model_qat = qat.train(bits, steps=8, batch=16, seed=1)
    dep = model_qat.deployment(x_train[:400])
    model = load(save(dep.model, tmp_path / f"short{bits}.json"))
    assert same_model(model, dep.model)
    Driver(ModelEngine().info).check(model)
    rows = agreement(dep, x_test[:120])
    for r in rows:
        assert r.within, r
        assert r.iso_max_diff <= r.bound, r
    macs = {m.name: m for m in model.layers if isinstance(m, MacLayer)}
    assert sorted(macs) == ["conv1", "conv2", "fc"]
    for name in ("conv1", "conv2"):
        # The exported integer weights are the codes training used (LSQ steps as weight quanta).
        w = model_qat.weights[name]
        codes = model_qat.wq[name].codes(w).numpy().transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(macs[name].weight, codes)
        # The activation quanta are the learned PACT clips.
        act = model_qat.act[name]
        assert model.tensors[name].eps == act.beta.item() / ((1 << bits) - 1)
        assert (macs[name].threshold is not None) == (bits == 4)
        assert (macs[name].requant is not None) == (bits == 8)
    np.testing.assert_array_equal(macs["fc"].weight, model_qat.wq["fc"].codes(model_qat.weights["fc"]).numpy())
    for r in rows:
        if r.name in ("conv1", "conv2") and bits == 4:
            assert r.iso_max_diff == 0, r            # thresholds are exact (Eq. 19-20)


# --- the bundled models and the README ----------------------------------------------------------

COLUMNS = ("float", "fake_quant", "integer", "rtl")


def readme_table():
    """bits -> {column: cell} from the README's "Quantization-aware training" table."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Quantization-aware training$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, "README.md has no 'Quantization-aware training' section"
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rows[int(cells[0])] = dict(zip(COLUMNS, cells[1:]))
    assert sorted(rows) == [4, 8], rows
    return rows


def cell(acc):
    return f"{100 * acc:.2f}%"              # 360 test images: two decimals tell every count apart


@pytest.mark.parametrize("bits", [8, 4])
def test_bundled_qat_model_epilogues_and_readme_accuracy(bits):
    model = load(digits.MODELS_DIR / f"digits_qat{bits}.json")
    assert model.metadata["qat"] == {"bits": bits, "bn_folded": bits == 8}
    macs = [m for m in model.layers if isinstance(m, MacLayer)]
    assert [m.name for m in macs] == ["conv1", "conv2", "fc"]
    for m in macs[:2]:       # BN + ReLU: thresholds at 4 bits (Eq. 19-20), requantizer at 8
        assert (m.threshold is not None, m.requant is not None) == ((True, False) if bits == 4 else (False, True))
        assert m.weight_bits == bits and np.abs(m.weight).max() <= 2 ** (bits - 1) - 1
    assert macs[2].requant is not None and macs[2].threshold is None      # the logits (no activation)
    _, _, x_test, y_test = digits.load_split()
    row = readme_table()[bits]
    assert row["integer"] == cell(accuracy(IntegerDeployable(model).run(x_test), y_test))
    assert row["float"] == cell(accuracy(FullPrecision(digits.float_network()).run(x_test / 16.0), y_test))


def _bundled_equal(out_dir):
    return {f"digits_qat{bits}{ext}": (out_dir / f"digits_qat{bits}{ext}").read_bytes()
            == (digits.MODELS_DIR / f"digits_qat{bits}{ext}").read_bytes()
            for bits in (8, 4) for ext in (".json", ".npz")}


def test_retraining_reproduces_bundled_models_on_any_cpu(tmp_path):
    """scripts/qat_digits.py retrains both widths with ATen at its baseline ISA and MKL in its
    reproducible mode (intdeploy.golden.qat.REPRODUCIBLE_ENV): the model files come out byte for byte as
    bundled, whatever this CPU's vector extensions. Without that environment the same training
    gives other bytes on this (AVX2) machine: every one of the two settings moves the result."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "qat_digits.py"), "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert all(_bundled_equal(tmp_path).values()), _bundled_equal(tmp_path)


def test_training_refuses_to_run_without_the_reproducible_environment(tmp_path):
    """ATen fixes its ISA at its first computation: a process that computed before the script
    set the environment has the CPU's own kernels, and the script refuses to train there."""
    assert qat.reproducible_across_cpus() == (torch.backends.cpu.get_cpu_capability() == "DEFAULT"
                                              and os.environ.get("MKL_CBWR") == "COMPATIBLE")
    code = ("import sys; sys.argv = ['qat_digits.py', '--out-dir', sys.argv[1]]; import torch; "
            "torch.ones(4).sum(); import runpy; "
            f"runpy.run_path({str(ROOT / 'scripts' / 'qat_digits.py')!r}, run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if k not in qat.REPRODUCIBLE_ENV}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode != 0 and "would depend on this CPU" in r.stderr, r.stderr[-2000:]
    assert not list(tmp_path.iterdir())


@pytest.mark.regress
def test_retraining_reproduces_bundled_models_and_rtl_is_bit_exact(tmp_path):
    """scripts/qat_digits.py --rtl retrains both widths (deterministic: the model files come out
    byte for byte as bundled), runs the whole test split on the Verilator top comparing every
    layer with golden (the script exits non-zero on the first different element), and prints the
    README's table rows."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "qat_digits.py"), "--out-dir", str(tmp_path),
                        "--rtl", "--rtl-dir", str(tmp_path / "rtl")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert all(_bundled_equal(tmp_path).values()), _bundled_equal(tmp_path)
    for bits in (8, 4):
        row = readme_table()[bits]
        line = f"| {bits} | " + " | ".join(row[c] for c in COLUMNS) + " |"
        assert line in r.stdout.splitlines(), (line, r.stdout[-1500:])
