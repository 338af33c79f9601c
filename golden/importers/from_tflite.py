"""int8 TFLite models (LiteRT flatbuffers) -> :class:`intdeploy.golden.model_file.IntegerModel`.

The flatbuffer is read with the schema classes that ai-edge-litert ships
(``ai_edge_litert.schema_py_generated``); TensorFlow is not needed. One subgraph, one input.

Supported operators (int8 activations, int8 weights with zero point 0, int32 bias; per-tensor or
per-output-channel weight scales):

* ``CONV_2D`` (SAME or VALID padding, any stride, dilation 1, not grouped) -> a ``conv2d``
  :class:`MacLayer`, rounding ``tflite`` (gemmlowp's two roundings, as the reference kernel);
* ``DEPTHWISE_CONV_2D`` (any depth multiplier; otherwise as CONV_2D) -> a ``conv2d``
  :class:`MacLayer` whose weights are block-diagonal (output channel ``o`` reads input channel
  ``o // multiplier``; the other weights are 0 and add exactly 0), rounding ``tflite``, marked in
  the metadata (``block_diagonal``: layer -> 1 input channel per output) so that the driver runs it
  as one GEMM per group of output channels (:class:`intdeploy.host.job.SplitProgram`);
* ``FULLY_CONNECTED`` (default weights format; an image input is flattened in NHWC order, which
  is the model file's channels-last order) -> a ``linear`` :class:`MacLayer`, rounding
  ``half_away`` (the reference kernel rounds once, ties away from zero);
* ``ADD`` of two int8 tensors of one shape -> :class:`AddLayer` (:meth:`AddParams.tflite`);
* ``AVERAGE_POOL_2D`` / ``MAX_POOL_2D`` (SAME or VALID; input and output quantized alike) ->
  :class:`PoolLayer` ``avg_tflite`` (padding excluded) / ``max``;
* ``PAD`` of H and W (the zero point is the padding value) feeding a CONV_2D or
  DEPTHWISE_CONV_2D: added to that convolution's padding (refused before anything else);
* ``MEAN`` over H and W -> a ``conv2d`` over the whole image with weight 1 on each channel's own
  taps (block-diagonal) and the reference kernel's requantization (rounding ``tflite``);
* ``RESHAPE`` to a vector -> :class:`FlattenLayer`; ``QUANTIZE`` int8 -> int8 ->
  :class:`RequantLayer` (rounding ``tflite``); ``QUANTIZE`` of a float32 graph input and
  ``DEQUANTIZE`` of a graph output are the model's edges (the model file reads and writes the
  int8 codes);
* ``SOFTMAX`` (int8 in, int8 out with scale 1/256 and zero point -128, any ``beta``) ->
  :class:`SoftmaxLayer`: the accelerator has no softmax unit, so the host runs it, in golden's
  transcription of the reference kernel (:mod:`intdeploy.golden.softmax`); :func:`import_tflite`
  lists it in ``host_ops``.

Fused activations NONE, RELU, RELU6 and RELU_N1_TO_1 become the output clamp, computed as
TFLite's ``CalculateActivationRangeQuantized`` does (``zp + round(f / scale)`` in float32).
Multipliers are TFLite's ``QuantizeMultiplier`` of the double product of the float32 scales, as
each kernel's ``Prepare`` computes them; the shift is ``31 - exponent``.

The import proves each layer against the reference kernel's integer formula
(:mod:`intdeploy.golden.importers.litert_kernels`): every MAC layer channel on every accumulator
value in its unsaturated window (both sides are monotone, so equality there and saturation at the
window's edges cover every reachable value), every ADD on all 65,536 input pairs, every QUANTIZE
on all 256 inputs. Anything else raises :class:`ModelFormatError`; every operator that cannot be
imported is listed in one line with its index.
"""

from dataclasses import dataclass, replace
import math
from pathlib import Path

import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.add import AddParams, add as golden_add
from intdeploy.golden.importers import litert_kernels as K, unique_name, window_sum_weights
from intdeploy.golden.importers.fp32 import Proof
from intdeploy.golden.model_file import (AddLayer, FlattenLayer, InputSpec, IntegerModel, MacLayer, ModelFormatError,
                                         PoolLayer, RequantLayer, SoftmaxLayer)
from intdeploy.golden.requantizer import RequantParams, requantize
from intdeploy.golden.softmax import softmax_params

