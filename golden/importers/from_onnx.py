"""ONNX quantized models (QLinear* and QDQ) -> :class:`intdeploy.golden.model_file.IntegerModel`.

Supported operators (ONNX domain, opset >= 10):

* ``QLinearConv`` (2-D, ``group = 1``, dilations 1, explicit ``pads`` or ``auto_pad = NOTSET``,
  int32 bias ``B``) and ``QLinearMatMul`` (2-D ``a``, constant ``b``), per-tensor or per-channel
  weight scale and zero point;
* QDQ: ``DequantizeLinear`` of constant weights / bias and of quantized activations, ``Conv``,
  ``MatMul`` or ``Gemm`` (``transB = 1``, ``alpha = beta = 1``) on them, an optional ``Relu``,
  then ``QuantizeLinear``: the layer ONNX Runtime fuses into QLinearConv / QLinearMatMul; the
  bias must be the int32 quantization of the bias with scale ``x_scale * w_scale``;
* QOperator, ONNX Runtime's ``quantize_static(..., quant_format=QuantFormat.QOperator)``: besides
  QLinearConv and QLinearMatMul, ``QGemm`` (``com.microsoft``; ``transA = 0``, ``alpha = 1``,
  either ``transB``, constant ``B``, int32 bias ``C`` with scale ``a_scale * b_scale``, a quantized
  output: ``y_scale`` and ``y_zero_point`` given);
* ``MaxPool`` (2-D, ``dilations`` 1, ``ceil_mode = 0``, explicit pads or ``NOTSET``; padded taps
  ignored, as ONNX Runtime does) of a quantized tensor, as a QOperator node on the integers or as
  QDQ's ``DequantizeLinear -> MaxPool -> QuantizeLinear`` with unchanged scale and zero point;
* ``QuantizeLinear`` of the float graph input (the model's input tensor), optionally after a
  ``Flatten`` (axis 1) of that input (``quantize_static`` leaves a leading Flatten in float: the
  model file's input is then the flattened vector in ONNX's ``(c, h, w)`` order), ``DequantizeLinear``
  of a graph output, ``Flatten`` / ``Reshape`` to ``[N, -1]`` of a quantized tensor.

Activations become channels-last (``NCHW`` -> ``(H, W, C)``, the model-file convention); a flatten
of an ``(H, W, C)`` tensor permutes the next matrix's rows so that ONNX's ``(c, h, w)`` order is
kept. ``uint8`` weights become int8 by subtracting 128 from the weights and their zero point.
Requantization: ONNX Runtime's float32 formula (:func:`intdeploy.golden.importers.fp32.ort_requantize`,
``S = fl(fl(x_scale * w_scale[c]) / y_scale)``) turned into a ``half_even`` requantizer and
proven equal on every reachable accumulator value (:func:`intdeploy.golden.importers.fp32.fit_requant`).

Anything else raises :class:`intdeploy.golden.model_file.ModelFormatError` with one line, e.g.
``node 'pool1': operator 'MaxPool' is not supported; supported: ...``.
"""

import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.add import AddParams, add
from intdeploy.golden.importers import framework, unique_name, window_sum_weights, x86_kernels
from intdeploy.golden.importers.fp32 import Proof, f32, fit_requant, ort_requantize, ort_scale
from intdeploy.golden.model_file import (DTYPES, AddLayer, FlattenLayer, InputSpec, IntegerModel, MacLayer,
                                         ModelFormatError, PoolLayer)
from intdeploy.golden.requantizer import RequantParams

__all__ = ["SUPPORTED_OPS", "import_onnx"]

SUPPORTED_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearAveragePool", "QLinearGlobalAveragePool",
                 "QuantizeLinear",
                 "DequantizeLinear", "Conv", "MatMul", "Gemm", "Relu", "Add", "GlobalAveragePool", "MaxPool", "Flatten",
                 "Reshape")
#: Operators of ONNX Runtime's ``com.microsoft`` domain among :data:`SUPPORTED_OPS`.
MS_OPS = ("QGemm", "QLinearAdd", "QLinearAveragePool", "QLinearGlobalAveragePool")
_QTYPES = {2: "uint8", 3: "int8"}        # onnx.TensorProto.UINT8 / INT8
_FLOAT = 1                               # onnx.TensorProto.FLOAT


class _Q:
    """A quantized activation: our tensor name, scale (float32), zero point, dtype, layout
    (``"hwc"`` with shape, or ``"vec"``) and, for a flattened ``hwc`` tensor, the ONNX index of
    each of our elements (``perm``)."""

    def __init__(self, name, scale, zp, dtype, shape, layout, perm=None, lo=None, hi=None):
        self.name, self.scale, self.zp, self.dtype = name, f32(scale), int(zp), dtype
        self.shape, self.layout, self.perm = tuple(shape), layout, perm
        dlo, dhi = DTYPES[dtype]
        self.lo = dlo if lo is None else lo
        self.hi = dhi if hi is None else hi


class _FloatInput:
    """The float graph input after a Flatten, waiting for its QuantizeLinear."""


class _DQ:
    """A float view ``DequantizeLinear(q)`` of a quantized activation or of a constant."""

    def __init__(self, q=None, const=None):
        self.q, self.const = q, const


class _Pending:
    """A float Conv / MatMul / Gemm on dequantized operands, waiting for its QuantizeLinear."""

    def __init__(self, node, kind, x, w, b, relu=False):
        self.node, self.kind, self.x, self.w, self.b, self.relu = node, kind, x, w, b, relu


