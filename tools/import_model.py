"""``intdeploy import``: a quantized ONNX, TFLite or PyTorch model -> an intdeploy model file.

``intdeploy import MODEL.onnx -o net.json``, ``intdeploy import MODEL.tflite -o net.json`` (int8
TFLite, :mod:`intdeploy.golden.importers.from_tflite`) or ``intdeploy import MODEL.pt --input-shape C,H,W
-o net.json`` (``MODEL.pt``: a converted ``torch.ao`` sequential model saved with
``torch.jit.save(torch.jit.script(model), path)``; a module pickled whole with ``torch.save`` only
with ``--trust-pickle``, since unpickling runs code named in the file). The importer proves every layer's requantization equal to the
framework's float32 one on every reachable accumulator value (:mod:`intdeploy.golden.importers.fp32`), then
``--verify N`` random inputs run in the framework (ONNX Runtime or PyTorch) and in golden and
must agree element by element (exit status 1 otherwise). An unsupported model is one line naming
the node and the operator, exit status 2.
"""

import os
from pathlib import Path
import sys
import tempfile

import numpy as np

from intdeploy.golden import model_file
from intdeploy.golden.importers import framework
from intdeploy.golden.importers.from_onnx import import_onnx
from intdeploy.golden.importers.from_tflite import TfliteSource, import_tflite, litert_outputs
from intdeploy.golden.importers.from_torch import import_torch
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.host import protocol as P
from intdeploy.host.network import run_network
from intdeploy.hw.config import AcceleratorConfig
from intdeploy.sim import ENGINES, engine_alias
from intdeploy.sim.accel_model import ModelEngine
from intdeploy.sim.crosscheck import _quiet
from intdeploy.sim.rtl_engine import RtlEngine

__all__ = ["load_source", "framework_outputs", "flatten_outputs", "verify_range", "add_parser"]


def _shape(text):
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"--input-shape: {text!r} is not a list of integers like 3,8,8 or 64") from None
    if len(dims) not in (1, 3) or min(dims) < 1:
        raise ValueError(f"--input-shape: {text!r}; allowed C,H,W or K with positive sizes")
    return dims


#: Largest ``--verify``: the inputs and every layer's outputs are held in memory at once.
MAX_VERIFY = 100_000


def _load_torch(path, trust_pickle=False):
    """A TorchScript archive (``torch.jit.save``); a whole pickled module (``torch.save``) only with
    ``trust_pickle``: unpickling runs whatever code the file names, so a file from elsewhere is
    refused by default (ValueError naming the safe format and the opt-in)."""
    import torch  # optional dependency (torch extra)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception:           # noqa: BLE001 - not TorchScript: maybe a pickled module
        pass
    if not trust_pickle:
        raise ValueError(f"MODEL: {path} is not a TorchScript archive; a pickled module (torch.save) is refused "
                         f"because loading it runs code from the file; allowed TorchScript "
                         f"(torch.jit.save(torch.jit.script(model), path)) or ONNX, or --trust-pickle for a file "
                         f"you made yourself")
    try:
        # the user vouched for the file (--trust-pickle): weights_only=False runs its pickle code
        module = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:      # noqa: BLE001 - unpickling raises many types
        raise ValueError(f"MODEL: {path}: neither TorchScript nor a loadable torch.save file "
                         f"({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"MODEL: {path} holds a {type(module).__name__}; expected a quantized model saved with "
                         f"torch.jit.save(torch.jit.script(model), path) (a state_dict has no module structure)")
    return module


