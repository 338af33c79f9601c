"""A framework's own arithmetic, replayed layer by layer, to tell its deviations from ours.

An importer records in the model file's metadata, for every MAC layer, how the framework computes
it (:data:`LAYERS_KEY`, one :func:`record` per layer): which framework, whether its GEMM is the
uint8 x int8 kernel that saturates on CPUs without VNNI (:mod:`intdeploy.golden.importers.x86_kernels`),
the framework's K order where it differs from the model file's, and the float32 requantization
parameters of :mod:`intdeploy.golden.importers.fp32`. :func:`replay` runs the model with those: its MAC
layers accumulate either exactly or through the framework's **real** kernel
(``kernel="framework"``: ONNX Runtime's ``MatMulInteger``, fbgemm's quantized Linear, on the
layer's rows in the framework's K order) and requantize with the framework's float32 formula;
the other layers are golden's (the importers admit only flattens besides).

:func:`compare` classifies a framework's output ``want`` against golden's ``got``:

* ``replay(kernel="framework")`` must equal ``want`` everywhere, or the framework does something
  this model of it does not know (``unexplained``);
* where ``want`` differs from ``replay(kernel="exact")`` (what the framework gives with exact
  accumulators, as on a VNNI CPU), the element is a framework deviation
  (:data:`intdeploy.golden.importers.x86_kernels.REASON`);
* where golden differs from ``replay(kernel="exact")``, golden's integer requantizer differs from
  the framework's float32 one (the accumulator values the importer's proof lists as inexact).

Golden and the accelerator are held to exact arithmetic: ``replay(kernel="exact")``.
"""

from dataclasses import dataclass
import warnings

import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.importers import x86_kernels
from intdeploy.golden.importers.fp32 import f32, fbgemm_requantize, ort_requantize
from intdeploy.golden.integer_deployable import IntegerDeployable

__all__ = ["LAYERS_KEY", "WARNINGS_KEY", "record", "framework_weights", "ort_accumulators", "fbgemm_accumulators",
           "replay", "Comparison", "compare"]

#: Model-file metadata keys: layer name -> :func:`record`, and the importer's one-line warnings.
LAYERS_KEY, WARNINGS_KEY = "framework_layers", "warnings"



def record(framework, u8s8, scale, zero_point, lo, hi, bias=None, act_times_w=None, chw_of=None,
           group_inputs=None):
    """One MAC layer's metadata entry.

    ``framework``: ``"onnxruntime"`` (``clip(rint(fl(acc + bias) * scale)) + zp``, ``bias`` int)
    or ``"fbgemm"`` (``clip(rint(fl(fl(acc) + fl(bias / act_times_w)) * scale)) + zp``, ``bias``
    float or None); ``scale`` / ``bias`` / ``act_times_w`` per output channel (float32 values);
    ``u8s8``: the framework runs the layer on its uint8 x int8 kernel; ``chw_of``: for a Linear
    after a flatten, the ``(H, W, C)`` shape whose ``(C, H, W)`` flattening is the framework's
    K order (the model file keeps ``(H, W, C)`` and permutes the weights instead);
    ``group_inputs``: a grouped convolution (the model file's weights block-diagonal) with this many
    input channels per group: the framework computes each group as its own convolution, K being
    the group's taps in ``(kh, kw, c)`` order (measured for ONNX Runtime's depthwise kernel).
    """
    floats = lambda v: None if v is None else [float(f) for f in f32(np.asarray(v)).reshape(-1)]   # noqa: E731
    entry = {"framework": framework, "u8s8": bool(u8s8), "scale": floats(scale), "zero_point": int(zero_point),
             "lo": int(lo), "hi": int(hi)}
    if framework == "onnxruntime":
        entry["bias"] = [int(b) for b in np.asarray(bias).reshape(-1)]
    else:
        entry["bias"], entry["act_times_w"] = floats(bias), floats(act_times_w)
    if chw_of is not None:
        entry["chw_of"] = [int(v) for v in chw_of]
    if group_inputs is not None:
        entry["group_inputs"] = int(group_inputs)
    return entry


