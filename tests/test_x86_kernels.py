"""intdeploy.golden.importers.x86_kernels: the frameworks' u8 x s8 GEMM on x86-64, exact with VNNI and with
int16 pair saturation without; checked against ONNX Runtime and fbgemm on this CPU, whichever kind
it is, and against recorded saturated accumulators, so both kinds are tested on every machine."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden import mac_array
from intdeploy.golden.importers import fp32
from intdeploy.golden.importers import x86_kernels as K
from intdeploy.golden.importers.framework import fbgemm_accumulators, ort_accumulators

FLAGS = K.cpu_flags()
#: What this CPU's kernels must do with data that can saturate ("exact", "saturate", or None where
#: the two frameworks may differ: each must still be one of the two).
EXPECTED = K.expected_kernel(FLAGS)


def _full_range(rng, rows, k, m):
    """uint8 activations and int8 weights over their whole ranges, with a first pair that
    saturates for sure (255 * 127 * 2 = 64770)."""
    x = rng.integers(0, 256, (rows, k))
    w = rng.integers(-128, 128, (m, k))
    x[0, :2], w[0, :2] = 255, 127
    return x, w


# --- the numpy model ------------------------------------------------------------------------------

def test_pair_saturation_by_hand():
    w = np.array([[127, 127, 1], [-128, -128, 0]])
    x = np.array([[255, 255, 7]])
    # pairs (0, 1) and (2, pad): 64770 -> 32767, then + 7; -65280 -> -32768
    np.testing.assert_array_equal(K.pair_saturated_linear(x, w), [[32767 + 7, -32768]])
    np.testing.assert_array_equal(mac_array.linear(x, w), [[64777, -65280]])
    # the zero points are applied exactly after the saturated raw sum: x_zp 5, w_zp (1, 0)
    want = np.array([[32767 + 7 - 5 * 255 - 1 * 517 + 3 * 5 * 1, -32768 - 5 * -256]])
    np.testing.assert_array_equal(K.pair_saturated_linear(x, w, 5, [1, 0]), want)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 4), st.integers(0, 255), st.integers(0, 2 ** 31))
def test_model_is_exact_where_no_pair_can_saturate(k, m, zx, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (5, k))
    w = rng.integers(-64, 64, (m, k))                  # 2 * 255 * 64 = 32640: never saturates
    lo, hi = K.pair_sum_range(w, 0, 255)
    assert K.INT16_MIN <= lo and hi <= K.INT16_MAX
    np.testing.assert_array_equal(K.pair_saturated_linear(x, w, zx), mac_array.linear(x, w, zx))


def test_pair_sum_range_and_saturation_free_hi():
    w = np.array([[127, 127], [-3, 5]])
    assert K.pair_sum_range(w, 0, 255) == (-765, 64770)
    assert K.saturation_free_hi(w, 0, 255) == 129          # 129 * 254 = 32766, 130 * 254 = 33020
    assert K.saturation_free_hi(w, 0, 100) == 100
    assert K.saturation_free_hi(np.array([[-64, -64, 63]]), 0, 255) == 255
    # a conv weight in OHWI pairs its flattened (kh, kw, c) order
    assert K.pair_sum_range(np.full((1, 2, 2, 1), 100), 0, 200) == (0, 40000)


def test_conv_model_pairs_the_im2col_order():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 5, 5, 3))
    w = rng.integers(-128, 128, (4, 3, 3, 3))
    cols = mac_array.im2col(x, 3, 1, 1, pad_value=9)
    np.testing.assert_array_equal(K.pair_saturated_conv2d(x, w, 1, 1, 9),
                                  K.pair_saturated_linear(cols, w.reshape(4, -1), 9))
    assert not np.array_equal(K.pair_saturated_conv2d(x, w, 1, 1, 9), mac_array.conv2d(x, w, 1, 1, 9))


def test_kernel_check_lines():
    rng = np.random.default_rng(1)
    x, w = _full_range(rng, 40, 16, 8)
    exact, model = mac_array.linear(x, w), K.pair_saturated_linear(x, w)
    # a framework that is exact here
    c = K.KernelCheck("fw 1.0").add(exact, exact, model)
    assert c.exact and c.explained and c.line() == f"fw 1.0: integer accumulators exact on this CPU ({exact.size} compared)"
    # a recorded non-VNNI run: the framework's accumulators are the model's
    c = K.KernelCheck("fw 1.0").add(model, exact, model)
    n = int(np.count_nonzero(model != exact))
    assert n > 0 and not c.exact and c.explained
    assert c.line().startswith(f"fw 1.0 is not exact on this CPU: {n} of {exact.size} int32 accumulators "
                               f"differ from exact arithmetic, every one as int16 pair saturation predicts (")
    # a wrong value that saturation does not explain
    bad = model.copy()
    bad[3, 2] += 1
    c = K.KernelCheck("fw 1.0").add(bad, exact, model)
    assert c.unexplained == 1 and "1 of them NOT explained" in c.line()


def test_expected_kernel_by_cpu_kind():
    assert K.expected_kernel({"avx2", "avx512bw", "avx512_vnni"}) == "exact"
    assert K.expected_kernel({"avx2", "fma"}) == "saturate"
    assert K.expected_kernel({"avx2", "avx512bw"}) == "saturate"
    assert K.expected_kernel({"avx2", "avx_vnni"}) is None and K.expected_kernel({"sse4_2"}) is None


def test_cpu_note_names_the_feature():
    assert K.cpu_note({"avx2", "avx512bw", "avx512_vnni"}).startswith("avx512_vnni: vpdpbusd")
    assert K.cpu_note({"avx2", "fma"}).startswith("AVX2 without avx512_vnni / avx_vnni: vpmaddubsw")
    assert K.cpu_note({"avx2", "avx512bw"}).startswith("AVX-512 without")


# --- the frameworks on this CPU -------------------------------------------------------------------

def _assert_kernel(fw, exact, model):
    """The framework's accumulators are exact or pair-saturated, as this CPU's kind requires."""
    assert not np.array_equal(exact, model)            # the data can tell the two apart
    is_exact, is_model = np.array_equal(fw, exact), np.array_equal(fw, model)
    assert is_exact or is_model, "accumulators neither exact nor int16 pair saturation"
    if EXPECTED is not None:
        assert (is_exact, is_model) == ((True, False) if EXPECTED == "exact" else (False, True)), FLAGS & {
            "avx2", "avx512bw", *K.VNNI_FLAGS}


@pytest.mark.parametrize("runner", [ort_accumulators, fbgemm_accumulators])
@pytest.mark.parametrize("k, zx, wzp", [(16, 0, 0), (37, 117, 0), (20, 100, -7), (600, 3, 0)])
def test_framework_accumulators_follow_the_cpu(runner, k, zx, wzp):
    """The frameworks' own GEMMs on full-range data: exact with avx512_vnni, pair-saturated on an
    AVX2 CPU without VNNI, one of the two anywhere; K = 600 crosses fbgemm's K chunks."""
    x, w = _full_range(np.random.default_rng(k), 64, k, 9)
    fw = runner(x, w, zx, wzp)
    _assert_kernel(fw, mac_array.linear(x, w, zx, wzp), K.pair_saturated_linear(x, w, zx, wzp))


