"""Cross-checks of golden and the RTL against the software they claim to reproduce bit for bit.

For each reference a few small layers are generated with random scales and with power-of-two
scales (these make exact ``.5`` ties common, the only place the rounding modes differ), run in
the reference, in golden (:class:`intdeploy.golden.network.IntegerDeployable`) and on an engine (the
executable accelerator model, or the Verilog top on Verilator / Icarus through
:func:`intdeploy.host.driver.run_network`), and compared element by element:

==========  ==================================================  ==============  =================
reference   what runs                                           matching mode   model built by
==========  ==================================================  ==============  =================
ort         ONNX Runtime QLinearMatMul / QLinearConv            ``half_even``   ONNX importer
fbgemm      PyTorch fbgemm quantized Linear / Conv2d            ``half_even``   PyTorch importer
tflite      TFLite reference-kernel integer formulas            ``tflite``      TFLite parameters
            (transcribed below): requantization, int8 Add,
            average pool
qonnx       QONNX ``MultiThreshold`` (``x >= T``, count)        threshold unit  thresholds
nemo        NEMO IntegerDeployable formulas in torch int64:     ``floor``       NEMO parameters
            folded integer BN, unclipped add, Eq. 25 pooling
==========  ==================================================  ==============  =================

The report also gives, for every case, the match rate of the *other* modes (the same model with
its rounding swapped, run in golden), so a reader sees that the cases can tell the modes apart.
``docs/crosscheck.md`` explains each reference and what is proven.
"""

import argparse
import contextlib
from dataclasses import dataclass, field, replace
import json
import math
import os
from pathlib import Path
import sys
import tempfile
import warnings

import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.add import AddParams
from intdeploy.golden.importers import framework, x86_kernels
from intdeploy.golden.importers import litert_kernels as K
from intdeploy.golden.importers.from_onnx import import_onnx
from intdeploy.golden.importers.from_torch import import_torch
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import AddLayer, InputSpec, IntegerModel, MacLayer, PoolLayer, RequantLayer, Threshold
from intdeploy.golden.requantizer import ROUNDING_MODES, RequantParams, ties
from intdeploy.host import protocol as P
from intdeploy.host.engines import Recorder, Replay
from intdeploy.host.network import run_network
from intdeploy.hw.config import QUICK, AcceleratorConfig
from intdeploy.sim import ENGINES, engine_alias, engine_name
from intdeploy.sim.accel_model import ModelEngine
from intdeploy.sim.rtl_engine import RtlEngine
from intdeploy.sim.shards import output_to, simulate

__all__ = ["REFERENCES", "HARDWARE", "Case", "make_cases", "run_cases", "format_report", "add_parser",
           "tflite_flatbuffer",
           "tflite_run"]

REFERENCES = ("ort", "fbgemm", "tflite", "qonnx", "nemo")
MODES = tuple(ROUNDING_MODES)
#: Accelerator the engines run: the quick tier's top (one simulator build with the tests).
HARDWARE = QUICK


@dataclass(eq=False)
class Deviation:
    """Where the reference itself differs from exact arithmetic, and why.

    ``mask``: the reference's output elements that differ; ``corrected``: the reference's output
    with those elements computed exactly (what golden and the RTL must equal everywhere);
    ``explained``: the deviation's model reproduces the reference's output everywhere (checked,
    never assumed: an unexplained deviation fails the case).
    """
    reason: str
    mask: np.ndarray
    corrected: np.ndarray
    explained: bool


@dataclass(eq=False)
class Case:
    """One generated layer: the model, its input images, the reference's output (channels last),
    the matching mode, the number of exact ties the inputs hit, and models with other modes."""
    reference: str
    kind: str
    scales: str
    model: object
    images: np.ndarray
    expected: np.ndarray
    mode: str
    ties: int
    alternatives: dict = field(default_factory=dict)     # mode name -> IntegerModel or None (n/a)
    note: str = ""
    results: dict = field(default_factory=dict)          # filled by run_cases
    proof: object = None                                 # importer's requantization Proof (ort, fbgemm)
    #: the reference's own deviation from exact arithmetic, if any (:class:`Deviation`): LiteRT's
    #: FULLY_CONNECTED rounding, or a framework kernel's int16 pair saturation on this CPU
    deviation: Deviation = None
    #: ort / fbgemm: the framework's own int32 accumulators against exact arithmetic
    #: (:class:`intdeploy.golden.importers.x86_kernels.KernelCheck`)
    kernel_check: object = None


# --- TFLite ------------------------------------------------------------------------------------
# The reference is TFLite itself: the LiteRT interpreter (PyPI ai-edge-litert) with its reference
# kernels (OpResolverType.BUILTIN_REF), on a .tflite flatbuffer written here with the schema
# classes the wheel ships. The integer formulas of intdeploy.golden.importers.litert_kernels (K)
# only derive the model file's parameters and count the ties; the expected outputs come from the
# interpreter.

def _tflite_tensor(name, shape, ttype, buffer, scale, zero_point):
    from ai_edge_litert import schema_py_generated as S  # optional dependency (dev extra: LiteRT)
    t = S.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buffer
    if scale is not None:
        q = S.QuantizationParametersT()
        q.scale = [float(v) for v in np.atleast_1d(scale)]
        q.zeroPoint = [int(v) for v in np.atleast_1d(zero_point)]
        q.quantizedDimension = 3 if len(q.scale) > 1 and len(shape) == 4 and shape[0] == 1 else 0
        t.quantization = q
    return t