def _groups(entry, cin, cout, k):
    """``[(outputs, K indices)]``: each group's output channels and the model-file K positions
    (``(kh, kw, c)`` order) of its input channels; one group of everything for a dense layer."""
    per_in = entry.get("group_inputs")
    if per_in is None:
        return [(np.arange(cout), np.arange(k))]
    groups = cin // per_in
    per_out, taps = cout // groups, k // cin
    return [(np.arange(g * per_out, (g + 1) * per_out),
             (np.arange(taps)[:, None] * cin + g * per_in + np.arange(per_in)[None]).reshape(-1))
            for g in range(groups)]


def _order(entry):
    """Model-file K index of each framework K position (None: the same order)."""
    if "chw_of" not in entry:
        return None
    h, w, c = entry["chw_of"]
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


def framework_weights(entry, w):
    """A layer's weights (M, K) or OHWI as the framework's kernel sees them: (M, K) in its K order;
    for a grouped convolution each output's own group's taps only, (M, K / groups)."""
    w = np.asarray(w)
    cin = w.shape[-1]
    w = w.reshape(w.shape[0], -1)
    order = _order(entry)
    w = w if order is None else w[:, order]
    if "group_inputs" in entry:
        return np.concatenate([w[outs][:, ks] for outs, ks in _groups(entry, cin, w.shape[0], w.shape[1])])
    return w


def ort_accumulators(x, w, x_zero_point=0, w_zero_point=0):
    """ONNX Runtime's own int32 accumulators ``sum_k (x - x_zp) * (w[m] - w_zp[m])``.

    One ``MatMulInteger`` node (CPU execution provider) on the uint8 rows ``x`` (..., K) and the
    int8 weights ``w`` (M, K, the model-file layout; ``w_zero_point`` per tensor or per output
    channel): the MLAS kernel of QLinearMatMul and QLinearConv, whose K order is that of the
    rows given (:mod:`intdeploy.golden.importers.x86_kernels`). Returns int64 (..., M).
    """
    from onnx import TensorProto, helper, numpy_helper  # optional dependency (onnx extra)
    import onnxruntime as ort  # optional dependency: only a cross-check or --verify runs it
    x = np.asarray(x)
    w = np.asarray(w)
    rows = x.reshape(-1, w.shape[1]).astype(np.uint8)
    wzp = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int8), (w.shape[0],))
    inits = [numpy_helper.from_array(np.ascontiguousarray(w.astype(np.int8).T), "b"),
             numpy_helper.from_array(np.array(x_zero_point, dtype=np.uint8), "a_zp"),
             numpy_helper.from_array(np.ascontiguousarray(wzp), "b_zp")]
    node = helper.make_node("MatMulInteger", ["a", "b", "a_zp", "b_zp"], ["y"], name="acc")
    graph = helper.make_graph([node], "accumulators",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, list(rows.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [rows.shape[0], w.shape[0]])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    acc = sess.run(None, {"a": rows})[0].astype(np.int64)
    return acc.reshape(x.shape[:-1] + (w.shape[0],))


#: K per fbgemm call in :func:`fbgemm_accumulators` (even, so that no pair straddles two calls):
#: a partial sum stays below 2**24 (256 * 255 * 128), exact in the op's float32 output.
_K_CHUNK = 256


def fbgemm_accumulators(x, w, x_zero_point=0, w_zero_point=0):
    """fbgemm's own int32 accumulators ``sum_k (x - x_zp) * (w[m] - w_zp[m])``.

    The quantized Linear kernel of the fbgemm engine, through
    ``quantized.linear_with_input_q_dq_qweight_dq_output_fp32`` with unit scales and no bias, so
    its float32 output is the accumulator itself; ``x``: uint8 rows (..., K), ``w``: int8 (M, K),
    the kernel's K order (:mod:`intdeploy.golden.importers.x86_kernels`). K is taken in even chunks of
    :data:`_K_CHUNK` (exact partial sums, the same pairs); a weight zero point is applied
    exactly afterwards, as fbgemm does from the row sums. Returns int64 (..., M).
    """
    import torch  # optional dependency: only a cross-check or --verify runs it
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    k = w.shape[1]
    rows = x.reshape(-1, k)
    zx = int(x_zero_point)
    engine = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        acc = np.zeros((rows.shape[0], w.shape[0]), dtype=np.int64)
        for k0 in range(0, k, _K_CHUNK):
            xs, ws = rows[:, k0:k0 + _K_CHUNK], w[:, k0:k0 + _K_CHUNK]
            with warnings.catch_warnings():     # quantized tensor creation: deprecated, still the API
                warnings.simplefilter("ignore", UserWarning)
                wq = torch.quantize_per_tensor(torch.tensor(ws, dtype=torch.float32), 1.0, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(wq, None)
            out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
                torch.tensor(xs - zx, dtype=torch.float32), 1.0, zx, packed)
            acc += out.numpy().astype(np.int64)
    finally:
        torch.backends.quantized.engine = engine
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64), (w.shape[0],))
    acc -= (rows - zx).sum(axis=1, keepdims=True) * zw
    return acc.reshape(x.shape[:-1] + (w.shape[0],))