@pytest.mark.parametrize("runner", [ort_accumulators, fbgemm_accumulators])
def test_framework_accumulators_exact_on_seven_bit_weights(runner):
    """Weights in [-64, 63] (ONNX Runtime's reduce_range): every kernel is exact on every CPU."""
    rng = np.random.default_rng(2)
    x, w = rng.integers(0, 256, (64, 33)), rng.integers(-64, 64, (7, 33))
    np.testing.assert_array_equal(runner(x, w, 130), mac_array.linear(x, w, 130))


def _ort_session(model):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("cin, h, cout, k, pad, stride, zx", [(2, 6, 4, 3, 1, 2, 117), (3, 6, 5, 3, 0, 1, 0),
                                                               (5, 7, 3, 3, 1, 1, 10), (16, 5, 8, 1, 0, 1, 30)])
def test_ort_qlinearconv_is_its_accumulators_in_im2col_order(cin, h, cout, k, pad, stride, zx):
    """QLinearConv's outputs are ONNX Runtime's requantization of MatMulInteger on the NHWC
    im2col rows, and those accumulators are exact or pair-saturated as this CPU requires."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(cin * 100 + h)
    x = rng.integers(0, 256, (8, cin, h, h)).astype(np.uint8)
    w = rng.integers(-128, 128, (cout, cin, k, k)).astype(np.int8)
    sx, sw, sy, zy = np.float32(0.02), np.float32(0.01), np.float32(3.7), 100
    inits = [numpy_helper.from_array(np.array(v, dtype=dt), nm) for nm, v, dt in (
        ("sx", sx, np.float32), ("zx", zx, np.uint8), ("sy", sy, np.float32), ("zy", zy, np.uint8))]
    inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.full(cout, sw, np.float32), "sw"),
              numpy_helper.from_array(np.zeros(cout, np.int8), "zw")]
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"], ["y"],
                            pads=[pad] * 4, strides=[stride] * 2, kernel_shape=[k, k])
    oh = (h + 2 * pad - k) // stride + 1
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, [8, cout, oh, oh])], inits)
    y = _ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])).run(None, {"x": x})[0]
    xh, wh = x.transpose(0, 2, 3, 1).astype(np.int64), w.transpose(0, 2, 3, 1).astype(np.int64)
    cols = mac_array.im2col(xh, k, stride, pad, pad_value=zx)
    fw = ort_accumulators(cols, wh.reshape(cout, -1), zx)
    np.testing.assert_array_equal(fp32.ort_requantize(fw, fp32.ort_scale(sx, sw, sy), zy, 0, 255),
                                  y.transpose(0, 2, 3, 1))
    _assert_kernel(fw, mac_array.conv2d(xh, wh, stride, pad, zx), K.pair_saturated_conv2d(xh, wh, stride, pad, zx))


@pytest.mark.parametrize("conv", [False, True])
def test_fbgemm_modules_are_their_accumulators_in_im2col_order(conv):
    """fbgemm's quantized Linear / Conv2d outputs are its float32 requantization of the
    accumulators fbgemm_accumulators gives on the (NHWC im2col) rows."""
    import torch
    import torch.ao.nn.quantized as nnq
    torch.backends.quantized.engine = "fbgemm"
    rng = np.random.default_rng(5)
    sx, sw, sy, zx, zy = np.float32(0.02), np.float32(0.01), 3.7, 70, 100
    if conv:
        mod, wi = nnq.Conv2d(5, 4, 3, padding=1), rng.integers(-128, 128, (4, 5, 3, 3))
        q = rng.integers(0, 256, (4, 5, 6, 6))
    else:
        mod, wi = nnq.Linear(37, 6), rng.integers(-128, 128, (6, 37))
        q = rng.integers(0, 256, (64, 37))
    wq = torch.quantize_per_tensor(torch.tensor(wi * sw, dtype=torch.float), float(sw), 0, torch.qint8)
    mod.set_weight_bias(wq, None)
    mod.scale, mod.zero_point = sy, zy
    x = torch.quantize_per_tensor(torch.tensor((q - zx) * sx, dtype=torch.float), float(sx), zx, torch.quint8)
    y = mod(x).int_repr().numpy().astype(np.int64)
    if conv:
        xh, wh = q.transpose(0, 2, 3, 1), wi.transpose(0, 2, 3, 1)
        fw = fbgemm_accumulators(mac_array.im2col(xh, 3, 1, 1, pad_value=zx), wh.reshape(4, -1), zx)
        exact, model, y = mac_array.conv2d(xh, wh, 1, 1, zx), K.pair_saturated_conv2d(xh, wh, 1, 1, zx), \
            y.transpose(0, 2, 3, 1)
    else:
        fw = fbgemm_accumulators(q, wi, zx)
        exact, model = mac_array.linear(q, wi, zx), K.pair_saturated_linear(q, wi, zx)
    a = np.float32(sx * sw)
    np.testing.assert_array_equal(fp32.fbgemm_requantize(fw, a, a / np.float32(sy), zy, 0, 255), y)
    _assert_kernel(fw, exact, model)


def test_kernel_measurement_reports_both_frameworks():
    """python -m intdeploy.golden.importers.framework: 7-bit activations exact on every CPU; full-range ones
    exact or explained as this CPU's kind requires."""
    from intdeploy.golden.importers.framework import kernel_measurement
    lines = kernel_measurement()
    assert len(lines) == 5 and lines[0] == f"this CPU: {K.cpu_note()}"
    assert all("integer accumulators exact on this CPU (800 compared)" in lines[i] for i in (1, 3))
    for line in (lines[2], lines[4]):
        if EXPECTED == "saturate":
            assert " is not exact on this CPU: " in line and "every one as int16 pair saturation predicts" in line
        elif EXPECTED == "exact":
            assert "integer accumulators exact on this CPU" in line