def _check_output(model_path, output):
    """Refuse an output that would overwrite the input model or cannot be written, before any
    work (ValueError naming ``-o/--output``)."""
    out = Path(output)
    targets = [out, out.with_suffix(".npz")]
    src = Path(model_path)
    if src.exists() and any(t.exists() and t.resolve() == src.resolve() for t in targets):
        raise ValueError(f"-o/--output: {output} would overwrite the input model {model_path}; allowed another path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"-o/--output: {output}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or any(t.exists() and not os.access(t, os.W_OK) for t in targets):
        raise ValueError(f"-o/--output: {output} cannot be written (permission denied)")


def load_source(path, input_shape=None, allow_inexact=True, trust_pickle=False):
    """Import ``path`` (``.onnx``, or ``.pt`` / ``.pth``); returns ``(IntegerModel, Proof, source)``,
    ``source`` the loaded framework model (``onnx.ModelProto`` or ``torch.nn.Module``). A pickled
    PyTorch module is loaded only with ``trust_pickle`` (see :func:`_load_torch`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        import onnx  # optional dependency (onnx extra)
        try:
            source = onnx.load(str(path))
        except OSError:
            raise
        except Exception as e:        # noqa: BLE001 - protobuf raises several types
            raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
        if not source.graph.node:
            # protobuf reads an empty (or all-default) file as an empty model without complaint
            raise ValueError(f"MODEL: {path} holds no ONNX graph (an empty or truncated file?); allowed an ONNX "
                             f"model with at least one node")
        model, proof = import_onnx(source, name=path.stem, strict=not allow_inexact)
    elif suffix == ".tflite":
        model, proof, source = import_tflite(path, name=path.stem)
    elif suffix in (".pt", ".pth"):
        source = _load_torch(path, trust_pickle)
        model, proof = import_torch(source, input_shape, name=path.stem,
                                    strict=not allow_inexact)
    else:
        raise ValueError(f"MODEL: {path.name!r} has suffix {suffix!r}; allowed .onnx, .tflite, .pt, .pth")
    return model, proof, source


def framework_outputs(source, model, images):
    """Run ``images`` (integer, the model file's channels-last layout) in the framework that
    ``source`` came from; returns its integer output in the model file's layout."""
    spec = model.input
    if isinstance(source, TfliteSource):
        return litert_outputs(source, model, images)
    x = np.asarray(images, dtype=np.int64)
    nchw = x.ndim == 4
    xf = x.transpose(0, 3, 1, 2) if nchw else x
    eps = float(np.float32(spec.eps))
    if hasattr(source, "SerializeToString"):          # onnx.ModelProto
        from onnx import TensorProto  # optional dependency (onnx extra)
        import onnxruntime as ort  # optional dependency (onnx extra)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(source.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        gin = sess.get_inputs()[0]
        elem = next(i for i in source.graph.input if i.name == gin.name).type.tensor_type.elem_type
        feed = xf.astype({TensorProto.UINT8: np.uint8, TensorProto.INT8: np.int8}[elem]) \
            if elem in (TensorProto.UINT8, TensorProto.INT8) else \
            ((xf - spec.zero_point) * eps).astype(np.float32)
        dims = [d.dim_value for d in next(i for i in source.graph.input if i.name == gin.name).type.tensor_type.shape.dim]
        if len(dims) != feed.ndim:
            # the model file's input is the graph input after a leading Flatten, in (c, h, w) order
            feed = feed.reshape([len(feed)] + dims[1:])
        y = sess.run(None, {gin.name: feed})[0]
    else:
        import torch  # optional dependency (torch extra)
        with torch.no_grad():
            y = source(torch.tensor((xf - spec.zero_point) * eps, dtype=torch.float32))
        y = y.int_repr().numpy() if y.is_quantized else y.numpy()
    if np.issubdtype(np.asarray(y).dtype, np.floating):
        # a DequantizeLinear / DeQuantize output: back to the integers (exact: one float32 product)
        out = model.layers[[layer.name for layer in model.layers].index(model.outputs[0])]
        zp = int(getattr(getattr(out, "requant", None), "zero_point", 0))
        y = np.rint(np.asarray(y, dtype=np.float64) / float(np.float32(out.eps))) + zp
    y = np.asarray(y).astype(np.int64)
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y


def verify_range(source, spec, text=None):
    """The input codes ``--verify`` draws from: ``--input-range`` (``text``), else the range the
    model was calibrated for: fbgemm's default qconfig calibrates uint8 activations to 7 bits
    (``reduce_range=True``), so [0, 127] for a PyTorch uint8 input; the input's declared range
    otherwise. Returns ``(lo, hi, why)``."""
    if text is not None:
        try:
            lo, hi = (int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"--input-range: {text!r} is not LO,HI (two integers)") from None
        if not spec.lo <= lo <= hi <= spec.hi:
            raise ValueError(f"--input-range: [{lo}, {hi}] is outside the model input's range [{spec.lo}, "
                             f"{spec.hi}] or empty")
        return lo, hi, "--input-range"
    if not hasattr(source, "SerializeToString") and spec.dtype == "uint8":
        return spec.lo, min(spec.hi, 127), "the 7-bit range fbgemm's default qconfig calibrates (reduce_range)"
    return spec.lo, spec.hi, "the input's declared range"


def flatten_outputs(v):
    """One output or a tuple of outputs as one (samples, elements) array, outputs side by side."""
    return np.concatenate([np.asarray(a).reshape(len(a), -1) for a in (v if isinstance(v, tuple) else (v,))], axis=1)


def _requantizers(layer):
    """The requantizer parameter sets of a model-file layer (for the report's rounding list)."""
    if getattr(layer, "requant", None) is not None:
        return [layer.requant]
    params = getattr(layer, "params", None)
    return list(params.branches) + [params.output] if params is not None else []


def _run_engine(args, model, images, golden_out):
    """Run the verify inputs on the accelerator (``--sim``: its executable model or the RTL, one
    simulation) and compare with golden; prints the agreement, returns the mismatch count."""
    config = AcceleratorConfig(rows=args.rows, cols=args.cols)
    info = P.Info.of(config)
    if args.sim == "model":
        out, _ = run_network(model, images, ModelEngine(info))
    else:
        work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="intdeploy-import-"))
        work.mkdir(parents=True, exist_ok=True)
        with _quiet(work / "simulator.log"):
            out, _ = run_network(model, images, RtlEngine(args.sim, config, work_dir=work))
    out = flatten_outputs(tuple(out[name] for name in model.outputs)) if isinstance(out, dict) else flatten_outputs(out)
    golden_out = flatten_outputs(golden_out)
    bad = int(np.count_nonzero(out != golden_out))
    print(f"{args.sim} ({args.rows}x{args.cols} accelerator): {len(images)} inputs, engine vs golden: "
          f"{out.size - bad}/{out.size} elements equal{'' if bad == 0 else ' - MISMATCH'}")
    return bad


