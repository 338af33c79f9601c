"""The ``intdeploy`` command line.

``intdeploy <command> [options]``; ``intdeploy --help`` lists the commands. A user error (a bad
model file, a bad argument, a value refused by validation) prints one line
``intdeploy: error: ...`` on stderr and exits with status 2; a traceback means a bug in
intdeploy (set ``INTDEPLOY_TRACEBACK=1`` to get one for user errors too).

Adding a command: write a ``_<name>_parser(sub)`` that calls ``sub.add_parser(...)``, declares
the arguments and sets ``func`` (a function of the parsed arguments returning the exit status),
then append it to :data:`COMMANDS`. Import heavy modules inside ``func``, so that ``--help``
stays fast.
"""

import argparse
import importlib
import json
import os
from pathlib import Path
import sys

__all__ = ["main", "COMMANDS"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``intdeploy: error: <message>``, status 2."""

    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


def _fail(message):
    print(f"intdeploy: error: {message}", file=sys.stderr)
    return 2


# --- demo ---------------------------------------------------------------------------------------

def _pct(v):
    return f"{100 * v:6.2f} %"


def _demo(args):
    from intdeploy.golden import digits, model_file
    from intdeploy.golden.network import Deployment, IntegerDeployable, accuracy, agreement

    path = Path(args.model) if args.model else digits.MODEL_FILE
    model = model_file.load(path)
    fresh = digits.convert()
    ref = fresh.model
    if [(layer.name, layer.kind) for layer in model.layers] != [(layer.name, layer.kind) for layer in ref.layers] \
            or any(model.tensors[k].shape != ref.tensors[k].shape for k in ref.tensors):
        return _fail(f"{path}: not a digits model (its layers differ from the network of golden/digits.py)")
    same = model_file.same_model(model, ref, metadata=False)
    x_test, y_test = digits.load_split()[2:]
    integer = IntegerDeployable(model)
    # The reference representations come from the committed float parameters, the integer one
    # from the model file given, so that a modified file shows up in the comparison below.
    dep = Deployment(fresh.full_precision, fresh.fake_quantized, fresh.quantized, integer, fresh.options)
    xf = x_test / 16.0
    print(f"intdeploy demo: digits network (golden/digits.py) on the 8x8 digits test split, {len(y_test)} images")
    print(f"model file: {_display(path)} ({'identical to' if same else 'DIFFERS from'} a fresh conversion of "
          f"{digits.FLOAT_PARAMS.name})")
    print()
    print("accuracy")
    print(f"  FullPrecision        {_pct(accuracy(dep.full_precision.run(xf), y_test))}   float64")
    print(f"  FakeQuantized        {_pct(accuracy(dep.fake_quantized.run(xf), y_test))}   "
          f"{dep.options.weight_bits}-bit weights per channel, {dep.options.act_bits}-bit PACT activations")
    print(f"  QuantizedDeployable  {_pct(accuracy(dep.quantized.run(xf), y_test))}   float64, every tensor eps * integer")
    print(f"  IntegerDeployable    {_pct(accuracy(integer.run(x_test), y_test))}   int64, from the model file")
    print()
    print("IntegerDeployable vs QuantizedDeployable / eps, per layer")
    print("  end to end: both run on the test images; isolated: the QuantizedDeployable layer gets the")
    print("  IntegerDeployable inputs, and each element must lie within the RQ error bound (Eq. 14)")
    rows = agreement(dep, x_test)
    w = max(len(r.name) for r in rows)
    print(f"  {'layer':<{w}}  {'kind':<9}  {'equal':>8}  {'max|d|':>6}  {'iso equal':>9}  {'max|d|':>6}  {'bound':>5}  within")
    for r in rows:
        print(f"  {r.name:<{w}}  {r.kind:<9}  {_pct(r.equal):>8}  {r.max_diff:>6}  {_pct(r.iso_equal):>9}  "
              f"{r.iso_max_diff:>6}  {r.bound:>5}  {'yes' if r.within else 'NO'}")
    bad = [r.name for r in rows if not r.within]
    if bad:
        print(f"FAIL: outside the RQ error bound in layer(s) {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def _demo_parser(sub):
    p = sub.add_parser("demo", help="the default network in all four NEMO representations (golden only; see run)",
                       description="Runs the digits network (golden/digits.py) on its test split in the "
                                   "FullPrecision, FakeQuantized, QuantizedDeployable and IntegerDeployable "
                                   "representations and prints the accuracies and the per-layer agreement "
                                   "of IntegerDeployable with QuantizedDeployable.")
    p.add_argument("model", nargs="?", help="digits model file (JSON manifest; default: the committed "
                                            "golden/models/digits.json)")
    p.set_defaults(func=_demo)


def _display(path):
    """``path`` relative to the working directory when it lies below it (stable in result files)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- bench --------------------------------------------------------------------------------------

def _bench(args):
    import platform
    import time

    import numpy as np

    from intdeploy.golden import digits, model_file
    from intdeploy.golden.network import IntegerDeployable, accuracy

    if args.runs < 1:
        raise _UsageError(f"--runs: {args.runs} is out of range; allowed >= 1")
    path = Path(args.model) if args.model else digits.MODEL_FILE
    ideploy = IntegerDeployable(model_file.load(path))
    x_test, y_test = digits.load_split()[2:]
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        logits = ideploy.run(x_test)
        times.append(time.perf_counter() - t0)
    best = min(times)
    result = {
        "benchmark": "golden IntegerDeployable inference (int64 numpy), digits test split",
        "engine": "golden",
        "model": ideploy.model.name,
        "model_file": _display(path),
        "images": int(len(y_test)),
        "runs": args.runs,
        "best_seconds": round(best, 6),
        "images_per_second": round(len(y_test) / best, 1),
        "accuracy": accuracy(logits, y_test),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(f"golden IntegerDeployable: {result['images']} images in {best * 1e3:.1f} ms (best of {args.runs}): "
          f"{result['images_per_second']:.0f} images/s, accuracy {_pct(result['accuracy']).strip()}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


def _bench_parser(sub):
    p = sub.add_parser("bench", help="images per second of the golden model",
                       description="Golden IntegerDeployable inference of the digits test split; prints "
                                   "images per second (best of --runs) and optionally writes them as JSON.")
    p.add_argument("--out", help="write the result as JSON here (e.g. docs/perf/golden.json)")
    p.add_argument("--runs", type=int, default=5, help="timed runs; the best counts (default 5)")
    p.add_argument("--model", help="model file (default: golden/models/digits.json)")
    p.set_defaults(func=_bench)


# --- verilog ------------------------------------------------------------------------------------

def _verilog(args):
    from intdeploy.hw import generate
    return generate.main(args)


def _verilog_parser(sub):
    from intdeploy.hw.generate import add_arguments      # argparse only; amaranth is imported by _verilog
    p = sub.add_parser("verilog", help="Verilog and clock-crossing constraints of the accelerator top",
                       description="Elaborates the accelerator top (hw/top.py) for the given array and "
                                   "buffer sizes into one Verilog file OUT.v, writes the constraints of its "
                                   "clock-domain crossings as OUT.sdc and OUT.xdc, and prints the ports and "
                                   "parameters (docs/top.md).")
    add_arguments(p)
    p.set_defaults(func=_verilog)


#: Sub-command parser builders, in --help order: a function, or the module whose ``add_parser``
#: it is (imported when the parser is built: a cycle-free way to reach the tools above the CLI).
COMMANDS = [_demo_parser, _bench_parser, _verilog_parser, "intdeploy.tools.synth", "intdeploy.sim.soak",
            "intdeploy.tools.run", "intdeploy.sim.crosscheck", "intdeploy.tools.import_model", "intdeploy.tools.perf"]


def _parser():
    parser = _Parser(prog="intdeploy", description="intdeploy: int8 neural-network accelerator and its "
                                                   "golden model of integer-only inference.")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for add in COMMANDS:
        (importlib.import_module(add).add_parser if isinstance(add, str) else add)(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 user error)."""
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except _UsageError as e:
        return _fail(str(e))
    except BrokenPipeError:
        # The reader went away (`intdeploy demo | head`): not an error of ours or the user's.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as e:
        # ValueError: validation refused something the user gave (ModelFormatError included);
        # OSError: a file the user named could not be read or written.
        if os.environ.get("INTDEPLOY_TRACEBACK"):
            raise
        lines = str(e).splitlines()
        return _fail(lines[0] if lines else type(e).__name__)


if __name__ == "__main__":
    sys.exit(main())
