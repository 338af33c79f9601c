"""Performance benchmarks of the accelerator: ``intdeploy perf`` (run by ``make bench``).

The figures are data, not pass/fail, but every RTL run in them is also checked bit for bit
against golden (a benchmark of wrong results would be worthless):

* **MAC utilisation** measured on the RTL top (Verilator, :class:`intdeploy.sim.rtl_engine.RtlEngine`)
  through the host driver (:mod:`intdeploy.host.driver`): per layer of the demo network (the digits network
  of :mod:`intdeploy.golden.digits`) and for a sweep of GEMMs ``(M, N, K)``. For each:

  - ``ideal``: useful MACs / (R * C * MAC steps), the bound that padding K to a multiple of C and
    N to a multiple of R leaves (1.0 when the dimensions are multiples of the array);
  - ``steady``: useful MACs / (R * C * busy cycles), busy cycles being the cycles with a RUN in
    progress (STATUS ``busy_cycles``): the array while it computes, fill and drain included;
  - ``end_to_end``: useful MACs / (R * C * cycles) over the layer's whole packet stream
    (STATUS ``cycles`` around it): weight, activation and parameter loading included;
  - ``io_bound``: useful MACs / (R * C * max(busy cycles, input cycles)), what perfect overlap of
    every load with compute could reach: the command path takes one 32-bit word per core cycle
    (two in buffer entries on a 64-bit or wider bus: :func:`intdeploy.sim.accel_model.input_cycles`), so a
    layer can never take fewer cycles than its input cycles.

* **Simulation speed**: core cycles per second of wall time, Verilator vs Icarus, the stream
  player vs the cocotbext-axi bench, on the digits network's program and a GEMM
  (:func:`sim_speed`; the simulators are built before timing).
* **Golden throughput**: images per second of :class:`intdeploy.golden.network.IntegerDeployable`
  (``intdeploy bench``).
* **Synthesis sweep**: :func:`intdeploy.tools.synth.run` on ECP5-85k for the MAC array alone at 4x4, 8x8 and
  16x16, placed and routed, and the whole top at 8x8, placed and routed at two seeds
  (:data:`TOP_SYNTH_SEEDS`, 100 MHz target, each nextpnr stopped after :data:`TOP_ROUTE_MINUTES`):
  a seed whose router fails or is stopped keeps nextpnr's post-placement estimate, marked
  "placed, not routed: estimate" in the tables, with the reason
  (cached in ``build/synth/``; the first run of a MAC array takes minutes, the top's up to
  two hours; a tool failure is recorded as the result); then the 8x8 top per unit
  (:func:`intdeploy.tools.synth.breakdown`, Yosys with the hierarchy kept: where the logic, flip-flops,
  DSPs and block RAMs go).

Results go to ``--out`` (default ``docs/perf/``): ``perf.json`` (everything), ``README.md``
(tables), ``utilisation.png`` and ``synth.png`` (matplotlib); the performance table of the
repository's README.md (between ``<!-- perf:begin -->`` and ``<!-- perf:end -->``) is refreshed.
"""

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import time

import numpy as np

from intdeploy.golden import digits, model_file
from intdeploy.golden.importers.from_tflite import import_tflite, litert_outputs
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.mac_array import linear
from intdeploy.golden.requantizer import RequantParams, requantize
from intdeploy.host import protocol as P
from intdeploy.host.driver import Driver
from intdeploy.host.job import GemmJob
from intdeploy.host.engines import Recorder
from intdeploy.host.network import run_layers, run_network
from intdeploy.sim.accel_model import ModelEngine, response_mismatch
from intdeploy.sim.rtl_engine import RtlEngine
from intdeploy.sim.runner import SIMULATORS
from intdeploy.tools import synth
from intdeploy.tools.bench import golden_throughput

__all__ = ["ARRAY", "GEMMS", "SYNTH_SIZES", "TOP_SYNTH_SIZES", "TOP_SYNTH_PARAMS", "TOP_SYNTH_SEEDS", "TOP_ROUTE_MINUTES", "gemm_job", "run_gemm", "network_layers", "sim_speed", "SPEED_IMAGES",
           "synth_sweep", "synth_units", "render_markdown", "add_parser", "main"]

ROOT = Path(__file__).resolve().parent.parent
#: The benchmarked accelerator: 8x8 array, default buffers and 64-bit bus.
ARRAY = dict(rows=8, cols=8)
#: GEMM sweep (M, N, K): multiples of the 8x8 array, then ragged shapes.
GEMMS = [(64, 8, 8), (64, 8, 64), (64, 64, 64), (256, 64, 64), (512, 16, 128), (100, 10, 30),
         (49, 20, 100)]
