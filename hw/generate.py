"""Verilog and timing constraints of the accelerator top: ``intdeploy verilog``.

:func:`generate` elaborates :class:`intdeploy.hw.top.Accelerator` into one self-contained Verilog file and
writes the constraints of its clock-domain crossings in four flavours (:func:`constraints`):
generic SDC with ``set_max_delay`` bounds and no clock groups (which would override them in most
STA tools), Quartus SDC (``|`` hierarchy, ``set_max_skew``), Vivado XDC scoped to the core (no
``create_clock``: the clocks and their periods come from the design around it; ``-datapath_only``
bounds, ``set_bus_skew``, ``ASYNC_REG``) and the out-of-context clocks for Vivado.

The crossings are found by name: :mod:`intdeploy.hw.cdc` names every synchronizer flop
``cdc_<what>_s<k>`` and every Gray pointer register ``cdc_<fifo>_<w|r>ptr_gray``.
"""

import argparse
import dataclasses
from dataclasses import dataclass
import os
from pathlib import Path
import re

from intdeploy.hw.config import AcceleratorConfig
from intdeploy.hw.ram import MEMORY_MODES, RamPlatform
from intdeploy.hw.top import Accelerator
from intdeploy.wire import c_header

__all__ = ["Generated", "FLAVOURS", "KIT", "PORT_DOC", "LINT_WAIVERS", "RAMS", "instantiation", "lint_waivers", "generate", "constraints", "ports", "write", "check_output", "add_arguments", "main"]

#: The FIFOs of the top: (instance, name in intdeploy.hw.cdc, write clock, read clock).
FIFOS = (("cmd_fifo", "cmd", "bus_clk", "core_clk"), ("resp_fifo", "resp", "core_clk", "bus_clk"))


@dataclass
class Generated:
    """Result of :func:`generate`: the Verilog, the constraints and integration files (name -> text,
    :data:`FLAVOURS` and :data:`KIT`), the top's ports ``(name, direction, width)`` and, with
    wrapped memories, the memory modules (``rams``: the text of ``OUT.rams.v``, None with inline
    memories)."""
    verilog: str
    constraints: dict
    ports: list
    config: object
    name: str
    rams: str = None


