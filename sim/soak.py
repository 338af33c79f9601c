"""Soak: random networks on random bench configurations, golden engine versus the RTL top, for a
bounded time.

``intdeploy soak --minutes M --seed S`` (or ``make soak ARGS="--minutes M --seed S"``) repeats,
until ``M`` minutes have passed: draw a random IntegerDeployable network (:func:`random_network`:
a convolution of random kernel/stride/padding, an optional second convolution and residual Add,
an optional max or average pooling, a fully connected layer; random zero points, dtypes and a
rounding mode per layer), compile it with the host driver (:mod:`intdeploy.host.driver`) on the executable
model, send every packet to the top inside the stream player (:mod:`intdeploy.sim.player`, the
native-speed path) under a random bus:core clock ratio (including 1:8 and 8:1), random input
pauses and output backpressure (sometimes thousands of cycles long), and check every layer tensor
decoded from the RTL's responses against golden :class:`intdeploy.golden.network.IntegerDeployable`
(every response is replayed to the host driver, which checks it is the one the program expects).

``--workers N`` (default: the machine's cores) runs the seeds on a Dask ``LocalCluster`` of N
processes, ``--cluster tcp://host:8786`` on an existing Dask scheduler (:mod:`intdeploy.sim.shards`):
a seed whose worker dies is run again elsewhere, and the report is sorted by seed, the same as one
process gives for the same seeds (``--runs``).

A tqdm progress bar runs over the time budget; at the end the command prints the runs, the core
cycles simulated and the failures, each with the seed that reproduces it
(``intdeploy soak --runs 1 --seed <seed> --workers 1``). Exit status 0 if every run passed, 1 if a
check failed or a seed could not be run.
"""

from dataclasses import dataclass
import functools
import itertools
import os
from pathlib import Path
import tempfile
import time

import numpy as np

from intdeploy.golden.add import AddParams
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.mac_array import conv2d, linear
from intdeploy.golden.model_file import (DTYPES, AddLayer, FlattenLayer, InputSpec, IntegerModel, MacLayer, PoolLayer,
                                         RequantLayer)
from intdeploy.golden.requantizer import ROUNDING_MODES, RequantParams
from intdeploy.host import protocol as P
from intdeploy.host.engines import Recorder, Replay
from intdeploy.host.network import run_network
from intdeploy.hw.config import QUICK
from intdeploy.sim.accel_model import ModelEngine
from intdeploy.sim.rtl_engine import run_player
from intdeploy.sim.shards import budget, run_cases

__all__ = ["SoakResult", "random_network", "random_bench", "soak_run", "soak", "add_parser", "HARDWARE"]

#: The top's elaboration parameters for the soak: the quick tier's (one simulator build, reused by
#: every run and by the tests).
HARDWARE = QUICK
#: bus:core clock periods (ns).
RATIOS = {"1:8": (5, 40), "1:4": (5, 20), "1:1": (10, 10), "10:11": (10, 11), "11:10": (11, 10),
          "4:1": (20, 5), "8:1": (40, 5)}
_ROUNDINGS = tuple(ROUNDING_MODES)


def _requant(rng, acc, dtype, zero_point, per_tensor=False):
    """Per-channel (or per-tensor) requantizer mapping the observed accumulator range to about
    +-60 (so outputs use the range without saturating everything), in a random rounding mode."""

    rounding = str(rng.choice(_ROUNDINGS))
    c = 1 if per_tensor else acc.shape[-1]
    amax = np.maximum(np.abs(acc.reshape(-1, c)).max(axis=0), 1)
    mult = rng.integers(1 << 30, 1 << 31, c) if rounding == "tflite" else rng.integers(1 << 19, 1 << 20, c)
    shift = np.clip(np.ceil(np.log2(mult * amax / 60)).astype(np.int64), 1, 62)
    lo, hi = DTYPES[dtype]
    bias = rng.integers(-100, 100, c)
    if per_tensor:
        mult, shift, bias = int(mult[0]), int(shift[0]), int(bias[0])
    return RequantParams(mult=mult, shift=shift, bias=bias, zero_point=zero_point, lo=lo, hi=hi, rounding=rounding)