__all__ = ["SUPPORTED_OPS", "TfliteSource", "import_tflite", "litert_outputs"]

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE",
                 "PAD", "MEAN", "QUANTIZE", "DEQUANTIZE", "SOFTMAX")
#: The reference kernels' rounding, per operator (measured: see litert_kernels).
ROUNDING = {"CONV_2D": "tflite", "DEPTHWISE_CONV_2D": "tflite", "FULLY_CONNECTED": "half_away", "QUANTIZE": "tflite", "ADD": "tflite"}
_CHUNK = 1 << 22                        # accumulator values per proof step


@dataclass
class TfliteSource:
    """A read TFLite model: its bytes, the tensor index of each model-file output, and for each
    graph input (in the model file's input order) its tensor index and whether it is float32 (fed
    as ``(code - zp) * scale``)."""
    data: bytes
    output_tensors: tuple
    input_tensors: tuple
    float_inputs: tuple
    host_ops: tuple = ()


class _Q:
    """A quantized int8 activation: our tensor name, scale (float32), zero point, shape
    (``(H, W, C)`` or ``(K,)``) and the range its values can take."""

    def __init__(self, name, scale, zp, shape, lo=-128, hi=127, pad=None):
        self.name, self.scale, self.zp, self.shape = name, float(np.float32(scale)), int(zp), tuple(shape)
        self.lo, self.hi = lo, hi
        self.pad = pad                  # a PAD's output: ((top, bottom), (left, right)) around tensor ``name``


class _Float:
    """The float32 graph input before its QUANTIZE, or a DEQUANTIZE'd graph output."""

    def __init__(self, q=None):
        self.q = q


class _Fail(Exception):
    pass


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as S  # optional dependency (dev extra: LiteRT)
    except ImportError:
        raise ModelFormatError("MODEL: reading a .tflite file needs ai-edge-litert (pip install ai-edge-litert)") \
            from None
    return S


def _names(enum):
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _read(data):
    S = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError("MODEL: not a TFLite flatbuffer (no 'TFL3' identifier); allowed a .tflite file")
    try:
        m = S.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:      # noqa: BLE001 - flatbuffers raises several types on bad data
        raise ModelFormatError(f"MODEL: malformed TFLite flatbuffer ({type(e).__name__})") from None
    if not m.subgraphs or len(m.subgraphs) != 1:
        raise ModelFormatError(f"MODEL: {len(m.subgraphs or [])} subgraphs; allowed exactly 1")
    return S, m


def import_tflite(model, name=None):
    """Import an int8 TFLite model (path or bytes); returns ``(IntegerModel, Proof, TfliteSource)``."""
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    S, m = _read(data)
    try:
        return _import(S, m, data, name)
    except ModelFormatError:
        raise
    except _Fail as e:                  # outside an operator: the graph's input or outputs
        raise ModelFormatError(f"subgraph: {e}") from None
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelFormatError(f"model: malformed TFLite graph ({type(e).__name__}: {msg})") from None


def _activation_range(act, scale, zp, names):
    """CalculateActivationRangeQuantized for int8: the fused activation's clamp."""
    def q(f):
        v = np.float32(f) / np.float32(scale)
        return zp + int(math.copysign(math.floor(abs(float(v)) + 0.5), float(v)))     # std::round
    kind = names.get(act, str(act))
    if kind == "NONE":
        lo, hi = -128, 127
    elif kind == "RELU":
        lo, hi = max(-128, q(0.0)), 127
    elif kind == "RELU6":
        lo, hi = max(-128, q(0.0)), min(127, q(6.0))
    elif kind == "RELU_N1_TO_1":
        lo, hi = max(-128, q(-1.0)), min(127, q(1.0))
    else:
        raise _Fail(f"fused activation {kind}; allowed NONE, RELU, RELU6, RELU_N1_TO_1")
    return lo, hi