#: framework -> (report name with a ``{}`` for its version, module giving the version, GEMM runner)
_FRAMEWORKS = {"onnxruntime": ("ONNX Runtime {} (MLAS)", "onnxruntime", ort_accumulators),
               "fbgemm": ("PyTorch {} (fbgemm)", "torch", fbgemm_accumulators)}


def _requantize(entry, acc):
    zp, lo, hi = entry["zero_point"], entry["lo"], entry["hi"]
    scale = np.asarray(entry["scale"], dtype=np.float32)
    if entry["framework"] == "onnxruntime":
        return ort_requantize(acc + np.asarray(entry["bias"], dtype=np.int64), scale, zp, lo, hi)
    a = np.asarray(entry["act_times_w"], dtype=np.float32)
    bias = entry["bias"]
    return np.stack([fbgemm_requantize(acc[..., c], a[c], scale[c], zp, lo, hi, None if bias is None else bias[c])
                     for c in range(scale.size)], axis=-1)


def name(model):
    """The report name of the framework the model was imported from, with its version (None if
    the importer recorded none)."""
    layers = model.metadata.get(LAYERS_KEY) or {}
    if not layers:
        return None
    label, module, _ = _FRAMEWORKS[next(iter(layers.values()))["framework"]]
    return label.format(__import__(module).__version__)


def replay(model, images, kernel="exact", check=None, runner=None):
    """``model`` on ``images`` as its framework computes it (:func:`record` entries).

    ``kernel``: ``"exact"`` accumulators, or ``"framework"``: the framework's real u8 x s8
    kernel for the layers that run on it (``runner(framework, rows, w, x_zp, w_zp)`` in its
    place, e.g. recorded accumulators); ``check``: a
    :class:`intdeploy.golden.importers.x86_kernels.KernelCheck` that counts those layers' accumulators
    against exact arithmetic and the pair-saturation model. Returns the output (int64).
    """
    layers = model.metadata.get(LAYERS_KEY) or {}
    runner = runner or (lambda fw, rows, w, zx, zw: _FRAMEWORKS[fw][2](rows, w, zx, zw))

    def mac_layer(layer, x):
        entry = layers.get(layer.name)
        if entry is None:
            raise ValueError(f"layer {layer.name!r}: the importer recorded no framework arithmetic for it")
        rows = x if layer.kind == "linear" else mac_array.im2col(
            x, layer.weight.shape[1:3], layer.stride, layer.padding, pad_value=layer.input_zero_point)
        order = _order(entry)
        rows = rows if order is None else rows[..., order]
        w = layer.weight.reshape(layer.out_channels, -1)
        w = w if order is None else w[:, order]
        zx = layer.input_zero_point
        zw = np.broadcast_to(np.asarray(layer.weight_zero_point), (layer.out_channels,))
        acc = np.empty(rows.shape[:-1] + (layer.out_channels,), dtype=np.int64)
        for outs, ks in _groups(entry, layer.in_channels, layer.out_channels, w.shape[1]):
            r, wg = rows[..., ks], w[outs][:, ks]
            a = mac_array.linear(r, wg, zx, zw[outs])
            if kernel == "framework" and entry["u8s8"]:
                exact, a = a, np.asarray(runner(entry["framework"], r, wg, zx, zw[outs]), dtype=np.int64)
                if check is not None:
                    check.add(a, exact, x86_kernels.pair_saturated_linear(r, wg, zx, zw[outs]))
            acc[..., outs] = a
        return _requantize(entry, acc)

    class Framework(IntegerDeployable):
        def step(self, layer, xs):
            out = super().step(layer, xs)
            entry = layers.get(layer.name) or {}
            for a, b, v in entry.get("patch", ()):     # an add's input pairs where the framework differs
                out = np.where((xs[0] == a) & (xs[1] == b), v, out)
            return out

    return Framework(model, mac_layer=mac_layer).run(images)


