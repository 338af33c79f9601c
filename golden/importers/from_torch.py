"""PyTorch ``torch.ao`` quantized modules (fbgemm) -> :class:`intdeploy.golden.model_file.IntegerModel`.

Input: a sequential model (``torch.nn.Sequential`` or any module whose ``named_children`` run in
order) of converted ``torch.ao.nn.quantized`` modules:

* ``Quantize`` first (the input's scale, zero point, ``quint8`` / ``qint8``), ``DeQuantize``
  last (optional);
* ``Linear`` / ``Conv2d`` (``groups = 1``, ``dilation = 1``, zero padding) and their fused ReLU
  forms ``torch.ao.nn.intrinsic.quantized.LinearReLU`` / ``ConvReLU2d``, weights ``qint8`` per
  tensor or per output channel;
* ``torch.nn.Flatten`` (``start_dim = 1``), ``torch.nn.Identity``.

fbgemm requantizes in float32 (:func:`intdeploy.golden.importers.fp32.fbgemm_requantize`:
``rint(fl(fl(acc) + fl(b / A)) * S)``, ``A = fl(x_scale * w_scale)``, ``S = fl(A / y_scale)``).
The float bias becomes the integer ``rint(fl(b / A))`` and the whole layer is proven equal to the
float32 formula on every reachable accumulator value (:func:`intdeploy.golden.importers.fp32.fit_requant`);
a bias that is not (close enough to) an integer multiple of ``A`` has no exact integer form and
the layer is refused. Activations are channels-last in the model file (NCHW -> ``(H, W, C)``);
a flatten permutes the next Linear's columns so that PyTorch's ``(c, h, w)`` order is kept.
"""

import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.importers import framework, x86_kernels
from intdeploy.golden.importers.fp32 import Proof, f32, fbgemm_requantize, fit_requant
from intdeploy.golden.model_file import DTYPES, FlattenLayer, InputSpec, IntegerModel, MacLayer, ModelFormatError

__all__ = ["SUPPORTED_MODULES", "import_torch"]

SUPPORTED_MODULES = ("Quantize", "DeQuantize", "Linear", "Conv2d", "LinearReLU", "ConvReLU2d", "Flatten",
                     "Identity")


def _fail(name, mod, msg):
    raise ModelFormatError(f"module {name!r} ({type(mod).__name__}): {msg}")


def _check_module(i, count, nm, mod):
    """The checks of module ``i`` of ``count`` that do not depend on the modules before it (its type,
    position and attributes); raises :class:`ModelFormatError` naming it."""
    import torch  # optional dependency (torch extra)
    kind = _kind(mod)
    if kind == "Quantize":
        if i != 0:
            _fail(nm, mod, "Quantize must be the first module")
        if _dtype(mod.dtype) is None:
            _fail(nm, mod, f"dtype {mod.dtype}; allowed torch.quint8, torch.qint8")
    elif kind == "DeQuantize":
        if i != count - 1:
            _fail(nm, mod, "DeQuantize must be the last module")
    elif kind == "Flatten":
        if mod.start_dim != 1 or mod.end_dim != -1:
            _fail(nm, mod, f"start_dim = {mod.start_dim}, end_dim = {mod.end_dim}; allowed 1, -1")
    elif kind in ("Linear", "LinearReLU", "Conv2d", "ConvReLU2d"):
        wq = mod.weight()
        per_channel = wq.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        if not (wq.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric)
                or per_channel and wq.q_per_channel_axis() == 0):
            _fail(nm, mod, f"weight quantization scheme {wq.qscheme()} is not supported")
        if wq.dtype != torch.qint8:
            _fail(nm, mod, f"weight dtype {wq.dtype}; allowed torch.qint8")
        if kind in ("Conv2d", "ConvReLU2d") and (mod.groups != 1 or tuple(mod.dilation) != (1, 1)
                                                 or mod.padding_mode != "zeros" or isinstance(mod.padding, str)):
            _fail(nm, mod, "only groups = 1, dilation = 1, explicit zero padding are supported")
    elif kind != "Identity":
        _fail(nm, mod, f"module type {type(mod).__name__!r} is not supported; supported: {', '.join(SUPPORTED_MODULES)}")