#: Array sizes of the synthesis sweep (the MAC array; the top at the sizes that fit the 85k).
SYNTH_SIZES = (4, 8, 16)
#: The top at 8x8 only: it takes 20-25 minutes (Yosys 3-4, nextpnr's placement 18-19; up to an
#: hour on a loaded machine), and a 4x4 top is hardly smaller, its logic being what surrounds
#: the array (epilogue, parameter cache, buffers: 38381 logic cells at 4x4 with 16 threshold
#: channels, against 43097 at 8x8), so it would double the sweep for little information.
TOP_SYNTH_SIZES = (8,)
#: The top is placed and routed at these placement seeds, two nextpnr runs at a time, each stopped
#: after :data:`TOP_ROUTE_MINUTES`; a seed whose router fails or is stopped keeps its labelled
#: post-placement estimate (:func:`intdeploy.tools.synth.run_seeds`).
TOP_SYNTH_SEEDS = (1, 2)
TOP_ROUTE_MINUTES = 90
#: nextpnr's timing target for the top (the clock the must-targets ask for).
TOP_FREQ_MHZ = 100.0
TOP_SYNTH_PARAMS = {}
#: The RTL runs' bench settings: equal clocks, no idle, no backpressure, a generous watchdog.
BENCH = dict(bus_period=10, core_period=10, watchdog=2_000_000)


def _ratio(num, den):
    return round(num / den, 4) if den else None


def gemm_job(M, N, K, *, seed=0):
    """A :class:`intdeploy.host.driver.GemmJob` of random int8 data: ``x (M, K)`` int8 with zero point 3,
    ``w (N, K)`` int8 with per-row zero points, a per-tensor requantizer (half-even) to int8."""
    rng = np.random.default_rng(seed)
    rq = RequantParams(mult=1 << 12, shift=20, bias=int(rng.integers(-1000, 1000)), zero_point=-2,
                       lo=-128, hi=127, rounding="half_even")
    return GemmJob(name=f"gemm{M}x{N}x{K}", x=rng.integers(-128, 128, (M, K)), w=rng.integers(-128, 128, (N, K)),
                   x_signed=True, x_zero_point=3, w_zero_point=rng.integers(-5, 6, N), requant=rq,
                   useful_macs=M * N * K)


def _golden_gemm(job):
    return requantize(linear(job.x, job.w, job.x_zero_point, job.w_zero_point), job.requant)


def _figures(R, C, useful, steps, busy, cycles, words, in_cycles):
    """The utilisation figures of one layer or GEMM (see the module docstring)."""
    rc = R * C
    return {
        "useful_macs": int(useful), "mac_steps": int(steps), "busy_cycles": int(busy), "cycles": int(cycles),
        "words_sent": int(words), "input_cycles": int(in_cycles),
        "ideal": _ratio(useful, rc * steps), "steady": _ratio(useful, rc * busy),
        "end_to_end": _ratio(useful, rc * cycles), "io_bound": _ratio(useful, rc * max(busy, in_cycles)),
    }


def run_gemm(engine, job):
    """Run ``job`` on ``engine`` between two STATUS packets; returns its figures.

    Raises AssertionError if the results differ from golden (``linear`` then ``requantize``) in
    any element, or if STATUS's ``mac_cycles`` differ from the program's MAC steps.
    """
    info = P.decode_info(engine.execute([P.info()])[0].payload)
    prog = Driver(info).compile_gemm(job)
    t0 = time.perf_counter()
    resp = engine.execute([P.status()] + prog.packets + [P.status()])
    wall = time.perf_counter() - t0
    got = prog.decode(resp[1:-1])
    np.testing.assert_array_equal(got, _golden_gemm(job), err_msg=f"{job.name}: RTL != golden")
    a, b = (P.decode_status(r.payload) for r in (resp[0], resp[-1]))
    assert b["mac_cycles"] - a["mac_cycles"] == prog.mac_steps, (job.name, a, b, prog.mac_steps)
    M, K = job.x.shape
    res = {"name": job.name, "M": int(M), "N": int(job.w.shape[0]), "K": int(K), "runs": len(prog.runs),
           "wall_seconds": round(wall, 2)}
    res.update(_figures(info.rows, info.cols, job.useful_macs, prog.mac_steps,
                        b["busy_cycles"] - a["busy_cycles"], b["cycles"] - a["cycles"], prog.words_sent,
                        prog.input_cycles))
    return res