def tflite_flatbuffer(ops, tensors, constants, inputs=(0,), outputs=None):
    """A one-subgraph TFLite model, as bytes.

    ``ops``: ``(BuiltinOperator, inputs, outputs, BuiltinOptions type, options object)``;
    ``tensors``: ``(name, shape, TensorType, scale, zero_point)`` (``scale`` None: not quantized;
    per-channel scales along ``quantizedDimension`` 0, or 3 for a ``[1, KH, KW, C]`` tensor);
    ``constants``: tensor index -> array (weights, bias); ``inputs`` / ``outputs``: the
    subgraph's (default: tensor 0 and the last tensor).
    """
    from ai_edge_litert import schema_py_generated as S  # optional dependency (dev extra: LiteRT)
    import flatbuffers  # optional dependency (dev extra: LiteRT)
    m = S.ModelT()
    m.version = 3
    codes = list(dict.fromkeys(op[0] for op in ops))
    m.operatorCodes = []
    for c in codes:
        oc = S.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = c, min(c, 127), 1
        m.operatorCodes.append(oc)
    m.buffers = [S.BufferT()]                        # buffer 0: empty (activations)
    ts = []
    for i, (name, shape, ttype, scale, zp) in enumerate(tensors):
        buf = 0
        if i in constants:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(constants[i]).tobytes(), dtype=np.uint8)
            m.buffers.append(b)
            buf = len(m.buffers) - 1
        ts.append(_tflite_tensor(name, shape, ttype, buf, scale, zp))
    sg = S.SubGraphT()
    sg.tensors, sg.inputs = ts, list(inputs)
    sg.outputs, sg.operators = [len(ts) - 1] if outputs is None else list(outputs), []
    for code, ins, outs, otype, opts in ops:
        o = S.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs, o.builtinOptionsType, o.builtinOptions = \
            codes.index(code), list(ins), list(outs), otype, opts
        sg.operators.append(o)
    m.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_run(ops, tensors, constants, x):
    """Run a one-subgraph TFLite model (:func:`tflite_flatbuffer`; tensor 0 the input and the last
    the output) on the interpreter's reference kernels (OpResolverType.BUILTIN_REF); returns the
    output."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # optional dependency (dev extra: LiteRT)
    it = Interpreter(model_content=tflite_flatbuffer(ops, tensors, constants),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.asarray(x, dtype=np.int8))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64)


# --- helpers -------------------------------------------------------------------------------------

def _q31(mult, shift):
    """The same real multiplier ``mult / 2**shift`` as a Q31 multiplier (for the tflite mode)."""
    mult, shift = np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    j = 30 - np.floor(np.log2(np.maximum(mult, 1))).astype(np.int64)
    j = np.minimum(j, 62 - shift)
    return mult << np.maximum(j, 0), shift + np.maximum(j, 0)


def _swap_rq(rq, mode):
    if rq.rounding == mode:
        return rq
    f = {k: getattr(rq, k) for k in ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi")}
    if mode == "tflite":
        if np.any(f["offset"] != 0) or np.any(f["mult"] < 0):
            return None
        f["mult"], f["shift"] = _q31(f["mult"], f["shift"])
    return RequantParams(rounding=mode, **f)


def _swap_model(model, mode):
    """``model`` with every requantizer's rounding set to ``mode``; None if that is invalid."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, (MacLayer, RequantLayer)) and layer.requant is not None:
            rq = _swap_rq(layer.requant, mode)
            if rq is None:
                return None
            layer = replace(layer, requant=rq)
        elif isinstance(layer, AddLayer):
            p = layer.params
            rqs = [_swap_rq(r, mode) for r in p.branches + (p.output,)]
            if any(r is None for r in rqs):
                return None
            layer = replace(layer, params=replace(p, branches=tuple(rqs[:2]), output=rqs[2]))
        layers.append(layer)
    try:
        return IntegerModel(input=model.input, layers=tuple(layers), outputs=model.outputs, name=model.name)
    except ValueError:
        return None


def _alternatives(model, mode):
    return {m: _swap_model(model, m) for m in MODES if m != mode}


def _rq_ties(x, rq):
    """Elements where requantizing ``x`` (values before the bias) meets an exact tie."""
    return int(np.count_nonzero(ties(np.asarray(x, dtype=np.int64), rq)))


def _proof_note(proof):
    """The importer's requantization proof in a few words (:class:`intdeploy.golden.importers.fp32.Proof`)."""
    note = f"proof: {proof.checked} acc values, {proof.fitted} refitted channel(s)"
    if proof.inexact:
        note += f", {proof.inexact} inexact channel(s) ({proof.inexact_values} acc values differ)"
    return note


def _pow2(rng, lo, hi):
    return float(2.0 ** int(rng.integers(lo, hi + 1)))


def _rand_scale(rng, lo, hi):
    return float(np.float32(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _framework_deviation(model, images, ref):
    """The framework's own arithmetic replayed on ``images`` (:func:`intdeploy.golden.importers.framework.compare`):
    its accumulators against exact arithmetic (a ``KernelCheck``) and, where its kernel made the
    reference deviate from exact arithmetic (or the replay does not reproduce the reference), the
    :class:`Deviation` golden and the engine are judged against. Returns ``(check, Deviation or None)``."""
    cmp = framework.compare(model, images, ref, IntegerDeployable(model).run(images))
    if not (cmp.deviation.any() or cmp.unexplained.any()):
        return cmp.check, None
    return cmp.check, Deviation(x86_kernels.REASON, cmp.deviation, cmp.exact, not cmp.unexplained.any())


# --- case generators -----------------------------------------------------------------------------

def _ort_session(model):
    import onnxruntime as ort  # optional dependency (onnx extra)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ort_matmul(rng, scales, batch):
    from onnx import TensorProto, helper, numpy_helper  # optional dependency (onnx extra)
    k, n = int(rng.integers(6, 20)), int(rng.integers(3, 9))
    span = 255 if scales == "random" else int(rng.integers(8, 40))
    zx = int(rng.integers(0, 256))
    x = np.clip(zx + rng.integers(-span, span + 1, (batch, k)), 0, 255).astype(np.uint8)
    wmax = 127 if scales == "random" else 15
    w = rng.integers(-wmax, wmax + 1, (k, n)).astype(np.int8)
    if scales == "random":
        sx, sw = _rand_scale(rng, 0.002, 0.05), _rand_scale(rng, 0.001, 0.02)
    else:
        sx, sw = _pow2(rng, -8, -4), _pow2(rng, -7, -3)
    typical = span * wmax * math.sqrt(k) / 2
    sy = sx * sw / (2.0 ** round(math.log2(40 / typical))) if scales == "pow2" else \
        sx * sw * _rand_scale(rng, typical / 80, typical / 25)
    zy = int(rng.integers(0, 256))
    inits = [numpy_helper.from_array(np.array(v, dtype=dt), nm) for nm, v, dt in (
        ("a_scale", sx, np.float32), ("a_zp", zx, np.uint8), ("b_scale", sw, np.float32), ("b_zp", 0, np.int8),
        ("y_scale", sy, np.float32), ("y_zp", zy, np.uint8))] + [numpy_helper.from_array(w, "b")]
    node = helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"],
                            ["y"], name="qmatmul")
    graph = helper.make_graph([node], "ort_matmul", [helper.make_tensor_value_info("a", TensorProto.UINT8, [batch, k])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [batch, n])], inits)
    om = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    ref = _ort_session(om).run(None, {"a": x})[0].astype(np.int64)
    model, proof = import_onnx(om, name="ort_matmul", strict=False)
    x = x.astype(np.int64)
    acc = mac_array.linear(x, w.T, zx)
    check, dev = _framework_deviation(model, x, ref)
    return Case("ort", "QLinearMatMul", scales, model, x, ref, "half_even",
                _rq_ties(acc, model.layers[0].requant), _alternatives(model, "half_even"),
                note=_proof_note(proof), proof=proof, deviation=dev, kernel_check=check)


