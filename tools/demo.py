"""``intdeploy demo``: the digits network in NEMO's four representations (golden only).

Accuracies on the test split of FullPrecision, FakeQuantized, QuantizedDeployable and
IntegerDeployable (from the model file given, by default the committed one), and the per-layer
agreement of IntegerDeployable with QuantizedDeployable within the requantization error bound
(NEMO report Eq. 14). ``intdeploy run`` is the same network on the accelerator.
"""

from pathlib import Path
import sys

from intdeploy.golden import digits, model_file
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.network import Deployment, accuracy, agreement
from intdeploy.tools import UsageError, display_path, pct

__all__ = ["add_parser"]


def _demo(args):
    path = Path(args.model) if args.model else digits.MODEL_FILE
    model = model_file.load(path)
    fresh = digits.convert()
    ref = fresh.model
    if [(layer.name, layer.kind) for layer in model.layers] != [(layer.name, layer.kind) for layer in ref.layers] \
            or any(model.tensors[k].shape != ref.tensors[k].shape for k in ref.tensors):
        raise UsageError(f"{path}: not a digits model (its layers differ from the network of golden/digits.py)")
    same = model_file.same_model(model, ref, metadata=False)
    x_test, y_test = digits.load_split()[2:]
    integer = IntegerDeployable(model)
    # The reference representations come from the committed float parameters, the integer one
    # from the model file given, so that a modified file shows up in the comparison below.
    dep = Deployment(fresh.full_precision, fresh.fake_quantized, fresh.quantized, integer, fresh.options)
    xf = x_test / 16.0
    print(f"intdeploy demo: digits network (golden/digits.py) on the 8x8 digits test split, {len(y_test)} images")
    print(f"model file: {display_path(path)} ({'identical to' if same else 'DIFFERS from'} a fresh conversion of "
          f"{digits.FLOAT_PARAMS.name})")
    print()
    print("accuracy")
    print(f"  FullPrecision        {pct(accuracy(dep.full_precision.run(xf), y_test))}   float64")
    print(f"  FakeQuantized        {pct(accuracy(dep.fake_quantized.run(xf), y_test))}   "
          f"{dep.options.weight_bits}-bit weights per channel, {dep.options.act_bits}-bit PACT activations")
    print(f"  QuantizedDeployable  {pct(accuracy(dep.quantized.run(xf), y_test))}   float64, every tensor eps * integer")
    print(f"  IntegerDeployable    {pct(accuracy(integer.run(x_test), y_test))}   int64, from the model file")
    print()
    print("IntegerDeployable vs QuantizedDeployable / eps, per layer")
    print("  end to end: both run on the test images; isolated: the QuantizedDeployable layer gets the")
    print("  IntegerDeployable inputs, and each element must lie within the RQ error bound (Eq. 14)")
    rows = agreement(dep, x_test)
    w = max(len(r.name) for r in rows)
    print(f"  {'layer':<{w}}  {'kind':<9}  {'equal':>8}  {'max|d|':>6}  {'iso equal':>9}  {'max|d|':>6}  {'bound':>5}  within")
    for r in rows:
        print(f"  {r.name:<{w}}  {r.kind:<9}  {pct(r.equal):>8}  {r.max_diff:>6}  {pct(r.iso_equal):>9}  "
              f"{r.iso_max_diff:>6}  {r.bound:>5}  {'yes' if r.within else 'NO'}")
    bad = [r.name for r in rows if not r.within]
    if bad:
        print(f"FAIL: outside the RQ error bound in layer(s) {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub):
    p = sub.add_parser("demo", help="the default network in all four NEMO representations (golden only; see run)",
                       description="Runs the digits network (golden/digits.py) on its test split in the "
                                   "FullPrecision, FakeQuantized, QuantizedDeployable and IntegerDeployable "
                                   "representations and prints the accuracies and the per-layer agreement "
                                   "of IntegerDeployable with QuantizedDeployable.")
    p.add_argument("model", nargs="?", help="digits model file (JSON manifest; default: the committed "
                                            "golden/models/digits.json)")
    p.set_defaults(func=_demo)
