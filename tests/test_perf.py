"""sim/perf.py (``intdeploy perf``, ``make bench``): the utilisation figures and the report, on the
executable model (the RTL runs are ``make bench``'s; the top's own tests cover the RTL)."""

import json

import numpy as np
import pytest

from intdeploy.host import protocol as P
from intdeploy.sim.accel_model import ModelEngine
from intdeploy.tools import perf, synth


def test_figures_definitions():
    f = perf._figures(8, 8, useful=64 * 100, steps=100, busy=125, cycles=400, words=500, in_cycles=300)
    assert f["ideal"] == 1.0 and f["steady"] == 0.8 and f["end_to_end"] == 0.25
    assert f["io_bound"] == round(100 / 300, 4)        # input cycles bound the layer, not busy cycles
    f = perf._figures(8, 8, useful=64 * 100, steps=100, busy=125, cycles=400, words=200, in_cycles=100)
    assert f["io_bound"] == 0.8                        # here the busy cycles do


def test_gemm_on_the_model_is_checked_against_golden():
    info = P.Info(rows=8, cols=8)
    res = perf.run_gemm(ModelEngine(info), perf.gemm_job(20, 10, 30))
    # K = 30 pads to 4 steps of 8, N = 10 to 2 tiles of 8: 20 * 4 * 2 steps for 20 * 10 * 30 MACs
    assert res["mac_steps"] == 20 * 4 * 2 and res["useful_macs"] == 6000
    assert res["ideal"] == round(6000 / (64 * 160), 4)


def test_wrong_results_are_not_benchmarked(monkeypatch):
    """A GEMM whose results differ from golden in one element fails instead of being timed."""
    real = perf._golden_gemm

    def off_by_one(job):
        g = real(job).copy()
        g[3, 2] += 1
        return g
    monkeypatch.setattr(perf, "_golden_gemm", off_by_one)
    with pytest.raises(AssertionError, match="RTL != golden"):
        perf.run_gemm(ModelEngine(P.Info(rows=8, cols=8)), perf.gemm_job(8, 8, 8))


def test_demo_network_fused_and_not_on_the_model():
    plain = perf.network_layers(ModelEngine(P.Info()), images=2)
    fused = perf.network_layers(ModelEngine(P.Info()), images=2, fuse=True)
    assert [d["name"] for d in plain["layers"]] == ["conv1", "conv2", "add.sum", "add", "pool", "fc"]
    assert [d["name"] for d in fused["layers"]] == ["conv1", "conv2+add.sum+add+pool", "fc"]
    assert fused["total"]["useful_macs"] == plain["total"]["useful_macs"]
    assert fused["total"]["cycles"] < plain["total"]["cycles"]
    text = perf.render_markdown({"array": {"rows": 8, "cols": 8}, "machine": "test", "network": plain,
                                 "network_fused": fused})
    assert "| conv2+add.sum+add+pool (conv2d+add+requant+avgpool2d) |" in text and "with fusion (`--fuse`)" in text


def test_report_renders_every_part(tmp_path):
    res = {"array": {"rows": 8, "cols": 8}, "machine": "test"}
    res["gemms"] = [perf.run_gemm(ModelEngine(P.Info(rows=8, cols=8)), perf.gemm_job(16, 8, 16))]
    res["golden"] = {"images_per_second": 1000.0, "images": 360, "runs": 1, "numpy": np.__version__}
    stat = {"modules": {"\\t": {"num_cells_by_type": {"LUT4": 10, "\\t.a": 1}},
                        "\\t.a": {"num_cells_by_type": {"LUT4": 20, "CCU2C": 5, "MULT18X18D": 2}}}}
    res["synth_units"] = {"config": {"unit": "top", "rows": 8, "cols": 8, "target": "ecp5-85k"},
                          **synth.parse_yosys_hierarchy(json.dumps(stat), "ecp5-85k", "t")}
    text = perf.render_markdown(res)
    assert "| 16x8x16 | 2048 | 32 |" in text and "1000 images/s" in text
    assert "| (whole design) | 40 | 100.0 | 0 | 2 | 0 | 0 |" in text
    assert "| &nbsp;&nbsp;a | 30 | 75.0 | 0 | 2 | 0 | 0 |" in text
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- perf:begin -->\nold\n<!-- perf:end -->\nb\n")
    assert perf._update_readme("NEW", readme)
    assert readme.read_text() == "a\n<!-- perf:begin -->\nNEW\n<!-- perf:end -->\nb\n"


@pytest.mark.parametrize("args, fragment", [(["--parts", "gemm,x"], "--parts"), (["--images", "0"], "--images")])
def test_bad_arguments_one_line(args, fragment):
    from tests.test_cli import assert_user_error, run
    assert_user_error(run("perf", *args), fragment)
