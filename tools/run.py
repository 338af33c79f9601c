"""``intdeploy run``: a model file on the accelerator, checked bit for bit against golden.

``intdeploy run [MODEL] --sim golden|verilator|icarus [--rows R --cols C] [--images N] [--json]``
runs the IntegerDeployable model file ``MODEL`` (default: the bundled digits network,
``golden/models/digits.json``) on the first ``N`` images of the digits test split (default: all
360, :mod:`intdeploy.golden.digits`) and reports

* accuracy of each representation: float (FullPrecision) and fake-quant (FakeQuantized) when the
  model file is the bundled network (identical to a fresh conversion of
  ``golden/models/digits_float.npz``; a model file holds only the integer network, so for any
  other file they are reported as unavailable), integer golden (IntegerDeployable of the
  reference model), and the engine's;
* per layer, the elements where the engine differs from golden (every element compared, no
  tolerance), with the first mismatch named by :func:`intdeploy.host.driver.first_mismatch` (layer, index,
  channel, golden vs engine value, likely cause);
* core cycles, MAC steps and MAC utilisation = useful MACs / (R * C * cycles).

Engines: ``golden`` is :class:`intdeploy.host.driver.ModelEngine`, the executable model of the top
(:mod:`intdeploy.sim.accel_model`), whose ``cycles`` are an *estimate*, not cycle-accurate: every word in,
every word out and every MAC step one cycle, with no overlap (``tests/test_run.py`` checks that it
bounds the RTL's count from above and that the MAC steps agree exactly). ``verilator`` and
``icarus`` run the Verilog of :class:`intdeploy.hw.top.Accelerator` (R x C array, every other parameter at
its default) under cocotb (:class:`intdeploy.sim.rtl_engine.RtlEngine`, one simulator build, cached) and
read the cycles from the top's STATUS counters (core clock, bus and core clocks at the same 10 ns
period, no idle cycles or backpressure).

The images go in chunks of :data:`CHUNK`. Every layer of a chunk is compiled from golden's input
tensors (:func:`intdeploy.host.network.run_layers`), so the whole chunk is one engine call and each
layer is compared in isolation; if every layer matches, the engine's end-to-end output is golden's.
On the RTL every chunk's program is recorded on the executable model first and all of them run in
one simulation (:mod:`intdeploy.host.engines`), so the simulator starts once.

Exit status: 0 bit-exact, 1 a mismatch (or the simulator failed), 2 bad input (one line naming
the argument and its allowed values).
"""

import json
import os
from pathlib import Path
import shutil
import sys
import tempfile
import time

import numpy as np

from intdeploy.golden import digits, model_file
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.network import accuracy
from intdeploy.host import protocol as P
from intdeploy.host.diagnosis import compare_outputs, first_mismatch, format_mismatch
from intdeploy.host.driver import Driver
from intdeploy.host.engines import Recorder, Replay
from intdeploy.host.job import EngineError
from intdeploy.host.network import network_stats, run_layers
from intdeploy.hw.config import AcceleratorConfig
from intdeploy.sim import ENGINES, engine_alias, engine_name
from intdeploy.sim.accel_model import ModelEngine
from intdeploy.sim.rtl_engine import RtlEngine
from intdeploy.sim.shards import ShardError, output_to, simulate
from intdeploy.tools.import_model import flatten_outputs, framework_outputs, load_source

__all__ = ["SIMS", "CHUNK", "run", "format_report", "add_parser"]

#: Engines of ``--sim``.
SIMS = ENGINES
#: Images per engine call (one simulator run on the RTL).
CHUNK = 45
#: The digits network's input and classes: what ``run`` can feed and score.
_INPUT_SHAPE, _CLASSES = (8, 8, 1), 10


def _info(config):
    return P.Info.of(config)


def _check_digits_model(model, what):
    spec = model.input
    out = model.tensors[model.outputs[0]]
    if spec.shape != _INPUT_SHAPE or spec.lo > 0 or spec.hi < 16 or len(model.outputs) != 1 \
            or out.shape != (_CLASSES,):
        raise ValueError(f"{what}: input {spec.shape} [{spec.lo}, {spec.hi}] with outputs "
                         f"{[model.tensors[o].shape for o in model.outputs]}; intdeploy run feeds the digits "
                         f"test split: allowed a model with input (8, 8, 1) covering [0, 16] and one output of "
                         f"{_CLASSES} logits")


