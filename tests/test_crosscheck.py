"""Cross-checks (sim/crosscheck.py): ONNX Runtime, PyTorch fbgemm, TFLite reference formulas,
QONNX MultiThreshold and NEMO formulas vs golden, the accelerator model and the RTL, bit-exact
in the matching mode; the other modes must miss on the power-of-two (tie) cases."""

import json

import numpy as np
import pytest

from intdeploy.golden.importers import litert_kernels as K, x86_kernels
from intdeploy.golden.requantizer import round_shift
from intdeploy.sim import crosscheck as X
from intdeploy.tools.cli import main

ROUNDING = ("ort", "fbgemm", "tflite", "nemo")


@pytest.fixture(scope="module")
def golden_cases():
    return X.run_cases(X.make_cases(seed=0), "golden")


def _failures(cases):
    return [(c.reference, c.kind, c.scales, c.results) for c in cases if not X.passed(c)]


def test_every_reference_bit_exact_on_golden_and_model(golden_cases):
    assert {(c.reference, c.scales) for c in golden_cases} == {(r, s) for r in X.REFERENCES
                                                               for s in ("random", "pow2")}
    assert _failures(golden_cases) == []


@pytest.mark.parametrize("reference", X.REFERENCES)
def test_other_modes_are_told_apart(golden_cases, reference):
    """On the power-of-two cases some non-matching mode (or the x > T comparison) misses, so a
    wrong mode in golden or the RTL could not pass; for the .5-tie references ties occur."""
    pow2 = [c for c in golden_cases if c.reference == reference and c.scales == "pow2"]
    rates = [n / c.results["elements"] for c in pow2 for n in c.results["alternatives"].values() if n is not None]
    assert rates and min(rates) < 1
    if reference in ("ort", "fbgemm", "tflite", "qonnx"):
        assert sum(c.ties for c in pow2) > 0
    if reference in ("ort", "fbgemm"):
        # ties are the only place half_even and half_up differ: they must differ here
        assert any(c.results["alternatives"]["half_up"] < c.results["elements"] for c in pow2)


def test_power_of_two_layers_are_proven_exact(golden_cases):
    """With power-of-two scales the framework's float32 products are exact, so the importer's
    proof must find an exact integer form (an inexact channel means a wrong reference formula)."""
    pow2 = [c for c in golden_cases if c.reference in ("ort", "fbgemm") and c.scales == "pow2"]
    assert pow2 and all(c.proof.exact and c.proof.checked > 0 for c in pow2)


def test_report_lists_every_case(golden_cases):
    text = X.format_report(golden_cases, "golden")
    assert text.splitlines()[-1].startswith(f"{len(golden_cases)} cases, 0 failed")
    assert sum(line.startswith(X.REFERENCES) for line in text.splitlines()) == len(golden_cases)


def test_framework_kernels_follow_this_cpu(golden_cases):
    """The ONNX Runtime and fbgemm cases compare the framework's own int32 accumulators with exact
    arithmetic: exact with avx512_vnni; on an AVX2 CPU without VNNI the full-range (random) cases
    saturate, and every differing element is explained by the pair-saturation model and
    classified, golden (and the accelerator model) equal to exact arithmetic there. The pow2
    cases' small weights never saturate: exact on every CPU."""
    from intdeploy.golden.integer_deployable import IntegerDeployable
    fw = [c for c in golden_cases if c.reference in ("ort", "fbgemm")]
    assert len(fw) == 8 and all(c.kernel_check is not None and c.kernel_check.explained for c in fw)
    assert all(c.kernel_check.exact and c.deviation is None for c in fw if c.scales == "pow2")
    expected = x86_kernels.expected_kernel()
    random = [c for c in fw if c.scales == "random"]
    if expected == "exact":
        assert all(c.kernel_check.exact and c.deviation is None for c in random)
    elif expected == "saturate":
        assert all(not c.kernel_check.exact and c.deviation.mask.any() for c in random)
    for c in fw:
        if c.deviation is not None:
            assert c.deviation.explained and c.deviation.reason == x86_kernels.REASON
            # golden differs from the framework's raw output exactly where the kernel deviated
            np.testing.assert_array_equal(IntegerDeployable(c.model).run(c.images) != c.expected, c.deviation.mask)
    lines = X.kernel_lines(golden_cases)
    assert len(lines) == 2 and lines[0].startswith("ONNX Runtime ") and lines[1].startswith("PyTorch ")