def _main(args):
    shape = _shape(args.input_shape) if args.input_shape else None
    if not (1 if args.sim else 0) <= args.verify <= MAX_VERIFY:
        raise ValueError(f"--verify: {args.verify} is out of range; allowed {1 if args.sim else 0}..{MAX_VERIFY}")
    _check_output(args.model, args.output)
    model, proof, source = load_source(args.model, shape, allow_inexact=not args.strict,
                                       trust_pickle=args.trust_pickle)
    if args.verify:
        lo, hi, why = verify_range(source, model.input, args.input_range)
    out = model_file.save(model, args.output)
    p = proof.as_dict()
    tflite = isinstance(source, TfliteSource)
    modes = sorted({r.rounding for layer in model.layers for r in _requantizers(layer)})
    against = "LiteRT's reference-kernel integer formulas" if tflite else "the framework's float32 requantization"
    print(f"{args.model} -> {out} (+ {out.with_suffix('.npz').name}): {len(model.layers)} layers, "
          f"rounding {', '.join(modes) or 'none'}; requantization proof against {against}: {p['checked']} "
          f"values checked, {p['fitted']} channel(s) refitted, {p['inexact']} inexact ({p['inexact_values']} values)")
    for what, ch, values in proof.differences:
        if values.ndim == 2:        # an add: input pairs
            print(f"  inexact: {what}: {len(values)} input pair(s) (a, b) add differently from the framework's "
                  f"float32 add, e.g. {tuple(int(v) for v in values[0])}")
            continue
        print(f"  inexact: {what} channel {ch}: {values.size} accumulator value(s) requantize differently from "
              f"the framework's result, e.g. {int(values[0])}")
    for index, op, what in getattr(source, "host_ops", ()):
        print(f"  operator #{index} ({op}): {what}")
    for warning in model.metadata.get(framework.WARNINGS_KEY, []):
        print(f"intdeploy import: warning: {warning}", file=sys.stderr)
    if not args.verify:
        return 0
    rng = np.random.default_rng(args.seed)
    images = rng.integers(lo, hi + 1, (args.verify,) + model.input.shape)
    if model.extra_inputs:                      # further inputs: their declared ranges
        images = {model.input.name: images, **{s.name: rng.integers(s.lo, s.hi + 1, (args.verify,) + s.shape)
                                               for s in model.extra_inputs}}
    want = framework_outputs(source, model, images)
    got = IntegerDeployable(model).run(images)
    if tflite:                                  # every output, side by side
        want, got = flatten_outputs(want), flatten_outputs(got)
    print(f"verify: {args.verify} random inputs in [{lo}, {hi}] ({why}), framework vs golden: "
          f"{np.count_nonzero(got == want)}/{want.size} elements equal")
    if tflite:
        engine_bad = _run_engine(args, model, images, got) if args.sim else 0
        if np.any(got != want):
            i = tuple(int(v) for v in np.argwhere(got != want)[0])
            print(f"verify: MISMATCH at {np.count_nonzero(got != want)} element(s); first at {i} (sample, element): "
                  f"LiteRT {int(want[i])}, golden {int(got[i])}")
        return 0 if np.all(got == want) and not engine_bad else 1
    cmp = framework.compare(model, images, want, got)
    for line in cmp.lines():
        print(f"verify: {line}")
    engine_bad = _run_engine(args, model, images, got) if args.sim else 0
    for what, mask, hint in (("golden differs from the framework's float32 requantization of exact accumulators",
                              cmp.inexact, "; the proof above lists the inexact accumulator values"),
                             ("the framework's output is not explained", cmp.unexplained, "")):
        if mask.any():
            i = tuple(int(v) for v in np.argwhere(mask)[0])
            print(f"verify: MISMATCH: {what} at {np.count_nonzero(mask)} element(s); first at {i} (sample, "
                  f"element): framework {int(want[i])}, golden {int(got[i])}, framework on exact accumulators "
                  f"{int(cmp.exact[i])}{hint if proof.inexact else ''}")
    return 0 if cmp.ok and not engine_bad else 1