def network_layers(engine, images=45, fuse=False, model=None, x=None):
    """The demo network (digits) on ``engine`` for the first ``images`` test images, or ``model``
    on the inputs ``x``: figures per layer (per program with ``fuse``:
    :meth:`intdeploy.host.driver.Driver.plan`) and in total; raises AssertionError unless every
    tensor returned equals golden's (with ``fuse``, the fused-away ones are not returned; the
    network output always is)."""
    if model is None:
        model = model_file.load(digits.MODEL_FILE)
        x = digits.load_split()[2][:images]
    images = len(x)
    out, stats = run_network(model, x, engine, fuse=fuse)
    golden = IntegerDeployable(model).run(x, trace=True)
    assert set(model.outputs) <= set(out), f"demo network: outputs {model.outputs} not all returned"
    for name, a in out.items():
        np.testing.assert_array_equal(a, golden[name], err_msg=f"demo network layer {name}: RTL != golden")
    R, C = stats["info"].rows, stats["info"].cols
    layers = []
    for s in stats["layers"]:
        if s.host:
            continue
        d = {"name": s.name, "kind": s.kind, "runs": s.runs}
        d.update(_figures(R, C, s.useful_macs, s.mac_steps, s.busy_cycles, s.cycles, s.words_sent, s.input_cycles))
        layers.append(d)
    tot = {k: sum(d[k] for d in layers) for k in ("useful_macs", "mac_steps", "busy_cycles", "cycles",
                                                     "words_sent", "input_cycles")}
    total = {"name": "total", "kind": "", "runs": sum(d["runs"] for d in layers)}
    total.update(_figures(R, C, tot["useful_macs"], tot["mac_steps"], tot["busy_cycles"], tot["cycles"],
                          tot["words_sent"], tot["input_cycles"]))
    # Busy cycles of all layers together overlap nothing, so the io bound of the total is the sum
    # of the layers' bounds, not max over the sums.
    total["io_bound"] = _ratio(tot["useful_macs"], R * C * sum(max(d["busy_cycles"], d["input_cycles"])
                                                                 for d in layers))
    return {"model": model.name, "images": int(images), "fused": bool(fuse), "layers": layers, "total": total}


#: The simulation-speed workloads: the demo network's program for this many images (Verilator),
#: and the GEMM given to :func:`sim_speed` (both simulators, both paths).
SPEED_IMAGES = 45


#: The MLPerf Tiny reference models (int8 TFLite) the ``mlperf`` part runs: read from the shared
#: folder beside the checkout (INTDEPLOY_MLPERF_TINY overrides it), never copied into the project.
MLPERF_DIR = Path(os.environ.get("INTDEPLOY_MLPERF_TINY", ROOT.parent / "shared" / "models" / "mlperf-tiny"))
MLPERF_MODELS = (("ResNet-8 (ic01)", "pretrainedResnet_quant.tflite"), ("DS-CNN (kws01)", "kws_ref_model.tflite"),
                 ("FC autoencoder (ad01)", "ad01_int8.tflite"))


def mlperf_tiny(engine, inputs=20, seed=0, say=print):
    """The MLPerf Tiny reference models on ``engine`` (the RTL), ``inputs`` random inputs each in
    the input's declared range: imported (:func:`intdeploy.golden.importers.from_tflite.import_tflite`,
    the requantization proof), golden's final outputs against the LiteRT interpreter's reference
    kernels, then every layer on the engine against golden (:func:`network_layers`), unfused and
    fused. Raises AssertionError on any difference."""
    if not MLPERF_DIR.is_dir():
        return {"skipped": f"{MLPERF_DIR} not found (the shared MLPerf Tiny models; INTDEPLOY_MLPERF_TINY "
                           f"names another folder)"}
    res = {"inputs": inputs, "seed": seed, "models": []}
    for label, fname in MLPERF_MODELS:
        say(f"MLPerf Tiny {label}: import, LiteRT vs golden, RTL ({inputs} inputs) ...")
        model, proof, source = import_tflite(MLPERF_DIR / fname, name=Path(fname).stem)
        x = np.random.default_rng(seed).integers(model.input.lo, model.input.hi + 1, (inputs,) + model.input.shape)
        want = litert_outputs(source, model, x)
        got = IntegerDeployable(model).run(x)
        assert np.array_equal(want, got), f"{label}: golden differs from LiteRT on {np.count_nonzero(want != got)} elements"
        entry = {"network": label, "file": fname, "layers_in_file": len(model.layers),
                 "proof_values": proof.checked, "litert_elements_equal": int(want.size),
                 "host_ops": [h[1] for h in source.host_ops]}
        for key, fuse in (("unfused", False), ("fused", True)):
            net = network_layers(engine, fuse=fuse, model=model, x=x)
            net["cycles_per_inference"] = round(net["total"]["cycles"] / inputs)
            entry[key] = net
        res["models"].append(entry)
    return res