def _ort_conv(rng, scales, batch):
    from onnx import TensorProto, helper, numpy_helper  # optional dependency (onnx extra)
    cin, cout, h, k = int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(4, 7)), 3
    pad = int(rng.integers(0, 2))
    span = 255 if scales == "random" else int(rng.integers(6, 30))
    zx = int(rng.integers(0, 256))
    x = np.clip(zx + rng.integers(-span, span + 1, (batch, cin, h, h)), 0, 255).astype(np.uint8)
    wmax = 127 if scales == "random" else 12
    w = rng.integers(-wmax, wmax + 1, (cout, cin, k, k)).astype(np.int8)
    if scales == "random":
        sx = _rand_scale(rng, 0.002, 0.05)
        sw = np.array([_rand_scale(rng, 0.001, 0.02) for _ in range(cout)], dtype=np.float32)
    else:
        sx = _pow2(rng, -8, -4)
        sw = np.array([_pow2(rng, -7, -3) for _ in range(cout)], dtype=np.float32)
    typical = span * wmax * math.sqrt(cin * k * k) / 2
    base = float(sx * sw.max())
    sy = base / (2.0 ** round(math.log2(40 / typical))) if scales == "pow2" else \
        base * _rand_scale(rng, typical / 80, typical / 25)
    bias = rng.integers(-int(typical), int(typical) + 1, cout).astype(np.int32)
    zy = int(rng.integers(0, 256))
    inits = [numpy_helper.from_array(np.array(v, dtype=dt), nm) for nm, v, dt in (
        ("x_scale", sx, np.float32), ("x_zp", zx, np.uint8), ("y_scale", sy, np.float32), ("y_zp", zy, np.uint8))]
    inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(sw, "w_scale"),
              numpy_helper.from_array(np.zeros(cout, dtype=np.int8), "w_zp"), numpy_helper.from_array(bias, "B")]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "B"],
                            ["y"], name="qconv", pads=[pad] * 4, strides=[1, 1], kernel_shape=[k, k])
    oh = h + 2 * pad - k + 1
    graph = helper.make_graph([node], "ort_conv",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [batch, cin, h, h])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [batch, cout, oh, oh])], inits)
    om = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    ref = _ort_session(om).run(None, {"x": x})[0].astype(np.int64).transpose(0, 2, 3, 1)
    model, proof = import_onnx(om, name="ort_conv", strict=False)
    xh = x.transpose(0, 2, 3, 1).astype(np.int64)
    layer = model.layers[0]
    acc = mac_array.conv2d(xh, layer.weight, layer.stride, layer.padding, zx, 0)
    check, dev = _framework_deviation(model, xh, ref)
    return Case("ort", "QLinearConv", scales, model, xh, ref, "half_even", _rq_ties(acc, layer.requant),
                _alternatives(model, "half_even"),
                note=_proof_note(proof), proof=proof, deviation=dev, kernel_check=check)


def _torch_quant(x, scale, zp):
    import torch  # optional dependency (torch extra)
    return torch.quantize_per_tensor(torch.tensor((x.astype(np.float64) - zp) * scale, dtype=torch.float),
                                     scale, zp, torch.quint8)


def _fbgemm(rng, scales, batch, conv):
    import torch  # optional dependency (torch extra)
    import torch.ao.nn.quantized as nnq  # optional dependency (torch extra)
    torch.backends.quantized.engine = "fbgemm"
    warnings.filterwarnings("ignore", message=".*quantize_per.*deprecated.*")
    span = 255 if scales == "random" else int(rng.integers(6, 30))
    wmax = 127 if scales == "random" else 12
    zx = int(rng.integers(0, 256))
    if conv:
        cin, cout, h, k = int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(4, 7)), 3
        pad = int(rng.integers(0, 2))
        shape, taps = (cin, h, h), cin * k * k
        mod = nnq.Conv2d(cin, cout, k, padding=pad)
        wint = rng.integers(-wmax, wmax + 1, (cout, cin, k, k))
    else:
        kk, cout = int(rng.integers(6, 20)), int(rng.integers(3, 9))
        shape, taps = (kk,), kk
        mod = nnq.Linear(kk, cout)
        wint = rng.integers(-wmax, wmax + 1, (cout, kk))
    if scales == "random":
        sx = _rand_scale(rng, 0.002, 0.05)
        sw = np.array([_rand_scale(rng, 0.001, 0.02) for _ in range(cout)], dtype=np.float32)
    else:
        sx = _pow2(rng, -8, -4)
        sw = np.array([_pow2(rng, -7, -3) for _ in range(cout)], dtype=np.float32)
    typical = span * wmax * math.sqrt(taps) / 2
    base = float(np.float32(sx) * sw.max())
    sy = base / (2.0 ** round(math.log2(40 / typical))) if scales == "pow2" else \
        base * _rand_scale(rng, typical / 80, typical / 25)
    wq = torch.quantize_per_channel(torch.tensor(wint * sw.reshape((-1,) + (1,) * (wint.ndim - 1)), dtype=torch.float),
                                    torch.tensor(sw, dtype=torch.double), torch.zeros(cout, dtype=torch.long), 0,
                                    torch.qint8)
    assert np.array_equal(wq.int_repr().numpy(), wint)
    # integer bias B expressed as fbgemm's float bias B * fl(x_scale * w_scale)
    a = (np.float32(sx) * sw).astype(np.float32)
    bias = (rng.integers(-int(typical), int(typical) + 1, cout) * a).astype(np.float32)
    mod.set_weight_bias(wq, torch.tensor(bias))
    mod.scale, mod.zero_point = float(sy), int(rng.integers(0, 256))
    x = np.clip(zx + rng.integers(-span, span + 1, (batch,) + shape), 0, 255).astype(np.int64)
    ref = mod(_torch_quant(x, sx, zx)).int_repr().numpy().astype(np.int64)
    seq = torch.nn.Sequential(nnq.Quantize(sx, zx, torch.quint8), mod, nnq.DeQuantize())
    model, proof = import_torch(seq, shape, name="fbgemm_conv" if conv else "fbgemm_linear", strict=False)
    layer = model.layers[0]
    if conv:
        x, ref = x.transpose(0, 2, 3, 1), ref.transpose(0, 2, 3, 1)
        acc = mac_array.conv2d(x, layer.weight, layer.stride, layer.padding, zx, 0)
    else:
        acc = mac_array.linear(x, layer.weight, zx)
    check, dev = _framework_deviation(model, x, ref)
    return Case("fbgemm", "Conv2d" if conv else "Linear", scales, model, x, ref, "half_even",
                _rq_ties(acc, layer.requant), _alternatives(model, "half_even"),
                note=_proof_note(proof), proof=proof, deviation=dev, kernel_check=check)


