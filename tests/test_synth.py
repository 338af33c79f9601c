"""``intdeploy synth`` (sim/synth.py): real Yosys and nextpnr runs, figures checked against
counts derived independently from the MAC array's documented pipeline (docs/units/mac_array.md).

Quick tier: a 2x2 MAC array on the generic target (Yosys only) and on ECP5-85k (Yosys and
nextpnr out of context, ~15 s; then placed only, ~5 s), the one-lane requantizer on the generic
target (flattened, and per unit with the hierarchy kept), the report, log, SDF and per-unit stat
parsers on hand-written inputs, bad arguments.
Regress tier: the 8x8 MAC array (routed) and the 4x4 top (placed only) on ECP5-85k.
"""

import json
from pathlib import Path
import subprocess
import sys

import pytest

from intdeploy.tools import synth

INTDEPLOY = Path(sys.executable).with_name("intdeploy")


def mac_array_flip_flops(rows, cols):
    """Flip-flops of :class:`intdeploy.hw.mac_array.MacArray` (8-bit weights, int32 accumulators, C a power
    of 2) from its pipeline table, every register's width written out stage by stage."""
    R, C = rows, cols
    D = (C - 1).bit_length()
    assert 1 << D == C
    ff = C * 10 + R * C * 8 + R * 8                                      # stage 1: xd, w, w_zp
    ff += R * C * 17                                                     # products (range: 17 b)
    ff += sum((C >> lv) * (10 + lv) for lv in range(1, D + 1))           # shared S tree
    ff += R * sum((C >> lv) * (17 + lv) for lv in range(1, D + 1))       # per-row trees
    ff += R * 8 * D + R * (17 + D)                                       # w_zp delay, corrections
    ff += R * (18 + D)                                                   # step sums
    ff += 2 * R * 32                                                     # accumulators, result
    n_ctl = 3 + D                               # valid/last: stages 1..3+D, first: 1..2+D, o.valid
    ff += 2 * n_ctl + (n_ctl - 1) + 1
    return ff


def requantizer_flip_flops(lanes, out_bits=32):
    """Flip-flops of :class:`intdeploy.hw.requantizer.Requantizer` (no ``user``) from its pipeline, every
    register's width written out stage by stage."""
    ob = out_bits
    params = 6 + 3 + 1                                   # sh, mode (the 3-bit rounding code), rdiv
    per_lane = 32 + 5 + params + 48 + 32 + 32 + 2 * ob   # 1: x, lsh, .., off, mult, zp, lo, hi
    per_lane += 32 + params + 48 + 32 + 32 + 2 * ob      # 2: x, .., off, mult, zp, lo, hi
    per_lane += 4 * 32 + params + 48 + 32 + 2 * ob       # 3: partial products, .., off, zp, lo, hi
    per_lane += 64 + 33 + params + 32 + 2 * ob           # 4: base, mid, .., zp, lo, hi
    per_lane += 64 + 63 + 63 + params + 32 + 2 * ob      # 5: t, half, mask, .., zp, lo, hi
    per_lane += 64 + 63 + 6 + 3 + 32 + 2 * ob            # 6: u, mask, sh, mode, zp, lo, hi
    per_lane += 64 + 1 + 2 * 33 + ob + 2 * ob            # 7: q, even, lo/hi - zp, zp, lo, hi
    per_lane += 2 + ob + 2 * ob                          # 8: below, above, z, lo, hi
    per_lane += ob                                       # 9: y
    return lanes * per_lane + 9 + 1 + lanes * ob         # valid bits, skid flag and data


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth")