def _network_program(info, images=SPEED_IMAGES):
    """The digits network's packets for ``images`` test images, as ``intdeploy run`` sends them."""
    model = model_file.load(digits.MODEL_FILE)
    ref = IntegerDeployable(model).run(digits.load_split()[2][:images], trace=True)
    rec = Recorder(ModelEngine(info))
    run_layers(model, ref, rec)
    return rec.packets


def _speed(eng, packets, name):
    """Core cycles per second of ``packets`` on ``eng``: the first run (build), the fixed cost
    of a run (INFO alone), then the program; the marginal rate leaves the fixed cost out."""
    t0 = time.perf_counter()
    eng.execute([P.info()])
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    eng.execute([P.info()])
    fixed, fixed_cycles = time.perf_counter() - t0, eng.cycles
    t0 = time.perf_counter()
    responses = eng.execute(packets)
    wall = time.perf_counter() - t0
    model = ModelEngine(eng.info).execute(packets)
    bad = [k for k, (e, a) in enumerate(zip(model, responses)) if response_mismatch(e, a)]
    if bad or len(model) != len(responses):
        raise AssertionError(f"{name} on {eng.sim}: response {bad[0] if bad else len(responses)} differs from the "
                             f"executable model's")
    return {"program": name, "packets": len(packets), "core_cycles": eng.cycles, "wall_seconds": round(wall, 3),
            "cycles_per_second": round(eng.cycles / wall, 1), "run_overhead_seconds": round(fixed, 2),
            "marginal_cycles_per_second": round((eng.cycles - fixed_cycles) / max(wall - fixed, 1e-3), 1),
            "first_run_seconds": round(first, 1)}


def sim_speed(params, job, work_dir, paths=("player", "cocotbext-axi")):
    """Core cycles per wall second of the RTL top, side by side: the native path (the stream
    player, :mod:`intdeploy.sim.player`) and the cocotbext-axi bench, on Verilator and Icarus.
    Verilator runs the demo network's program (:data:`SPEED_IMAGES` images) on both paths; both
    simulators run the GEMM ``job``'s program on both paths. Every response is checked against the
    executable model's (:func:`run_gemm` for the GEMM)."""
    info = P.Info.of(params)
    net = _network_program(info)
    gemm = Driver(info).compile_gemm(job).packets
    out = {}
    for sim in SIMULATORS:
        for path in paths:
            eng = RtlEngine(sim, params, work_dir=Path(work_dir) / f"speed-{sim}-{path}",
                            native=path == "player", **BENCH)
            rows = [("gemm " + job.name, gemm)] + ([("digits network, %d images" % SPEED_IMAGES, net)]
                                                   if sim == "verilator" else [])
            for name, packets in rows:
                out[f"{sim} {path}: {name}"] = dict(_speed(eng, packets, name), simulator=sim, path=path)
    return out


def synth_units(*, log=None):
    """:func:`intdeploy.tools.synth.breakdown` of the top at the first of :data:`TOP_SYNTH_SIZES` on ECP5-85k:
    each unit's logic cells, FF, DSP and block RAM (Yosys with the hierarchy kept, a few
    minutes; cached in ``build/synth/``); a tool failure is recorded as the result."""
    n = TOP_SYNTH_SIZES[0]
    try:
        res = synth.breakdown("top", n, n, "ecp5-85k", log=log, top_params=TOP_SYNTH_PARAMS)
    except RuntimeError as e:
        return _tool_error({"unit": "top", "rows": n, "cols": n, "target": "ecp5-85k"}, e)
    res.pop("dir", None)
    return res


def _tool_error(config, e):
    """A synthesis result that is a tool failure: the configuration and the tool's error line."""
    return {"config": config, "error": str(e).split(": ", 1)[-1]}