def _dtype(qdtype):
    import torch  # optional dependency (torch extra)
    return {torch.quint8: "uint8", torch.qint8: "int8"}.get(qdtype)


class _Scripted:
    """A TorchScript child (``torch.jit.load`` of a scripted quantized model) seen through the
    attributes the import reads from the eager modules; ``kind`` is its ``original_name``."""

    def __init__(self, mod):
        import torch  # optional dependency (torch extra)
        self.kind = mod.original_name
        self.__class__ = type(self.kind, (_Scripted,), {})
        for a in ("start_dim", "end_dim"):
            if hasattr(mod, a):
                setattr(self, a, int(getattr(mod, a)))
        if self.kind in ("Quantize",):
            self.scale, self.zero_point = float(mod.scale), int(mod.zero_point)
            # ScalarType codes of torch/csrc (c10/core/ScalarType.h): 12 QInt8, 13 QUInt8
            self.dtype = {13: torch.quint8, 12: torch.qint8}.get(int(mod.dtype))
        if self.kind in ("Linear", "LinearReLU"):
            self.scale, self.zero_point = float(mod.scale), int(mod.zero_point)
            self._w, self._b = torch.ops.quantized.linear_unpack(mod._packed_params._packed_params)
        if self.kind in ("Conv2d", "ConvReLU2d"):
            self.scale, self.zero_point = float(mod.scale), int(mod.zero_point)
            p = mod._packed_params
            self._w, self._b = torch.ops.quantized.conv2d_unpack(p)
            self.stride = tuple(torch.ops.quantized.conv2d_stride(p))
            self.padding = tuple(torch.ops.quantized.conv2d_padding(p))
            self.dilation = tuple(torch.ops.quantized.conv2d_dilation(p))
            self.groups = int(torch.ops.quantized.conv2d_groups(p))
            self.padding_mode = "zeros"

    def weight(self):
        return self._w

    def bias(self):
        return self._b


def _kind(mod):
    """The supported module kind of an eager or scripted child, or None."""
    import torch  # optional dependency (torch extra)
    import torch.ao.nn.intrinsic.quantized as nniq  # optional dependency (torch extra)
    import torch.ao.nn.quantized as nnq  # optional dependency (torch extra)
    if isinstance(mod, _Scripted):
        return mod.kind if mod.kind in SUPPORTED_MODULES else None
    for cls, kind in ((nnq.Quantize, "Quantize"), (nnq.DeQuantize, "DeQuantize"), (torch.nn.Identity, "Identity"),
                      (torch.nn.Flatten, "Flatten"), (nniq.LinearReLU, "LinearReLU"), (nnq.Linear, "Linear"),
                      (nniq.ConvReLU2d, "ConvReLU2d"), (nnq.Conv2d, "Conv2d")):
        if isinstance(mod, cls):
            return kind
    return None


def import_torch(module, input_shape, name=None, strict=True):
    """Import a converted quantized sequential model; returns ``(IntegerModel, Proof)``.

    ``input_shape``: per-sample shape as PyTorch sees it, ``(C, H, W)`` or ``(K,)``; None takes
    ``(in_features,)`` of a first Linear.
    ``strict``: as in :func:`intdeploy.golden.importers.from_onnx.import_onnx`. ``module`` may also be a
    TorchScript module (``torch.jit.load`` of ``torch.jit.script`` / ``trace`` of such a model).
    """
    try:
        return _import_torch(module, input_shape, name, strict)
    except ModelFormatError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelFormatError(f"module: malformed quantized model ({type(e).__name__}: {msg})") from None