def random_network(seed, batch=2):
    """A random small IntegerDeployable network and a batch of input images: ``(model, x)``."""

    rng = np.random.default_rng(seed)
    h, w, cin = (int(v) for v in (rng.integers(3, 7), rng.integers(3, 7), rng.integers(1, 5)))
    in_dtype = str(rng.choice(["int8", "uint8"]))
    lo, hi = DTYPES[in_dtype]
    zp = int(rng.integers(lo, hi + 1) // 4)
    spec = InputSpec(shape=(h, w, cin), dtype=in_dtype, zero_point=zp)
    x = rng.integers(lo, hi + 1, (batch, h, w, cin))
    layers = []

    def run(outputs):
        return IntegerDeployable(IntegerModel(input=spec, layers=tuple(layers), outputs=outputs)).run(x)

    def out_dtype():
        d = str(rng.choice(["int8", "uint8"]))
        return d, (int(rng.integers(-20, 20)) if d == "int8" else int(rng.integers(0, 40)))

    k = int(rng.integers(1, min(h, w, 3) + 1))
    pad = int(rng.integers(0, k)) if k > 1 else 0
    stride = int(rng.integers(1, 3))
    ch = int(rng.integers(2, 7))
    w1 = rng.integers(-128, 128, (ch, k, k, cin)).astype(np.int8)
    wzp = rng.integers(-10, 10, ch)
    d1, z1 = out_dtype()
    a1 = conv2d(x, w1, stride, pad, zp, wzp)
    layers.append(MacLayer(kind="conv2d", name="conv1", inputs=("input",), weight=w1, weight_zero_point=wzp,
                           input_zero_point=zp, stride=(stride, stride), padding=((pad, pad), (pad, pad)),
                           requant=_requant(rng, a1, d1, z1), dtype=d1))
    last, last_zp, last_dtype = "conv1", z1, d1
    y1 = run(("conv1",))
    if rng.random() < 0.5:                      # a second 3x3 convolution and a residual Add
        w2 = rng.integers(-128, 128, (ch, 3, 3, ch)).astype(np.int8)
        d2, z2 = out_dtype()
        a2 = conv2d(y1, w2, 1, 1, z1, 0)
        layers.append(MacLayer(kind="conv2d", name="conv2", inputs=("conv1",), weight=w2, input_zero_point=z1,
                               padding=((1, 1), (1, 1)), requant=_requant(rng, a2, d2, z2), dtype=d2))
        if rng.random() < 0.6:                  # TFLite's int8 Add
            lo_o, hi_o = DTYPES["int8"]
            zo = int(rng.integers(-10, 10))
            layers.append(AddLayer(name="res", inputs=("conv1", "conv2"), dtype="int8",
                                   params=AddParams.tflite(float(rng.uniform(0.02, 0.1)), z1, float(rng.uniform(0.02, 0.1)),
                                                           z2, float(rng.uniform(0.05, 0.2)), zo, lo=lo_o, hi=hi_o)))
            last, last_zp, last_dtype = "res", zo, "int8"
        else:                                   # NEMO's Add (Eq. 24), then an activation requantizer
            dsh = int(rng.integers(2, 10))
            ma, mb = (int(v) for v in rng.integers(1, (1 << dsh) + 1, 2))
            layers.append(AddLayer(name="res", inputs=("conv1", "conv2"), dtype="int32",
                                   params=AddParams(in_zero_points=(z1, z2),
                                                    branches=(RequantParams(mult=ma, shift=0),
                                                              RequantParams(mult=mb, shift=0)),
                                                    output=RequantParams(mult=1, shift=dsh))))
            d3, z3 = out_dtype()
            layers.append(RequantLayer(name="act", inputs=("res",), dtype=d3,
                                       requant=_requant(rng, run(("res",)), d3, z3, per_tensor=True)))
            last, last_zp, last_dtype = "act", z3, d3
    oh, ow = run((last,)).shape[1:3]
    # the fc layer's K (the flattened features) must fit a weight bank: pool when it would not
    too_big = oh * ow * ch > HARDWARE["weight_depth"] * HARDWARE["cols"]
    if (rng.random() < 0.6 or too_big) and min(oh, ow) >= 2:
        mode = str(rng.choice(["max", "avg_nemo", "avg_tflite"]))
        kw = {"avg_nemo": dict(d=2), "avg_tflite": dict(lo=DTYPES[last_dtype][0] + 10, hi=DTYPES[last_dtype][1] - 10)}
        layers.append(PoolLayer(name="pool", inputs=(last,), mode=mode, kernel=(2, 2), stride=(2, 2),
                                dtype=last_dtype, **kw.get(mode, {})))
        last = "pool"
    layers.append(FlattenLayer(name="flat", inputs=(last,), dtype=last_dtype))
    feat = int(np.prod(run(("flat",)).shape[1:]))
    classes = int(rng.integers(2, 7))
    w3 = rng.integers(-128, 128, (classes, feat)).astype(np.int8)
    a3 = linear(run(("flat",)), w3, last_zp, 0)
    layers.append(MacLayer(kind="linear", name="fc", inputs=("flat",), weight=w3, input_zero_point=last_zp,
                           requant=_requant(rng, a3, "int8", 0), dtype="int8"))
    return IntegerModel(input=spec, layers=tuple(layers), outputs=("fc",)), x


def random_bench(seed):
    """Bench configuration: clock ratio, input pauses, output backpressure (sometimes long)."""
    rng = np.random.default_rng(seed + 1_000_003)
    ratio = str(rng.choice(list(RATIOS)))
    bus, core = RATIOS[ratio]
    long_stall = rng.random() < 0.25
    bp_burst = int(rng.integers(1000, 4000)) if long_stall else int(rng.integers(1, 8))
    return dict(ratio=ratio, bus_period=bus, core_period=core, idle=float(rng.uniform(0, 0.4)),
                idle_burst=int(rng.integers(1, 6)), backpressure=0.003 if long_stall else float(rng.uniform(0, 0.5)),
                bp_burst=bp_burst, watchdog=20000 + 2 * bp_burst * -(-bus // core))


@dataclass
class SoakResult:
    runs: int = 0
    cycles: int = 0
    failures: list = None
    #: ``(seed, why)`` of seeds that could not be run (a worker could not build, died too often, ...)
    errors: list = None


def soak_run(seed, sim="verilator", work_dir=None):
    """One soak run; returns the core cycles; raises AssertionError (with the reason) on a
    mismatch, a hang or a malformed response."""

    model, x = random_network(seed)
    golden = IntegerDeployable(model).run(x, trace=True)
    info = P.Info.of(HARDWARE)
    rec = Recorder(ModelEngine(info))
    fuse = bool(seed % 2)                       # odd seeds fuse add, requant and pooling layers (Driver.plan)
    run_network(model, x, rec, fuse=fuse)
    bench = random_bench(seed)
    bench.pop("ratio")
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="intdeploy-soak-"))
    packets = rec.packets
    responses, cycles = run_player(sim, HARDWARE, packets, test_dir=work_dir / f"seed{seed}", seed=seed, **bench)
    out, _ = run_network(model, x, Replay(rec.calls, responses), fuse=fuse)
    missing = set(model.outputs) - set(out)
    if missing:
        raise AssertionError(f"outputs {sorted(missing)} not returned")
    for name, a in out.items():
        g = golden[name]
        if not np.array_equal(a, g):
            bad = np.argwhere(out[name] != g)[0]
            raise AssertionError(f"layer {name}: RTL {out[name][tuple(bad)]} != golden {g[tuple(bad)]} "
                                 f"at {bad.tolist()}")
    return int(cycles or 0)


def soak(minutes, seed=0, sim="verilator", runs=None, work_dir=None, progress=True, out=print, workers=1,
         cluster=None):
    """Runs seeds ``seed, seed + 1, ...`` until ``minutes`` have passed (or ``runs`` runs), on
    ``workers`` processes or the Dask ``cluster`` (:func:`intdeploy.sim.shards.run_cases`); returns a
    :class:`SoakResult` (failures and errors sorted by seed)."""
    from tqdm import tqdm  # optional dependency (dev extra: progress bar)

    seconds = 60.0 * minutes
    start = time.monotonic()
    bar = tqdm(total=round(seconds), unit="s", disable=not progress, desc="soak",
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")
    counts = {"runs": 0, "failures": 0}

    def seen(o):
        counts["runs"] += 1
        counts["failures"] += o.failure is not None or o.error is not None
        if o.failure or o.error:
            bar.write(f"FAIL seed {o.case}: {o.failure or o.error}")
        bar.set_postfix_str(f"runs {counts['runs']}, failures {counts['failures']}")
        bar.n = min(round(time.monotonic() - start), bar.total)
        bar.refresh()

    cases = itertools.count(seed) if runs is None else range(seed, seed + runs)
    outcomes = run_cases(functools.partial(soak_run, sim=sim, work_dir=work_dir), cases, workers=workers,
                         cluster=cluster, keep_going=budget(seconds) if runs is None else None, on_outcome=seen)
    bar.close()
    result = SoakResult(runs=len(outcomes), cycles=sum(o.value for o in outcomes if o.value is not None),
                        failures=[(o.case, o.failure) for o in outcomes if o.failure],
                        errors=[(o.case, o.error) for o in outcomes if o.error])
    where = f"{workers} worker(s)" if not cluster else f"the Dask cluster at {cluster}"
    out(f"soak on {sim}: {result.runs} runs, {result.cycles} core cycles, {len(result.failures)} failures, "
        f"{len(result.errors)} seeds not run ({time.monotonic() - start:.0f} s, {where})")
    for s, why in result.failures:
        out(f"  failing seed {s}: {why}  (reproduce: intdeploy soak --runs 1 --seed {s} --sim {sim} --workers 1)")
    for s, why in result.errors:
        out(f"  seed {s} not run: {why}")
    return result


def _main(args):
    if args.minutes <= 0:
        raise ValueError(f"--minutes: {args.minutes} is out of range; allowed > 0")
    if args.runs is not None and args.runs < 1:
        raise ValueError(f"--runs: {args.runs} is out of range; allowed >= 1")
    if args.workers < 1:
        raise ValueError(f"--workers: {args.workers} is out of range; allowed >= 1")
    result = soak(args.minutes, args.seed, args.sim, args.runs, args.work_dir, progress=not args.no_progress,
                  workers=args.workers, cluster=args.cluster)
    return 1 if result.failures or result.errors else 0


def add_parser(sub):
    """The ``intdeploy soak`` sub-command."""
    p = sub.add_parser("soak", help="random networks and bench configurations, golden vs RTL, for M minutes",
                       description="Runs random networks on the RTL top under random clock ratios and stalls, "
                                   "every response checked against the executable model and every layer "
                                   "against golden, until the time budget is spent; prints runs, core cycles "
                                   "and failures with their seeds.")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run; run j uses seed + j (default 0)")
    p.add_argument("--runs", type=int, default=None, help="stop after this many runs instead (e.g. 1 to replay a seed)")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator (default verilator)")
    p.add_argument("--work-dir", default=None, help="where run directories go (default: a temporary directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="simulator processes, on a Dask LocalCluster when > 1 (default: the machine's cores, "
                        f"{os.cpu_count()} here)")
    p.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="run on the Dask scheduler at ADDRESS (tcp://host:8786) instead")
    p.set_defaults(func=_main)