def test_generic_2x2_mac_array(cache):
    res = synth.run("mac_array", 2, 2, "generic", cache_dir=cache)
    assert res["macs"] == 4
    assert res["ff"] == mac_array_flip_flops(2, 2)
    assert res["dsp"] == 0 and res["fmax_mhz"] == {}          # multipliers as gates, no P&R
    gates = {k: v for k, v in res["yosys_cells"].items() if k in ("$_NAND_", "$_NOR_", "$_NOT_")}
    assert res["logic_cells"] == sum(gates.values()) > 0 and len(gates) == 3     # abc -g cmos2's library
    # stat -tech cmos: 4 transistors per NAND/NOR, 2 per NOT, plus the flip-flops in its table; the
    # array's flip-flops with a synchronous reset are not, which the '+' flag says
    assert res["transistors"] >= 4 * (gates["$_NAND_"] + gates["$_NOR_"]) + 2 * gates["$_NOT_"]
    assert res["transistors_partial"] == any(k.startswith("$_SDFF") for k in res["yosys_cells"])
    assert res["logic_cells_per_mac"] == round(res["logic_cells"] / 4, 3)


def _path_gives_fmax(cp, fmax):
    """The SDF path's delays are whole picoseconds (logic + routing = delay exactly), and nextpnr's
    logged Fmax is 1000 / delay rounded to the log's 0.01 MHz."""
    ps = [round(cp[k] * 1000) for k in ("delay_ns", "logic_ns", "routing_ns")]
    assert ps[0] == ps[1] + ps[2], cp
    assert round(1000 / cp["delay_ns"], 2) == fmax, (cp, fmax)


def test_ecp5_2x2_mac_array(cache):
    res = synth.run("mac_array", 2, 2, "ecp5-85k", cache_dir=cache)
    # one MULT18X18D per MAC plus one weight-zero-point correction per row
    assert res["dsp"] == 2 * 2 + 2 and res["dsp_per_mac"] == 1.5
    assert res["ff"] == mac_array_flip_flops(2, 2)
    # after packing every Yosys LUT4 and both halves of every CCU2C carry cell are TRELLIS_COMB
    y = res["yosys_cells"]
    assert res["logic_cells"] >= y.get("LUT4", 0) + 2 * y.get("CCU2C", 0) > 0
    assert set(res["fmax_mhz"]) == {"clk"} and 20 < res["fmax_mhz"]["clk"] < 1000
    (cp,) = res["critical_paths"]
    assert cp["delay_ns"] == pytest.approx(cp["logic_ns"] + cp["routing_ns"], abs=0.002)
    assert 1000 / cp["delay_ns"] == pytest.approx(res["fmax_mhz"]["clk"], rel=0.05)
    # a second call is served from the cache
    assert synth.run("mac_array", 2, 2, "ecp5-85k", cache_dir=cache) == res


def test_requantizer_unit_elaborates():
    # R lanes with 32-bit outputs, whatever C is: C only scales the per-MAC ratios.
    verilog, top = synth.elaborate("requantizer", 3, 5)
    assert top == "requantizer" and verilog == synth.elaborate("requantizer", 3, 1)[0]
    # per lane: acc 32 + bias 32, mult 32, offset 48, shift 6, zero_point 32, lo/hi 32, rounding 3
    assert "input [746:0] i__payload;" in verilog and "output [95:0] o__payload;" in verilog


def test_generic_requantizer(cache):
    res = synth.run("requantizer", 1, 4, "generic", cache_dir=cache)
    # Yosys' generic flow merges registers of equal input: the tie mask's bit 31 (2**S - 1 has it
    # iff S >= 32) with the shift's bit 5, in stage 5 and again in stage 6 (Yosys 0.69; 0.70
    # merged stage 5's only); synth_ecp5 keeps them all (8 lanes: 14706 FF).
    assert res["macs"] == 4 and res["ff"] == requantizer_flip_flops(1) - 2
    assert res["dsp"] == 0 and res["logic_cells"] > 0