def _float_accuracies(model, x, y):
    """``(float, fake_quant, note)``: FullPrecision and FakeQuantized accuracy when ``model`` is the
    bundled network (a fresh conversion of the committed float parameters), else None."""

    fresh = digits.convert()
    same = [(layer.name, layer.kind) for layer in model.layers] == \
        [(layer.name, layer.kind) for layer in fresh.model.layers] and \
        all(model.tensors.get(k) is not None and model.tensors[k].shape == t.shape
            for k, t in fresh.model.tensors.items()) and \
        model_file.same_model(model, fresh.model, metadata=False)
    if not same:
        return None, None, (f"float and fake-quant: not available (the model file holds only the integer "
                            f"network; they exist for the bundled network, a conversion of "
                            f"{digits.FLOAT_PARAMS.name})")
    xf = x / 16.0
    return (accuracy(fresh.full_precision.run(xf), y), accuracy(fresh.fake_quantized.run(xf), y),
            f"float and fake-quant: golden/digits.py network from {digits.FLOAT_PARAMS.name}")


def _sharded(sim, config, calls, ends, work, workers, cluster, n):
    """The recorded program, chunk by chunk, over ``workers`` simulator processes (or the Dask
    ``cluster``; :func:`intdeploy.sim.shards.simulate`). A chunk's program does not depend on the
    ones before it (each was recorded from golden's inputs), so the responses, cycles included,
    are those of one simulation of everything."""
    starts = [0] + ends
    chunks = [[p for call in calls[starts[k]:ends[k]] for p in call] for k in range(len(ends))]
    try:
        return simulate(sim, config, chunks, work, workers=workers, cluster=cluster)
    except ShardError as e:
        a, b = e.groups
        raise EngineError(f"{sim} run of images {a * CHUNK}..{min(n, b * CHUNK) - 1}: {e}") from None


def load_inputs(model, path=None, random=None, seed=0):
    """The inputs ``intdeploy run`` feeds a model that is not the digits network: the array in
    ``path`` (``.npy``, or ``.npz`` holding one array or one named after the model's input; a model
    with several inputs: an ``.npz`` with one array named after each), or ``random`` inputs drawn
    uniformly from each input's declared range with ``seed``. Returns ``(x, description)``, ``x``
    an array (one input) or a dict by input name; a wrong file, shape, dtype or a value outside the
    declared range is a ValueError naming ``--inputs`` and what is allowed."""
    specs = model.inputs
    if random is not None:
        if isinstance(random, bool) or not isinstance(random, int) or not 1 <= random <= 100_000:
            raise ValueError(f"--random: {random!r} is out of range; allowed 1..100000")
        rng = np.random.default_rng(seed)
        x = {s.name: rng.integers(s.lo, s.hi + 1, (random,) + s.shape) for s in specs}
        ranges = ", ".join(f"[{s.lo}, {s.hi}]" for s in specs)
        return (x if len(specs) > 1 else x[specs[0].name]), \
            f"{random} random inputs in {ranges} (the input's declared range), seed {seed}"
    path = Path(path)
    names = [s.name for s in specs]
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if len(specs) == 1 and len(keys) == 1:
                    arrays = [z[keys[0]]]
                elif all(n in keys for n in names) and len(keys) == len(names):
                    arrays = [z[n] for n in names]
                elif len(specs) == 1 and names[0] in keys:
                    arrays = [z[names[0]]]
                else:
                    raise ValueError(f"--inputs: {path} holds {keys}; allowed one array, or one named after each "
                                     f"of the model's inputs {names}")
        elif path.suffix == ".npy" and len(specs) == 1:
            arrays = [np.load(path, allow_pickle=False)]
        elif path.suffix == ".npy":
            raise ValueError(f"--inputs: the model has {len(specs)} inputs {names}; allowed an .npz with one array "
                             f"named after each")
        else:
            raise ValueError(f"--inputs: {path.name!r} has suffix {path.suffix!r}; allowed .npy, .npz")
    except OSError as e:
        raise ValueError(f"--inputs: {path}: cannot be read ({e.strerror or type(e).__name__})") from None
    except ValueError as e:
        if str(e).startswith("--inputs"):
            raise
        raise ValueError(f"--inputs: {path}: not a readable numpy file ({str(e).splitlines()[0][:80]})") from None
    out = {}
    for spec, x in zip(specs, arrays):
        want = f"an integer array of shape (N,) + {spec.shape} with values in [{spec.lo}, {spec.hi}]"
        where = f"{path}" if len(specs) == 1 else f"{path} ({spec.name!r})"
        if x.ndim == len(spec.shape):
            x = x[None]
        if x.dtype.kind not in "iu" or x.shape[1:] != spec.shape or len(x) == 0:
            raise ValueError(f"--inputs: {where} holds {x.dtype} {x.shape}; allowed {want}")
        x = x.astype(np.int64)
        bad = (x < spec.lo) | (x > spec.hi)
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"--inputs: value {int(x[i])} at {i} of {where} is outside the model input's declared "
                             f"range [{spec.lo}, {spec.hi}]; allowed {want}")
        out[spec.name] = x
    if len({len(a) for a in out.values()}) > 1:
        raise ValueError(f"--inputs: {path} holds different numbers of samples for the inputs "
                         f"{[len(a) for a in out.values()]}")
    n = len(next(iter(out.values())))
    return (out if len(specs) > 1 else out[names[0]]), f"{n} inputs from {path.name}"


