"""``intdeploy bench``: images per second of golden IntegerDeployable inference.

:func:`golden_throughput` times the digits test split (best of ``runs``) and returns the result
that ``make bench`` stores as docs/perf/golden.json.
"""

import json
import os
from pathlib import Path
import platform
import time

import numpy as np

from intdeploy.golden import digits, model_file
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.network import accuracy
from intdeploy.tools import UsageError, display_path, pct

__all__ = ["golden_throughput", "add_parser"]


def golden_throughput(model=None, runs=5):
    """Golden IntegerDeployable inference of the digits test split, timed ``runs`` times; the
    best, as the dict docs/perf/golden.json holds. ``model``: a model file (default: the
    committed digits model)."""
    if runs < 1:
        raise UsageError(f"--runs: {runs} is out of range; allowed >= 1")
    path = Path(model) if model else digits.MODEL_FILE
    ideploy = IntegerDeployable(model_file.load(path))
    x_test, y_test = digits.load_split()[2:]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        logits = ideploy.run(x_test)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "benchmark": "golden IntegerDeployable inference (int64 numpy), digits test split",
        "engine": "golden",
        "model": ideploy.model.name,
        "model_file": display_path(path),
        "images": int(len(y_test)),
        "runs": runs,
        "best_seconds": round(best, 6),
        "images_per_second": round(len(y_test) / best, 1),
        "accuracy": accuracy(logits, y_test),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def _bench(args):
    result = golden_throughput(args.model, args.runs)
    print(f"golden IntegerDeployable: {result['images']} images in {result['best_seconds'] * 1e3:.1f} ms (best of "
          f"{args.runs}): {result['images_per_second']:.0f} images/s, accuracy {pct(result['accuracy']).strip()}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


def add_parser(sub):
    p = sub.add_parser("bench", help="images per second of the golden model",
                       description="Golden IntegerDeployable inference of the digits test split; prints "
                                   "images per second (best of --runs) and optionally writes them as JSON.")
    p.add_argument("--out", help="write the result as JSON here (e.g. docs/perf/golden.json)")
    p.add_argument("--runs", type=int, default=5, help="timed runs; the best counts (default 5)")
    p.add_argument("--model", help="model file (default: golden/models/digits.json)")
    p.set_defaults(func=_bench)