def add_parser(sub):
    """The ``import`` sub-command (registered in :data:`intdeploy.tools.cli.COMMANDS`)."""
    p = sub.add_parser("import", help="import a quantized ONNX (QLinear/QDQ), int8 TFLite or PyTorch (torch.ao fbgemm) "
                            "model",
                       description="Converts a quantized ONNX model (QLinearConv, QLinearMatMul, QDQ), an int8 "
                                   "TFLite model or a converted torch.ao sequential model saved as TorchScript "
                                   "into an intdeploy model file, proving each layer's requantization equal to "
                                   "the framework's, then checks random inputs in the framework (ONNX Runtime, "
                                   "the LiteRT interpreter's reference kernels, PyTorch) and in golden "
                                   "(docs/import.md).")
    p.add_argument("model", metavar="MODEL", help="MODEL.onnx, MODEL.tflite, or MODEL.pt / MODEL.pth (TorchScript; a whole "
                                                  "pickled module only with --trust-pickle)")
    p.add_argument("-o", "--output", required=True, help="model file to write (JSON; arrays beside it as .npz)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also load a PyTorch module pickled whole with torch.save: unpickling runs code named in the "
                        "file, so only for a file you made yourself (default: TorchScript only)")
    p.add_argument("--input-shape", help="PyTorch models: per-sample input shape C,H,W or K (default: "
                                         "in_features of a first Linear)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a layer whose float32 requantization no integer requantizer reproduces on "
                        "every reachable accumulator value (default: keep it and list the values that differ)")
    p.add_argument("--verify", type=int, default=64, help="random inputs compared framework vs golden "
                                                          f"(default 64; 0: none; at most {MAX_VERIFY})")
    p.add_argument("--seed", type=int, default=0, help="seed of the --verify inputs (default 0)")
    p.add_argument("--input-range", metavar="LO,HI",
                   help="input codes --verify draws from (default: the range the model was calibrated for: "
                        "[0, 127] for a PyTorch fbgemm uint8 input, the input's declared range otherwise)")
    p.add_argument("--sim", type=engine_alias, choices=ENGINES,
                   help="also run the --verify inputs on the accelerator: its executable model (model; golden, its "
                        "former name, is accepted) or "
                        "the RTL on a simulator, compared with golden element by element")
    p.add_argument("--rows", type=int, default=8, help="--sim: MAC array rows (default 8)")
    p.add_argument("--cols", type=int, default=8, help="--sim: MAC array columns (default 8)")
    p.add_argument("--work-dir", help="--sim: simulator work directory (default: a temporary one)")
    p.set_defaults(func=_main)