def _same_padding(size, k, stride, padding, padnames):
    """Output size and ``(before, after)`` padding of one axis (TFLite ComputePaddingHeightWidth)."""
    kind = padnames.get(padding, str(padding))
    if k < 1 or stride < 1:
        raise _Fail(f"kernel {k}, stride {stride}; allowed >= 1")
    if kind == "VALID":
        out = (size - k) // stride + 1
        if out < 1:
            raise _Fail(f"kernel {k} larger than the input {size}")
        return out, (0, 0)
    if kind != "SAME":
        raise _Fail(f"padding {kind}; allowed SAME, VALID")
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, (total // 2, total - total // 2)


def _import(S, m, data, name):
    sg = m.subgraphs[0]
    ops = _names(S.BuiltinOperator)
    types = _names(S.TensorType)
    acts = _names(S.ActivationFunctionType)
    pads = _names(S.Padding)
    tensors = sg.tensors
    proof = Proof()
    layers, env, names = [], {}, set()
    spec = {}
    host_ops = []
    block_diagonal = {}                         # depthwise layers: name -> input channels per output (1)

    def tname(i):
        n = tensors[i].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def fresh(base):
        return unique_name(base, names)

    def quant(i):
        q = tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise _Fail(f"tensor {tname(i)!r} is not quantized")
        zp = np.zeros(len(q.scale), np.int64) if q.zeroPoint is None else np.asarray(q.zeroPoint, np.int64)
        scale = np.asarray(q.scale, np.float32)
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise _Fail(f"tensor {tname(i)!r} has scale {scale.tolist()[:4]}; allowed positive finite values")
        if zp.size not in (1, scale.size) or np.any(zp < -128) or np.any(zp > 127):
            raise _Fail(f"tensor {tname(i)!r} has zero point(s) {zp.tolist()[:4]}; allowed one per scale in [-128, 127]")
        return scale, zp, int(q.quantizedDimension)

    def ttype(i):
        return types.get(tensors[i].type, str(tensors[i].type))

    def shape(i):
        s = [int(v) for v in tensors[i].shape]
        if len(s) not in (2, 4) or s[0] != 1 or min(s) < 1:
            raise _Fail(f"tensor {tname(i)!r} has shape {s}; allowed [1, K] or [1, H, W, C]")
        return tuple(s[1:])

    def const(i, what, dtype):
        if i < 0:
            return None
        buf = m.buffers[tensors[i].buffer]
        if buf.data is None or len(buf.data) == 0:
            raise _Fail(f"{what} ({tname(i)!r}) must be a constant tensor")
        if ttype(i) != dtype.upper():
            raise _Fail(f"{what} ({tname(i)!r}) is {ttype(i)}; allowed {dtype.upper()}")
        arr = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), dtype=dtype)
        return arr.reshape([int(v) for v in tensors[i].shape]).astype(np.int64)

    def activation(i, pad_ok=False):
        v = env.get(i)
        if not isinstance(v, _Q):
            raise _Fail(f"input {tname(i)!r} is not an int8 tensor computed by a supported operator")
        if v.pad is not None and not pad_ok:
            raise _Fail(f"input {tname(i)!r} is a PAD's output; allowed only as the input of a CONV_2D or "
                        f"DEPTHWISE_CONV_2D (whose padding it becomes)")
        return v

    def pad(index, op):
        x = activation(op.inputs[0], pad_ok=True)
        p = const(op.inputs[1], "paddings", "int32")
        if len(x.shape) != 3 or p.shape != (4, 2) or np.any(p < 0) or np.any(p[0] != 0) or np.any(p[3] != 0):
            raise _Fail(f"paddings {p.tolist()}; allowed non-negative padding of H and W of an image")
        s, z = output(op.outputs[0])
        if float(np.float32(s)) != x.scale or z != x.zp:
            raise _Fail("output quantized differently from the input")
        before = x.pad or ((0, 0), (0, 0))
        total = tuple((int(a) + int(b[0]), int(c) + int(b[1])) for (a, c), b in zip(p[1:3], before))
        return _Q(x.name, x.scale, x.zp, (x.shape[0] + int(p[1].sum()), x.shape[1] + int(p[2].sum()), x.shape[2]),
                  min(x.lo, x.zp), max(x.hi, x.zp), pad=total)

    def output(i):
        if ttype(i) != "INT8":
            raise _Fail(f"output {tname(i)!r} is {ttype(i)}; allowed INT8")
        s, z, _ = quant(i)
        if s.size != 1:
            raise _Fail(f"output {tname(i)!r} is quantized per channel; allowed per tensor")
        return float(s[0]), int(z[0])

    def prove_mac(label, rq, reference, a_lo, a_hi, muls):
        """Golden's requantizer against the reference formula on every unsaturated value."""
        for c, (mult, e) in enumerate(muls):
            b = int(rq.bias[c])
            one = RequantParams(mult=mult, shift=31 - e, bias=b, zero_point=rq.zero_point, lo=rq.lo, hi=rq.hi,
                                rounding=rq.rounding)
            lo, hi = int(a_lo[c]) + b, int(a_hi[c]) + b             # reachable acc + bias
            if mult:
                r = mult * 2.0 ** (e - 31)
                w_lo = max(lo, math.floor((rq.lo - rq.zero_point - 2) / r) - 2)
                w_hi = min(hi, math.ceil((rq.hi - rq.zero_point + 2) / r) + 2)
            else:                                                   # a constant function
                w_lo, w_hi = lo, min(hi, lo + 1)
            chunks = [np.array([lo, hi], dtype=np.int64)] + [
                np.arange(s, min(s + _CHUNK, w_hi + 1), dtype=np.int64) for s in range(w_lo, w_hi + 1, _CHUNK)]
            for t in chunks:
                want = np.clip(reference(t, mult, e) + rq.zero_point, rq.lo, rq.hi)
                bad = t[requantize(t - b, one) != want] - b
                proof.checked += int(t.size)
                if bad.size:
                    proof.inexact += 1
                    proof.inexact_values += int(bad.size)
                    proof.differences.append((label, c, bad))
                    break
            # both sides are monotone in t: outside the window they are saturated if they are at its edges
            if mult and ((w_lo > lo and int(requantize(np.array([w_lo - b]), one)[0]) != rq.lo)
                         or (w_hi < hi and int(requantize(np.array([w_hi - b]), one)[0]) != rq.hi)):
                raise ModelFormatError(f"{label}: channel {c}: the proof window does not reach saturation "
                                       f"(internal error)")

    def mac(index, op, kind, o, opname):
        x = activation(op.inputs[0], pad_ok=kind == "conv2d")
        if ttype(op.inputs[1]) != "INT8":
            raise _Fail(f"weights are {ttype(op.inputs[1])}; allowed INT8")
        w = const(op.inputs[1], "weights", "int8")
        ws, wz, qdim = quant(op.inputs[1])
        if opname == "DEPTHWISE_CONV_2D":
            w, qdim = depthwise_weights(x, w, o, qdim), 0 if qdim == 3 else qdim
        cout = w.shape[0]
        if np.any(wz != 0):
            raise _Fail("weight zero point is not 0; allowed symmetric int8 weights")
        if ws.size not in (1, cout) or (ws.size > 1 and qdim != 0):
            raise _Fail(f"weight scales: {ws.size} along dimension {qdim}; allowed 1 or {cout} along dimension 0")
        bias = np.zeros(cout, np.int64) if len(op.inputs) < 3 or op.inputs[2] < 0 else \
            const(op.inputs[2], "bias", "int32").reshape(-1)
        if bias.shape != (cout,):
            raise _Fail(f"bias has {bias.size} values; expected {cout}")
        ys, yz = output(op.outputs[0])
        lo, hi = _activation_range(o.fusedActivationFunction, ys, yz, acts)
        nm = fresh(f"op{index}_{opname.lower()}")
        if opname == "DEPTHWISE_CONV_2D":
            block_diagonal[nm] = 1
        shape_args, x_lo, x_hi = {}, x.lo, x.hi
        if kind == "conv2d":
            if len(x.shape) != 3:
                raise _Fail(f"input of shape {list(x.shape)} is not an image [1, H, W, C]")
            if w.ndim != 4 or w.shape[3] != x.shape[2] or w.shape[0] < 1:
                raise _Fail(f"weights {list(w.shape)} do not match {x.shape[2]} input channels (grouped "
                            f"convolution is not supported)")
            if o.dilationHFactor != 1 or o.dilationWFactor != 1:
                raise _Fail(f"dilation {o.dilationHFactor}x{o.dilationWFactor}; allowed 1")
            oh, ph = _same_padding(x.shape[0], w.shape[1], o.strideH, o.padding, pads)
            ow, pw = _same_padding(x.shape[1], w.shape[2], o.strideW, o.padding, pads)
            if x.pad is not None:         # a PAD before: its zero-point padding joins the convolution's
                ph = tuple(a + b for a, b in zip(ph, x.pad[0]))
                pw = tuple(a + b for a, b in zip(pw, x.pad[1]))
            shape_args = dict(stride=(o.strideH, o.strideW), padding=(ph, pw))
            if ph != (0, 0) or pw != (0, 0):
                x_lo, x_hi = min(x_lo, x.zp), max(x_hi, x.zp)
            out_shape = (oh, ow, cout)
        else:
            if o.weightsFormat != 0:
                raise _Fail("weights format is not DEFAULT")
            if len(x.shape) == 3:
                x = flatten(x, f"op{index}_flatten")
            if w.ndim != 2 or w.shape[1] != x.shape[0]:
                raise _Fail(f"weights {list(w.shape)} do not match an input of {x.shape[0]} values")
            out_shape = (cout,)
        if tuple(shape(op.outputs[0])) != out_shape:
            raise _Fail(f"output shape {list(shape(op.outputs[0]))}; the layer computes {list(out_shape)}")
        wsc = np.broadcast_to(ws, (cout,))
        muls = [K.quantize_multiplier(float(np.float32(x.scale)) * float(wsc[c]) / float(np.float32(ys)))
                for c in range(cout)]
        if max(e for _, e in muls) > 30:
            raise _Fail("input scale x weight scale / output scale is 2**31 or more; allowed a smaller ratio")
        rq = RequantParams(mult=[mm for mm, _ in muls], shift=[31 - e for _, e in muls], bias=bias, zero_point=yz,
                           lo=lo, hi=hi, rounding=ROUNDING[opname])
        w8 = w.astype(np.int8)
        a_lo, a_hi = mac_array.accumulator_range(w8, x_lo, x_hi, x.zp, 0)
        prove_mac(f"operator #{index} ({opname})", rq, K.multiply_once if opname == "FULLY_CONNECTED" else K.multiply,
                  a_lo, a_hi, muls)
        layers.append(MacLayer(kind=kind, name=nm, inputs=(x.name,), weight=w8, input_zero_point=x.zp, requant=rq,
                               dtype="int8", eps=ys, weight_eps=float(wsc[0]) if ws.size == 1 else
                               wsc.astype(np.float64), **shape_args))
        return _Q(nm, ys, yz, out_shape, lo, hi)

    def mean(index, op, o):
        """MEAN over H and W: the reference kernel sums ``x - zp_in`` over the window and applies
        ``MultiplyByQuantizedMultiplier`` with ``QuantizeMultiplier(s_in / s_out)`` divided by the
        element count ``n`` (the multiplier shifted left by ``min(floor(log2 n), 32, 31 + e)``,
        then integer-divided by ``n``), plus ``zp_out``; a conv2d over the whole image with a weight
        of 1 on each channel's own taps (block-diagonal, like a depthwise layer)."""
        x = activation(op.inputs[0])
        axes = sorted(int(a) for a in const(op.inputs[1], "axes", "int32").reshape(-1))
        if len(x.shape) != 3 or axes != [1, 2]:
            raise _Fail(f"axes {axes} of a tensor of shape {list(x.shape)}; allowed the mean over H and W ([1, 2]) "
                        f"of an image")
        h, w, c = x.shape
        out_shape = (1, 1, c) if o.keepDims else (c,)
        if tuple(shape(op.outputs[0])) != out_shape:
            raise _Fail(f"output shape {list(shape(op.outputs[0]))}; the mean computes {list(out_shape)}")
        ys, yz = output(op.outputs[0])
        m, e = K.quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(ys)))
        n = h * w
        shift = min(n.bit_length() - 1, 32, 31 + e)
        m, e = (m << shift) // n, e - shift
        if not 0 <= 31 - e <= 62:
            raise _Fail("input scale / output scale out of the requantizer's range")
        rq = RequantParams(mult=m, shift=31 - e, zero_point=yz, lo=-128, hi=127, rounding="tflite")
        weight = window_sum_weights(c, (h, w))
        a_lo, a_hi = mac_array.accumulator_range(weight, x.lo, x.hi, x.zp, 0)
        prove_mac(f"operator #{index} (MEAN)", replace(rq, mult=np.full(c, m), shift=np.full(c, 31 - e),
                                                        bias=np.zeros(c, np.int64)),
                  K.multiply, a_lo, a_hi, [(m, e)] * c)
        nm = fresh(f"op{index}_mean")
        block_diagonal[nm] = 1
        layers.append(MacLayer(kind="conv2d", name=nm, inputs=(x.name,), weight=weight, input_zero_point=x.zp,
                               requant=rq, dtype="int8", eps=ys))
        q = _Q(nm, ys, yz, (1, 1, c))
        return q if o.keepDims else flatten(q, f"op{index}_flatten")

    def depthwise_weights(x, w, o, qdim):
        """DEPTHWISE_CONV_2D's ``[1, KH, KW, C * M]`` weights as the block-diagonal OHWI weights of a
        conv2d: output channel ``o`` reads input channel ``o // M`` (zero weights elsewhere
        add exactly 0, the weight zero point being 0)."""
        if len(x.shape) != 3:
            raise _Fail(f"input of shape {list(x.shape)} is not an image [1, H, W, C]")
        c, mult = x.shape[2], int(o.depthMultiplier) or 1
        if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != c * mult:
            raise _Fail(f"weights {list(w.shape)} do not match {c} input channels x depth multiplier {mult}")
        if qdim not in (0, 3):
            raise _Fail(f"weight scales along dimension {qdim}; allowed 3")
        kh, kw, cout = w.shape[1], w.shape[2], w.shape[3]
        full = np.zeros((cout, kh, kw, c), dtype=np.int64)
        for ch in range(cout):
            full[ch, :, :, ch // mult] = w[0, :, :, ch]
        return full

    def flatten(x, nm):
        nm = fresh(nm)
        layers.append(FlattenLayer(name=nm, inputs=(x.name,), dtype="int8", eps=x.scale))
        return _Q(nm, x.scale, x.zp, (int(np.prod(x.shape)),), x.lo, x.hi)

    def add(index, op, o):
        a, b = activation(op.inputs[0]), activation(op.inputs[1])
        if a.shape != b.shape:
            raise _Fail(f"inputs of shapes {list(a.shape)} and {list(b.shape)}; broadcasting is not supported")
        ys, yz = output(op.outputs[0])
        lo, hi = _activation_range(o.fusedActivationFunction, ys, yz, acts)
        try:
            params = AddParams.tflite(a.scale, a.zp, b.scale, b.zp, ys, yz, lo, hi)
        except ValueError as e:
            raise _Fail(str(e)) from None
        # the reference kernel (reference_integer_ops::Add) on every pair of int8 inputs
        va, vb = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
        br = params.branches
        raw = sum(K.multiply((v - z) * (1 << params.left_shift), int(p.mult), 31 - int(p.shift))
                  for v, z, p in ((va, a.zp, br[0]), (vb, b.zp, br[1])))
        want = np.clip(K.multiply(raw, int(params.output.mult), 31 - int(params.output.shift)) + yz, lo, hi)
        got = golden_add(va, vb, params)
        proof.checked += int(va.size)
        if np.any(got != want):
            raise ModelFormatError(f"operator #{index} (ADD): golden differs from the reference kernel on "
                                   f"{int(np.count_nonzero(got != want))} input pairs (internal error)")
        nm = fresh(f"op{index}_add")
        layers.append(AddLayer(name=nm, inputs=(a.name, b.name), params=params, dtype="int8", eps=ys))
        return _Q(nm, ys, yz, a.shape, lo, hi)

    def pool(index, op, o, mode):
        x = activation(op.inputs[0])
        if len(x.shape) != 3:
            raise _Fail(f"input of shape {list(x.shape)} is not an image [1, H, W, C]")
        ys, yz = output(op.outputs[0])
        if float(np.float32(ys)) != x.scale or yz != x.zp:
            raise _Fail("output quantized differently from the input; allowed the same scale and zero point")
        lo, hi = _activation_range(o.fusedActivationFunction, ys, yz, acts)
        oh, ph = _same_padding(x.shape[0], o.filterHeight, o.strideH, o.padding, pads)
        ow, pw = _same_padding(x.shape[1], o.filterWidth, o.strideW, o.padding, pads)
        nm = fresh(f"op{index}_{'avg' if mode != 'max' else 'max'}_pool")
        layers.append(PoolLayer(name=nm, inputs=(x.name,), mode=mode, kernel=(o.filterHeight, o.filterWidth),
                                stride=(o.strideH, o.strideW), padding=(ph, pw), lo=lo, hi=hi, dtype="int8",
                                eps=x.scale))
        return _Q(nm, x.scale, x.zp, (oh, ow, x.shape[2]), max(lo, x.lo), min(hi, x.hi))

    def make_input(i, scale, zp):
        shp = shape(i)
        nm = fresh("input")
        spec[i] = InputSpec(name=nm, shape=shp, dtype="int8", zero_point=zp, eps=scale)
        return _Q(nm, scale, zp, shp)

    def quantize(index, op):
        src = op.inputs[0]
        ys, yz = output(op.outputs[0])
        if isinstance(env.get(src), _Float) and env[src].q is None:
            return make_input(src, ys, yz)
        x = activation(src)
        mult, e = K.quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(ys)))
        if e > 30:
            raise _Fail("input scale / output scale is 2**31 or more; allowed a smaller ratio")
        rq = RequantParams(mult=mult, shift=31 - e, bias=-x.zp, zero_point=yz, lo=-128, hi=127, rounding="tflite")
        v = np.arange(-128, 128)
        want = np.clip(K.multiply(v - x.zp, mult, e) + yz, -128, 127)
        proof.checked += int(v.size)
        if np.any(requantize(v, rq) != want):
            raise ModelFormatError(f"operator #{index} (QUANTIZE): golden differs from the reference kernel "
                                   f"(internal error)")
        nm = fresh(f"op{index}_quantize")
        layers.append(RequantLayer(name=nm, inputs=(x.name,), requant=rq, dtype="int8", eps=ys))
        return _Q(nm, ys, yz, x.shape)

    graph_outputs = {int(i) for i in sg.outputs}

    def visit(index, op, opname):
        o = op.builtinOptions
        if opname in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            return mac(index, op, "linear" if opname == "FULLY_CONNECTED" else "conv2d", o, opname)
        if opname == "ADD":
            return add(index, op, o)
        if opname in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            return pool(index, op, o, "avg_tflite" if opname == "AVERAGE_POOL_2D" else "max")
        if opname == "RESHAPE":
            x = activation(op.inputs[0])
            out = shape(op.outputs[0])
            if len(out) != 1 or out[0] != int(np.prod(x.shape)):
                raise _Fail(f"reshape of {list(x.shape)} to {list(out)}; allowed a reshape to [1, "
                            f"{int(np.prod(x.shape))}]")
            s, z = output(op.outputs[0])
            if float(np.float32(s)) != x.scale or z != x.zp:
                raise _Fail("output quantized differently from the input")
            return x if len(x.shape) == 1 else flatten(x, f"op{index}_flatten")
        if opname == "QUANTIZE":
            return quantize(index, op)
        if opname == "PAD":
            return pad(index, op)
        if opname == "MEAN":
            return mean(index, op, o)
        if opname == "DEQUANTIZE":
            if int(op.outputs[0]) not in graph_outputs:
                raise _Fail("a DEQUANTIZE that does not produce a graph output; allowed only at the output")
            return _Float(activation(op.inputs[0]))
        if opname == "SOFTMAX":
            x = activation(op.inputs[0])
            ys, yz = output(op.outputs[0])
            if float(np.float32(ys)) != 1 / 256 or yz != -128:
                raise _Fail(f"output scale {ys!r}, zero point {yz}; allowed 1/256 and -128 (TFLite's int8 softmax)")
            try:
                mult, shift, diff_min = softmax_params(o.beta, x.scale)
            except ValueError as e:
                raise _Fail(str(e)) from None
            nm = fresh(f"op{index}_softmax")
            layers.append(SoftmaxLayer(name=nm, inputs=(x.name,), multiplier=mult, left_shift=shift,
                                       diff_min=diff_min, eps=ys))
            host_ops.append((index, "SOFTMAX", f"layer {nm!r} runs on the host (golden's integer softmax, the "
                                               f"reference kernel's arithmetic)"))
            return _Q(nm, ys, yz, x.shape)
        raise _Fail(f"operator {opname} is not supported; supported: {', '.join(SUPPORTED_OPS)}")

    graph_inputs = [int(i) for i in sg.inputs]
    if not graph_inputs or len(set(graph_inputs)) != len(graph_inputs):
        raise ModelFormatError(f"subgraph: inputs {graph_inputs}; allowed one or more distinct tensors")
    for gin in graph_inputs:
        if ttype(gin) == "INT8":
            s, z, _ = quant(gin)
            env[gin] = make_input(gin, float(s[0]), int(z[0]))
        elif ttype(gin) == "FLOAT32":
            env[gin] = _Float()
        else:
            raise ModelFormatError(f"input {tname(gin)!r}: {ttype(gin)}; allowed INT8 or FLOAT32 followed by QUANTIZE")

    refused, blocked = [], set()
    for index, op in enumerate(sg.operators):
        code = m.operatorCodes[op.opcodeIndex]
        opname = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"custom {code.customCode!r}")
        ins = [int(i) for i in op.inputs]
        if blocked.intersection(ins) and opname in SUPPORTED_OPS:
            blocked.update(int(i) for i in op.outputs)
            continue
        try:
            try:
                env[int(op.outputs[0])] = visit(index, op, opname)
            except (_Fail, ModelFormatError) as e:
                raise ModelFormatError(f"operator #{index} ({opname}): {e}") from None
            except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
                raise ModelFormatError(f"operator #{index} ({opname}): malformed: {type(e).__name__}: "
                                       f"{str(e).splitlines()[0] if str(e) else ''}") from None
        except ModelFormatError as e:
            refused.append(str(e))
            blocked.update(int(i) for i in op.outputs)
    if len(refused) == 1:
        raise ModelFormatError(refused[0])
    if refused:
        supported = f"; supported: {', '.join(SUPPORTED_OPS)}"
        raise ModelFormatError(f"{len(refused)} operators cannot be imported: "
                               + " | ".join(r.replace(supported, "") for r in refused)
                               + f" (supported operators: {', '.join(SUPPORTED_OPS)})")
    for gin in graph_inputs:
        if gin not in spec:
            raise ModelFormatError(f"input {tname(gin)!r}: no QUANTIZE consumes the float32 input")
    specs = [spec[gin] for gin in graph_inputs]
    outs, out_tensors = [], []
    for i in sg.outputs:
        v = env.get(int(i))
        q = v.q if isinstance(v, _Float) else v
        if not isinstance(q, _Q) or q.name in [s.name for s in specs]:
            raise ModelFormatError(f"output {tname(int(i))!r}: not an int8 tensor computed by a supported operator")
        outs.append(q.name)
        out_tensors.append(next(int(t) for t, e in env.items() if e is q))
    try:
        im = IntegerModel(input=specs[0], extra_inputs=tuple(specs[1:]), layers=tuple(layers), outputs=tuple(outs),
                          name=name or "tflite_model",
                          metadata={"converter": "golden.importers.from_tflite", "requant_proof": proof.as_dict(),
                                    "host_ops": [list(h) for h in host_ops], "block_diagonal": block_diagonal})
    except ValueError as e:
        raise ModelFormatError(str(e)) from None
    return im, proof, TfliteSource(data=data, output_tensors=tuple(out_tensors), input_tensors=tuple(graph_inputs),
                                   float_inputs=tuple(isinstance(env.get(g), _Float) for g in graph_inputs),
                                   host_ops=tuple(host_ops))