def synth_sweep(*, log=None):
    """:func:`intdeploy.tools.synth.run` on ECP5-85k: the MAC array at :data:`SYNTH_SIZES` (placed and
    routed); the top at :data:`TOP_SYNTH_SIZES` with :data:`TOP_SYNTH_PARAMS`, placed and routed at
    each of :data:`TOP_SYNTH_SEEDS` (:func:`intdeploy.tools.synth.run_seeds`; the result holds every
    seed and the min / median / max Fmax). Cached in ``build/synth/``."""
    out = []
    for n in SYNTH_SIZES:
        try:
            res = synth.run("mac_array", n, n, "ecp5-85k", log=log)
        except RuntimeError as e:          # a tool failure is a result too (Yosys 0.70 failed at 16x16)
            out.append(_tool_error({"unit": "mac_array", "rows": n, "cols": n, "target": "ecp5-85k"}, e))
            continue
        res.pop("dir", None)
        out.append(res)
    for n in TOP_SYNTH_SIZES:
        config = {"unit": "top", "rows": n, "cols": n, "target": "ecp5-85k"}
        if TOP_SYNTH_PARAMS:
            config["top_params"] = dict(sorted(TOP_SYNTH_PARAMS.items()))
        try:
            res = synth.run_seeds("top", n, n, "ecp5-85k", TOP_SYNTH_SEEDS, jobs=2, log=log, freq=TOP_FREQ_MHZ,
                                  top_params=TOP_SYNTH_PARAMS or None, timeout=TOP_ROUTE_MINUTES * 60)
        except RuntimeError as e:
            out.append(_tool_error(config, e))
            continue
        first = dict(res["seeds"][0])
        first.pop("dir", None)
        first["seeds"] = [{"seed": r["config"]["seed"], "routed": r.get("routed", False),
                           "fmax_mhz": r["fmax_mhz"], "route_error": r.get("route_error")} for r in res["seeds"]]
        first["fmax_spread_mhz"] = res["fmax_mhz"]
        first["routed_seeds"] = res["routed"]
        out.append(first)
    return out


# --- report ---------------------------------------------------------------------------------------

def _pct(v):
    return "-" if v is None else f"{100 * v:.1f} %"


def _table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _util_rows(items, label):
    return [[label(d), d["useful_macs"], d["mac_steps"], d["busy_cycles"], d["words_sent"], d.get("input_cycles", ""),
             d["cycles"], _pct(d["ideal"]), _pct(d["steady"]), _pct(d["end_to_end"]), _pct(d["io_bound"])]
            for d in items]


_UTIL_HEAD = ["", "useful MACs", "MAC steps", "busy cycles", "words sent", "input cycles", "cycles", "ideal",
              "steady", "end to end", "I/O bound"]


def _unit(c):
    params = c.get("top_params")
    return c["unit"] + (" (" + ", ".join(f"{k} {v}" for k, v in params.items()) + ")" if params else "")


def _seeds_note(s):
    """`` (seeds 1, 2: routed at k; core_clk min/median/max ...)`` of a multi-seed result."""
    if not s.get("seeds"):
        return ""
    spread = "; ".join(f"{k} {v['min']:.1f}/{v['median']:.1f}/{v['max']:.1f}"
                       for k, v in sorted(s.get("fmax_spread_mhz", {}).items()))
    why = {r["route_error"] for r in s["seeds"] if r.get("route_error")}
    return (f" (seeds {', '.join(str(r['seed']) for r in s['seeds'])}: routed at {s['routed_seeds']}"
            + (f"; min/median/max {spread}" if spread else "") + (f"; not routed: {sorted(why)[0]}" if why else "")
            + ")")


def summary_table(res):
    """The short table of README.md."""
    rows = []
    net = res.get("network")
    if net:
        t = net["total"]
        rows.append(["MAC utilisation, demo network end to end (steady)",
                     f"{_pct(t['end_to_end'])} ({_pct(t['steady'])})"])
    fused = res.get("network_fused")
    if fused:
        t = fused["total"]
        rows.append(["MAC utilisation, demo network with fusion (`--fuse`) end to end (steady)",
                     f"{_pct(t['end_to_end'])} ({_pct(t['steady'])})"])
    for m in (res.get("mlperf_tiny") or {}).get("models", []):
        u, f = m["unfused"], m["fused"]
        rows.append([f"MLPerf Tiny {m['network']}, RTL, per inference (fused)",
                     f"{u['cycles_per_inference']} cycles, {_pct(u['total']['end_to_end'])} MAC utilisation "
                     f"({f['cycles_per_inference']}, {_pct(f['total']['end_to_end'])})"])
    if res.get("gemms"):
        best = max(res["gemms"], key=lambda d: d["steady"] or 0)
        rows.append([f"MAC utilisation, GEMM {best['M']}x{best['N']}x{best['K']} steady (end to end)",
                     f"{_pct(best['steady'])} ({_pct(best['end_to_end'])})"])
    for s in res.get("synth", []):
        c = s["config"]
        if "error" in s or (c["unit"] == "mac_array" and c["rows"] != 8):
            continue
        f = ", ".join(f"{k} {v:.0f} MHz" for k, v in sorted(s["fmax_mhz"].items())) or "not placed"
        if s["fmax_mhz"] and not s.get("routed", True):
            f += " (placed, not routed: estimate)"
        f += _seeds_note(s)
        rows.append([f"ECP5-85k {_unit(c)} {c['rows']}x{c['cols']}", f"{f}; {s['logic_cells_per_mac']} cells, "
                     f"{s['dsp_per_mac']} DSP, {s['ff_per_mac']} FF per MAC"])
    for key, v in (res.get("sim_speed") or {}).items():
        rows.append([f"RTL simulation (8x8 top), {key}", f"{v['cycles_per_second']:.0f} core cycles/s "
                     f"({v.get('marginal_cycles_per_second', 0):.0f} without the per-run start-up)"])
    g = res.get("golden")
    if g:
        rows.append(["golden model", f"{g['images_per_second']:.0f} images/s"])
    return _table(["figure", "value"], rows)