def _ort_qlinear_add(va, vb, a, b, c_scale, c_zp, dtype):
    """ONNX Runtime's QLinearAdd of the value pairs ``(va, vb)`` with the quantization of tensors
    ``a``, ``b`` and the output's ``c_scale``, ``c_zp`` (a one-node model run on this machine)."""
    import onnx  # optional dependency (onnx extra)
    from onnx import helper, numpy_helper  # optional dependency (onnx extra)
    import onnxruntime as ort  # optional dependency (onnx extra)
    np_t, onnx_t = (np.uint8, onnx.TensorProto.UINT8) if dtype == "uint8" else (np.int8, onnx.TensorProto.INT8)
    inits = [numpy_helper.from_array(np.array(v, t), n) for n, v, t in (
        ("as", a.scale, np.float32), ("az", a.zp, np_t), ("bs", b.scale, np.float32), ("bz", b.zp, np_t),
        ("cs", c_scale, np.float32), ("cz", c_zp, np_t))]
    node = helper.make_node("QLinearAdd", ["a", "as", "az", "b", "bs", "bz", "cs", "cz"], ["c"], domain="com.microsoft")
    n = va.size
    g = helper.make_graph([node], "qladd", [helper.make_tensor_value_info("a", onnx_t, [1, n]),
                                            helper.make_tensor_value_info("b", onnx_t, [1, n])],
                          [helper.make_tensor_value_info("c", onnx_t, [1, n])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": va.astype(np_t)[None], "b": vb.astype(np_t)[None]})[0][0].astype(np.int64)


def _fit_add(va, vb, want, za, zb, zc, lo, hi, ra, rb):
    """:class:`AddParams` whose add equals ``want`` on the most pairs ``(va, vb)``: branch
    multipliers ``MA``, ``MB`` within 2 of ``ra * 2**S``, ``rb * 2**S``, the sum rounded
    half-to-even by ``2**S``, the largest ``S`` first (products within int32); returns
    ``(params, mask of the pairs where it differs)``."""
    best = None
    for s in range(30, 0, -1):
        ma0, mb0 = round(ra * (1 << s)), round(rb * (1 << s))
        if 256 * (ma0 + mb0 + 4) >= 1 << 31 or min(ma0, mb0) < 3:
            continue
        for da in (0, -1, 1, -2, 2):
            for db in (0, -1, 1, -2, 2):
                ma, mb = ma0 + da, mb0 + db
                params = AddParams(in_zero_points=(za, zb), branches=(RequantParams(mult=ma, shift=0),
                                                                      RequantParams(mult=mb, shift=0)),
                                   output=RequantParams(mult=1, shift=s, zero_point=zc, lo=lo, hi=hi,
                                                        rounding="half_even"))
                bad = add(va, vb, params) != want
                if best is None or bad.sum() < best[1].sum():
                    best = (params, bad)
                if not bad.any():
                    return best
    return best


def _known(node):
    """The node's operator is one this importer reads (in its domain)."""
    if node.op_type in MS_OPS:
        return node.domain == "com.microsoft"
    return node.op_type in SUPPORTED_OPS and node.domain in ("", "ai.onnx")


def _fail(node, msg):
    raise ModelFormatError(f"node {node.name or (node.output[0] if node.output else '?')!r} ({node.op_type}): {msg}")


def _safe(name):
    out = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)[:120] or "t"
    return out if out[0].isalpha() or out[0] == "_" else "t_" + out


def import_onnx(model, name=None, strict=True):
    """Import an ONNX model (path or ``onnx.ModelProto``); returns ``(IntegerModel, Proof)``.

    ``strict``: True refuses a layer whose float32 requantization no integer ``half_even``
    requantizer reproduces on every reachable accumulator value; False keeps the multiplier that
    differs on the fewest values and lists them in the returned :class:`Proof`.

    The model's single graph input must be quantized (QuantizeLinear of a float input, or a
    uint8 / int8 input consumed by a QLinear node). Raises :class:`ModelFormatError` (one line
    naming the node and the operator) for anything outside the supported set or malformed.
    """
    try:
        return _import_onnx(model, name, strict)
    except ModelFormatError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelFormatError(f"model: malformed ONNX graph ({type(e).__name__}: {msg})") from None


def _import_onnx(model, name, strict):
    import onnx  # optional dependency (onnx extra)
    from onnx import numpy_helper  # optional dependency (onnx extra)
    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load(str(model))
        except Exception as e:        # noqa: BLE001 - protobuf raises several types
            raise ModelFormatError(f"{model}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    g = model.graph
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < 10:
            raise ModelFormatError(f"opset_import: ONNX opset {imp.version}; QLinear operators need opset >= 10")
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise ModelFormatError(f"graph.input: expected one (non-constant) input, got {len(inputs)}")
    gin = inputs[0]
    tt = gin.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
        raise ModelFormatError(f"graph.input {gin.name!r}: expected shape [N, K] or [N, C, H, W] with fixed "
                               f"sizes, got {dims}")
    env = {}
    layers = []
    spec = {}
    proof = Proof()
    names = set()
    arithmetic = {}                             # layer name -> framework.record
    warnings = []
    block_diagonal = {}                         # grouped convolutions: layer -> input channels per output

    def fresh(n):
        return unique_name(_safe(n), names)

    def in_shape():
        return (dims[2], dims[3], dims[1]) if len(dims) == 4 else (dims[1],)

    def const(node, i, what):
        if i >= len(node.input) or not node.input[i]:
            return None
        if node.input[i] not in consts:
            _fail(node, f"{what} ({node.input[i]!r}) must be a constant initializer")
        return consts[node.input[i]]

    def scalar(node, i, what):
        v = const(node, i, what)
        if v is None or v.size != 1:
            _fail(node, f"{what} must be a scalar (per-tensor)")
        if what.endswith("scale") and not (np.isfinite(v).all() and float(v.reshape(())) > 0):
            _fail(node, f"{what} is {float(v.reshape(()))!r}; allowed a positive finite float")
        return v.reshape(())

    def make_input(node, scale, zp, flat=False):
        dtype = _QTYPES.get(int(zp.dtype == np.int8) + 2) if zp.dtype in (np.uint8, np.int8) else None
        if dtype is None:
            _fail(node, f"zero point dtype {zp.dtype}; allowed uint8, int8")
        if "input" in spec:
            _fail(node, "the graph input is quantized twice; allowed once")
        nm = fresh(gin.name)
        shape = (int(np.prod(dims[1:])),) if flat else in_shape()
        spec["input"] = InputSpec(name=nm, shape=shape, dtype=dtype, zero_point=int(zp), eps=float(scale))
        return _Q(nm, scale, zp, dtype, shape, "hwc" if len(shape) == 3 else "vec")

    def activation(node, i):
        """The quantized tensor feeding input ``i`` of a QLinear node."""
        src = node.input[i]
        if src in env and isinstance(env[src], _Q):
            return env[src]
        if src == gin.name and tt.elem_type in _QTYPES:
            scale, zp = scalar(node, i + 1, "x_scale"), scalar(node, i + 2, "x_zero_point")
            q = make_input(node, scale, zp)
            env[src] = q
            return q
        _fail(node, f"input {src!r} is not a quantized activation")

    def mac(node, kind, x, wq, w_scale, w_zp, y_scale, y_zp, bias, relu, attrs):
        """Emit a MacLayer: ``wq`` ONNX weights (conv OIHW, matmul [K, N]) as stored."""
        if x.scale is None:
            _fail(node, "input scale unknown")
        wq = np.asarray(wq)
        if wq.dtype not in (np.uint8, np.int8):
            _fail(node, f"weights of dtype {wq.dtype}; allowed uint8, int8")
        w = wq.astype(np.int64)
        grouped = None
        cout = w.shape[0] if kind == "conv2d" else w.shape[1]
        w_scale = np.asarray(w_scale, dtype=np.float32).reshape(-1)
        w_zp = np.asarray(w_zp).reshape(-1).astype(np.int64)
        for nm, v in (("w_scale", w_scale), ("w_zero_point", w_zp)):
            if v.size not in (1, cout):
                _fail(node, f"{nm} has {v.size} values; allowed 1 (per tensor) or {cout} (per output channel)")
        if wq.dtype == np.uint8:
            w, w_zp = w - 128, w_zp - 128
        if kind == "conv2d":
            if x.layout != "hwc" or len(x.shape) != 3:
                _fail(node, "input is not an image [N, C, H, W]")
            stride, padding, group = attrs
            cin = x.shape[2]
            if w.ndim != 4 or group < 1 or cin % group or w.shape[0] % group or w.shape[1] * group != cin:
                _fail(node, f"weight shape {list(w.shape)} does not match {cin} input channels in {group} group(s)")
            if group > 1:
                # a grouped (depthwise: group = channels) convolution as a block-diagonal one: output
                # channel o reads its group's inputs; the other weights equal the zero point (add 0)
                per_in, per_out = cin // group, w.shape[0] // group
                zpc = np.broadcast_to(w_zp, (w.shape[0],))
                full = np.broadcast_to(zpc[:, None, None, None], (w.shape[0], cin) + w.shape[2:]).copy()
                for o in range(w.shape[0]):
                    g = o // per_out
                    full[o, g * per_in:(g + 1) * per_in] = w[o]
                w, grouped = full, per_in
            w = w.transpose(0, 2, 3, 1)                                   # OIHW -> OHWI
            shape_args = dict(stride=stride, padding=padding)
        else:
            if w.ndim != 2:
                _fail(node, f"b must be a 2-D matrix, got shape {list(w.shape)}")
            k = x.shape[-1] if x.layout == "vec" else None
            if x.layout != "vec" or len(x.shape) != 1 or w.shape[0] != k:
                _fail(node, f"input of shape {list(x.shape)} does not match b {list(w.shape)} (a must be [N, K])")
            w = w.T                                                       # [K, N] -> [N, K]
            if x.perm is not None:
                w = w[:, x.perm]
            shape_args = {}
        if not (np.all(np.isfinite(w_scale)) and np.all(w_scale > 0)):
            _fail(node, "w_scale must be positive and finite")
        y_dtype = "uint8" if y_zp.dtype == np.uint8 else "int8" if y_zp.dtype == np.int8 else None
        if y_dtype is None:
            _fail(node, f"y_zero_point dtype {y_zp.dtype}; allowed uint8, int8")
        zp = int(y_zp)
        lo, hi = DTYPES[y_dtype]
        if relu:
            lo = max(lo, zp)
        scale = np.broadcast_to(ort_scale(x.scale, w_scale, y_scale), (cout,)).astype(np.float32)
        bias = np.zeros(cout, dtype=np.int64) if bias is None else np.asarray(bias).astype(np.int64).reshape(-1)
        if bias.shape != (cout,):
            _fail(node, f"bias has shape {list(bias.shape)}; expected [{cout}]")
        w8 = w.astype(np.int8)
        w_zpc = np.broadcast_to(w_zp, (cout,)).astype(np.int64)
        if np.any(w_zpc < -128) or np.any(w_zpc > 127):
            _fail(node, "weight zero point outside int8 after the uint8 -> int8 shift")
        pad = kind == "conv2d" and shape_args["padding"] != ((0, 0), (0, 0))
        x_lo, x_hi = (min(x.lo, x.zp), max(x.hi, x.zp)) if pad else (x.lo, x.hi)
        a_lo, a_hi = mac_array.accumulator_range(w8, x_lo, x_hi, x.zp, w_zpc)
        label = f"node {node.name or node.output[0]!r} ({node.op_type})"
        try:
            rq, _ = fit_requant(lambda acc, c: ort_requantize(acc + bias[c], scale[c], zp, lo, hi),
                                scale, bias, zp, lo, hi, a_lo, a_hi, label, proof, strict)
        except ValueError as e:
            raise ModelFormatError(str(e)) from None
        wzp = int(w_zpc[0]) if np.all(w_zpc == w_zpc[0]) else w_zpc
        nm = fresh(node.output[0])
        if grouped:
            block_diagonal[nm] = grouped
        u8s8 = x.dtype == "uint8" and wq.dtype == np.int8           # MLAS's saturating kernel (x86_kernels)
        arithmetic[nm] = framework.record("onnxruntime", u8s8, scale, zp, lo, hi, bias=bias,
                                          chw_of=getattr(x, "hwc", None), group_inputs=grouped)
        warn = u8s8 and x86_kernels.saturation_warning(
            label, framework.framework_weights(arithmetic[nm], w8), x_lo, x_hi,
            "quantize with reduce_range=True (7-bit weights, as ONNX Runtime recommends for such CPUs)")
        if warn:
            warnings.append(warn)
        layers.append(MacLayer(kind=kind, name=nm, inputs=(x.name,), weight=w8, weight_zero_point=wzp,
                               input_zero_point=x.zp, requant=rq, dtype=y_dtype, eps=float(f32(y_scale)),
                               weight_eps=float(w_scale[0]) if w_scale.size == 1 else w_scale.astype(np.float64),
                               **shape_args))
        if kind == "conv2d":
            (pt, pb), (pl, pr) = shape_args["padding"]
            kh, kw = w.shape[1:3]
            oh = (x.shape[0] + pt + pb - kh) // shape_args["stride"][0] + 1
            ow = (x.shape[1] + pl + pr - kw) // shape_args["stride"][1] + 1
            return _Q(nm, y_scale, zp, y_dtype, (oh, ow, cout), "hwc", lo=lo, hi=hi)
        return _Q(nm, y_scale, zp, y_dtype, (cout,), "vec", lo=lo, hi=hi)

    def conv_attrs(node):
        a = {at.name: at for at in node.attribute}
        if "dilations" in a and any(d != 1 for d in a["dilations"].ints):
            _fail(node, f"dilations {list(a['dilations'].ints)}; only 1 is supported")
        if "auto_pad" in a and a["auto_pad"].s not in (b"", b"NOTSET"):
            _fail(node, f"auto_pad {a['auto_pad'].s.decode()}; give explicit pads")
        strides = list(a["strides"].ints) if "strides" in a else [1, 1]
        pads = list(a["pads"].ints) if "pads" in a else [0, 0, 0, 0]
        if len(strides) != 2 or len(pads) != 4:
            _fail(node, "only 2-D convolutions are supported")
        return (strides[0], strides[1]), ((pads[0], pads[2]), (pads[1], pads[3])), (a["group"].i if "group" in a else 1)

    def pool_attrs(node):
        a = {at.name: at for at in node.attribute}
        if "kernel_shape" not in a or len(a["kernel_shape"].ints) != 2:
            _fail(node, "only 2-D pooling (kernel_shape of 2 values) is supported")
        if "dilations" in a and any(d != 1 for d in a["dilations"].ints):
            _fail(node, f"dilations {list(a['dilations'].ints)}; only 1 is supported")
        if "ceil_mode" in a and a["ceil_mode"].i:
            _fail(node, "ceil_mode = 1; only 0 is supported")
        if "storage_order" in a and a["storage_order"].i:
            _fail(node, "storage_order = 1; only 0 is supported")
        if "auto_pad" in a and a["auto_pad"].s not in (b"", b"NOTSET"):
            _fail(node, f"auto_pad {a['auto_pad'].s.decode()}; give explicit pads")
        kernel = tuple(a["kernel_shape"].ints)
        stride = tuple(a["strides"].ints) if "strides" in a else (1, 1)
        pads = list(a["pads"].ints) if "pads" in a else [0, 0, 0, 0]
        if len(stride) != 2 or len(pads) != 4:
            _fail(node, "only 2-D pooling is supported")
        return kernel, stride, ((pads[0], pads[2]), (pads[1], pads[3]))

    def flatten(node, q):
        if q.layout == "vec":
            return q
        h, w, c = q.shape
        perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        nm = fresh(node.output[0])
        layers.append(FlattenLayer(name=nm, inputs=(q.name,), dtype=q.dtype, eps=float(q.scale)))
        out = _Q(nm, q.scale, q.zp, q.dtype, (h * w * c,), "vec", perm=perm, lo=q.lo, hi=q.hi)
        out.hwc = (h, w, c)
        return out

    def operand(node, i, what):
        """A QOperator node's quantized input ``i``, whose scale and zero point (inputs ``i + 1``,
        ``i + 2``) must be the tensor's own; with the ``channels_last`` attribute, only 0 (NCHW)."""
        a = {at.name: at for at in node.attribute}
        if a.get("channels_last") is not None and a["channels_last"].i:
            _fail(node, "channels_last = 1; only 0 (NCHW) is supported")
        q = activation(node, i)
        if f32(scalar(node, i + 1, f"{what}_scale")) != q.scale or int(scalar(node, i + 2, f"{what}_zero_point")) != q.zp:
            _fail(node, f"{what}_scale / {what}_zero_point differ from the input tensor's")
        return q

    def qlinear_add(node):
        """The QOperator node: its inputs' and output's quantization from the node."""
        return quantized_add(node, operand(node, 0, "A"), operand(node, 3, "B"), scalar(node, 6, "C_scale"),
                             scalar(node, 7, "C_zero_point"))

    def quantized_add(node, a, b, c_scale, c_zp):
        """QLinearAdd (com.microsoft) of two quantized tensors of one shape: ONNX Runtime computes
        it in float32 (``rint(fma(b, rB, fma(a, rA, fixed)))`` on this machine), so the import runs
        ONNX Runtime itself on all 65,536 input pairs and fits the add unit's integer arithmetic to
        that table: branches ``(a - za) * MA`` and ``(b - zb) * MB``, their sum rounded
        half-to-even by ``2**S`` (``MA``, ``MB`` near ``2**S`` times the scale ratios). The fit with
        the fewest differing pairs is kept; the pairs where it differs (usually none) are the
        proof's inexact values, and the framework record patches them in the replay. QDQ's
        ``DQ -> Add -> Q`` is the same: ONNX Runtime fuses it into QLinearAdd."""
        if a.shape != b.shape or a.layout != b.layout or a.dtype != b.dtype:
            _fail(node, f"inputs of shapes {list(a.shape)} and {list(b.shape)} ({a.dtype}, {b.dtype}); allowed one "
                        f"shape and dtype (no broadcasting)")
        dtype = "uint8" if c_zp.dtype == np.uint8 else "int8" if c_zp.dtype == np.int8 else None
        if dtype != a.dtype:
            _fail(node, f"C_zero_point dtype {c_zp.dtype}; allowed the inputs' {a.dtype}")
        lo, hi = DTYPES[dtype]
        va, vb = (v.reshape(-1) for v in np.meshgrid(np.arange(lo, hi + 1), np.arange(lo, hi + 1), indexing="ij"))
        want = _ort_qlinear_add(va, vb, a, b, f32(c_scale), int(c_zp), dtype)
        ra, rb = float(f32(f32(a.scale) / f32(c_scale))), float(f32(f32(b.scale) / f32(c_scale)))
        params, bad = _fit_add(va, vb, want, a.zp, b.zp, int(c_zp), lo, hi, ra, rb)
        label = f"node {node.name or node.output[0]!r} ({node.op_type})"
        proof.checked += int(va.size)
        if bad.any():
            if strict:
                raise ModelFormatError(f"{label}: no integer add matches ONNX Runtime's float32 add on all input "
                                       f"pairs ({int(bad.sum())} differ); allowed without --strict")
            proof.inexact += 1
            proof.inexact_values += int(bad.sum())
            proof.differences.append((label, None, np.stack([va[bad], vb[bad]], axis=1)))
        nm = fresh(node.output[0])
        arithmetic[nm] = {"framework": "onnxruntime", "kind": "add",
                          "patch": [[int(x), int(y), int(v)] for x, y, v in zip(va[bad], vb[bad], want[bad])]}
        layers.append(AddLayer(name=nm, inputs=(a.name, b.name), params=params, dtype=dtype,
                               eps=float(f32(c_scale))))
        out = _Q(nm, c_scale, int(c_zp), dtype, a.shape, a.layout, perm=a.perm)
        if hasattr(a, "hwc"):
            out.hwc = a.hwc
        return out

    def global_average(node):
        """The QOperator node: its input's and output's quantization from the node."""
        return quantized_global_average(node, operand(node, 0, "x"), scalar(node, 3, "y_scale"),
                                        scalar(node, 4, "y_zero_point"))

    def quantized_global_average(node, x, y_scale, y_zp):
        """QLinearGlobalAveragePool (com.microsoft, NCHW): :func:`quantized_average` over the whole
        image. QDQ's ``DQ -> GlobalAveragePool -> Q`` is the same: ONNX Runtime fuses it into
        QLinearGlobalAveragePool (channels last, between transposes)."""
        if x.layout != "hwc" or len(x.shape) != 3:
            _fail(node, "input is not a quantized image [N, C, H, W]")
        return quantized_average(node, x, y_scale, y_zp, x.shape[:2], (1, 1), ((0, 0), (0, 0)))

    def quantized_average(node, x, y_scale, y_zp, kernel, stride, padding):
        """ONNX Runtime's quantized average pools sum ``x - x_zp`` over the window in int32 (padded
        taps add 0) and requantize in float32 with ``fl(x_scale / fl(y_scale * n))``, ``n`` the
        window's divisor (measured on random shapes, scales, pads and ``count_include_pad`` before
        writing this): a conv2d with weight 1 on each channel's own taps (block-diagonal), padded
        with the zero point, its requantizer fitted and proven like a convolution's. ``n`` must be
        the same for every window (``kernel`` taps: no padding, or ``count_include_pad = 1``)."""
        if x.layout != "hwc" or len(x.shape) != 3:
            _fail(node, "input is not a quantized image [N, C, H, W]")
        y_dtype = "uint8" if y_zp.dtype == np.uint8 else "int8" if y_zp.dtype == np.int8 else None
        if y_dtype is None:
            _fail(node, f"y_zero_point dtype {y_zp.dtype}; allowed uint8, int8")
        h, w, c = x.shape
        kh, kw = kernel
        (pt, pb), (pl, pr) = padding
        oh, ow = (h + pt + pb - kh) // stride[0] + 1, (w + pl + pr - kw) // stride[1] + 1
        if oh < 1 or ow < 1:
            _fail(node, f"kernel {list(kernel)} is larger than the padded input {[h, w]}")
        weight = window_sum_weights(c, kernel)
        scale = np.full(c, f32(f32(x.scale) / f32(f32(y_scale) * np.float32(kh * kw))), dtype=np.float32)
        zp = int(y_zp)
        lo, hi = DTYPES[y_dtype]
        padded = padding != ((0, 0), (0, 0))
        a_lo, a_hi = mac_array.accumulator_range(weight, min(x.lo, x.zp) if padded else x.lo,
                                                 max(x.hi, x.zp) if padded else x.hi, x.zp, 0)
        bias = np.zeros(c, dtype=np.int64)
        label = f"node {node.name or node.output[0]!r} ({node.op_type})"
        try:
            rq, _ = fit_requant(lambda acc, ch: ort_requantize(acc, scale[ch], zp, lo, hi),
                                scale, bias, zp, lo, hi, a_lo, a_hi, label, proof, strict)
        except ValueError as e:
            raise ModelFormatError(str(e)) from None
        nm = fresh(node.output[0])
        block_diagonal[nm] = 1
        arithmetic[nm] = framework.record("onnxruntime", False, scale, zp, lo, hi, bias=bias, group_inputs=1)
        layers.append(MacLayer(kind="conv2d", name=nm, inputs=(x.name,), weight=weight, input_zero_point=x.zp,
                               requant=rq, dtype=y_dtype, eps=float(f32(y_scale)), stride=stride, padding=padding))
        return _Q(nm, y_scale, zp, y_dtype, (oh, ow, c), "hwc", lo=lo, hi=hi)

    def qlinear_average(node):
        """QLinearAveragePool (com.microsoft, NCHW; :func:`quantized_average`)."""
        a = {at.name: at for at in node.attribute}
        kernel, stride, padding = pool_attrs(node)
        include = bool(a["count_include_pad"].i) if "count_include_pad" in a else False
        if padding != ((0, 0), (0, 0)) and not include:
            _fail(node, "pads with count_include_pad = 0: edge windows divide by fewer taps; allowed no pads, or "
                        "count_include_pad = 1")
        x = operand(node, 0, "x")
        return quantized_average(node, x, scalar(node, 3, "y_scale"), scalar(node, 4, "y_zero_point"), kernel, stride,
                                 padding)

    def visit(node):
        op = node.op_type
        if not _known(node):
            if op not in MS_OPS:
                _fail(node, f"operator {op!r}" + (f" of domain {node.domain!r}" if node.domain not in ("", "ai.onnx")
                                                  else "") + f" is not supported; supported: {', '.join(SUPPORTED_OPS)}")
            _fail(node, f"operator {op!r} must be in domain 'com.microsoft', not {node.domain!r}")
        if op == "Constant":
            return
        if op == "QLinearConv":
            x = activation(node, 0)
            out = mac(node, "conv2d", x, const(node, 3, "w"), const(node, 4, "w_scale"),
                      const(node, 5, "w_zero_point"), scalar(node, 6, "y_scale"), scalar(node, 7, "y_zero_point"),
                      const(node, 8, "B"), False, conv_attrs(node))
            env[node.output[0]] = out
        elif op == "QLinearMatMul":
            x = activation(node, 0)
            out = mac(node, "linear", x, const(node, 3, "b"), const(node, 4, "b_scale"),
                      const(node, 5, "b_zero_point"), scalar(node, 6, "y_scale"), scalar(node, 7, "y_zero_point"),
                      None, False, None)
            env[node.output[0]] = out
        elif op == "QGemm":
            a = {at.name: at for at in node.attribute}
            if (a["transA"].i if "transA" in a else 0) or (a["alpha"].f if "alpha" in a else 1.0) != 1:
                _fail(node, "only transA = 0 and alpha = 1 are supported")
            if len(node.input) < 9 or not node.input[7] or not node.input[8]:
                _fail(node, "y_scale and y_zero_point are required (a quantized output); a float output is not "
                            "supported")
            x = activation(node, 0)
            b = const(node, 3, "B")
            if b is None or b.ndim != 2:
                _fail(node, "B must be a constant 2-D matrix")
            b = b.T if (a["transB"].i if "transB" in a else 0) else b         # -> [K, N]
            c = const(node, 6, "C")
            if c is not None:
                if c.dtype != np.int32:
                    _fail(node, f"C of dtype {c.dtype}; allowed int32 (quantized with scale a_scale * b_scale)")
                try:
                    c = np.broadcast_to(c.reshape(-1) if c.ndim else c, (b.shape[1],))
                except ValueError:
                    _fail(node, f"C has shape {list(c.shape)}; allowed a scalar, [{b.shape[1]}] or [1, {b.shape[1]}]")
            env[node.output[0]] = mac(node, "linear", x, b, const(node, 4, "b_scale"), const(node, 5, "b_zero_point"),
                                      scalar(node, 7, "y_scale"), scalar(node, 8, "y_zero_point"), c, False, None)
        elif op == "QLinearAdd":
            env[node.output[0]] = qlinear_add(node)
        elif op == "QLinearAveragePool":
            env[node.output[0]] = qlinear_average(node)
        elif op == "QLinearGlobalAveragePool":
            env[node.output[0]] = global_average(node)
        elif op == "MaxPool":
            v = env.get(node.input[0])
            q = v.q if isinstance(v, _DQ) else v
            if not isinstance(q, _Q) or q.layout != "hwc":
                _fail(node, "input is not a quantized image [N, C, H, W]")
            if len(node.output) > 1 and node.output[1]:
                _fail(node, "the Indices output is not supported")
            kernel, stride, padding = pool_attrs(node)
            (pt, pb), (pl, pr) = padding
            if max(pt, pb) >= kernel[0] or max(pl, pr) >= kernel[1]:
                _fail(node, f"pads {[pt, pl, pb, pr]} must be smaller than the kernel {list(kernel)}")
            h, w, ch = q.shape
            oh, ow = (h + pt + pb - kernel[0]) // stride[0] + 1, (w + pl + pr - kernel[1]) // stride[1] + 1
            if oh < 1 or ow < 1:
                _fail(node, f"kernel {list(kernel)} is larger than the padded input {[h, w]}")
            nm = fresh(node.output[0])
            layers.append(PoolLayer(name=nm, inputs=(q.name,), mode="max", kernel=kernel, stride=stride,
                                    padding=padding, dtype=q.dtype, eps=float(q.scale)))
            out = _Q(nm, q.scale, q.zp, q.dtype, (oh, ow, ch), "hwc", lo=q.lo, hi=q.hi)
            env[node.output[0]] = _DQ(q=out) if isinstance(v, _DQ) else out
        elif op == "QuantizeLinear":
            src = node.input[0]
            scale, zp = scalar(node, 1, "y_scale"), scalar(node, 2, "y_zero_point")
            if any(a.name == "axis" for a in node.attribute) and np.asarray(scale).size != 1:
                _fail(node, "per-axis activation quantization is not supported")
            v = env.get(src)
            if src == gin.name and v is None:
                env[node.output[0]] = make_input(node, scale, zp)
            elif isinstance(v, _FloatInput):
                env[node.output[0]] = make_input(node, scale, zp, flat=True)
            elif isinstance(v, _DQ) and v.q is not None:
                if f32(scale) != v.q.scale or int(zp) != v.q.zp:
                    _fail(node, "re-quantizes a tensor to other parameters; not supported")
                env[node.output[0]] = v.q
            elif isinstance(v, _Pending) and v.kind == "Add":
                env[node.output[0]] = quantized_add(v.node, *v.x, scale, zp)
            elif isinstance(v, _Pending) and v.kind == "GlobalAveragePool":
                env[node.output[0]] = quantized_global_average(v.node, v.x[0], scale, zp)
            elif isinstance(v, _Pending):
                p = v
                x, wc, bc = p.x, p.w, p.b
                if p.kind == "conv2d":
                    wq, ws, wz = wc
                    attrs = conv_attrs(p.node)
                else:
                    wq, ws, wz = wc
                    attrs = None
                bias = None
                if bc is not None:
                    bq, bs, bz = bc
                    if bq.dtype != np.int32 or np.any(bz != 0):
                        _fail(p.node, "bias must be DequantizeLinear of an int32 constant with zero point 0")
                    want = (f32(x.scale) * np.asarray(ws, dtype=np.float32)).reshape(-1)
                    if not np.all(np.broadcast_to(want, np.asarray(bs).reshape(-1).shape) == np.asarray(bs).reshape(-1)):
                        _fail(p.node, "bias scale is not x_scale * w_scale")
                    bias = bq.astype(np.int64)
                env[node.output[0]] = mac(p.node, p.kind, x, wq, ws, wz, np.asarray(scale).reshape(()),
                                          np.asarray(zp).reshape(()), bias, p.relu, attrs)
            else:
                _fail(node, f"input {src!r} is neither the graph input nor a dequantized or computed tensor")
        elif op == "DequantizeLinear":
            src = node.input[0]
            if src in consts:
                scale = const(node, 1, "x_scale")
                zp = const(node, 2, "x_zero_point")
                if zp is None:
                    zp = np.zeros_like(np.asarray(scale), dtype=consts[src].dtype)
                env[node.output[0]] = _DQ(const=(consts[src], scale, zp))
            elif isinstance(env.get(src), _Q):
                env[node.output[0]] = _DQ(q=env[src])
            else:
                _fail(node, f"input {src!r} is not a quantized tensor or a constant")
        elif op in ("Conv", "MatMul", "Gemm"):
            xv = env.get(node.input[0])
            if not (isinstance(xv, _DQ) and xv.q is not None):
                _fail(node, "input 0 must be a DequantizeLinear of a quantized activation")
            wv = env.get(node.input[1])
            if not (isinstance(wv, _DQ) and wv.const is not None):
                _fail(node, "input 1 must be a DequantizeLinear of constant weights")
            bv = env.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if len(node.input) > 2 and node.input[2] and not (isinstance(bv, _DQ) and bv.const is not None):
                _fail(node, "the bias must be a DequantizeLinear of an int32 constant")
            wq, ws, wz = wv.const
            if op == "Gemm":
                a = {at.name: at for at in node.attribute}
                if a.get("transA") and a["transA"].i or not (a.get("transB") and a["transB"].i == 1) \
                        or (a.get("alpha") and a["alpha"].f != 1) or (a.get("beta") and a["beta"].f != 1):
                    _fail(node, "only Gemm with transB = 1, transA = 0, alpha = beta = 1 is supported")
                wq = wq.T
            if op == "Conv":
                conv_attrs(node)
            kind = "conv2d" if op == "Conv" else "linear"
            env[node.output[0]] = _Pending(node, kind, xv.q, (wq, ws, wz), bv.const if bv else None)
        elif op in ("Add", "GlobalAveragePool"):
            views = [env.get(s) for s in node.input]
            if not all(isinstance(v, _DQ) and v.q is not None for v in views):
                _fail(node, "inputs must be DequantizeLinear of quantized activations (QDQ)")
            env[node.output[0]] = _Pending(node, op, [v.q for v in views], None, None)
        elif op == "Relu":
            v = env.get(node.input[0])
            if not isinstance(v, _Pending) or v.kind in ("Add", "GlobalAveragePool"):
                _fail(node, "Relu is supported only between Conv/MatMul/Gemm and QuantizeLinear")
            env[node.output[0]] = _Pending(v.node, v.kind, v.x, v.w, v.b, relu=True)
        elif op == "Flatten" and node.input[0] == gin.name and tt.elem_type == _FLOAT:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if axis != 1:
                _fail(node, f"axis = {axis}; only axis = 1 is supported")
            env[node.output[0]] = _FloatInput()
        elif op in ("Flatten", "Reshape"):
            v = env.get(node.input[0])
            q = v.q if isinstance(v, _DQ) else v
            if not isinstance(q, _Q):
                _fail(node, "input is not a quantized tensor")
            if op == "Flatten":
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                if axis != 1:
                    _fail(node, f"axis = {axis}; only axis = 1 is supported")
            else:
                target = const(node, 1, "shape")
                n = int(np.prod(q.shape))
                if target is None or target.size != 2 or int(target[1]) not in (-1, n) or int(target[0]) not in (-1, 0, 1):
                    _fail(node, f"only a reshape to [N, {n}] (or [N, -1]) is supported, got "
                                f"{None if target is None else target.tolist()}")
            out = flatten(node, q)
            env[node.output[0]] = _DQ(q=out) if isinstance(v, _DQ) else out
        else:
            _fail(node, f"operator {op!r} is not supported; supported: {', '.join(SUPPORTED_OPS)}")

    # Every node is tried, so that one run reports every node that cannot be imported. A node fed
    # by a refused node is skipped silently when its own operator is supported (its failure would
    # only echo the first), and reported when it is not.
    refused, blocked = [], set()
    for index, node in enumerate(g.node):
        if blocked.intersection(node.input) and _known(node):
            blocked.update(node.output)
            continue
        try:
            try:
                visit(node)
            except ModelFormatError:
                raise
            except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
                # a malformed node (wrong arity, shapes, dtypes): one line naming it, not a traceback
                _fail(node, f"malformed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        except ModelFormatError as e:
            refused.append((index, str(e)))
            blocked.update(node.output)
    if len(refused) == 1:
        raise ModelFormatError(refused[0][1])
    if refused:
        supported = f"; supported: {', '.join(SUPPORTED_OPS)}"
        items = [f"#{i} {msg.replace(supported, '')}" for i, msg in refused]
        raise ModelFormatError(f"{len(refused)} nodes cannot be imported: " + " | ".join(items)
                               + f" (supported operators: {', '.join(SUPPORTED_OPS)})")

    if "input" not in spec:
        raise ModelFormatError(f"graph.input {gin.name!r}: no QuantizeLinear or QLinear node consumes it")
    outs = []
    for o in g.output:
        v = env.get(o.name)
        q = v.q if isinstance(v, _DQ) else v
        if not isinstance(q, _Q) or q.name == spec["input"].name:
            raise ModelFormatError(f"graph.output {o.name!r}: not a quantized tensor computed by a supported node")
        outs.append(q.name)
    if not layers:
        raise ModelFormatError("graph: no QLinear or QDQ layer found")
    try:
        im = IntegerModel(input=spec["input"], layers=tuple(layers), outputs=tuple(outs),
                          name=name or g.name or "onnx_model",
                          metadata={"converter": "golden.importers.from_onnx", "rounding": "half_even",
                                    "requant_proof": proof.as_dict(), framework.LAYERS_KEY: arithmetic,
                                    framework.WARNINGS_KEY: warnings, "block_diagonal": block_diagonal})
    except ValueError as e:
        raise ModelFormatError(str(e)) from None
    return im, proof
