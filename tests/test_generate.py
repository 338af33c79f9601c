"""``intdeploy verilog`` (hw/generate.py): one self-contained Verilog file that Verilator lints,
and SDC/XDC constraints whose patterns name registers that exist in it.

Lint: plain ``verilator --lint-only`` must pass with no warning at all (the file switches off
the three Yosys-output classes, see hw/generate.py), and ``verilator --lint-only -Wall
-Wno-fatal`` must finish without errors with every warning of a class known to be benign in Amaranth/Yosys output (docs/top.md, "Lint" lists them
and why); a warning of any other class (a latch, a multi-driven signal, a combinational loop,
a blocking/non-blocking mix, ...) fails the test.
"""

import os
import re
import subprocess

import pytest

from intdeploy.hw.config import AcceleratorConfig
from intdeploy.hw.generate import FIFOS, generate, write
from intdeploy.sim.runner import setup_simulator
from intdeploy.tools.cli import main as cli_main

#: Small buffers keep elaboration quick; the array and bus are what the lint is about.
SMALL = dict(weight_depth=16, act_depth=64, param_channels=16, residual_depth=16, threshold_channels=16,
             max_q=4, max_pool_taps=9)
#: Warning classes of Amaranth/Yosys output that carry no risk (see docs/top.md, "Lint").
BENIGN = {"UNUSEDSIGNAL", "UNUSEDPARAM", "PROCASSINIT", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE",
          "DECLFILENAME", "UNDRIVEN", "SYNCASYNCNET"}


def lint(path, top, *flags):
    """``(return code, {warning class: count}, output)`` of ``verilator --lint-only <flags>``."""
    setup_simulator("verilator")
    run = subprocess.run(["verilator", "--lint-only", *flags, "--top-module", top, str(path)],
                         capture_output=True, text=True, env=os.environ)
    out = run.stdout + run.stderr
    counts = {}
    for w in re.findall(r"%Warning-(\w+):", out):
        counts[w] = counts.get(w, 0) + 1
    return run.returncode, counts, out


def check_generated(tmp_path, rows, cols, **params):
    gen = generate(dict(rows=rows, cols=cols, **SMALL, **params), name="accel_top")
    v, sdc, xdc = write(gen, tmp_path / "accel_top.v")
    rc, counts, out = lint(v, "accel_top")                 # the default lint: clean
    assert rc == 0 and not counts and "%Error" not in out, out[-2000:]
    rc, counts, out = lint(v, "accel_top", "-Wall", "-Wno-fatal")
    assert rc == 0 and "%Error" not in out, out[-2000:]
    assert set(counts) <= BENIGN, {k: n for k, n in counts.items() if k not in BENIGN}
    # Self-contained: one file, every module defined in it, nothing else instantiated.
    text = v.read_text()
    assert "`include" not in text
    # The constraints' patterns find the registers they are about.
    for inst, fifo, _, _ in FIFOS:
        for ptr in ("wptr", "rptr"):
            for reg in (f"cdc_{fifo}_{ptr}_gray", f"cdc_{fifo}_{ptr}_s0", f"cdc_{fifo}_{ptr}_s1"):
                assert re.search(rf"reg \[\d+:0\] {reg}\b", text), reg
                assert reg.replace("_s1", "_s0") in sdc.read_text() or reg.endswith("_s1")
        assert re.search(rf"module \\accel_top\.{inst} ", text) and f"{inst}/storage" in xdc.read_text()
    # Every synchronizer flop carries ASYNC_REG (a reset synchronizer's last flop is its port `rst`).
    marked = re.findall(r'\(\* ASYNC_REG = "TRUE" \*\)\s*(?:\(\*[^)]*\*\)\s*)*(?:reg|output)\s*(?:\[\d+:0\])?\s*(\w+)', text)
    assert sorted(set(marked)) == sorted({f"cdc_{f}_{p}_s{k}" for _, f, _, _ in FIFOS for p in ("wptr", "rptr")
                                          for k in (0, 1)} | {"cdc_rst_s0", "rst"})
    assert "set_clock_groups -asynchronous" in sdc.read_text()
    assert "set_max_delay -datapath_only" in xdc.read_text() and "ASYNC_REG" in xdc.read_text()
    bw = AcceleratorConfig(rows=rows, cols=cols, **SMALL, **params).bus_width
    assert ("s_axis__tdata", "input", bw) in gen.ports and ("m_axis__tdata", "output", bw) in gen.ports
    assert {p[0] for p in gen.ports} == {
        "bus_clk", "bus_rst", "core_clk", "core_rst", "s_axis__tdata", "s_axis__tvalid", "s_axis__tlast",
        "s_axis__tready", "m_axis__tdata", "m_axis__tvalid", "m_axis__tlast", "m_axis__tready"}
    return counts


@pytest.mark.parametrize("rows, cols", [(4, 4), (8, 8)])
def test_lint(rows, cols, tmp_path):
    check_generated(tmp_path, rows, cols)


@pytest.mark.regress
@pytest.mark.parametrize("rows, cols, bus_width", [(16, 16, 32), (8, 8, 128), (3, 5, 64)])
def test_lint_regress(rows, cols, bus_width, tmp_path):
    check_generated(tmp_path, rows, cols, bus_width=bus_width)


def test_cli_writes_files_and_prints_ports(tmp_path, capsys):
    out = tmp_path / "sub" / "a.v"
    assert cli_main(["verilog", "--rows", "2", "--cols", "3", "--bus-width", "64", "--weight-depth", "8",
                     "--act-depth", "16", "--param-channels", "4", "--residual-depth", "8",
                     "--threshold-channels", "4", "--max-q", "2", "--core-period", "4", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "s_axis__tdata" in text and re.search(r"input\s+64\s+s_axis__tdata", text)
    assert re.search(r"rows\s+2", text) and re.search(r"bus_width\s+64", text)
    assert out.exists() and out.with_suffix(".sdc").exists() and out.with_suffix(".xdc").exists()
    assert "create_clock -name core_clk -period 4 " in out.with_suffix(".sdc").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--rows", "0", "--cols", "4"], "rows: 0 is out of range; allowed [1, 16]"),
    (["--rows", "4", "--cols", "4", "--bus-width", "40"], "bus_width: 40 is not allowed"),
    (["--rows", "4", "--cols", "4", "--fifo-depth", "12"], "fifo_depth: 12 is not allowed"),
    (["--rows", "4", "--cols", "4", "--epilogue-lanes", "5"], "epilogue_lanes: 5 is out of range; allowed [1, 4]"),
])
def test_cli_refuses_bad_parameters(argv, message, tmp_path, capsys):
    assert cli_main(["verilog", *argv, "-o", str(tmp_path / "a.v")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("intdeploy: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_a_non_verilog_output_before_elaborating(tmp_path, capsys):
    assert cli_main(["verilog", "--rows", "4", "--cols", "4", "-o", str(tmp_path / "a.txt")]) == 2
    assert "must name a .v file" in capsys.readouterr().err