def _import_torch(module, input_shape, name, strict):
    import torch  # optional dependency (torch extra)
    if not isinstance(module, torch.nn.Module):
        raise ModelFormatError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    children = list(module.named_children()) or [("model", module)]
    if isinstance(module, torch.jit.ScriptModule):
        if any(n.kind() == "aten::quantize_per_tensor" for n in module.graph.nodes()):
            return _import_fx(module, input_shape, name, strict)
        children = [(nm, _Scripted(mod)) for nm, mod in children]
    if input_shape is None:
        first = next(((nm, m) for nm, m in children if _kind(m) not in ("Quantize", "Identity")), (None, None))[1]
        if _kind(first) not in ("Linear", "LinearReLU"):
            raise ModelFormatError("input_shape: required when the first layer is not a Linear; give (C, H, W)")
        input_shape = (int(first.weight().shape[1]),)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ModelFormatError(f"input_shape: expected (C, H, W) or (K,), got {list(input_shape)}")
    proof = Proof()
    layers = []
    arithmetic = {}                             # layer name -> framework.record
    warnings = []
    cur = None                                  # (name, scale, zp, dtype, shape, lo, hi, perm)
    spec = None
    # Every module is checked, so that one run reports all the modules that cannot be imported; after
    # the first refusal only the checks that do not depend on the modules before run (the shapes
    # flowing on would be guesses).
    refused = []
    for i, (nm, mod) in enumerate(children):
        try:
            _check_module(i, len(children), nm, mod)
            if not refused:
                cur, spec = _add_module(i, nm, mod, cur, spec, shape, layers, proof, arithmetic, warnings, strict)
        except ModelFormatError as e:
            refused.append((i, str(e)))
    if len(refused) == 1:
        raise ModelFormatError(refused[0][1])
    if refused:
        supported = f"; supported: {', '.join(SUPPORTED_MODULES)}"
        raise ModelFormatError(f"{len(refused)} modules cannot be imported: "
                               + " | ".join(f"#{i} {msg.replace(supported, '')}" for i, msg in refused)
                               + f" (supported modules: {', '.join(SUPPORTED_MODULES)})")
    return _finish(spec, layers, name, proof, arithmetic, warnings)


def _quantize(scale, zero_point, dtype):
    """A stand-in for a ``Quantize`` module: FX graph mode quantizes the input with a call."""
    q = _Scripted.__new__(type("Quantize", (_Scripted,), {}))
    q.kind, q.scale, q.zero_point, q.dtype = "Quantize", scale, zero_point, dtype
    return q


def _import_fx(module, input_shape, name, strict):
    """A model converted by FX graph mode (``torch.ao.quantization.quantize_fx.convert_fx``) and
    scripted: its TorchScript graph is a chain of ``aten::quantize_per_tensor`` of the input (scale
    and zero point in attributes), ``forward`` calls of quantized submodules (the modules of the
    eager path), ``aten::dequantize`` around float modules (Flatten) and
    ``aten::quantize_per_tensor`` back with unchanged parameters. Every node that does not fit is
    named, all in one report."""
    import torch  # optional dependency (torch extra)
    if input_shape is None:
        raise ModelFormatError("input_shape: required for an FX graph-mode model; give (C, H, W) or (K,)")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ModelFormatError(f"input_shape: expected (C, H, W) or (K,), got {list(input_shape)}")
    graph = module.graph
    x_in = list(graph.inputs())[1].debugName()
    proof, layers, arithmetic, warnings = Proof(), [], {}, []
    vals, cur, spec, refused = {}, None, None, []     # vals: graph value -> ("attr", v) | ("mod", nm) | "q" | "dq"

    def attr(v, what):
        kind = vals.get(v.debugName())
        if kind is None or kind[0] not in ("attr", "const"):
            raise ModelFormatError(f"{what} is not a constant")
        return kind[1]

    for i, node in enumerate(graph.nodes()):
        k = node.kind()
        ins = list(node.inputs())
        out = node.outputsAt(0).debugName() if node.outputsSize() else None
        try:
            if k == "prim::Constant":
                vals[out] = ("const", node.output().toIValue())
            elif k == "prim::GetAttr":
                obj = getattr(module, node.s("name"))
                vals[out] = ("mod", node.s("name")) if isinstance(obj, torch.nn.Module) else ("attr", obj)
            elif k == "aten::quantize_per_tensor":
                src = ins[0].debugName()
                scale, zp = float(attr(ins[1], "scale")), int(attr(ins[2], "zero_point"))
                dtype = {13: torch.quint8, 12: torch.qint8}.get(int(attr(ins[3], "dtype")))
                if src == x_in:
                    q = _quantize(scale, zp, dtype)
                    _check_module(0, 2, "input", q)
                    cur, spec = _add_module(0, "input", q, cur, spec, shape, layers, proof, arithmetic, warnings,
                                            strict)
                elif vals.get(src) != "dq" or cur is None or f32(scale) != cur["scale"] or zp != cur["zp"]:
                    raise ModelFormatError("re-quantizes a tensor to other parameters; not supported")
                vals[out] = "q"
            elif k == "aten::dequantize":
                if vals.get(ins[0].debugName()) != "q":
                    raise ModelFormatError("dequantizes a tensor that is not quantized")
                vals[out] = "dq"
            elif k == "prim::CallMethod" and node.s("name") == "forward":
                nm = vals.get(ins[0].debugName(), (None, None))[1]
                mod = _Scripted(getattr(module, nm))
                arg = vals.get(ins[1].debugName())
                if arg == "dq" and _kind(mod) != "Flatten":
                    raise ModelFormatError(f"module {nm!r} ({mod.kind}) runs in float; only a Flatten may")
                _check_module(1, 3, nm, mod)
                if not refused:
                    cur, spec = _add_module(len(layers) + 1, nm, mod, cur, spec, shape, layers, proof, arithmetic,
                                            warnings, strict)
                vals[out] = arg
            else:
                raise ModelFormatError(f"operation {k} is not supported; supported: quantize_per_tensor, "
                                       f"dequantize and calls of the modules {', '.join(SUPPORTED_MODULES)}")
        except ModelFormatError as e:
            msg = str(e)
            refused.append(msg if msg.startswith("module ") else f"graph node #{i} ({k}): {msg}")
    if len(refused) == 1:
        raise ModelFormatError(refused[0])
    if refused:
        raise ModelFormatError(f"{len(refused)} nodes cannot be imported: " + " | ".join(refused))
    return _finish(spec, layers, name, proof, arithmetic, warnings)