def _tflite_fc(rng, scales, batch):
    """int8 FULLY_CONNECTED, per-channel weights, int32 bias: TFLite's requantization."""
    from ai_edge_litert import schema_py_generated as S  # optional dependency (dev extra: LiteRT)
    k, n = int(rng.integers(6, 20)), int(rng.integers(3, 9))
    span = 127 if scales == "random" else int(rng.integers(6, 30))
    wmax = 127 if scales == "random" else 12
    zx = int(rng.integers(-100, 100))
    x = np.clip(zx + rng.integers(-span, span + 1, (batch, k)), -128, 127).astype(np.int64)
    w = rng.integers(-wmax, wmax + 1, (n, k)).astype(np.int64)
    typical = span * wmax * math.sqrt(k) / 2
    bias = rng.integers(-int(typical), int(typical) + 1, n).astype(np.int64)
    if scales == "random":
        sx = _rand_scale(rng, 0.002, 0.05)
        sw = np.array([_rand_scale(rng, 0.001, 0.02) for _ in range(n)], dtype=np.float32)
        sy = float(np.float32(sx * float(sw.mean()) * _rand_scale(rng, typical / 80, typical / 25)))
    else:
        sx = _pow2(rng, -8, -4)
        sw = np.array([_pow2(rng, -7, -5) for _ in range(n)], dtype=np.float32)
        sy = sx * 2.0 ** -6 / 2.0 ** round(math.log2(40 / typical))
    zy = int(rng.integers(-50, 50))
    # TFLite's Prepare: effective scale in double from the float32 scales, then QuantizeMultiplier
    qm = [K.quantize_multiplier(float(np.float32(sx)) * float(sw[c]) / float(np.float32(sy))) for c in range(n)]
    T = S.TensorType
    opts = S.FullyConnectedOptionsT()
    ref = tflite_run([(S.BuiltinOperator.FULLY_CONNECTED, [0, 1, 2], [3], S.BuiltinOptions.FullyConnectedOptions,
                       opts)],
                     [("x", (batch, k), T.INT8, sx, zx), ("w", (n, k), T.INT8, sw, [0] * n),
                      ("b", (n,), T.INT32, np.float32(sx) * sw, [0] * n), ("y", (batch, n), T.INT8, sy, zy)],
                     {1: w.astype(np.int8), 2: bias.astype(np.int32)}, x)
    # LiteRT's FULLY_CONNECTED rounds once, acc * mult / 2**(31 - e) with ties away from zero,
    # where the gemmlowp formula of golden's tflite mode (and of ADD / QUANTIZE) rounds twice: they
    # differ where the first rounding lands on a .5 (e.g. 7.46875 -> 7.5 -> 8 against 7). The
    # model uses half_away; the tflite alternative shows the difference.
    rq = RequantParams(mult=[m for m, _ in qm], shift=[31 - e for _, e in qm], bias=bias, zero_point=zy,
                       lo=-128, hi=127, rounding="half_away")
    layer = MacLayer(kind="linear", name="fc", inputs=("x",), weight=w.astype(np.int8), input_zero_point=zx,
                     requant=rq, dtype="int8")
    model = IntegerModel(input=InputSpec(name="x", shape=(k,), dtype="int8", zero_point=zx), layers=(layer,),
                         outputs=("fc",), name="tflite_fc")
    acc = (x - zx) @ w.T + bias
    ties = sum(_exact_ties(acc[:, c], m, e) for c, (m, e) in enumerate(qm))
    return Case("tflite", "FULLY_CONNECTED", scales, model, x, ref, "half_away", ties,
                _alternatives(model, "half_away"))


def _exact_ties(x, mult, e):
    """Values where the exact product ``x * mult / 2**(31 - e)`` is an exact .5 (one rounding)."""
    return _rq_ties(x, RequantParams(mult=mult, shift=31 - e, rounding="floor"))