def test_generic_requantizer_breakdown(cache):
    res = synth.breakdown("requantizer", 1, 4, "generic", cache_dir=cache)
    assert [(u["name"], u["depth"]) for u in res["units"]] == [("", 0), ("skid", 1)]
    top, skid = res["units"]
    assert skid["own"] == skid["total"] and skid["total"]["ff"] == 1 + 32     # flag, one 32-bit lane
    # the hierarchy keeps every register of the pipeline table (less the merged two, as flattened)
    assert top["total"] == res["total"] and res["total"]["ff"] == requantizer_flip_flops(1) - 2
    for f in ("logic_cells", "ff", "dsp", "bram", "lutram"):
        assert top["total"][f] == top["own"][f] + skid["own"][f], f
    assert res["total"]["logic_cells"] > 0 and res["config"]["hierarchy"] is True
    # stat -tech cmos includes a module's submodules: the top's own share excludes the skid buffer's,
    # so the units add up to Yosys' figure for the whole design
    assert top["total"]["transistors"] == top["own"]["transistors"] + skid["own"]["transistors"]
    assert top["total"]["transistors"] == synth.parse_transistors((Path(res["dir"]) / "stat.json").read_text())[0]
    assert 0 < skid["own"]["transistors"] < top["own"]["transistors"]
    text = synth.format_breakdown(res).splitlines()
    share = 100 * skid["total"]["logic_cells"] / res["total"]["logic_cells"]
    assert text[2].split()[:3] == ["(whole", "design)", str(res["total"]["logic_cells"])]
    assert text[3].split()[:4] == ["skid", str(skid["total"]["logic_cells"]), f"{share:.1f}", "33"]
    assert synth.breakdown("requantizer", 1, 4, "generic", cache_dir=cache) == res      # cached


def test_parse_yosys_hierarchy():
    # Amaranth's module names are paths; an instance cell (type = a module) is not a primitive,
    # and a module outside the top's tree is not counted.
    stat = {"modules": {
        "\\t": {"num_cells_by_type": {"LUT4": 2, "\\t.a": 1, "\\t.b": 1}},
        "\\t.a": {"num_cells_by_type": {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 4, "\\t.a.x": 1}},
        "\\t.a.x": {"num_cells_by_type": {"MULT18X18D": 2, "TRELLIS_FF": 1}},
        "\\t.b": {"num_cells_by_type": {"DP16KD": 1, "TRELLIS_DPR16X4": 2}},
        "\\other": {"num_cells_by_type": {"LUT4": 100}},
    }}
    res = synth.parse_yosys_hierarchy(json.dumps(stat), "ecp5-85k", "t")
    got = {u["name"]: (u["depth"], u["own"]["logic_cells"], u["total"]["logic_cells"], u["total"]["ff"],
                       u["total"]["dsp"], u["total"]["bram"], u["total"]["lutram"]) for u in res["units"]}
    assert [u["name"] for u in res["units"]] == ["", "a", "a.x", "b"]
    assert got == {"": (0, 2, 18, 5, 2, 1, 2), "a": (1, 16, 16, 5, 2, 0, 0), "a.x": (2, 0, 0, 1, 2, 0, 0),
                   "b": (1, 0, 0, 0, 0, 1, 2)}
    assert res["total"] == res["units"][0]["total"]
    with pytest.raises(RuntimeError, match="no module 'u'"):
        synth.parse_yosys_hierarchy(json.dumps(stat), "ecp5-85k", "u")


def test_parse_nextpnr_report():
    report = {
        "utilization": {"TRELLIS_COMB": {"used": 222, "available": 83640}, "MULT18X18D": {"used": 6, "available": 156}},
        "fmax": {"clk": {"achieved": 142.2, "constraint": 200.0}},
        "critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
            {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "a"}, "to": {"cell": "a"}},
            {"type": "routing", "delay": 2.0, "from": {"cell": "a"}, "to": {"cell": "m"}},
            {"type": "logic", "delay": 3.9, "from": {"cell": "m"}, "to": {"cell": "m"}},
            {"type": "routing", "delay": 0.6, "from": {"cell": "m"}, "to": {"cell": "b"}},
            {"type": "setup", "delay": 0.1, "from": {"cell": "b"}, "to": {"cell": "b"}}]}],
    }
    util, fmax, paths = synth.parse_nextpnr_report(json.dumps(report))
    assert util == {"TRELLIS_COMB": 222, "MULT18X18D": 6}
    assert fmax == {"clk": (142.2, 200.0)}
    assert paths == [{"from": "posedge clk", "to": "posedge clk", "delay_ns": 7.1, "logic_ns": 4.5,
                      "routing_ns": 2.6, "start": "a", "end": "b", "steps": 3}]