def _add_module(i, nm, mod, cur, spec, shape, layers, proof, arithmetic, warnings, strict):
    """Module ``i`` (already checked by :func:`_check_module`) into ``layers``; returns the new
    ``(cur, spec)``: the tensor flowing on and the input spec."""
    import torch  # optional dependency (torch extra)
    tn = type(mod).__name__
    kind = _kind(mod)
    if kind == "Quantize":
        dt = _dtype(mod.dtype)
        hwc = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
        spec = InputSpec(name="input", shape=hwc, dtype=dt, zero_point=int(mod.zero_point),
                         eps=float(mod.scale))
        lo, hi = DTYPES[dt]
        cur = dict(name="input", scale=f32(float(mod.scale)), zp=int(mod.zero_point), dtype=dt, shape=hwc,
                   lo=lo, hi=hi, perm=None)
        return cur, spec
    if cur is None:
        _fail(nm, mod, "the first module must be torch.ao.nn.quantized.Quantize")
    if kind in ("DeQuantize", "Identity"):
        return cur, spec
    if kind == "Flatten":
        if len(cur["shape"]) == 3:
            h, w, c = cur["shape"]
            perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
            lname = f"l{i}_{nm}".replace(".", "_")
            layers.append(FlattenLayer(name=lname, inputs=(cur["name"],), dtype=cur["dtype"],
                                       eps=float(cur["scale"])))
            cur = dict(cur, name=lname, shape=(h * w * c,), perm=perm, hwc=(h, w, c))
        return cur, spec
    is_conv = kind in ("Conv2d", "ConvReLU2d")
    relu = kind in ("LinearReLU", "ConvReLU2d")
    wq = mod.weight()
    bias = mod.bias()
    if wq.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        w_scale = np.array([wq.q_scale()], dtype=np.float32)
        w_zp = np.array([wq.q_zero_point()], dtype=np.int64)
    else:                                        # per channel, axis 0 (_check_module)
        w_scale = wq.q_per_channel_scales().numpy().astype(np.float32)
        w_zp = wq.q_per_channel_zero_points().numpy().astype(np.int64)
    w = wq.int_repr().numpy().astype(np.int64)
    cout = w.shape[0]
    if is_conv:
        if len(cur["shape"]) != 3:
            _fail(nm, mod, "input is not an image")
        w = w.transpose(0, 2, 3, 1)
        ph, pw = mod.padding
        kw = dict(stride=tuple(mod.stride), padding=((ph, ph), (pw, pw)))
        kind = "conv2d"
    else:
        if len(cur["shape"]) != 1:
            _fail(nm, mod, f"input of shape {list(cur['shape'])}; a Linear needs a flat input (add Flatten)")
        if cur["perm"] is not None:
            w = w[:, cur["perm"]]
        kw = {}
        kind = "linear"
    y_scale, zp = float(mod.scale), int(mod.zero_point)
    y_dtype = cur["dtype"]       # fbgemm keeps the activation dtype (quint8)
    lo, hi = DTYPES[y_dtype]
    if relu:
        lo = max(lo, zp)
    a = (cur["scale"] * np.broadcast_to(w_scale, (cout,))).astype(np.float32)      # fl(x_scale * w_scale)
    scale = (a / f32(y_scale)).astype(np.float32)
    bf = None if bias is None else bias.detach().numpy().astype(np.float32)
    ib = np.zeros(cout, dtype=np.int64) if bf is None else np.rint(bf / a).astype(np.int64)
    wzp = np.broadcast_to(w_zp, (cout,))
    pad = is_conv and kw["padding"] != ((0, 0), (0, 0))
    x_lo, x_hi = (min(cur["lo"], cur["zp"]), max(cur["hi"], cur["zp"])) if pad else (cur["lo"], cur["hi"])
    a_lo, a_hi = mac_array.accumulator_range(w, x_lo, x_hi, cur["zp"], wzp)
    label = f"module {nm!r} ({tn})"
    try:
        ref = lambda acc, c: fbgemm_requantize(acc, a[c], scale[c], zp, lo, hi, None if bf is None else bf[c])
        rq, _ = fit_requant(ref, scale, ib, zp, lo, hi, a_lo, a_hi, label, proof, strict)
    except ValueError as e:
        raise ModelFormatError(str(e)) from None
    lname = f"l{i}_{nm}".replace(".", "_")
    u8s8 = cur["dtype"] == "uint8"                             # fbgemm's saturating kernel (x86_kernels)
    arithmetic[lname] = framework.record("fbgemm", u8s8, scale, zp, lo, hi, bias=bf, act_times_w=a,
                                         chw_of=cur.get("hwc") if cur["perm"] is not None else None)
    warn = u8s8 and x86_kernels.saturation_warning(
        label, framework.framework_weights(arithmetic[lname], w), x_lo, x_hi,
        "calibrate activations to 7 bits (reduce_range=True, fbgemm's default qconfig)")
    if warn:
        warnings.append(warn)
    layers.append(MacLayer(kind=kind, name=lname, inputs=(cur["name"],), weight=w.astype(np.int8),
                           weight_zero_point=int(wzp[0]) if np.all(wzp == wzp[0]) else wzp.astype(np.int64),
                           input_zero_point=cur["zp"], requant=rq, dtype=y_dtype, eps=y_scale,
                           weight_eps=float(w_scale[0]) if w_scale.size == 1 else w_scale.astype(np.float64),
                           **kw))
    if is_conv:
        (pt, pb), (pl, pr) = kw["padding"]
        h, wd, _ = cur["shape"]
        oh = (h + pt + pb - w.shape[1]) // kw["stride"][0] + 1
        ow = (wd + pl + pr - w.shape[2]) // kw["stride"][1] + 1
        oshape = (oh, ow, cout)
    else:
        oshape = (cout,)
    return dict(name=lname, scale=f32(y_scale), zp=zp, dtype=y_dtype, shape=oshape, lo=lo, hi=hi, perm=None), spec


def _finish(spec, layers, name, proof, arithmetic, warnings):
    if spec is None or not layers:
        raise ModelFormatError("module: expected Quantize followed by at least one quantized Linear or Conv2d")
    try:
        im = IntegerModel(input=spec, layers=tuple(layers), outputs=(layers[-1].name,), name=name or "torch_model",
                          metadata={"converter": "golden.importers.from_torch", "rounding": "half_even",
                                    "requant_proof": proof.as_dict(), framework.LAYERS_KEY: arithmetic,
                                    framework.WARNINGS_KEY: warnings})
    except ValueError as e:
        raise ModelFormatError(str(e)) from None
    return im, proof