def _tflite_add(rng, scales, batch):
    """QUANTIZE (int8 -> int8 requantization) of the input, then int8 ADD of the input and it."""
    from ai_edge_litert import schema_py_generated as S  # optional dependency (dev extra: LiteRT)
    c = int(rng.integers(2, 9))
    zx, zb, zy = (int(rng.integers(-60, 60)) for _ in range(3))
    if scales == "random":
        sx, sb, sy = (_rand_scale(rng, 0.01, 0.1) for _ in range(3))
    else:
        # sb / sx = 3/4: the second operand is not a shifted copy of the first (whose ties would
        # cancel), both branch multipliers (1/2, 3/8) are exact, and the output scale is a power
        # of two times sx, so the output's RoundingDivideByPOT meets exact ties (~1 in 8)
        sx = _pow2(rng, -6, -3)
        sb = sx * 0.75
        sy = sx * 2 ** int(rng.integers(1, 3))
    x = rng.integers(-128, 128, (batch, c)).astype(np.int64)
    T = S.TensorType
    add_opts = S.AddOptionsT()
    ref = tflite_run([(S.BuiltinOperator.QUANTIZE, [0], [1], 0, None),
                      (S.BuiltinOperator.ADD, [0, 1], [2], S.BuiltinOptions.AddOptions, add_opts)],
                     [("x", (batch, c), T.INT8, sx, zx), ("b", (batch, c), T.INT8, sb, zb),
                      ("y", (batch, c), T.INT8, sy, zy)], {}, x)
    m, e = K.quantize_multiplier(float(np.float32(sx)) / float(np.float32(sb)))   # quantize.cc Prepare
    rq = RequantLayer(name="b", inputs=("x",), dtype="int8",
                      requant=RequantParams(mult=m, shift=31 - e, bias=-zx, zero_point=zb, lo=-128, hi=127,
                                            rounding="tflite"))
    add = AddLayer(name="y", inputs=("x", "b"), dtype="int8", params=AddParams.tflite(sx, zx, sb, zb, sy, zy))
    model = IntegerModel(input=InputSpec(name="x", shape=(c,), dtype="int8", zero_point=zx), layers=(rq, add),
                         outputs=("y",), name="tflite_add")
    b = np.clip(K.multiply(x - zx, m, e) + zb, -128, 127)
    p = add.params
    v = sum(K.rdbpot(K.srdhm((np.asarray(t) - z) * (1 << 20), br.mult), int(br.shift) - 31)
            for t, z, br in zip((x, b), (zx, zb), p.branches))
    r = int(p.output.shift) - 31
    ties = int(np.count_nonzero((K.srdhm(K.int32(v), int(p.output.mult)) & ((1 << r) - 1)) == (1 << (r - 1)))) if r else 0
    return Case("tflite", "QUANTIZE + ADD", scales, model, x, ref, "tflite", ties, _alternatives(model, "tflite"))


def _tflite_requant(rng, scales, batch):
    """int8 -> int8 QUANTIZE: TFLite's Requantize, MultiplyByQuantizedMultiplier(x - zp_in, m, e)
    + zp_out with the double QuantizeMultiplier(s_in / s_out); power-of-two ratios give ties."""
    from ai_edge_litert import schema_py_generated as S  # optional dependency (dev extra: LiteRT)
    c = int(rng.integers(2, 9))
    zx, zy = int(rng.integers(-60, 60)), int(rng.integers(-60, 60))
    sx = _rand_scale(rng, 0.01, 0.1) if scales == "random" else _pow2(rng, -6, -3)
    sy = sx * (_rand_scale(rng, 0.5, 4) if scales == "random" else 2 ** int(rng.integers(1, 4)))
    x = rng.integers(-128, 128, (batch, c)).astype(np.int64)
    T = S.TensorType
    ref = tflite_run([(S.BuiltinOperator.QUANTIZE, [0], [1], 0, None)],
                     [("x", (batch, c), T.INT8, sx, zx), ("y", (batch, c), T.INT8, sy, zy)], {}, x)
    m, e = K.quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))   # quantize.cc Prepare
    layer = RequantLayer(name="y", inputs=("x",), dtype="int8",
                         requant=RequantParams(mult=m, shift=31 - e, bias=-zx, zero_point=zy, lo=-128, hi=127,
                                               rounding="tflite"))
    model = IntegerModel(input=InputSpec(name="x", shape=(c,), dtype="int8", zero_point=zx), layers=(layer,),
                         outputs=("y",), name="tflite_requant")
    ties = _exact_ties(x - zx, m, e)
    return Case("tflite", "QUANTIZE (requantize)", scales, model, x, ref, "tflite", ties,
                _alternatives(model, "tflite"))