def test_ecp5_2x2_mac_array_place_only(cache):
    routed = synth.run("mac_array", 2, 2, "ecp5-85k", cache_dir=cache)
    res = synth.run("mac_array", 2, 2, "ecp5-85k", route=False, cache_dir=cache)
    assert routed["routed"] is True and res["routed"] is False
    assert res["dir"] != routed["dir"]                        # its own cache entry
    # placement alone packs the same cells; only the timing is an estimate
    for k in ("logic_cells", "ff", "dsp", "bram", "lutram"):
        assert res[k] == routed[k], k
    assert set(res["fmax_mhz"]) == {"clk"} and 20 < res["fmax_mhz"]["clk"] < 1000
    # the SDF written in the placing run carries nextpnr's own estimates: its longest path is
    # the one behind the logged Fmax, to the rounding of the log (0.01 MHz)
    (cp,) = res["critical_paths"]
    assert cp["from"] == cp["to"] == "posedge clk" and cp["steps"] >= 2
    _path_gives_fmax(cp, res["fmax_mhz"]["clk"])
    assert "placed, not routed: estimate" in synth.format_result(res)
    assert "estimate" not in synth.format_result(routed)


def test_parse_nextpnr_log_fmax():
    log = ("Info: Max frequency for clock 'core_clk': 12.50 MHz (FAIL at 200.00 MHz)\n"
           "Info: Max frequency for clock  'bus_clk': 250.00 MHz (PASS at 200.00 MHz)\n"
           "Info: Max delay posedge bus_clk  -> posedge core_clk: 2.12 ns\n"
           "Info: Max frequency for clock 'core_clk': 31.35 MHz (FAIL at 200.00 MHz)\n")
    assert synth.parse_nextpnr_log_fmax(log) == {"core_clk": (31.35, 200.0), "bus_clk": (250.0, 200.0)}


# Two clocks. clk: a -> 0.5 net -> lut -> 0.2 net -> b, and a -> carry chain c0 -> c1 -> b (longer);
# clk2: d -> 4.0 net -> e; a cross-clock path a -> 9.0 net -> e that no Fmax counts. As nextpnr
# writes them, SETUPHOLD's first triple is the setup time, the second the hold time.
SDF = r"""(DELAYFILE
  (SDFVERSION "3.0")
  (DESIGN "top")
  (TIMESCALE 1ps)
  (CELL
    (CELLTYPE "top")
    (INSTANCE )
    (DELAY
      (ABSOLUTE
        (INTERCONNECT a/Q lut/A (400:450:500) (400:450:500))
        (INTERCONNECT lut/F b/DI (0:100:200) (0:150:200))
        (INTERCONNECT a/Q c\$0/A (600:700:800) (600:700:800))
        (INTERCONNECT c\$0/FCO c\$1/FCI (0:0:0) (0:0:0))
        (INTERCONNECT c\$1/F b/DI (0:0:0) (0:0:0))
        (INTERCONNECT d/Q e/DI (4000:4000:4000) (4000:4000:4000))
        (INTERCONNECT a/Q e/M (9000:9000:9000) (9000:9000:9000))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE a)
    (DELAY (ABSOLUTE
        (IOPATH CLK Q (400:450:500) (400:450:500))
    ))
    (TIMINGCHECK
      (SETUPHOLD (posedge DI) (posedge CLK) (100:100:100) (0:0:0))
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE lut)
    (DELAY (ABSOLUTE
        (IOPATH A F (300:350:400) (300:350:400))
    ))
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE c\$0)
    (DELAY (ABSOLUTE
        (IOPATH A FCO (200:300:450) (200:300:440))
        (IOPATH A F (200:218:236) (200:218:236))
    ))
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE c\$1)
    (DELAY (ABSOLUTE
        (IOPATH FCI F (250:350:450) (250:350:450))
    ))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE b)
    (DELAY (ABSOLUTE
        (IOPATH CLK Q (400:450:500) (400:450:500))
    ))
    (TIMINGCHECK
      (SETUPHOLD (posedge DI) (posedge CLK) (250:275:300) (0:0:0))
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE d)
    (DELAY (ABSOLUTE
        (IOPATH (posedge CLK) Q (500:500:500) (500:500:500))
    ))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE e)
    (TIMINGCHECK
      (SETUPHOLD (posedge M) (posedge CLK) (500:500:500) (0:0:0))
      (SETUPHOLD (posedge DI) (posedge CLK) (1000:1000:1000) (0:0:0))
    )
  )
)
"""