def generate(config, *, name="accelerator", bus_period=10.0, core_period=5.0, memories="inline"):
    """Verilog and constraints of the top for ``config`` (an AcceleratorConfig or a dict).

    ``bus_period`` and ``core_period`` (ns, > 0) are written into the constraints' clock
    definitions. ``memories`` (:data:`intdeploy.hw.ram.MEMORY_MODES`): ``inline`` (``reg`` arrays in
    the units' modules), ``wrapped`` (each memory an instance of ``<name>_ram_<words>x<bits>_...``,
    one module per shape, written behaviourally to ``rams``) or ``blackbox`` (the same instances,
    ``rams`` holding port-only ``(* blackbox *)`` modules); :mod:`intdeploy.hw.ram` lists the ports.
    Raises ValueError for an invalid parameter, module name, period or memory mode.
    """
    from amaranth.back import verilog  # Amaranth: only when hardware is elaborated


    if not isinstance(config, AcceleratorConfig):
        config = AcceleratorConfig(**dict(config))
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name: {name!r} is not a Verilog identifier")
    for pname, p in (("bus_period", bus_period), ("core_period", core_period)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
            raise ValueError(f"{pname}: {p!r} is not allowed; a period in ns > 0")
    if memories not in MEMORY_MODES:
        raise ValueError(f"memories: {memories!r} is not one of {', '.join(MEMORY_MODES)}")
    platform = RamPlatform(name) if memories != "inline" else None
    text = verilog.convert(Accelerator(**config.as_dict()), name=name, emit_src=False, platform=platform)
    port_list = ports(text, name)
    header = _header(name, config, port_list) + (
        # Yosys writes Amaranth's width-exact netlist with implicit extensions/truncations and
        # state-machine casez without default: Verilator's default lint calls those warnings.
        # They carry no risk (docs/top.md, Lint); everything else stays enabled.
        "// verilator lint_off WIDTHEXPAND\n// verilator lint_off WIDTHTRUNC\n"
        "// verilator lint_off CASEINCOMPLETE\n")
    texts = {f: constraints(name, f, bus_period, core_period) for f in FLAVOURS}
    texts["inst.v"], texts["inst.vhd"] = instantiation(name, port_list, "verilog"), instantiation(name, port_list, "vhdl")
    texts["vlt"] = lint_waivers(f"{name}.v")
    texts["wire.h"] = c_header.render()
    rams = None
    if platform is not None:
        rams = (f"// Memory modules of {name} ({memories}), written by hw/generate.py: one module per shape,\n"
                "// the ports and their timing in hw/ram.py and docs/flow.md (Memories).\n\n"
                + platform.modules(blackbox=memories == "blackbox"))
    return Generated(verilog=header + text, constraints=texts, ports=port_list, config=config, name=name,
                     rams=rams)


#: What each port is: (clock domain, meaning).
PORT_DOC = {
    "bus_clk": ("-", "bus clock (AXI4-Stream side)"),
    "bus_rst": ("async", "reset, active high, may be asynchronous; either reset resets both domains"),
    "core_clk": ("-", "core clock (compute side), unrelated to bus_clk"),
    "core_rst": ("async", "reset, active high, may be asynchronous; either reset resets both domains"),
    "s_axis__tdata": ("bus_clk", "command stream data (word 0 in TDATA[31:0])"),
    "s_axis__tvalid": ("bus_clk", "command stream valid"),
    "s_axis__tlast": ("bus_clk", "last beat of a command packet"),
    "s_axis__tready": ("bus_clk", "command stream ready"),
    "m_axis__tdata": ("bus_clk", "response stream data (word 0 in TDATA[31:0])"),
    "m_axis__tvalid": ("bus_clk", "response stream valid"),
    "m_axis__tlast": ("bus_clk", "last beat of a response packet"),
    "m_axis__tready": ("bus_clk", "response stream ready"),
}


def _header(name, config, port_list):
    """The comment block at the top of the Verilog: ports, clocks, resets, parameters."""
    lines = [f"// {name}: intdeploy int8 accelerator top, generated by hw/generate.py (`intdeploy verilog`).",
             "// Command packets in on s_axis, responses out on m_axis (AXI4-Stream, no TKEEP/TSTRB: every",
             "// beat is whole); the protocol is docs/protocol.md. Two clocks, unrelated; every crossing is",
             "// an asynchronous FIFO or a reset synchronizer (constraints: the .sdc/.xdc files beside this).",
             "// Reset: bus_rst and core_rst are active high and may be asynchronous; either one resets both",
             "// domains (asserted at once, released after two edges of each clock: docs/top.md, Reset). No",
             "// register's power-up value matters after a reset; the buffers read 0 until written (their",
             "// initial blocks; an ASIC must write before it reads). Instantiation templates: .inst.v",
             "// (Verilog), .inst.vhd (VHDL); Verilator -Wall waivers: .vlt.",
             "//",
             "// port                 dir     width  domain    meaning"]
    for port, direction, width in port_list:
        domain, meaning = PORT_DOC.get(port, ("?", ""))
        lines.append(f"// {port:<20} {direction:<7} {width:>5}  {domain:<9} {meaning}")
    lines += ["//", "// elaboration parameters (intdeploy.hw.config.AcceleratorConfig; INFO reports them):"]
    for key, value in config.as_dict().items():
        lines.append(f"//   {key:<20} {value}")
    lines.append(f"// parameters: {config.key()}")
    return "\n".join(lines) + "\n"


def instantiation(name, port_list, language):
    """An instantiation template of module ``name`` (``"verilog"`` or ``"vhdl"``)."""
    if language == "verilog":
        body = ",\n".join(f"    .{port:<16} ({port})" for port, _, _ in port_list)
        return (f"// Instantiation template of {name} (generated by hw/generate.py): rename the signals.\n"
                f"{name} u_{name} (\n{body}\n);\n")
    if language != "vhdl":
        raise ValueError(f"language: {language!r} is not one of verilog, vhdl")
    decl = ";\n".join(f"      {port:<16} : {'in ' if d == 'input' else 'out'} "
                       + ("std_logic" if w == 1 else f"std_logic_vector({w - 1} downto 0)")
                       for port, d, w in port_list)
    inst = ",\n".join(f"      {port:<16} => {port}" for port, _, _ in port_list)
    return (f"-- Instantiation template of {name} (generated by hw/generate.py): rename the signals.\n"
            f"-- The core is Verilog: compile it next to your VHDL (mixed-language simulation/synthesis).\n"
            f"library ieee;\nuse ieee.std_logic_1164.all;\n\n"
            f"-- in the architecture's declarative part:\n"
            f"  component {name} is\n    port (\n{decl}\n    );\n  end component;\n\n"
            f"-- in its body:\n  u_{name} : {name}\n    port map (\n{inst}\n    );\n")


#: Verilator -Wall classes the generated netlist raises, waived in the ``.vlt`` with the reason.
LINT_WAIVERS = {
    "UNUSEDSIGNAL": "alias wires Amaranth emits for every layout field and unused slices",
    "PROCASSINIT": "reg x = init; (a power-up value for simulation) next to its always block",
    "DECLFILENAME": "module names do not match the file name (one file holds every module)",
    "SYNCASYNCNET": "the synchronized core reset is both the asynchronous reset of the FIFOs' crossing "
                    "registers and the synchronous reset of the core domain, by design (docs/top.md, Reset)",
    "UNUSEDPARAM": "parameters Yosys writes for memories",
    "UNDRIVEN": "unused bits of alias wires",
}


def lint_waivers(filename):
    """A Verilator control file (``.vlt``) waiving the classes of :data:`LINT_WAIVERS`, each with its
    reason, for the generated file ``filename`` only: ``verilator --lint-only -Wall OUT.vlt OUT.v`` is
    then clean."""
    lines = ["`verilator_config",
             f"// Lint waivers for the generated Verilog {filename} (hw/generate.py); docs/top.md, Lint.",
             "// Every waived class comes from the way Yosys writes Amaranth's netlist; none is a functional risk."]
    for rule, why in LINT_WAIVERS.items():
        lines += [f"// {rule}: {why}", f'lint_off -rule {rule} -file "*{filename}"']
    rams = filename[:-2] + RAMS if filename.endswith(".v") else filename + RAMS
    lines += ["// DECLFILENAME in the memory modules' file (--memories wrapped): one module per memory shape",
              f'lint_off -rule DECLFILENAME -file "*{rams}"']
    return "\n".join(lines) + "\n"


#: The constraint files :func:`write` puts next to ``OUT.v``: flavour -> suffix.
FLAVOURS = {"sdc": ".sdc", "quartus": ".quartus.sdc", "xdc": ".xdc", "xdc_ooc": ".ooc.xdc"}
#: The integration files :func:`write` puts next to ``OUT.v`` too: name -> suffix.
KIT = {"inst.v": ".inst.v", "inst.vhd": ".inst.vhd", "vlt": ".vlt", "wire.h": ".wire.h"}
#: With wrapped or black-box memories, the memory modules' file next to ``OUT.v``.
RAMS = ".rams.v"


def constraints(name, flavour, bus_period, core_period):
    """Constraint text for the top module ``name`` in one of :data:`FLAVOURS`:

    * ``sdc``: generic SDC with ``/`` as hierarchy separator (OpenSTA, Synopsys, Cadence): the two
      clocks on the ports; each crossing bounded by ``set_max_delay`` and its hold check removed
      (``set_false_path -hold``). No ``set_clock_groups``: most STA tools let clock groups
      override ``set_max_delay``, which would leave the crossings unconstrained;
    * ``quartus``: the same for Quartus TimeQuest (``|`` separator, ``get_registers``,
      ``set_max_skew`` on each Gray pointer);
    * ``xdc``: Vivado, scoped to the core (read with ``SCOPED_TO_REF``, as IP constraints inside a
      larger design): no ``create_clock`` (the clocks come from the design around it; the bounds
      are computed from their periods), ``set_max_delay -datapath_only``, ``set_bus_skew`` and
      ``ASYNC_REG``;
    * ``xdc_ooc``: the two ``create_clock`` of an out-of-context run of the core alone.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour: {flavour!r} is not one of {', '.join(FLAVOURS)}")
    period = {"bus_clk": float(bus_period), "core_clk": float(core_period)}
    title = {"sdc": "SDC", "quartus": "Quartus SDC", "xdc": "Vivado XDC, scoped to the core",
             "xdc_ooc": "Vivado XDC, out-of-context clocks"}[flavour]
    lines = [f"# Timing constraints of {name} ({title}), written by hw/generate.py (docs/flow.md)."]
    if flavour == "xdc_ooc":
        lines += ["# Only for synthesizing the core alone (USED_IN out_of_context); inside a design the",
                  "# clocks come from there.",
                  f"create_clock -name bus_clk -period {period['bus_clk']:g} [get_ports bus_clk]",
                  f"create_clock -name core_clk -period {period['core_clk']:g} [get_ports core_clk]"]
        return "\n".join(lines) + "\n"
    lines += [
        "# Only these paths cross between bus_clk and core_clk (docs/top.md, clock-domain crossings):",
        "# the Gray pointers of the two asynchronous FIFOs into their 2-flop synchronizers, the FIFO",
        "# memories read in the other domain, and the reset inputs into the reset synchronizers.",
        "",
    ]
    xdc, quartus = flavour == "xdc", flavour == "quartus"

    def cells(inst, reg):
        """The registers ``reg*`` of the FIFO instance ``inst``: by full name in Vivado (a filter on
        NAME) and Quartus (``*`` spans '|'); relative to the core in SDC (``get_cells`` matches a
        ``-hierarchical`` pattern against leaf names only, so a path with '/' must be relative)."""
        if xdc:
            return f"[get_cells -hierarchical -filter {{NAME =~ *{inst}/{reg}*}}]"
        if quartus:
            return f"[get_registers {{*{inst}|{reg}*}}]"
        return f"[get_cells {inst}/{reg}*]"

    if xdc:
        lines += ["# The clocks are the design's: their periods set the bounds.",
                  "set bus_period [get_property PERIOD [get_clocks -of_objects [get_ports bus_clk]]]",
                  "set core_period [get_property PERIOD [get_clocks -of_objects [get_ports core_clk]]]",
                  "set min_period [expr {min($bus_period, $core_period)}]"]
        bound_of = {"bus_clk": "$bus_period", "core_clk": "$core_period", "min": "$min_period"}
        clock_of = {c: f"[get_clocks -of_objects [get_ports {c}]]" for c in period}
    else:
        if not quartus:
            lines += ["# Cell names are relative to the core: inside a larger design, read this file with",
                      "# current_instance set to the core's instance (the hierarchy kept down to the FIFOs)."]
        lines += [f"create_clock -name bus_clk -period {period['bus_clk']:g} [get_ports bus_clk]",
                  f"create_clock -name core_clk -period {period['core_clk']:g} [get_ports core_clk]",
                  "# No set_clock_groups: it would override the set_max_delay bounds below in most tools,",
                  "# and these are the only paths between the two clocks."]
        bound_of = {"bus_clk": f"{period['bus_clk']:g}", "core_clk": f"{period['core_clk']:g}",
                    "min": f"{min(period.values()):g}"}
        clock_of = {c: f"[get_clocks {c}]" for c in period}
    lines.append("")
    dpo = " -datapath_only" if xdc else ""

    def bounded(src, dst, bound, skew):
        out = [f"set_max_delay{dpo} -from {src} -to {dst} {bound}"]
        if not xdc:         # the two clocks are unrelated: a hold check across them means nothing
            out.append(f"set_false_path -hold -from {src} -to {dst}")
        if skew and xdc:
            out.append(f"set_bus_skew -from {src} -to {dst} {bound}")
        if skew and quartus:
            out.append(f"set_max_skew -from {src} -to {dst} {bound}")
        return out

    for inst, fifo, wclk, rclk in FIFOS:
        for ptr, src_clk, dst_clk in (("wptr", wclk, rclk), ("rptr", rclk, wclk)):
            src, dst = cells(inst, f"cdc_{fifo}_{ptr}_gray"), cells(inst, f"cdc_{fifo}_{ptr}_s0")
            lines.append(f"# {inst}: {'write' if ptr == 'wptr' else 'read'} pointer, Gray code, "
                         f"{src_clk} -> {dst_clk}: at most one bit changes per edge, so a skew "
                         f"bound of one period keeps every sampled value a valid pointer")
            lines += bounded(src, dst, bound_of["min"], True)
        lines.append(f"# {inst}: memory written on {wclk}, read on {rclk} only after the write "
                     f"pointer has crossed (two or more {rclk} edges later); its {wclk} paths stay as they are")
        lines += bounded(cells(inst, "storage"), clock_of[rclk], bound_of[rclk], False)
    lines += [
        "",
        "# Reset inputs: asynchronous assertion into the reset synchronizers (set flops), release",
        "# timed by the synchronizers themselves.",
        "set_false_path -from [get_ports {bus_rst core_rst}]",
    ]
    if xdc:
        lines += [
            "",
            "# Synchronizer flops: placed together, never merged into shift registers.",
            "# (a reset synchronizer's last flop drives its port: bus_reset/rst, core_reset/rst)",
            "set_property ASYNC_REG TRUE [get_cells -hierarchical -filter "
            "{NAME =~ *cdc_*_s0* || NAME =~ *cdc_*_s1* || NAME =~ *_reset/rst*}]",
        ]
    return "\n".join(lines) + "\n"


def ports(verilog_text, name):
    """``[(port, direction, width), ...]`` of module ``name`` in ``verilog_text``."""
    body = re.search(rf"^module {re.escape(name)}\(.*?^endmodule", verilog_text, re.S | re.M)
    if body is None:
        raise ValueError(f"name: module {name!r} not found in the Verilog")
    out = []
    for m in re.finditer(r"^\s*(input|output)\s*(?:\[(\d+):0\])?\s*([\w$\\.]+)\s*;", body.group(0), re.M):
        out.append((m.group(3), m.group(1), int(m.group(2)) + 1 if m.group(2) else 1))
    return out


def write(generated, out):
    """Write ``OUT.v`` (``out``) and next to it the constraints (``OUT`` + each suffix of
    :data:`FLAVOURS`) and the integration files (:data:`KIT`: instantiation templates, lint
    waivers, the wire format's C header and driver); returns the paths, the Verilog first."""
    out = Path(out)
    check_output(out)
    extra = {**FLAVOURS, **KIT}
    paths = [out] + [out.with_suffix(suffix) for suffix in extra.values()]
    texts = [generated.verilog] + [lint_waivers(out.name) if f == "vlt" else generated.constraints[f] for f in extra]
    if generated.rams is not None:
        paths.append(out.with_suffix(RAMS))
        texts.append(generated.rams)
    temps = [p.with_name(p.name + ".tmp") for p in paths]
    try:                    # all files or none: each written aside, then renamed into place
        for tmp, text in zip(temps, texts):
            tmp.write_text(text, encoding="utf-8")
        for tmp, path in zip(temps, paths):
            tmp.replace(path)
    except OSError as e:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise ValueError(f"-o/--out: {out} cannot be written ({e.strerror or type(e).__name__})") from None
    return paths


def check_output(out):
    """Refuse an output path that cannot be written before any work (ValueError naming
    ``-o/--out``); creates its directory if needed."""
    out = Path(out)
    if out.suffix != ".v":
        raise ValueError(f"-o/--out: {str(out)!r} must name a .v file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"-o/--out: {out}: its directory cannot be created ({e.strerror or type(e).__name__})") \
            from None
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"-o/--out: {out} cannot be written (permission denied)")


# --- command line ---------------------------------------------------------------------------------

_OPTIONS = (   # (option, parameter, help); the defaults are AcceleratorConfig's, added by add_arguments
    ("--bus-width", "bus_width", "AXI4-Stream TDATA bits, a multiple of 32"),
    ("--weight-bits", "weight_bits", "stored weight bits: 8, 4 or 2"),
    ("--weight-depth", "weight_depth", "entries per weight bank"),
    ("--weight-banks", "weight_banks", "weight banks"),
    ("--act-depth", "act_depth", "activation entries"),
    ("--param-channels", "param_channels", "parameter channels"),
    ("--residual-depth", "residual_depth", "residual entries"),
    ("--threshold-channels", "threshold_channels", "threshold channels"),
    ("--max-q", "max_q", "largest threshold output bits"),
    ("--max-pool-taps", "max_pool_taps", "largest pooling window"),
    ("--max-pool-shift", "max_pool_shift", "largest NEMO average-pool shift d"),
    ("--fifo-depth", "fifo_depth", "beats per clock-crossing FIFO, a power of 2"),
    ("--epilogue-lanes", "epilogue_lanes", "values the epilogue handles per cycle, 1..R"),
    ("--add-lanes", "add_lanes", "values the add unit handles per cycle, 1..R (default: the epilogue's)"),
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AcceleratorConfig)}


def add_arguments(parser):
    """Declare the ``verilog`` command's arguments on an argparse parser."""
    parser.add_argument("--rows", type=int, required=True, help="R: output channels per tile (1..16)")
    parser.add_argument("--cols", type=int, required=True, help="C: input lanes (1..64)")
    for option, name, text in _OPTIONS:
        default = _DEFAULTS[name]
        parser.add_argument(option, type=int, help=f"{text} (default {'min(R, 4)' if default is None else default})")
    parser.add_argument("--name", default="accelerator", help="top module name (default accelerator)")
    parser.add_argument("--bus-period", type=float, default=10.0,
                        help="bus_clk period in ns for the constraints (default 10)")
    parser.add_argument("--core-period", type=float, default=5.0,
                        help="core_clk period in ns for the constraints (default 5)")
    parser.add_argument("--memories", choices=MEMORY_MODES, default="inline",
                        help="inline: reg arrays in the units (default); wrapped: each memory an instance of a "
                             "module per shape, written to OUT.rams.v, to replace with SRAM macros or vendor "
                             "RAMs; blackbox: OUT.rams.v holds the modules' ports only")
    parser.add_argument("-o", "--out", required=True, help="output Verilog file OUT.v (OUT.sdc, OUT.quartus.sdc, "
                                                           "OUT.xdc and OUT.ooc.xdc are written next to it)")


def main(args):
    """Run ``intdeploy verilog`` for parsed ``args``; prints parameters, ports and files."""
    check_output(args.out)
    params = {"rows": args.rows, "cols": args.cols}
    for _, key, _ in _OPTIONS:
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    gen = generate(params, name=args.name, bus_period=args.bus_period, core_period=args.core_period,
                   memories=args.memories)
    paths = write(gen, args.out)
    print(f"{gen.name}: intdeploy accelerator top")
    print("parameters:")
    for key, value in gen.config.as_dict().items():
        print(f"  {key:<20} {value}")
    print("ports:")
    for port, direction, width in gen.ports:
        print(f"  {direction:<6} {width:>5}  {port}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m intdeploy.hw.generate")
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