def _tflite_pool(rng, scales, batch):
    """int8 AVERAGE_POOL_2D, k x k windows, stride k, VALID; the power-of-two column has 2x2
    windows (whose averages have .5 ties; 3x3 has none) and a fused RELU6 (clamp [zp, zp + 96])."""
    from ai_edge_litert import schema_py_generated as S  # optional dependency (dev extra: LiteRT)
    k = int(rng.integers(2, 4)) if scales == "random" else 2
    c, h = int(rng.integers(1, 5)), k * int(rng.integers(2, 4))
    x = rng.integers(-128, 128, (batch, h, h, c)).astype(np.int64)
    if scales == "random":
        scale, zp, act = _rand_scale(rng, 0.01, 0.1), int(rng.integers(-60, 60)), S.ActivationFunctionType.NONE
        lo, hi = -128, 127
    else:
        # CalculateActivationRangeQuantized for RELU6: [zp + round(0 / s), zp + round(6 / s)]
        scale, zp, act = 2.0 ** -4, int(rng.integers(-100, -20)), S.ActivationFunctionType.RELU6
        lo, hi = zp, zp + 96
    opts = S.Pool2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.filterWidth, opts.filterHeight = S.Padding.VALID, k, k, k, k
    opts.fusedActivationFunction = act
    ref = tflite_run([(S.BuiltinOperator.AVERAGE_POOL_2D, [0], [1], S.BuiltinOptions.Pool2DOptions, opts)],
                     [("x", x.shape, S.TensorType.INT8, scale, zp),
                      ("y", (batch, h // k, h // k, c), S.TensorType.INT8, scale, zp)], {}, x)
    layer = PoolLayer(name="pool", inputs=("x",), mode="avg_tflite", kernel=(k, k), lo=lo, hi=hi, dtype="int8")
    model = IntegerModel(input=InputSpec(name="x", shape=(h, h, c), dtype="int8"), layers=(layer,),
                         outputs=("pool",), name="tflite_pool")
    s = x.reshape(batch, h // k, k, h // k, k, c).sum(axis=(2, 4))
    ties = int(np.count_nonzero((k * k) % 2 == 0 and np.abs(s) % (k * k) == (k * k) // 2))
    d = int(math.ceil(math.log2(k * k))) + 8
    alt = IntegerModel(input=model.input, layers=(replace(layer, mode="avg_nemo", d=d),),
                       outputs=("pool",), name="alt")
    return Case("tflite", "AVERAGE_POOL_2D", scales, model, x, ref, "avg_tflite", ties,
                {f"avg_nemo (floor, d={d})": alt})


def _qonnx_multithreshold(acc, sign, th):
    """QONNX's own execution (``qonnx.core.onnx_exec.execute_onnx``) of ``Mul(acc, sign)`` then
    ``MultiThreshold(thresholds=th)`` (NC layout), on float32 (exact: ``|acc| < 2**24``)."""
    from onnx import TensorProto, helper, numpy_helper  # optional dependency (onnx extra)
    from qonnx.core.modelwrapper import ModelWrapper  # optional dependency (onnx extra)
    from qonnx.core.onnx_exec import execute_onnx  # optional dependency (onnx extra)
    n, c = acc.shape
    assert np.abs(acc).max() < (1 << 24) and np.abs(th).max() < (1 << 24)
    nodes = [helper.make_node("Mul", ["acc", "sign"], ["v"], name="negate"),
             helper.make_node("MultiThreshold", ["v", "th"], ["y"], name="mt", domain="qonnx.custom_op.general",
                              out_dtype="UINT8", data_layout="NC")]
    graph = helper.make_graph(nodes, "qonnx_mt", [helper.make_tensor_value_info("acc", TensorProto.FLOAT, [n, c])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, c])],
                              [numpy_helper.from_array(np.asarray(sign, dtype=np.float32), "sign"),
                               numpy_helper.from_array(np.asarray(th, dtype=np.float32), "th")],
                              value_info=[helper.make_tensor_value_info("v", TensorProto.FLOAT, [n, c])])
    out = execute_onnx(ModelWrapper(helper.make_model(graph)), {"acc": acc.astype(np.float32)})["y"]
    return out.astype(np.int64)


def _qonnx(rng, scales, batch):
    """Linear layer whose epilogue is the threshold unit, against QONNX MultiThreshold.

    Random: thresholds anywhere in the accumulator range, some channels negated. Ties: the
    thresholds are accumulator values the inputs produce (``x == T`` on many elements), the case
    that tells ``x >= T`` from ``x > T``."""
    k, n, q = int(rng.integers(4, 12)), int(rng.integers(2, 7)), int(rng.integers(1, 4))
    t = (1 << q) - 1
    x = rng.integers(0, 16, (batch, k)).astype(np.int64)
    w = rng.integers(-8, 9, (n, k)).astype(np.int64)
    acc = x @ w.T
    if scales == "random":
        neg = rng.integers(0, 2, n).astype(bool)
        v = np.where(neg, -acc, acc)
        th = np.sort(rng.integers(int(v.min()) - 5, int(v.max()) + 6, (n, t)), axis=1)
    else:
        neg = np.zeros(n, dtype=bool)
        th = np.sort(np.stack([rng.choice(acc[:, c], t) for c in range(n)]), axis=1)
    ref = _qonnx_multithreshold(acc, np.where(neg, -1, 1), th)
    layer = MacLayer(kind="linear", name="mt", inputs=("x",), weight=w.astype(np.int8),
                     threshold=Threshold(thresholds=th, negate=neg), dtype="uint8")
    model = IntegerModel(input=InputSpec(name="x", shape=(k,), lo=0, hi=15), layers=(layer,), outputs=("mt",),
                         name="qonnx_mt")
    v = np.where(neg, -acc, acc)
    ties = int(sum(np.count_nonzero(v[:, c:c + 1] == th[c][None, :]) for c in range(n)))
    alt = IntegerModel(input=model.input, layers=(replace(layer, threshold=Threshold(
        thresholds=th + 1, negate=neg)),), outputs=("mt",), name="alt")
    return Case("qonnx", "MultiThreshold", scales, model, x, ref, "x >= T", ties, {"x > T": alt})


def _nemo_requant_torch(v, mult, offset, d, lo, hi):
    import torch  # optional dependency (torch extra)
    t = torch.as_tensor(v, dtype=torch.int64) * torch.as_tensor(mult) + torch.as_tensor(offset)
    return torch.clamp(torch.bitwise_right_shift(t, torch.as_tensor(d)), lo, hi).numpy()


def _nemo_conv_bn(rng, scales, batch):
    """PACT conv + integer BN (kappa, lambda, Eq. 21-22) + PACT_IntegerAct (Eq. 11-13): floor."""
    import torch  # optional dependency (torch extra)
    cin, cout, h, k = int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(4, 7)), 3
    x = rng.integers(0, 256, (batch, h, h, cin)).astype(np.int64)
    w = rng.integers(-64, 64, (cout, k, k, cin)).astype(np.int64)
    kappa = rng.integers(1, 40, cout) * rng.choice([-1, 1], cout)
    lam = rng.integers(-2000, 2000, cout)
    typical = 128 * 40 * math.sqrt(cin * k * k) * 20
    d = int(round(math.log2(typical / 40))) + (8 if scales == "random" else 0)
    m_act = rng.integers(1 << 7, 1 << 8, cout) if scales == "random" else np.ones(cout, dtype=np.int64)
    acc = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2),
                                     torch.tensor(w, dtype=torch.float64).permute(0, 3, 1, 2))
    acc = acc.round().to(torch.int64).permute(0, 2, 3, 1).numpy()       # exact: |acc| < 2**53
    ref = _nemo_requant_torch(acc * kappa + lam, m_act, 0, d, 0, 255)
    rq = RequantParams(mult=kappa * m_act, offset=lam * m_act, shift=d, lo=0, hi=255, rounding="floor")
    layer = MacLayer(kind="conv2d", name="conv", inputs=("x",), weight=w.astype(np.int8), requant=rq, dtype="uint8")
    model = IntegerModel(input=InputSpec(name="x", shape=(h, h, cin)), layers=(layer,), outputs=("conv",),
                         name="nemo_conv")
    return Case("nemo", "conv + integer BN", scales, model, x, ref, "floor", _rq_ties(acc, rq),
                _alternatives(model, "floor"))


def _nemo_add(rng, scales, batch):
    """PACT_IntegerAdd (Eq. 24, unclipped) of the input and a requantized copy, then PACT_IntegerAct."""
    c = int(rng.integers(2, 9))
    x = rng.integers(0, 256, (batch, c)).astype(np.int64)
    mb, db = int(rng.integers(100, 300)), 8
    b = _nemo_requant_torch(x, mb, 0, db, 0, 255)
    if scales == "random":
        m0, m1, d = int(rng.integers(100, 255)), int(rng.integers(100, 255)), 8
        ma, da = int(rng.integers(100, 255)), 9
    else:
        m0, m1, d = 1, 1, 1
        ma, da = 1, 1
    s = _nemo_requant_torch(m0 * x + m1 * b, 1, 0, d, -(1 << 31), (1 << 31) - 1)  # unclipped
    ref = _nemo_requant_torch(s, ma, 0, da, 0, 255)
    layers = (RequantLayer(name="b", inputs=("x",), requant=RequantParams(mult=mb, shift=db, lo=0, hi=255)),
              AddLayer(name="s", inputs=("x", "b"), params=AddParams.nemo(m0, m1, d), dtype="int32"),
              RequantLayer(name="y", inputs=("s",), requant=RequantParams(mult=ma, shift=da, lo=0, hi=255)))
    model = IntegerModel(input=InputSpec(name="x", shape=(c,)), layers=layers, outputs=("y",), name="nemo_add")
    ties = _rq_ties(m0 * x + m1 * b, layers[1].params.output) + _rq_ties(s, layers[2].requant)
    return Case("nemo", "add (unclipped) + act", scales, model, x, ref, "floor", ties, _alternatives(model, "floor"))


def _nemo_pool(rng, scales, batch):
    """PACT_IntegerAvgPool2d (Eq. 25): floor(floor(2**d / k**2) * sum / 2**d)."""
    import torch  # optional dependency (torch extra)
    k = int(rng.integers(2, 4))
    c, h = int(rng.integers(1, 5)), k * int(rng.integers(2, 4))
    x = rng.integers(0, 256, (batch, h, h, c)).astype(np.int64)
    d = int(rng.integers(4, 17)) if scales == "random" else int(math.ceil(math.log2(k * k)))
    xt = torch.tensor(x).permute(0, 3, 1, 2)
    s = torch.nn.functional.avg_pool2d(xt.to(torch.float64), k, k, divisor_override=1).round().to(torch.int64)
    ref = torch.bitwise_right_shift(s * ((1 << d) // (k * k)), d).permute(0, 2, 3, 1).numpy()
    layer = PoolLayer(name="pool", inputs=("x",), mode="avg_nemo", kernel=(k, k), d=d)
    model = IntegerModel(input=InputSpec(name="x", shape=(h, h, c)), layers=(layer,), outputs=("pool",),
                         name="nemo_pool")
    f = (1 << d) // (k * k)
    sn = s.permute(0, 2, 3, 1).numpy() * f
    ties = int(np.count_nonzero((sn & ((1 << d) - 1)) == (1 << (d - 1)))) if d else 0
    alt = IntegerModel(input=model.input, layers=(replace(layer, mode="avg_tflite", d=None, lo=0, hi=255),),
                       outputs=("pool",), name="alt")
    return Case("nemo", "avg pool (Eq. 25)", scales, model, x, ref, "floor", ties, {"avg_tflite": alt})


GENERATORS = {
    "ort": [_ort_matmul, _ort_conv],
    "fbgemm": [lambda r, s, b: _fbgemm(r, s, b, False), lambda r, s, b: _fbgemm(r, s, b, True)],
    "tflite": [_tflite_requant, _tflite_add, _tflite_pool, _tflite_fc],
    "qonnx": [_qonnx],
    "nemo": [_nemo_conv_bn, _nemo_add, _nemo_pool],
}


def make_cases(seed=0, references=REFERENCES, batch=16, repeats=1):
    """Cases for ``references``, each generator with random and power-of-two scales, ``repeats``
    times, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    cases = []
    for ref in references:
        for gen in GENERATORS[ref]:
            for _ in range(repeats):
                for scales in ("random", "pow2"):
                    cases.append(gen(rng, scales, batch))
    return cases


# --- running -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet(log):
    """Send this process's stdout (file descriptor 1, which the simulator's build and run
    inherit) to ``log``; on an error the path is added to the exception's message."""
    with output_to(log, fds=(1,), mode="w"):
        try:
            yield
        except Exception as e:
            e.args = (f"{e.args[0] if e.args else e} (simulator log: {log})",) + tuple(e.args[1:])
            raise


def _output(model, outputs):
    return outputs[model.outputs[0]] if isinstance(outputs, dict) else outputs


def run_cases(cases, sim="model", work_dir=None, hardware=HARDWARE, workers=1, cluster=None):
    """Fill each case's ``results``: ``golden`` and ``engine`` equality counts with the case's
    :func:`target`, and the match count of every alternative mode. ``sim``: ``golden``
    (executable accelerator model) or a simulator name (all cases' packets in one simulator run,
    or with ``workers`` > 1 or a Dask ``cluster`` address, in shards of consecutive cases over
    that many simulator processes: :func:`intdeploy.sim.shards.simulate`)."""
    sim = engine_name(sim)
    info = P.Info.of(AcceleratorConfig(**hardware))
    recs = []
    for case in cases:
        want = target(case)
        case.results["golden"] = int(np.count_nonzero(IntegerDeployable(case.model).run(case.images) == want))
        case.results["elements"] = int(want.size)
        case.results["alternatives"] = {
            m: None if alt is None else int(np.count_nonzero(IntegerDeployable(alt).run(case.images) == want))
            for m, alt in case.alternatives.items()}
        rec = Recorder(ModelEngine(info))
        out, _ = run_network(case.model, case.images, rec)
        recs.append(rec)
        if sim == "model":
            case.results["engine"] = int(np.count_nonzero(_output(case.model, out) == want))
    if sim != "model":
        if (workers > 1 or cluster) and len(cases) > 1:
            # the cases' programs are independent: shards of consecutive cases, each simulated
            # from reset in its own directory, the responses joined in case order
            work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="intdeploy-crosscheck-"))
            responses = simulate(sim, hardware, [rec.packets for rec in recs], work, workers=workers,
                                 cluster=cluster)
        else:
            engine = RtlEngine(sim, hardware, work_dir=work_dir)
            engine.work_dir.mkdir(parents=True, exist_ok=True)
            with _quiet(engine.work_dir / "simulator.log"):
                responses = engine.execute([p for rec in recs for p in rec.packets])
        for case, rec in zip(cases, recs):
            n = len(rec.packets)
            mine, responses = responses[:n], responses[n:]
            out, _ = run_network(case.model, case.images, Replay(rec.calls, mine))
            case.results["engine"] = int(np.count_nonzero(_output(case.model, out) == target(case)))
    return cases


def target(case):
    """What golden and the engine must equal: the reference's output, or, where the reference
    deviates from exact arithmetic (:class:`Deviation`), its output computed exactly."""
    return case.expected if case.deviation is None else case.deviation.corrected


def passed(case):
    """Golden and the engine equal the :func:`target` everywhere, and a deviation of the reference
    is reproduced by its model (an unexplained deviation fails)."""
    r = case.results
    explained = case.deviation is None or case.deviation.explained
    return explained and r["golden"] == r["elements"] and r.get("engine") == r["elements"]


def _rate(n, total):
    return "n/a" if n is None else f"{100 * n / total:.1f}%"


def report_rows(cases, sim):
    rows = []
    for c in cases:
        r = c.results
        rows.append(dict(reference=c.reference, kind=c.kind, scales=c.scales, elements=r["elements"], ties=c.ties,
                         mode=c.mode, golden=r["golden"] / r["elements"], engine=r["engine"] / r["elements"],
                         sim=sim, others={m: (None if v is None else v / r["elements"])
                                          for m, v in r["alternatives"].items()},
                         passed=passed(c), note=c.note,
                         deviation=None if c.deviation is None else c.deviation.reason,
                         deviating=0 if c.deviation is None else int(np.count_nonzero(c.deviation.mask)),
                         explained=c.deviation is None or c.deviation.explained,
                         kernel=None if c.kernel_check is None else c.kernel_check.as_dict()))
    return rows


def kernel_lines(cases):
    """One line per framework whose integer accumulators were compared (:class:`KernelCheck`)."""
    checks = {}
    for c in cases:
        if c.kernel_check is not None:
            k = checks.setdefault(c.kernel_check.framework, x86_kernels.KernelCheck(c.kernel_check.framework))
            k.accumulators += c.kernel_check.accumulators
            k.differing += c.kernel_check.differing
            k.unexplained += c.kernel_check.unexplained
    return [k.line() for k in checks.values()]


def format_report(cases, sim):
    lines = [f"intdeploy crosscheck: reference vs golden and {sim} (bit-exact, element by element)",
             f"{'reference':<9} {'layer':<22} {'scales':<6} {'elems':>6} {'ties':>5}  {'mode':<10} "
             f"{'golden':>7} {sim:>9}  other modes (match rate)"]
    for row in report_rows(cases, sim):
        others = ", ".join(f"{m} {_rate(None if v is None else round(v * row['elements']), row['elements'])}"
                           for m, v in row["others"].items())
        known = "" if not row["deviating"] else f"   KNOWN: {row['deviation']}: {row['deviating']} elements"
        if row["deviation"] is not None and not row["explained"]:
            known = f"   UNEXPLAINED: the reference deviates from exact arithmetic, not as {row['deviation']}"
        lines.append(f"{row['reference']:<9} {row['kind']:<22} {row['scales']:<6} {row['elements']:>6} "
                     f"{row['ties']:>5}  {row['mode']:<10} {100 * row['golden']:>6.1f}% {100 * row['engine']:>8.1f}%  "
                     f"{others}{'' if row['passed'] else '   FAIL'}{known}")
    lines += kernel_lines(cases)
    bad = sum(not passed(c) for c in cases)
    known = sum(c.deviation is not None and bool(c.deviation.mask.any()) for c in cases)
    lines.append(f"{len(cases)} cases, {bad} failed" + (
        f" ({known} with a reference that deviates from exact arithmetic (KNOWN): its model reproduces the "
        f"reference, and golden and the engine are compared with exact arithmetic there)" if known else ""))
    return "\n".join(lines)


def _main(args):
    refs = args.reference or list(REFERENCES)
    if args.repeats < 1:
        raise ValueError(f"--repeats: {args.repeats} is out of range; allowed >= 1")
    if args.workers < 1:
        raise ValueError(f"--workers: {args.workers} is out of range; allowed >= 1")
    cases = run_cases(make_cases(args.seed, refs, repeats=args.repeats), args.sim, work_dir=args.work_dir,
                      workers=args.workers, cluster=args.cluster)
    if args.json:
        print(json.dumps(report_rows(cases, args.sim), indent=2))
    else:
        print(format_report(cases, args.sim))
    return 0 if all(passed(c) for c in cases) else 1


def add_parser(sub):
    """The ``crosscheck`` sub-command (registered in :data:`intdeploy.tools.cli.COMMANDS`)."""
    p = sub.add_parser("crosscheck", help="bit-exact cross-checks against ONNX Runtime, PyTorch, TFLite, QONNX, NEMO",
                       description="Generates small layers with random and power-of-two scales, runs them in each "
                                   "reference, in golden and on an engine, and reports element-wise equality in "
                                   "the matching rounding mode and the match rate of the other modes "
                                   "(docs/crosscheck.md). Exit status 1 if any case differs.")
    p.add_argument("--sim", type=engine_alias, choices=ENGINES, default="model",
                   help="engine: the executable accelerator model (model; golden, its former name, is accepted) or "
                        "the RTL on a simulator")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--repeats", type=int, default=1, help="cases per generator and scale kind (default 1)")
    p.add_argument("--reference", action="append", choices=REFERENCES,
                   help="only this reference (repeatable; default all)")
    p.add_argument("--work-dir", help="simulator work directory (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="print the report rows as JSON")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="RTL: simulator processes to shard the cases over (a Dask LocalCluster; default: the "
                        "machine's cores; 1: one simulation in this process); the report is the same")
    p.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="RTL: shard over the Dask scheduler at ADDRESS (tcp://host:8786) instead")
    p.set_defaults(func=_main)


if __name__ == "__main__":
    sys.exit(_main(argparse.Namespace(reference=None, seed=0, repeats=1, sim="model", work_dir=None, json=False)))