def _network_table(net):
    """The per-layer (per-program) utilisation table of a :func:`network_layers` result."""
    return _table(_UTIL_HEAD, _util_rows(net["layers"] + [net["total"]],
                                         lambda d: f"{d['name']} ({d['kind']})" if d["kind"] else "total"))


def render_markdown(res):
    """docs/perf/README.md from the results."""
    a = res["array"]
    out = ["# Performance", "",
           f"Written by `intdeploy perf` (`make bench`) on {res['machine']}; every RTL run below is also",
           "checked element by element against golden. Definitions of the columns: `sim/perf.py`.",
           "Which targets are met and what limits the others: [targets.md](targets.md).", "",
           summary_table(res), ""]
    net, fused = res.get("network"), res.get("network_fused")
    if net:
        out += [f"## MAC utilisation: demo network ({net['model']}, {net['images']} images, "
                f"{a['rows']}x{a['cols']} array, RTL on Verilator)", "", _network_table(net),
                "", "![utilisation per layer](utilisation.png)", ""]
    if fused:
        out += [f"## MAC utilisation: demo network with fusion ({fused['images']} images, add and pooling layers in "
                f"the epilogue of the layer before them: docs/driver.md, \"Fusion\")", "", _network_table(fused), ""]
    ml = res.get("mlperf_tiny")
    if ml and ml.get("skipped"):
        out += ["## MLPerf Tiny reference models", "", f"Not run: {ml['skipped']}.", ""]
    elif ml:
        out += ["## MLPerf Tiny reference models on the RTL", "",
                f"The int8 TFLite reference models (`intdeploy import`), {ml['inputs']} random inputs each in the "
                f"input's declared range (seed {ml['seed']}), on the {a['rows']}x{a['cols']} top under Verilator. "
                f"Golden's final outputs equal the LiteRT interpreter's reference kernels element by element, and "
                f"every layer on the RTL equals golden. A depthwise layer runs as one GEMM per group of R output "
                f"channels; its useful MACs count KH*KW per output. Host layers (flatten, softmax) are not listed.",
                ""]
        for m in ml["models"]:
            for key, label in (("unfused", "layer by layer"), ("fused", "fused (`--fuse`)")):
                net = m[key]
                out += [f"### {m['network']}, {label}: {net['cycles_per_inference']} cycles per inference", "",
                        _network_table(net), ""]
            out += [f"LiteRT vs golden: {m['litert_elements_equal']} of {m['litert_elements_equal']} output "
                    f"elements equal; requantization proof: {m['proof_values']} values; host operators: "
                    f"{', '.join(m['host_ops']) or 'none'}.", ""]
    if res.get("gemms"):
        out += [f"## MAC utilisation: GEMM sweep (M, N, K) on the {a['rows']}x{a['cols']} array", "",
                _table(_UTIL_HEAD, _util_rows(res["gemms"], lambda d: f"{d['M']}x{d['N']}x{d['K']}")), ""]
    if res.get("sim_speed"):
        out += ["## RTL simulation speed", "",
                "Each program on each simulator, on both paths: `player` (the stream player and recorder "
                "in Verilog around the top, `sim/player.py`: no Python per beat or cycle) and "
                "`cocotbext-axi` (the cocotb bench `sim/tb_top.py` with cocotbext-axi drivers, Python per "
                "beat). The fixed cost of a run (simulator start, reset, one INFO packet) is measured "
                "separately; the marginal rate leaves it out. Every response is checked against the "
                "executable model.", "",
                _table(["simulator", "path", "program", "core cycles", "wall s", "cycles/s", "fixed s per run",
                        "marginal cycles/s", "first run s (incl. build)"],
                       [[v.get("simulator", k), v.get("path", "cocotbext-axi"), v.get("program", v.get("gemm")),
                         v["core_cycles"], v["wall_seconds"], v["cycles_per_second"],
                         v.get("run_overhead_seconds", "-"), v.get("marginal_cycles_per_second", "-"),
                         v["first_run_seconds"]] for k, v in res["sim_speed"].items()]), ""]
    if res.get("golden"):
        g = res["golden"]
        out += ["## Golden model", "", f"{g['images_per_second']:.0f} images/s ({g['images']} images, best of "
                f"{g['runs']} runs, numpy {g['numpy']})", ""]
    if res.get("synth"):
        rows = []
        for s in res["synth"]:
            c = s["config"]
            if "error" in s:
                rows.append([_unit(c), f"{c['rows']}x{c['cols']}"] + ["-"] * 7 + [f"tool error: {s['error']}"])
                continue
            paths = "; ".join(f"{p['from']}: {p['delay_ns']} ns (logic {p['logic_ns']}, routing "
                              f"{p['routing_ns']}; {p['start']} -> {p['end']})" for p in s["critical_paths"])
            if s.get("place_error"):
                paths = f"not placed: {s['place_error']} (Yosys figures)"
            fmax = ", ".join(f"{k} {v:.1f}" for k, v in sorted(s["fmax_mhz"].items()))
            if fmax and not s.get("routed", True):
                fmax += " (placed, not routed: estimate)"
            fmax += _seeds_note(s)
            rows.append([_unit(c), f"{c['rows']}x{c['cols']}", s["logic_cells"], s["logic_cells_per_mac"],
                         s["ff"], s["dsp"], s["dsp_per_mac"], s["bram"], fmax, paths])
        out += ["## Synthesis sweep (ECP5-85k, Yosys + nextpnr out of context, 200 MHz target)", "",
                _table(["unit", "array", "logic cells", "per MAC", "FF", "DSP", "DSP/MAC", "BRAM", "Fmax MHz",
                        "critical path"], rows), "", "![Fmax and cells per MAC](synth.png)", ""]
    if res.get("synth_units"):
        u = res["synth_units"]
        c = u["config"]
        out += [f"## Where the logic goes ({_unit(c)} {c['rows']}x{c['cols']}, ECP5-85k, per unit)", "",
                "`intdeploy synth --breakdown`: Yosys `synth_ecp5 -noflatten`, so every cell belongs to "
                "one unit; no optimisation crosses a unit's boundary, so the total is above the "
                "flattened figures of the sweep. Each unit with its submodules.", ""]
        if "error" in u:
            out += [f"tool error: {u['error']}", ""]
        else:
            total = u["total"]["logic_cells"] or 1
            rows = [["&nbsp;&nbsp;" * x["depth"] + (x["name"] or "(whole design)"), x["total"]["logic_cells"],
                     f"{100 * x['total']['logic_cells'] / total:.1f}", x["total"]["ff"], x["total"]["dsp"],
                     x["total"]["bram"], x["total"]["lutram"]] for x in u["units"]]
            out += [_table(["unit", "logic cells", "% of logic", "FF", "DSP", "BRAM", "LUT-RAM"], rows), ""]
    return "\n".join(out)