def litert_outputs(source, model, images):
    """Run ``images`` (int8 codes in the model file's layout: an array, or for several inputs a
    dict by name or a tuple, :meth:`intdeploy.golden.model_file.IntegerModel.feed`) in the LiteRT
    interpreter with the reference kernels, one sample at a time (the models have batch 1);
    returns the int8 codes of the tensors the model file outputs, stacked: an array, or a tuple of
    them for several outputs (as :meth:`intdeploy.golden.integer_deployable.IntegerDeployable.run`)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # optional dependency (dev extra: LiteRT)
    it = Interpreter(model_content=source.data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    x = model.feed(images)
    n = len(next(iter(x.values())))
    out = [[] for _ in source.output_tensors]
    for k in range(n):
        for spec, tensor, is_float in zip(model.inputs, source.input_tensors, source.float_inputs):
            v = x[spec.name][k]
            feed = ((v - spec.zero_point) * np.float32(spec.eps)).astype(np.float32) if is_float else v.astype(np.int8)
            it.set_tensor(tensor, feed[None])
        it.invoke()
        for o, t in zip(out, source.output_tensors):
            o.append(it.get_tensor(t).astype(np.int64)[0])
    out = tuple(np.stack(o) for o in out)
    return out[0] if len(out) == 1 else out