def test_crosscheck_on_verilator(tmp_path):
    cases = X.run_cases(X.make_cases(seed=1, batch=8), "verilator", work_dir=tmp_path)
    # one simulation for all cases (the stream player's result file, no second run)
    assert (tmp_path / "run1" / "player.json").exists() and not (tmp_path / "run2").exists()
    assert _failures(cases) == []


def test_crosscheck_sharded_over_two_workers(tmp_path):
    """``--workers 2``: the cases in two shards of consecutive cases, each simulated from reset in
    its own directory on a Dask LocalCluster; every count equals the one-simulation run's."""
    one = X.run_cases(X.make_cases(seed=1, batch=8), "verilator", work_dir=tmp_path / "one")
    two = X.run_cases(X.make_cases(seed=1, batch=8), "verilator", work_dir=tmp_path / "two", workers=2)
    assert [c.results for c in two] == [c.results for c in one] and _failures(two) == []
    assert (tmp_path / "two" / "shard0" / "sim.log").exists() and (tmp_path / "two" / "shard1" / "sim.log").exists()


@pytest.mark.regress
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_crosscheck_more_seeds_on_golden(seed):
    cases = X.run_cases(X.make_cases(seed=seed, repeats=2), "golden")
    assert _failures(cases) == []


@pytest.mark.regress
def test_crosscheck_on_icarus(tmp_path):
    cases = X.run_cases(X.make_cases(seed=5, batch=4), "icarus", work_dir=tmp_path)
    assert _failures(cases) == []


def test_cli_crosscheck(capsys):
    assert main(["crosscheck", "--reference", "qonnx", "--reference", "tflite", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["reference"] for r in rows} == {"qonnx", "tflite"} and all(r["passed"] for r in rows)
    assert main(["crosscheck", "--repeats", "0"]) == 2
    assert main(["crosscheck", "--reference", "tvm"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--repeats" in err[0] and "tvm" in err[1]


def test_tflite_transcriptions_by_hand():
    """Values worked out by hand from the TFLite / gemmlowp definitions."""
    assert K.quantize_multiplier(0.5) == (1 << 30, 0)
    assert K.quantize_multiplier(0.75) == (3 << 29, 0)
    assert K.quantize_multiplier(3.0) == (3 << 29, 2)
    # RoundingDivideByPOT: half away from zero
    np.testing.assert_array_equal(K.rdbpot(np.array([5, -5, 6, -6, 7]), 1), [3, -3, 3, -3, 4])
    # SaturatingRoundingDoublingHighMul(a, 2**30) = a / 2: the nudge 1 - 2**30 of a negative
    # product and C truncation take -2.5 to -2, +2.5 to 3
    np.testing.assert_array_equal(K.srdhm(np.array([4, 5, -5]), 1 << 30), [2, 3, -2])
    # x * 0.75 / 2**2: 10 * 0.75 = 7.5 -> 8 (SRDHM), 8 / 4 = 2
    assert int(K.multiply(10, 3 << 29, -2)) == 2
    # one rounding, ties away from zero (golden's half_away): 7.46875 -> 7 (double rounding: 7.5 -> 8),
    # -1.5 -> -2, 1.46875 -> 1, -0.5 -> -1
    np.testing.assert_array_equal(round_shift(np.array([239, -48, 47, -16]), 5, "half_away"), [7, -2, 1, -1])
    np.testing.assert_array_equal(K.multiply_once(np.array([239, -48, 47, -16]), 1 << 30, -4), [7, -2, 1, -1])
    assert int(K.multiply(239, 1 << 30, -4)) == 8


def test_litert_fully_connected_is_half_away(golden_cases):
    """LiteRT's FULLY_CONNECTED (reference kernels) equals golden's half_away mode (one rounding,
    ties away from zero) on every element, on golden and on the executable model, with no
    deviation to explain; golden's tflite mode (gemmlowp double rounding) does not: on the
    power-of-two case it misses elements, so the check can tell the two apart."""
    fc = [c for c in golden_cases if c.kind == "FULLY_CONNECTED"]
    assert fc and all(c.mode == "half_away" and c.deviation is None and X.passed(c) for c in fc)
    pow2 = [c for c in fc if c.scales == "pow2"]
    assert pow2 and all(c.results["alternatives"]["tflite"] < c.results["elements"] for c in pow2)