def _plots(res, out):
    """Write the plots ``res`` has figures for; returns their file names."""
    written = []
    import matplotlib  # optional dependency (dev extra: plots)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional dependency (dev extra: plots)
    net = res.get("network")
    if net:
        layers = net["layers"]
        x = np.arange(len(layers))
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for j, (key, label) in enumerate([("ideal", "ideal (padding)"), ("steady", "steady state"),
                                          ("io_bound", "I/O bound"), ("end_to_end", "end to end")]):
            ax.bar(x + (j - 1.5) * 0.2, [100 * (d[key] or 0) for d in layers], 0.2, label=label)
        ax.set_xticks(x, [d["name"] for d in layers])
        ax.set_ylabel("MAC utilisation (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"{net['model']} on the {res['array']['rows']}x{res['array']['cols']} array (RTL)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "utilisation.png", dpi=100)
        plt.close(fig)
        written.append("utilisation.png")
    if res.get("synth"):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
        name = lambda s: f"{s['config']['rows']}x{s['config']['cols']}"
        for unit, mark in (("mac_array", "o-"), ("top", "s-")):
            # cells: every size with figures (a design that did not place has Yosys' figures,
            # annotated); Fmax: the placed ones
            cells = sorted(((s["macs"], s) for s in res["synth"]
                            if s["config"]["unit"] == unit and "logic_cells_per_mac" in s), key=lambda t: t[0])
            pts = [(k, s) for k, s in cells if s.get("fmax_mhz")]
            if not cells:
                continue
            label = unit if all(s.get("routed", True) for _, s in pts) else f"{unit} (placement estimate)"
            if pts:
                a1.plot([name(s) for _, s in pts],
                        [min(s["fmax_mhz"].get(k, 1e9) for k in ("clk", "core_clk") if k in s["fmax_mhz"])
                         for _, s in pts], mark, label=label)
            a2.plot([name(s) for _, s in cells], [s["logic_cells_per_mac"] for _, s in cells], mark, label=label)
            for _, s in cells:
                if s.get("place_error"):
                    a2.annotate("Yosys only:\ndoes not place", (name(s), s["logic_cells_per_mac"]),
                                textcoords="offset points", xytext=(-70, 10), fontsize=7)
        a1.axhline(200, color="grey", ls="--", lw=0.8)
        a1.set_ylabel("Fmax (MHz), core domain")
        a2.axhline(60, color="grey", ls="--", lw=0.8)
        a2.axhline(30, color="grey", ls=":", lw=0.8)
        a2.set_ylabel("logic cells per MAC")
        a2.set_yscale("log")
        for a in (a1, a2):
            a.set_xlabel("array")
            a.legend(fontsize=8)
        fig.suptitle("ECP5-85k, nextpnr out of context")
        fig.tight_layout()
        fig.savefig(out / "synth.png", dpi=100)
        plt.close(fig)
        written.append("synth.png")
    return written