def test_sdf_critical_paths():
    clocks = {"a": "clk", "b": "clk", "d": "clk2", "e": "clk2"}
    fmax, paths = synth.sdf_critical_paths(SDF, clocks)
    # clk: 0.5 clock-to-out + 0.8 net + 0.45 carry (A -> FCO, the larger of rise and fall)
    # + 0.45 (FCI -> F) + 0.3 setup = 2.5 ns; the LUT path is 0.5 + 0.5 + 0.4 + 0.2 + 0.3 = 1.9 ns
    # clk2: 0.5 + 4.0 + 1.0 (DI's setup) = 5.5 ns; the 10 ns from a (clk) to e/M (clk2) counts
    # for neither clock
    assert fmax == {"clk": 400.0, "clk2": 181.82}
    assert paths == [
        {"from": "posedge clk", "to": "posedge clk", "delay_ns": 2.5, "logic_ns": 1.7, "routing_ns": 0.8,
         "start": "a", "end": "b", "steps": 4},
        {"from": "posedge clk2", "to": "posedge clk2", "delay_ns": 5.5, "logic_ns": 1.5, "routing_ns": 4.0,
         "start": "d", "end": "e", "steps": 2}]
    # the escaped name c\$0 is nextpnr's c$0; a cell of no clock launches nothing
    fmax, paths = synth.sdf_critical_paths(SDF, {"a": "clk", "b": "clk"})
    assert fmax == {"clk": 400.0} and len(paths) == 1


def test_sdf_worst_path_per_unit():
    # the same SDF with b in unit u.v and e in unit u: each unit's worst endpoint, longest first
    sdf = SDF.replace("(INSTANCE b)", "(INSTANCE u.v.b)").replace(" b/", " u.v.b/")
    sdf = sdf.replace("(INSTANCE e)", "(INSTANCE u.e)").replace(" e/", " u.e/")
    clocks = {"a": "clk", "u.v.b": "clk", "d": "clk2", "u.e": "clk2"}
    fmax, paths = synth.sdf_critical_paths(sdf, clocks, units=["u", "u.v"])
    assert fmax == {"clk": 400.0, "clk2": 181.82}
    assert [p["worst_by_unit"] for p in paths] == [[{"unit": "u.v", "delay_ns": 2.5, "end": "u.v.b/DI"}],
                                                   [{"unit": "u", "delay_ns": 5.5, "end": "u.e/DI"}]]
    assert "worst_by_unit" not in synth.sdf_critical_paths(sdf, clocks)[1][0]


def test_module_paths_and_unit_of():
    verilog = ("module top(a);\nendmodule\nmodule \\top.core (b);\nendmodule\n"
               "module \\top.core.epilogue (c);\nendmodule\nmodule other(d);\nendmodule\n")
    units = synth.module_paths(verilog, "top")
    assert units == ["core", "core.epilogue"]
    assert synth.unit_of("core.epilogue.x_TRELLIS_FF_Q", units) == "core.epilogue"
    assert synth.unit_of("core.epiloguex.y", units) == "core"        # a prefix of a name is not a unit
    assert synth.unit_of("s_axis__tready_LUT4_Z", units) == ""