def _take(x, a, b):
    """Samples ``a:b`` of inputs ``x`` (an array, or a dict of arrays by input name)."""
    return {k: v[a:b] for k, v in x.items()} if isinstance(x, dict) else x[a:b]


def _count(x):
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def run(model, reference=None, *, sim="model", rows=8, cols=8, images=None, progress=False,
        work_dir=None, model_path=None, hardware=None, fuse=False, workers=1, cluster=None, inputs=None,
        outputs=None):
    """Run ``model`` (an :class:`intdeploy.golden.model_file.IntegerModel`) on ``sim`` and compare it with
    golden IntegerDeployable of ``reference`` (default ``model``); returns the report (a dict, the
    JSON of ``--json``).

    Parameters
    ----------
    model, reference : IntegerModel
        The network the engine runs, and the one golden runs (the same layers and shapes).
    sim : one of :data:`SIMS`
    rows, cols : int
        MAC array R x C (the ranges of :class:`intdeploy.hw.config.AcceleratorConfig`).
    images : int, optional
        The first ``images`` of the digits test split (1..360; default all).
    progress : bool or file
        A tqdm bar over the images on stderr (or on this file).
    work_dir : path, optional
        RTL packets, responses and the simulator log (``sim.log``); default a temporary
        directory, removed unless the simulator failed.
    hardware : dict, optional
        Further elaboration parameters of :class:`intdeploy.hw.config.AcceleratorConfig` (default: all at
        their defaults, as ``--rows``/``--cols`` use them).
    fuse : bool
        Fuse add and pooling layers into the epilogue of the layer before them where the hardware
        can (:meth:`intdeploy.host.driver.Driver.plan`); the fused-away tensors are not compared.
    workers : int
        RTL only: simulator processes (a Dask ``LocalCluster``) over which the images' programs are
        sharded, chunk of :data:`CHUNK` images by chunk (default 1: one simulation here); the
        report is the same whatever the sharding.
    cluster : str, optional
        RTL only: a Dask scheduler address (``tcp://host:8786``) to shard over instead.
    inputs : ``(x, description)``, optional
        The inputs to run (:func:`load_inputs`) instead of the digits test split; then there are
        no labels and no accuracy, and the model may have any shape.
    outputs : dict, optional
        Filled with the engine's output tensors (name -> array) for ``--save-outputs``.

    Raises
    ------
    ValueError
        A bad argument or a model the accelerator cannot run, naming it and the allowed values.
    intdeploy.host.driver.EngineError, RuntimeError
        The engine failed (the message names the simulator log).
    """


    t0 = time.perf_counter()
    sim = engine_name(sim)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers: {workers!r} is out of range; allowed >= 1")
    for name, v, hi in (("rows", rows, 16), ("cols", cols, 64)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ValueError(f"--{name}: {v!r} is out of range; allowed 1..{hi}")
    config = AcceleratorConfig(**{**(hardware or {}), "rows": rows, "cols": cols})
    info = _info(config)
    reference = model if reference is None else reference
    if [(la.name, la.kind) for la in model.layers] != [(la.name, la.kind) for la in reference.layers]:
        raise ValueError("reference: its layers differ from the model's; allowed a model file with the same "
                         "layer names and kinds")
    if inputs is None:
        _check_digits_model(model, "model")
        _check_digits_model(reference, "reference")
        x_all, y_all = digits.load_split()[2:]
        n = len(y_all) if images is None else images
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(y_all):
            raise ValueError(f"--images: {images!r} is out of range; allowed 1..{len(y_all)} (the digits test split)")
        x, y = x_all[:n], y_all[:n]
        data = f"digits test split (golden/digits.py), first {n} of {len(y_all)} images"
    else:
        x_all, data = inputs
        n = _count(x_all) if images is None else images
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _count(x_all):
            raise ValueError(f"--images: {images!r} is out of range; allowed 1..{_count(x_all)} (the inputs given)")
        x, y = _take(x_all, 0, n), None
        if n < _count(x_all):
            data += f", first {n}"
    Driver(info).check(model)                      # refuse before anything runs

    golden = IntegerDeployable(reference)
    rtl = sim != "model"
    own_dir = work_dir is None and rtl
    work = Path(tempfile.mkdtemp(prefix="intdeploy-run-")) if own_dir else (Path(work_dir) if work_dir else None)
    if rtl:
        work.mkdir(parents=True, exist_ok=True)
        engine = RtlEngine(sim, config, work_dir=work)
        log = work / "sim.log"
    else:
        engine = ModelEngine(info)
    bar = None
    if progress:
        from tqdm import tqdm  # optional dependency (dev extra: progress bar)
        bar = tqdm(total=n, unit="img", desc=f"{sim} {rows}x{cols}", leave=False,
                   file=progress if progress is not True else sys.stderr)
    refs = [golden.run(_take(x, i, i + CHUNK), trace=True) for i in range(0, n, CHUNK)]
    runner = engine
    if rtl:
        # Every chunk's program is recorded on the executable model, all of them run in one
        # simulation (one start-up of the simulator), then each chunk is replayed from the RTL's
        # responses: the chunks, their programs and their STATUS cycle counts are those of a run
        # chunk by chunk.
        rec = Recorder(ModelEngine(info))
        ends = []                                  # the calls of chunk k end before ends[k]
        for ref in refs:
            run_layers(model, ref, rec, fuse=fuse)
            ends.append(len(rec.calls))
        if bar is not None:
            bar.set_description(f"{sim} {rows}x{cols}: simulating {len(rec.packets)} packets"
                                + (f" on {workers} workers" if workers > 1 or cluster else ""))
        if (workers == 1 or len(refs) == 1) and not cluster:
            try:
                with output_to(log):
                    responses = engine.execute(rec.packets)
            except (AssertionError, EngineError, RuntimeError) as e:
                first = (str(e).splitlines() or [type(e).__name__])[0]
                raise EngineError(f"{sim} run of images 0..{n - 1} failed: {first} (log: {log})") from None
        else:
            responses = _sharded(sim, config, rec.calls, ends, work, workers, cluster, n)
        runner = Replay(rec.calls, responses, info)
        if bar is not None:
            bar.set_description(f"{sim} {rows}x{cols}: comparing")
    outs, layer_stats = [], []
    try:
        for ref in refs:
            out, st = run_layers(model, ref, runner, fuse=fuse)
            outs.append(out)
            layer_stats.append(st["layers"])
            if bar is not None:
                bar.update(len(next(iter(ref.values()))))
    finally:
        if bar is not None:
            bar.close()
    if own_dir:
        shutil.rmtree(work, ignore_errors=True)

    def cat(parts):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ref, out = cat(refs), cat(outs)
    layers = []
    for per_chunk in zip(*layer_stats):
        s = per_chunk[0]
        for other in per_chunk[1:]:
            for k in ("packets", "runs", "words_sent", "words_received", "mac_steps", "useful_macs", "cycles",
                      "busy_cycles", "mac_cycles"):
                setattr(s, k, getattr(s, k) + getattr(other, k))
        layers.append(s)
    stats = network_stats(layers, info)
    cmp = {name: (elements, bad, dmax) for name, elements, bad, dmax in compare_outputs(reference, ref, out)}
    m = first_mismatch(reference, ref, out)
    out_name = model.outputs[0]
    if y is not None:
        fp, fq, note = _float_accuracies(model, x, y)
        acc = {"float": fp, "fake_quant": fq, "integer": accuracy(ref[out_name], y),
               "engine": accuracy(out[out_name], y)}
    else:
        acc, note = None, "no labels: the inputs came without them"
    report = {
        "model": _display(model_path) if model_path else model.name,
        "model_name": model.name,
        "sim": sim,
        "array": {"rows": rows, "cols": cols},
        "hardware": config.as_dict(),
        "images": n,
        "data": data,
        "bit_exact": m is None,
        "mismatches": sum(bad for _, bad, _ in cmp.values()),
        "elements": sum(e for e, _, _ in cmp.values()),
        "first_mismatch": None if m is None else {
            "layer": m.layer, "kind": m.kind, "index": list(m.index), "image": m.index[0] if m.index else None,
            "channel": m.channel if m.index else None, "golden": m.golden, "engine": m.actual,
            "cause": m.cause, "detail": m.detail, "layer_mismatches": m.count, "layer_elements": m.elements},
        "accuracy": acc,
        "accuracy_note": note if m is None else
        note + "; engine accuracy: NOT end to end (each layer ran on golden's inputs, and some differ)",
        "cycles": stats["cycles"],
        "cycles_source": ("RTL: the top's STATUS cycle counter (core clock)" if rtl else
                          "estimate of the executable model sim/accel_model.py (words in and out at the top's "
                          "rates, MAC steps, less the words hidden behind RUNs); not cycle-accurate"),
        "mac_steps": stats["mac_steps"],
        "useful_macs": stats["useful_macs"],
        "mac_utilization": stats["utilisation"],
        "fused": fuse,
        "layers": [dict(name=s.name, kind=s.kind, host=s.host, output=s.output, elements=cmp[s.output][0],
                        mismatches=cmp[s.output][1], max_abs_diff=cmp[s.output][2], cycles=s.cycles,
                        mac_steps=s.mac_steps, useful_macs=s.useful_macs,
                        mac_utilization=(s.useful_macs / (rows * cols * s.cycles) if s.cycles else None),
                        packets=s.packets, words_sent=s.words_sent, words_received=s.words_received)
                   for s in layers],
        "host_ops": [{"index": i, "operator": op, "note": what} for i, op, what in model.metadata.get("host_ops", [])],
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }

    report["mismatch_line"] = None if m is None else _mismatch_line(m, sim)
    program = next((s.name for s in layers if m is not None and s.output == m.layer and "+" in s.name), None)
    if program:
        report["mismatch_line"] += (f"; in the fused program {program}: run without --fuse to find which of its "
                                    f"layers differs first")
    if outputs is not None:
        outputs.update({name: out[name] for name in model.outputs})
    return report


def _mismatch_line(m, sim):
    engine = "RTL" if sim != "model" else "accelerator model"
    return format_mismatch(m).replace(", engine ", f", {engine} ", 1)


def _pct(v):
    return "     n/a" if v is None else f"{100 * v:6.2f} %"


def format_report(r):
    """The report as text (what ``intdeploy run`` prints without ``--json``)."""
    rtl = r["sim"] != "model"
    who = "RTL" if rtl else "model"
    a = r["accuracy"]
    lines = [
        f"intdeploy run: {r['model']} on {r['sim']}, {r['array']['rows']}x{r['array']['cols']} MAC array, "
        f"{r['data']}",
        "",
    ]
    if a is not None:
        lines += [
            "accuracy",
            f"  float (FullPrecision)       {_pct(a['float'])}",
            f"  fake-quant (FakeQuantized)  {_pct(a['fake_quant'])}",
            f"  integer (golden)            {_pct(a['integer'])}   IntegerDeployable, int64",
            f"  {'RTL (' + r['sim'] + ')' if rtl else 'accelerator model':<26}  {_pct(a['engine'])}",
            f"  {r['accuracy_note']}",
            "",
        ]
    lines += [
        f"per layer, {who} vs golden, every element (each layer compiled from golden's inputs"
        + ("; a+b: b fused into a's epilogue, b's output compared)" if r.get("fused") else ")"),
    ]
    w = max(len(s["name"]) for s in r["layers"])
    kw = max(9, *(len(s["kind"]) for s in r["layers"]))
    lines.append(f"  {'layer':<{w}}  {'kind':<{kw}}  {'elements':>8}  {'mismatch':>8}  {'cycles':>9}  "
                 f"{'MAC steps':>9}  {'useful MACs':>11}  {'MAC util':>8}")
    for s in r["layers"]:
        if s["host"]:
            lines.append(f"  {s['name']:<{w}}  {s['kind']:<{kw}}  {s['elements']:>8}  {s['mismatches']:>8}  "
                         f"{'host':>9}")
            continue
        lines.append(f"  {s['name']:<{w}}  {s['kind']:<{kw}}  {s['elements']:>8}  {s['mismatches']:>8}  "
                     f"{s['cycles']:>9}  {s['mac_steps']:>9}  {s['useful_macs']:>11}  {_pct(s['mac_utilization'])}")
    for h in r.get("host_ops", []):
        lines.append(f"  operator #{h['index']} {h['operator']} of the imported model: {h['note']}")
    lines += [
        "",
        f"cycles: {r['cycles']} ({r['cycles_source']})",
        f"MAC utilisation: {_pct(r['mac_utilization']).strip()} = {r['useful_macs']} useful MACs / "
        f"({r['array']['rows']} x {r['array']['cols']} x {r['cycles']} cycles)",
    ]
    if r["bit_exact"]:
        every = "every layer compared (fused: each program's output)" if r.get("fused") else "every layer"
        lines.append(f"bit-exact: yes, all {r['elements']} elements of {every} equal golden")
    else:
        lines.append(f"bit-exact: NO, {r['mismatches']} of {r['elements']} elements differ")
    lines.append(f"wall time: {r['wall_seconds']:.1f} s")
    return "\n".join(lines)


def _display(path):
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _framework_check(args, model, x, outputs):
    """``--reference MODEL.tflite|.onnx|.pt``: the framework's outputs on ``x`` against the
    accelerator's (``outputs``: name -> array); prints one line, returns the number of differing
    elements."""
    source_model, _, source = load_source(args.reference)
    if source_model.input.shape != model.input.shape:
        raise ValueError(f"--reference: {args.reference} takes inputs of shape {source_model.input.shape}; the "
                         f"model's are {model.input.shape}")
    want = flatten_outputs(framework_outputs(source, source_model, x))
    got = flatten_outputs(tuple(outputs[name] for name in model.outputs))
    if want.shape != got.shape:
        raise ValueError(f"--reference: {args.reference} outputs {want.shape[1]} elements per input; the model's "
                         f"outputs hold {got.shape[1]}")
    bad = int(np.count_nonzero(want != got))
    print(f"framework ({Path(args.reference).name}) vs accelerator: {want.size - bad}/{want.size} elements of the "
          f"output equal" + ("" if bad == 0 else " - MISMATCH"))
    return bad


def _main(args):
    path = Path(args.model) if args.model else digits.MODEL_FILE
    model = model_file.load(path)
    framework = args.reference and Path(args.reference).suffix.lower() in (".tflite", ".onnx", ".pt", ".pth")
    reference = model_file.load(args.reference) if args.reference and not framework else None
    if args.inputs and args.random is not None:
        raise ValueError("--inputs, --random: give one of them")
    inputs = None
    if args.inputs or args.random is not None:
        inputs = load_inputs(model, args.inputs, args.random, args.seed)
    elif args.model and path.resolve() != digits.MODEL_FILE.resolve():
        try:
            _check_digits_model(model, "model")
        except ValueError as e:
            raise ValueError(f"{e}; or give --inputs FILE (.npy/.npz) or --random N") from None
    if args.save_outputs:
        out_dir = Path(args.save_outputs).parent
        if not out_dir.is_dir():
            raise ValueError(f"--save-outputs: {args.save_outputs}: the directory {out_dir} does not exist")
    outputs = {}
    try:
        r = run(model, reference, sim=args.sim, rows=args.rows, cols=args.cols, images=args.images,
                progress=not args.json, work_dir=args.work_dir, model_path=path, fuse=args.fuse,
                workers=args.workers, cluster=args.cluster, inputs=inputs, outputs=outputs)
    except (EngineError, RuntimeError) as e:
        print(f"intdeploy: run failed: {e}", file=sys.stderr)
        return 1
    if args.reference:
        r["reference"] = _display(args.reference)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(format_report(r))
    if args.save_outputs:
        np.savez(args.save_outputs, **outputs)
        print(f"outputs: {args.save_outputs} ({', '.join(f'{k} {v.shape}' for k, v in outputs.items())})")
    if not r["bit_exact"]:
        print(f"intdeploy: MISMATCH: {r['mismatch_line']}", file=sys.stderr)
        return 1
    if framework:
        x = _take(inputs[0], 0, r["images"]) if inputs is not None else digits.load_split()[2][:r["images"]]
        if _framework_check(args, model, x, outputs):
            return 1
    return 0


def add_parser(sub):
    """Register ``intdeploy run`` (see :mod:`intdeploy.tools.cli`)."""
    p = sub.add_parser(
        "run", help="run a model file on the golden engine or the RTL, bit-exact against golden",
        description="Runs an IntegerDeployable model file on the digits test split on the executable model "
                    "of the accelerator (golden) or on its RTL (Verilator, Icarus), compares every layer with "
                    "golden element by element and reports accuracy, mismatches, cycles and MAC utilisation "
                    "(docs/run.md). Exit status 0 bit-exact, 1 mismatch, 2 bad input.")
    p.add_argument("model", nargs="?", help="model file (JSON manifest; default golden/models/digits.json)")
    p.add_argument("--sim", type=engine_alias, choices=SIMS, default="model",
                   help="engine: model (the executable model of the top; golden, its former name, is accepted), "
                        "verilator or icarus (default model)")
    p.add_argument("--rows", type=int, default=8, help="MAC array rows R, 1..16 (default 8)")
    p.add_argument("--cols", type=int, default=8, help="MAC array columns C, 1..64 (default 8)")
    p.add_argument("--images", type=int, default=None,
                   help="the first N images of the digits test split, 1..360 (default all 360), or of --inputs")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    p.add_argument("--reference", help="a model file (same layers): golden runs it instead of MODEL; or the "
                                       "framework model MODEL was imported from (.tflite, .onnx, .pt): its "
                                       "outputs are compared with the accelerator's as well")
    p.add_argument("--inputs", metavar="FILE",
                   help="inputs for a model that is not the digits network: FILE.npy, or FILE.npz with one array "
                        "(or one named after the model's input), shape (N,) + the input's shape, values in its "
                        "declared range")
    p.add_argument("--random", type=int, metavar="N",
                   help="N random inputs in the model input's declared range instead (seed: --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--save-outputs", metavar="FILE.npz", help="save the accelerator's output tensors here")
    p.add_argument("--fuse", action="store_true",
                   help="run an add or pooling layer in the epilogue of the layer before it where the hardware "
                        "can (fewer cycles; the tensors in between are then not compared; docs/driver.md)")
    p.add_argument("--work-dir", help="keep the RTL packets, responses and sim.log here (default: a "
                                      "temporary directory)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="RTL: simulator processes to shard the images over, 45 images a chunk, on a Dask "
                        "LocalCluster (default: the machine's cores; 1 runs one simulation in this process). "
                        "The report is the same whatever the sharding")
    p.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="RTL: shard over the Dask scheduler at ADDRESS (tcp://host:8786) instead "
                        "(docs/reliability.md)")
    p.set_defaults(func=_main)