def _update_readme(table, path=ROOT / "README.md"):
    begin, end = "<!-- perf:begin -->", "<!-- perf:end -->"
    text = path.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    path.write_text(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])
    return True


def main(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True))
    params = dict(ARRAY)
    res = {"array": params, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                                       f"{platform.python_version()}"}
    prev = out / "perf.json"
    if prev.exists():              # parts not rerun keep their last figures
        old = json.loads(prev.read_text())
        res.update({k: v for k, v in old.items() if k not in res})
    work = ROOT / "build" / "perf"
    if "network" in args.parts:
        say(f"demo network on the RTL ({args.images} images) ...")
        eng = RtlEngine("verilator", params, work_dir=work / "network", **BENCH)
        res["network"] = network_layers(eng, images=args.images)
        say(f"demo network with fusion on the RTL ({args.images} images) ...")
        res["network_fused"] = network_layers(eng, images=args.images, fuse=True)
    if "mlperf" in args.parts:
        eng = RtlEngine("verilator", params, work_dir=work / "mlperf", **BENCH)
        res["mlperf_tiny"] = mlperf_tiny(eng, inputs=args.mlperf_inputs, say=say)
    if "gemm" in args.parts:
        eng = RtlEngine("verilator", params, work_dir=work / "gemm", **BENCH)
        res["gemms"] = []
        for M, N, K in GEMMS:
            say(f"GEMM {M}x{N}x{K} on the RTL ...")
            res["gemms"].append(run_gemm(eng, gemm_job(M, N, K, seed=M + N + K)))
    if "speed" in args.parts:
        say("simulation speed, Verilator vs Icarus ...")
        res["sim_speed"] = sim_speed(params, gemm_job(64, 16, 64, seed=1), work / "speed")
    if "golden" in args.parts:
        res["golden"] = golden_throughput()
        (out / "golden.json").write_text(json.dumps(res["golden"], indent=2) + "\n", encoding="utf-8")
    if "synth" in args.parts:
        res["synth"] = synth_sweep(log=say)
        res["synth_units"] = synth_units(log=say)
    (out / "perf.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "README.md").write_text(render_markdown(res) + "\n")
    plots = _plots(res, out)
    table = summary_table(res)
    print(table)
    if args.readme and _update_readme(table):
        print("updated the performance table of README.md")
    print(f"wrote {', '.join(str(out / f) for f in ['perf.json', 'README.md', *plots])}")
    return 0


PARTS = ("network", "mlperf", "gemm", "speed", "golden", "synth")


def _parts(text):
    parts = [p for p in text.split(",") if p]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {', '.join(PARTS)}")
    return parts


def _images(text):
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 1 <= v <= 360:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in [1, 360]")
    return v


def add_parser(sub):
    p = sub.add_parser("perf", help="MAC utilisation, simulation speed and synthesis figures (make bench)",
                       description="Measures MAC utilisation on the RTL (demo network per layer, GEMM sweep), "
                                   "RTL simulation speed (Verilator vs Icarus), golden throughput and the ECP5 "
                                   "synthesis sweep; writes JSON, a markdown report and plots.")
    p.add_argument("--out", default=str(ROOT / "docs" / "perf"), help="output directory (default docs/perf)")
    p.add_argument("--parts", type=_parts, default=list(PARTS),
                   help=f"comma-separated subset of {','.join(PARTS)} (default: all; the others keep the "
                        f"figures of the last perf.json)")
    p.add_argument("--images", type=_images, default=45,
                   help="demo-network images run on the RTL (default 45, what one simulator run of "
                        "`intdeploy run` takes)")
    p.add_argument("--mlperf-inputs", type=int, default=20,
                   help="random inputs per MLPerf Tiny model on the RTL (default 20)")
    p.add_argument("--no-readme", dest="readme", action="store_false",
                   help="do not refresh the table in README.md")
    p.set_defaults(func=main)