def test_placed_clocks():
    netlist = {"modules": {"top": {
        "ports": {"core_clk": {"direction": "input", "bits": [2]}},
        "netnames": {"core_clk": {"bits": [2]}, "$auto$x": {"bits": [2]}, "lsr_int": {"bits": [5]},
                     "q$wire_long_name": {"bits": [7]}, "q": {"bits": [7]}},
        "cells": {
            "ff$1": {"type": "TRELLIS_FF", "connections": {"CLK": [2], "DI": [3], "LSR": [5]}},
            "ram": {"type": "DP16KD", "connections": {"CLKA": [7], "CLKB": [7], "DOA0": [9]}},
            "lut": {"type": "TRELLIS_COMB", "connections": {"A": [2], "WCK": []}},
        }}}}
    assert synth.placed_clocks(json.dumps(netlist)) == {"ff$1": "core_clk", "ram": "q"}


def test_ecp5_seeds(cache):
    """Two placement seeds in parallel: each result is run()'s at that seed, and the spread is
    computed from them."""
    res = synth.run_seeds("mac_array", 2, 2, "ecp5-85k", [1, 2], jobs=2, cache_dir=cache)
    assert [r["config"]["seed"] for r in res["seeds"]] == [1, 2] and res["routed"] == 2
    f = sorted(r["fmax_mhz"]["clk"] for r in res["seeds"])
    assert res["fmax_mhz"]["clk"] == {"min": f[0], "median": round((f[0] + f[1]) / 2, 2), "max": f[1]}
    assert res["seeds"][0] == synth.run("mac_array", 2, 2, "ecp5-85k", cache_dir=cache)
    text = synth.format_seeds(res)
    assert "2 seeds, routed at 2 (routed)" in text and f"min {f[0]:.1f}" in text


def test_route_failure_lines(tmp_path):
    """A router that failed or was stopped: the utilisation from the log's last block, and one
    line saying why there are no routed figures."""
    log = ("Info: Device utilisation:\nInfo: \t          TRELLIS_COMB:  1000/ 83640     1%\n"
           "Info: Device utilisation:\nInfo: \t          TRELLIS_COMB:  1200/ 83640     1%\n"
           "Info: \t          MULT18X18D:     7/   156     4%\nInfo: Routing..\n"
           "ERROR: Failed to route arc 3 of net 'x'.\n")
    assert synth.parse_nextpnr_log_utilisation(log) == {"TRELLIS_COMB": 1200, "MULT18X18D": 7}
    (tmp_path / "nextpnr.log").write_text(log)
    assert synth._route_failure(None, 60, tmp_path).startswith("nextpnr did not finish within 60 s")
    assert synth._route_failure(1, 60, tmp_path) == "nextpnr-ecp5: ERROR: Failed to route arc 3 of net 'x'."
    assert synth._route_failure(0, 60, tmp_path) is None


def test_parse_yosys_stat():
    text = json.dumps({"design": {"num_cells_by_type": {"LUT4": "8", "CCU2C": 88}}})
    assert synth.parse_yosys_stat(text) == {"LUT4": 8, "CCU2C": 88}