@dataclass
class Comparison:
    """A framework's output against golden's (:func:`compare`); boolean masks over the output.

    ``differ``: golden != framework; ``deviation``: the framework differs from its own arithmetic
    on exact accumulators (its kernel saturated: :data:`intdeploy.golden.importers.x86_kernels.REASON`);
    ``inexact``: golden differs from the framework's float32 requantization on exact
    accumulators (values the importer's proof lists); ``unexplained``: the framework's output is
    not its replayed arithmetic; ``check``: its accumulators against exact arithmetic; ``exact``:
    the framework's arithmetic on exact accumulators, what golden and the accelerator must equal.
    """
    differ: np.ndarray
    deviation: np.ndarray
    inexact: np.ndarray
    unexplained: np.ndarray
    check: object
    exact: np.ndarray

    @property
    def ok(self):
        """Golden equals exact arithmetic everywhere and every framework difference is explained."""
        return not self.inexact.any() and not self.unexplained.any()

    def lines(self):
        """The report: the kernel check, and each class of difference with its count."""
        out = [self.check.line()]
        if self.deviation.any():
            out.append(f"{np.count_nonzero(self.deviation)} framework output element(s) classified "
                       f"'{x86_kernels.REASON}': the framework's own accumulators give them; golden is "
                       f"compared with exact arithmetic there")
        if self.unexplained.any():
            out.append(f"{np.count_nonzero(self.unexplained)} framework output element(s) UNEXPLAINED: not the "
                       f"framework's own accumulators requantized as it does")
        return out


def compare(model, images, want, got, runner=None):
    """Classify ``want`` (the framework's output) against ``got`` (golden's) on ``images``;
    ``runner`` as in :func:`replay` (default: the framework's real kernel). Returns a
    :class:`Comparison`."""
    want, got = np.asarray(want), np.asarray(got)
    check = x86_kernels.KernelCheck(name(model) or "framework")
    predicted = replay(model, images, "framework", check, runner)
    exact = replay(model, images, "exact")
    # a difference the framework's own accumulators give is a deviation only if int16 pair saturation
    # explains those accumulators; otherwise it is unexplained like any other
    deviation = (want != exact) & (predicted == want)
    unexplained = (predicted != want) | (deviation & (not check.explained))
    return Comparison(differ=got != want, deviation=deviation & check.explained, inexact=got != exact,
                      unexplained=unexplained, check=check, exact=exact)


def kernel_measurement(seed=0, rows=50, k=16, m=16):
    """The measurement behind :mod:`intdeploy.golden.importers.x86_kernels`, on this CPU: each framework's
    u8 x s8 GEMM (``rows`` x ``k`` activations, random int8 weights ``k`` x ``m``) against exact
    arithmetic, with activations in [0, 128) and in [0, 256). Returns report lines."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (m, k))
    lines = [f"this CPU: {x86_kernels.cpu_note()}"]
    for fw, (label, module, runner) in _FRAMEWORKS.items():
        for hi in (128, 256):
            x = rng.integers(0, hi, (rows, k))
            check = x86_kernels.KernelCheck(label.format(__import__(module).__version__))
            check.add(runner(x, w, 0, 0), mac_array.linear(x, w), x86_kernels.pair_saturated_linear(x, w))
            lines.append(f"activations in [0, {hi}): {check.line()}")
    return lines


if __name__ == "__main__":
    print("\n".join(kernel_measurement()))
