#!/usr/bin/env python3
"""Quantization-aware training of the digits network at 8 and 4 bits; writes their model files.

For each width (golden/qat.py: 8 bits with BN folded, requantizer epilogues; 4 bits with BN +
activation as integer thresholds) this script trains from ``golden/models/digits_float.npz``,
exports ``golden/models/digits_qat<bits>.json`` + ``.npz`` through :func:`intdeploy.golden.network.convert`,
checks the export (the model file loads back equal, the 4-bit MAC layers use thresholds, the host
driver accepts the model and :class:`intdeploy.host.driver.ModelEngine` reproduces IntegerDeployable on the
whole test split) and prints the test-split accuracy of every representation:

* float: the FullPrecision network of the float parameters QAT starts from;
* fake-quant: the QAT network (PyTorch, float64, PACT + LSQ);
* integer: golden IntegerDeployable on the exported model file;
* RTL (``--rtl``): the accelerator top (8x8 MAC array, default parameters) under Verilator,
  through :func:`intdeploy.host.driver.run_network`; every layer's output is compared with golden element by
  element over the whole split, and the script fails on the first difference.

Deterministic (seeded, float64, one thread, no oneDNN) and, because this script loads torch with
ATen's kernels at the baseline ISA and MKL in its reproducible mode
(:data:`intdeploy.golden.qat.REPRODUCIBLE_ENV`), meant to give the same bytes on any x86-64 CPU. Needs
PyTorch (``.venv/bin/pip install torch==2.13.0``).

Usage: ``.venv/bin/python scripts/qat_digits.py [--bits 8 4] [--epochs N] [--rtl] [--out-dir DIR]``
"""

import argparse
import os
from pathlib import Path
import time

# Read by ATen and MKL at their first computation, so set before anything imports torch (intdeploy.golden.qat
# does); intdeploy.golden.qat.reproducible_across_cpus() checks below that they took effect and match its table.
os.environ.update(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")

import numpy as np

from intdeploy.golden import digits
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import MacLayer, load, same_model, save
from intdeploy.golden.network import FullPrecision, accuracy

#: The top the RTL column runs on: an 8x8 MAC array, every other parameter at its default.
RTL_PARAMS = dict(rows=8, cols=8)


def model_path(bits, out_dir=digits.MODELS_DIR):
    return Path(out_dir) / f"digits_qat{bits}.json"


def check_model(model, bits, x_test):
    """The export checks: thresholds exactly on the 4-bit MAC layers with an activation, the driver
    accepts the model, ModelEngine equals IntegerDeployable on every layer of ``x_test``."""
    from intdeploy.host.driver import Driver
    from intdeploy.host.network import run_network
    from intdeploy.sim.accel_model import ModelEngine

    macs = [layer for layer in model.layers if isinstance(layer, MacLayer)]
    with_threshold = [m.name for m in macs if m.threshold is not None]
    expected = ["conv1", "conv2"] if bits <= 4 else []
    if with_threshold != expected:
        raise SystemExit(f"qat_digits: {bits}-bit model: threshold epilogues on {with_threshold}, expected {expected}")
    engine = ModelEngine()
    Driver(engine.info).check(model)
    golden = IntegerDeployable(model).run(x_test, trace=True)
    out, _ = run_network(model, x_test, engine)
    for name, g in golden.items():
        if not np.array_equal(out[name], g):
            raise SystemExit(f"qat_digits: {bits}-bit model: ModelEngine differs from IntegerDeployable at {name!r}")
    return golden


def run_rtl(model, x_test, golden, work_dir=None):
    """Run ``model`` on the RTL top (Verilator); compare every layer with ``golden``; the logits."""
    from intdeploy.host.network import run_network
    from intdeploy.sim.rtl_engine import RtlEngine

    out, stats = run_network(model, x_test, RtlEngine("verilator", RTL_PARAMS, work_dir=work_dir))
    for name, g in golden.items():
        bad = np.argwhere(out[name] != g)
        if bad.size:
            raise SystemExit(f"qat_digits: RTL differs from golden at {name!r}, first element {bad[0].tolist()}: "
                             f"RTL {out[name][tuple(bad[0])]}, golden {g[tuple(bad[0])]}")
    return out[model.outputs[0]], stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4], choices=[8, 4])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--out-dir", default=str(digits.MODELS_DIR), help="where the model files go")
    ap.add_argument("--rtl", action="store_true", help="also run the test split on the RTL top (Verilator)")
    ap.add_argument("--rtl-dir", default=None, help="work directory of the RTL runs (default: a temporary one)")
    args = ap.parse_args(argv)

    from intdeploy.golden import qat
    if not qat.reproducible_across_cpus():
        raise SystemExit(f"qat_digits: torch computed before {qat.REPRODUCIBLE_ENV} was set; the model files "
                         f"would depend on this CPU")

    x_train, y_train, x_test, y_test = digits.load_split()
    fp = accuracy(FullPrecision(digits.float_network()).run(x_test / 16.0), y_test)
    rows = []
    for bits in args.bits:
        t0 = time.time()
        model_qat = qat.train(bits, epochs=args.epochs, seed=args.seed, lr=args.lr, log=print)
        print(f"{bits}-bit QAT: {time.time() - t0:.1f} s")
        dep = model_qat.deployment(x_train)
        path = save(dep.model, model_path(bits, args.out_dir))
        model = load(path)
        if not same_model(model, dep.model):
            raise SystemExit(f"qat_digits: {path} does not load back equal to the exported model")
        golden = check_model(model, bits, x_test)
        row = dict(bits=bits, float=fp, fake_quant=qat.evaluate(model_qat, x_test, y_test),
                   integer=accuracy(golden[model.outputs[0]], y_test), rtl=None)
        print(f"wrote {path} (+ .npz); driver and ModelEngine agree with golden on all {len(y_test)} test images")
        if args.rtl:
            t0 = time.time()
            rtl_dir = None if args.rtl_dir is None else Path(args.rtl_dir) / f"qat{bits}"
            logits, stats = run_rtl(model, x_test, golden, rtl_dir)
            row["rtl"] = accuracy(logits, y_test)
            print(f"{bits}-bit RTL (Verilator, {RTL_PARAMS['rows']}x{RTL_PARAMS['cols']}): bit-exact with golden on "
                  f"every layer of all {len(y_test)} test images, {stats['cycles']} core cycles, "
                  f"{time.time() - t0:.0f} s")
        rows.append(row)

    print(f"\nTest-split accuracy ({len(y_test)} images):\n")
    print("| bits | float | fake-quant (QAT) | integer (golden) | RTL (Verilator) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{100 * r[k]:.2f}%" if r[k] is not None else "not run" for k in ("float", "fake_quant", "integer", "rtl")]
        print(f"| {r['bits']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