@pytest.mark.parametrize("args, field", [
    (["--rows", "8", "--cols", "8", "--target", "xc7"], "target"),
    (["--rows", "0", "--cols", "8", "--target", "generic"], "rows"),
    (["--rows", "8", "--cols", "8", "--target", "generic", "--unit", "core"], "unit"),
    (["--rows", "17", "--cols", "8", "--target", "generic"], "rows"),
    (["--rows", "65", "--cols", "1", "--target", "generic", "--unit", "requantizer"], "rows"),
    (["--rows", "8", "--cols", "8", "--target", "generic", "--set", "depth=3"], "top_params"),
    (["--rows", "8", "--cols", "8", "--target", "generic", "--set", "act_depth=x"], "--set"),
    (["--rows", "2", "--cols", "2", "--target", "generic", "--unit", "mac_array", "--no-route"], "route"),
    (["--rows", "2", "--cols", "2", "--target", "ecp5-85k", "--seeds", "0"], "argument --seeds"),
    (["--rows", "2", "--cols", "2", "--target", "ecp5-85k", "--timeout", "x"], "argument --timeout"),
])
def test_bad_arguments_one_line(args, field):
    p = subprocess.run([str(INTDEPLOY), "synth", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"intdeploy: error: {field}: "), p.stderr


@pytest.mark.regress
def test_ecp5_8x8_mac_array():
    res = synth.run("mac_array", 8, 8, "ecp5-85k")
    assert res["dsp"] == 64 + 8
    assert res["ff"] == mac_array_flip_flops(8, 8)
    assert res["fmax_mhz"]["clk"] > 50


@pytest.mark.regress
def test_ecp5_4x4_top():
    # placed only: nextpnr's router does not converge on the top (docs/perf/targets.md)
    res = synth.run("top", 4, 4, "ecp5-85k", route=False, top_params={"threshold_channels": 16})
    assert res["dsp"] >= 4 * 4 + 4                       # the MAC array's, plus the epilogue's
    assert res["routed"] is False and set(res["fmax_mhz"]) >= {"core_clk", "bus_clk"}
    assert {p["from"] for p in res["critical_paths"]} >= {"posedge core_clk", "posedge bus_clk"}
    core = next(p for p in res["critical_paths"] if p["from"] == "posedge core_clk")
    _path_gives_fmax(core, res["fmax_mhz"]["core_clk"])
    assert res["bram"] > 0


def test_fit_verdict_names_what_exceeds_the_device():
    """The fit line compares each figure with the device's (data-sheet) capacity; a design over
    any of them is called out with every figure that does not fit."""
    res = {"config": {"target": "ice40-up5k"}, "logic_cells": 18517, "dsp": 8, "bram": 31}
    assert synth.fit_verdict(res) == "does NOT fit ice40-up5k: logic cells 18517 > 5280, BRAM 31 > 30"
    res = {"config": {"target": "ecp5-85k"}, "logic_cells": 41820, "dsp": 156, "bram": 0}
    assert synth.fit_verdict(res) == "fits ecp5-85k: logic cells 41820/83640 (50 %), DSP 156/156 (100 %), BRAM 0/208 (0 %)"
    assert synth.fit_verdict({"config": {"target": "generic"}}) is None


def test_parse_transistors():
    """Yosys writes the estimate as a string, with '+' when cells outside its table were left out."""
    assert synth.parse_transistors(json.dumps({"design": {"estimated_num_transistors": "1637274+"}})) == (1637274, True)
    assert synth.parse_transistors(json.dumps({"modules": {"\\m": {"estimated_num_transistors": "812"}}})) == (812, False)


def test_memory_shapes_of_the_generic_flow():
    """The generic target keeps memories as $mem_v2 cells and reports their shapes: counted per
    (words, bits) from Yosys' JSON (parameters are binary strings)."""
    cell = lambda size, width: {"type": "$mem_v2", "parameters": {"SIZE": format(size, "b"),  # noqa: E731
                                                                  "WIDTH": format(width, "b")}}
    text = json.dumps({"modules": {"top": {"cells": {"a": cell(2048, 64), "b": cell(16, 32), "c": cell(16, 32),
                                                     "d": {"type": "$lut", "parameters": {}}}}}})
    assert synth.memory_shapes(text) == {(2048, 64): 1, (16, 32): 2}
    assert "memory_map" not in synth._yosys_script("generic", "top") and "-run begin:fine" in \
        synth._yosys_script("generic", "top")
