"""The TFLite importer (golden/importers/from_tflite.py): int8 models written here with the schema
that ai-edge-litert ships, imported, and compared element by element with the LiteRT interpreter's
reference kernels, golden and the accelerator (its executable model, and the RTL)."""

from dataclasses import replace
import os

import numpy as np
import pytest

from intdeploy.golden.importers import litert_kernels as K
from intdeploy.golden.importers.from_tflite import import_tflite, litert_outputs
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import IntegerModel, MacLayer, ModelFormatError
from intdeploy.host import protocol as P
from intdeploy.host.network import run_network
from intdeploy.hw.config import AcceleratorConfig
from intdeploy.sim.accel_model import ModelEngine
from intdeploy.sim.crosscheck import tflite_flatbuffer
from intdeploy.tools.cli import main


def _S():
    from ai_edge_litert import schema_py_generated as S
    return S


def _conv_opts(S, padding, stride, act, depth_multiplier=None):
    o = S.DepthwiseConv2DOptionsT() if depth_multiplier else S.Conv2DOptionsT()
    o.padding, o.strideW, o.strideH, o.fusedActivationFunction = padding, stride, stride, act
    o.dilationWFactor = o.dilationHFactor = 1
    if depth_multiplier:
        o.depthMultiplier = depth_multiplier
    return o


def _pool_opts(S, padding, k, stride, act=0):
    o = S.Pool2DOptionsT()
    o.padding, o.strideW, o.strideH, o.filterWidth, o.filterHeight, o.fusedActivationFunction = \
        padding, stride, stride, k, k, act
    return o


def cnn(seed=0):
    """int8 [1, 10, 10, 3] -> CONV_2D 3x3 SAME stride 2 (per channel, RELU) -> DEPTHWISE_CONV_2D 3x3
    SAME, multiplier 2 (RELU6) -> CONV_2D 1x1 -> ADD of the two (RELU) -> AVERAGE_POOL_2D 5x5 VALID
    (25 taps: more than the pooling unit's 16) -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX.
    Power-of-two scales, so that the requantizers meet exact ties and the rounding convention shows."""
    S = _S()
    T, B, A = S.TensorType, S.BuiltinOperator, S.ActivationFunctionType
    rng = np.random.default_rng(seed)
    sx, zx = 2.0 ** -4, -3
    w1 = rng.integers(-40, 41, (8, 3, 3, 3)).astype(np.int8)
    s1 = np.float32(2.0 ** -6) * np.array([1, 2, 1, 4, 1, 2, 1, 0.5] * 1, np.float32)
    wd = rng.integers(-60, 61, (1, 3, 3, 16)).astype(np.int8)
    sd = np.full(16, 2.0 ** -6, np.float32)
    w3 = rng.integers(-50, 51, (16, 1, 1, 16)).astype(np.int8)
    s3 = np.float32(2.0 ** -7)
    wf = rng.integers(-70, 71, (10, 16)).astype(np.int8)
    sf = np.float32(2.0 ** -6)
    sy1, sy2, sy3, sy4, syf = 2.0 ** -3, 2.0 ** -3, 2.0 ** -2, 2.0 ** -2, 2.0 ** -2
    bias = lambda n: rng.integers(-300, 300, n).astype(np.int32)
    tensors = [("x", (1, 10, 10, 3), T.INT8, sx, zx),                                       # 0
               ("w1", w1.shape, T.INT8, s1, [0] * 8), ("b1", (8,), T.INT32, sx * s1, [0] * 8),   # 1, 2
               ("y1", (1, 5, 5, 8), T.INT8, sy1, -128),                                      # 3
               ("wd", wd.shape, T.INT8, sd, [0] * 16), ("bd", (16,), T.INT32, sy1 * sd, [0] * 16),   # 4, 5
               ("y2", (1, 5, 5, 16), T.INT8, sy2, -128),                                     # 6
               ("w3", w3.shape, T.INT8, s3, 0), ("b3", (16,), T.INT32, sy2 * s3, 0),          # 7, 8
               ("y3", (1, 5, 5, 16), T.INT8, sy3, 5),                                        # 9
               ("y4", (1, 5, 5, 16), T.INT8, sy4, -128),                                     # 10
               ("y5", (1, 1, 1, 16), T.INT8, sy4, -128),                                     # 11
               ("shape", (2,), T.INT32, None, None),                                         # 12
               ("y6", (1, 16), T.INT8, sy4, -128),                                           # 13
               ("wf", wf.shape, T.INT8, sf, 0), ("bf", (10,), T.INT32, sy4 * sf, 0),          # 14, 15
               ("y7", (1, 10), T.INT8, syf, 3),                                              # 16
               ("y8", (1, 10), T.INT8, 1 / 256, -128)]                                       # 17
    constants = {1: w1, 2: bias(8), 4: wd, 5: bias(16), 7: w3, 8: bias(16), 12: np.array([1, 16], np.int32),
                 14: wf, 15: bias(10)}
    add_opts = S.AddOptionsT()
    add_opts.fusedActivationFunction = A.RELU
    reshape = S.ReshapeOptionsT()
    reshape.newShape = [1, 16]
    softmax = S.SoftmaxOptionsT()
    softmax.beta = 1.0
    ops = [(B.CONV_2D, [0, 1, 2], [3], S.BuiltinOptions.Conv2DOptions, _conv_opts(S, S.Padding.SAME, 2, A.RELU)),
           (B.DEPTHWISE_CONV_2D, [3, 4, 5], [6], S.BuiltinOptions.DepthwiseConv2DOptions,
            _conv_opts(S, S.Padding.SAME, 1, A.RELU6, depth_multiplier=2)),
           (B.CONV_2D, [6, 7, 8], [9], S.BuiltinOptions.Conv2DOptions, _conv_opts(S, S.Padding.VALID, 1, A.NONE)),
           (B.ADD, [6, 9], [10], S.BuiltinOptions.AddOptions, add_opts),
           (B.AVERAGE_POOL_2D, [10], [11], S.BuiltinOptions.Pool2DOptions, _pool_opts(S, S.Padding.VALID, 5, 5)),
           (B.RESHAPE, [11, 12], [13], S.BuiltinOptions.ReshapeOptions, reshape),
           (B.FULLY_CONNECTED, [13, 14, 15], [16], S.BuiltinOptions.FullyConnectedOptions,
            S.FullyConnectedOptionsT()),
           (B.SOFTMAX, [16], [17], S.BuiltinOptions.SoftmaxOptions, softmax)]
    return tflite_flatbuffer(ops, tensors, constants)


def edges(seed=0):
    """float32 [1, 7, 7, 4] -> QUANTIZE -> MAX_POOL_2D 3x3 SAME stride 2 -> AVERAGE_POOL_2D 2x2 SAME
    stride 1 (edge windows average their real taps; RELU_N1_TO_1) -> QUANTIZE (int8 -> int8
    rescale) -> PAD 1 -> CONV_2D 3x3 VALID (the PAD becomes its padding) -> FULLY_CONNECTED (an
    image input, flattened) -> DEQUANTIZE -> float32."""
    S = _S()
    T, B, A = S.TensorType, S.BuiltinOperator, S.ActivationFunctionType
    rng = np.random.default_rng(seed)
    s, z = 2.0 ** -6, 7
    wc = rng.integers(-60, 61, (4, 3, 3, 4)).astype(np.int8)
    wf = rng.integers(-90, 91, (6, 64)).astype(np.int8)
    tensors = [("xf", (1, 7, 7, 4), T.FLOAT32, None, None), ("x", (1, 7, 7, 4), T.INT8, s, z),       # 0, 1
               ("m", (1, 4, 4, 4), T.INT8, s, z), ("a", (1, 4, 4, 4), T.INT8, s, z),                  # 2, 3
               ("q", (1, 4, 4, 4), T.INT8, s * 2, -20),                                              # 4
               ("pads", (4, 2), T.INT32, None, None), ("p", (1, 6, 6, 4), T.INT8, s * 2, -20),       # 5, 6
               ("wc", wc.shape, T.INT8, 2.0 ** -6, 0), ("bc", (4,), T.INT32, s * 2 * 2.0 ** -6, 0),   # 7, 8
               ("c", (1, 4, 4, 4), T.INT8, s * 4, 3),                                                # 9
               ("wf", wf.shape, T.INT8, 2.0 ** -7, 0), ("bf", (6,), T.INT32, s * 4 * 2.0 ** -7, 0),  # 10, 11
               ("y", (1, 6), T.INT8, 2.0 ** -3, 0), ("yf", (1, 6), T.FLOAT32, None, None)]          # 12, 13
    ops = [(B.QUANTIZE, [0], [1], 0, None),
           (B.MAX_POOL_2D, [1], [2], S.BuiltinOptions.Pool2DOptions, _pool_opts(S, S.Padding.SAME, 3, 2)),
           (B.AVERAGE_POOL_2D, [2], [3], S.BuiltinOptions.Pool2DOptions,
            _pool_opts(S, S.Padding.SAME, 2, 1, A.RELU_N1_TO_1)),
           (B.QUANTIZE, [3], [4], 0, None),
           (B.PAD, [4, 5], [6], S.BuiltinOptions.PadOptions, S.PadOptionsT()),
           (B.CONV_2D, [6, 7, 8], [9], S.BuiltinOptions.Conv2DOptions, _conv_opts(S, S.Padding.VALID, 1, A.NONE)),
           (B.FULLY_CONNECTED, [9, 10, 11], [12], S.BuiltinOptions.FullyConnectedOptions, S.FullyConnectedOptionsT()),
           (B.DEQUANTIZE, [12], [13], 0, None)]
    return tflite_flatbuffer(ops, tensors, {5: np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32), 7: wc,
                                            8: rng.integers(-300, 300, 4).astype(np.int32), 10: wf,
                                            11: rng.integers(-500, 500, 6).astype(np.int32)})


def mean(seed=0):
    """int8 [1, 6, 5, 8] -> MEAN over H and W, keep_dims (another scale and zero point) -> RESHAPE
    -> FULLY_CONNECTED; and a MEAN without keep_dims (same quantization) as a second output."""
    S = _S()
    T, B = S.TensorType, S.BuiltinOperator
    rng = np.random.default_rng(seed)
    wf = rng.integers(-90, 91, (5, 8)).astype(np.int8)
    keep, flat = S.ReducerOptionsT(), S.ReducerOptionsT()
    keep.keepDims, flat.keepDims = True, False
    reshape = S.ReshapeOptionsT()
    reshape.newShape = [1, 8]
    tensors = [("x", (1, 6, 5, 8), T.INT8, 0.05, -10), ("axes", (2,), T.INT32, None, None),             # 0, 1
               ("m", (1, 1, 1, 8), T.INT8, 0.03, 4), ("shape", (2,), T.INT32, None, None),             # 2, 3
               ("r", (1, 8), T.INT8, 0.03, 4), ("wf", wf.shape, T.INT8, 2.0 ** -7, 0),                 # 4, 5
               ("bf", (5,), T.INT32, np.float32(0.03) * 2.0 ** -7, 0), ("y", (1, 5), T.INT8, 0.02, 0),  # 6, 7
               ("m2", (1, 8), T.INT8, 0.05, -10)]                                                      # 8
    ops = [(B.MEAN, [0, 1], [2], S.BuiltinOptions.ReducerOptions, keep),
           (B.RESHAPE, [2, 3], [4], S.BuiltinOptions.ReshapeOptions, reshape),
           (B.FULLY_CONNECTED, [4, 5, 6], [7], S.BuiltinOptions.FullyConnectedOptions, S.FullyConnectedOptionsT()),
           (B.MEAN, [0, 1], [8], S.BuiltinOptions.ReducerOptions, flat)]
    return tflite_flatbuffer(ops, tensors, {1: np.array([1, 2], np.int32), 3: np.array([1, 8], np.int32), 5: wf,
                                            6: rng.integers(-500, 500, 5).astype(np.int32)}, outputs=(7, 8))


def two_inputs(seed=0):
    """Two int8 inputs: a [1, 6, 6, 3] image through a 1x1 CONV_2D, ADDed to a second [1, 6, 6, 3]
    image, then FULLY_CONNECTED."""
    S = _S()
    T, B = S.TensorType, S.BuiltinOperator
    rng = np.random.default_rng(seed)
    wc = rng.integers(-90, 91, (3, 1, 1, 3)).astype(np.int8)
    wf = rng.integers(-90, 91, (4, 108)).astype(np.int8)
    tensors = [("a", (1, 6, 6, 3), T.INT8, 0.04, -5), ("b", (1, 6, 6, 3), T.INT8, 0.03, 9),               # 0, 1
               ("wc", wc.shape, T.INT8, 2.0 ** -7, 0), ("bc", (3,), T.INT32, np.float32(0.04) * 2.0 ** -7, 0),  # 2, 3
               ("c", (1, 6, 6, 3), T.INT8, 0.05, 2), ("s", (1, 6, 6, 3), T.INT8, 0.06, -3),             # 4, 5
               ("wf", wf.shape, T.INT8, 2.0 ** -8, 0), ("bf", (4,), T.INT32, np.float32(0.06) * 2.0 ** -8, 0),  # 6, 7
               ("y", (1, 4), T.INT8, 0.25, 1)]                                                           # 8
    ops = [(B.CONV_2D, [0, 2, 3], [4], S.BuiltinOptions.Conv2DOptions, _conv_opts(S, S.Padding.VALID, 1, 0)),
           (B.ADD, [4, 1], [5], S.BuiltinOptions.AddOptions, S.AddOptionsT()),
           (B.FULLY_CONNECTED, [5, 6, 7], [8], S.BuiltinOptions.FullyConnectedOptions, S.FullyConnectedOptionsT())]
    return tflite_flatbuffer(ops, tensors, {2: wc, 3: rng.integers(-300, 300, 3).astype(np.int32), 6: wf,
                                            7: rng.integers(-500, 500, 4).astype(np.int32)}, inputs=(0, 1))


def _inputs(model, n, seed=1):
    rng = np.random.default_rng(seed)
    x = {s.name: rng.integers(s.lo, s.hi + 1, (n,) + s.shape) for s in model.inputs}
    return x if model.extra_inputs else x[model.input.name]


@pytest.mark.parametrize("build", [cnn, edges, mean, two_inputs])
def test_tflite_models_are_bit_exact_against_litert(build):
    """Every element of LiteRT's reference kernels equals golden, and the accelerator's executable
    model equals golden, on 64 random inputs; the proof checked every layer."""
    model, proof, source = import_tflite(build())
    assert proof.exact and proof.checked > 0
    x = _inputs(model, 64)
    want = litert_outputs(source, model, x)
    got = IntegerDeployable(model).run(x)
    want, got = (want, got) if isinstance(got, tuple) else ((want,), (got,))
    assert len(want) == len(got) == len(model.outputs)
    for a, b in zip(want, got):
        assert a.shape == b.shape and np.array_equal(a, b)
    assert [h[1] for h in source.host_ops] == (["SOFTMAX"] if build is cnn else [])
    out, _ = run_network(model, x, ModelEngine(P.Info.of(AcceleratorConfig(rows=4, cols=4))))
    for name, b in zip(model.outputs, got):
        assert np.array_equal(out[name], b)


def test_each_operators_rounding_is_the_measured_one():
    """The verify comparison can fail: the CNN's convolutions with FULLY_CONNECTED's single
    rounding, or its FULLY_CONNECTED with the convolutions' double rounding, differ from LiteRT
    on these tie-heavy scales."""
    model, _, source = import_tflite(cnn())
    x = _inputs(model, 64)
    want = litert_outputs(source, model, x)
    for kind, other in (("conv2d", "half_away"), ("linear", "tflite")):
        layers = tuple(replace(la, requant=replace(la.requant, rounding=other))
                       if isinstance(la, MacLayer) and la.kind == kind else la for la in model.layers)
        swapped = IntegerModel(input=model.input, layers=layers, outputs=model.outputs)
        assert np.count_nonzero(IntegerDeployable(swapped).run(x) != want) > 0, kind


def test_litert_formulas_by_hand():
    """Single rounding ties away from zero; double rounding differs on 7.46875 (-> 7.5 -> 8)."""
    np.testing.assert_array_equal(K.multiply_once(np.array([239, -48, 47, -16]), 1 << 30, -4), [7, -2, 1, -1])
    assert int(K.multiply(239, 1 << 30, -4)) == 8
    assert K.quantize_multiplier(0.75) == (3 << 29, 0)


def test_import_cli_tflite_verifies_golden_and_the_accelerator(tmp_path, capsys):
    path = tmp_path / "cnn.tflite"
    path.write_bytes(cnn())
    assert main(["import", str(path), "-o", str(tmp_path / "cnn.json"), "--verify", "16", "--sim", "model",
                 "--rows", "4", "--cols", "4"]) == 0
    out = capsys.readouterr().out
    assert "rounding half_away, tflite" in out and "0 inexact" in out
    assert "operator #7 (SOFTMAX): layer 'op7_softmax' runs on the host" in out
    assert "framework vs golden: 160/160 elements equal" in out
    assert "model (4x4 accelerator): 16 inputs, engine vs golden: 160/160 elements equal" in out


def test_every_unsupported_operator_in_one_line(tmp_path, capsys):
    S = _S()
    T, B = S.TensorType, S.BuiltinOperator
    tensors = [("x", (1, 8), T.INT8, 0.1, 0), ("t", (1, 8), T.INT8, 1 / 128, 0),
               ("a", (1, 8), T.INT8, 1 / 128, 0), ("y", (1, 8), T.INT8, 1 / 128, 0)]
    ops = [(B.TANH, [0], [1], 0, None), (B.LOGISTIC, [1], [2], 0, None), (B.HARD_SWISH, [2], [3], 0, None)]
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_flatbuffer(ops, tensors, {}))
    assert main(["import", str(path), "-o", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "3 operators cannot be imported" in err
    for i, op in enumerate(("TANH", "LOGISTIC", "HARD_SWISH")):
        assert f"operator #{i} ({op})" in err


@pytest.mark.parametrize("data, message", [
    (b"", "not a TFLite flatbuffer"),
    (b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40, "malformed TFLite flatbuffer"),
    (b"junk" * 50, "not a TFLite flatbuffer")])
def test_a_broken_tflite_file_is_one_line(data, message, tmp_path, capsys):
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    assert main(["import", str(path), "-o", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_unsupported_conv_options_name_the_operator():
    S = _S()
    T, B = S.TensorType, S.BuiltinOperator
    o = _conv_opts(S, S.Padding.VALID, 1, 0)
    o.dilationHFactor = 2
    data = tflite_flatbuffer([(B.CONV_2D, [0, 1, 2], [3], S.BuiltinOptions.Conv2DOptions, o)],
                             [("x", (1, 6, 6, 1), T.INT8, 0.1, 0), ("w", (1, 3, 3, 1), T.INT8, 0.1, 0),
                              ("b", (1,), T.INT32, 0.01, 0), ("y", (1, 2, 6, 1), T.INT8, 0.1, 0)],
                             {1: np.ones((1, 3, 3, 1), np.int8), 2: np.zeros(1, np.int32)})
    with pytest.raises(ModelFormatError, match=r"operator #0 \(CONV_2D\): dilation 2x1; allowed 1"):
        import_tflite(data)


@pytest.mark.parametrize("build", [cnn, edges, mean, two_inputs])
def test_tflite_models_on_the_rtl(build, tmp_path):
    """Both models on the quick RTL top (Verilator): every layer equals golden element by element.
    The CNN's 25-tap average pool runs as a window-sum GEMM (the quick top's pooling unit takes 9
    taps); the edge model's SAME max pool runs on the pooling unit with the input's minimum as the
    padding, its SAME average pool as a window-sum GEMM with one column per number of real taps."""
    from intdeploy.hw.config import QUICK
    from intdeploy.sim.rtl_engine import RtlEngine
    model, _, _ = import_tflite(build())
    x = _inputs(model, 3)
    out, _ = run_network(model, x, RtlEngine("verilator", QUICK, work_dir=tmp_path))
    golden = IntegerDeployable(model).run(x, trace=True)
    for name in out:
        np.testing.assert_array_equal(out[name], golden[name], err_msg=name)


def test_depthwise_runs_as_channel_groups():
    """The depthwise layer (16 channels, multiplier 2) runs as one GEMM per group of R = 4 output
    channels: the same results as golden, useful MACs counted as KH*KW per output, and fewer MAC
    steps and cycles than the block-diagonal GEMM the same layer runs as without the depthwise
    mark (on this small layer the driver picks convolution strips, whose dropped rows count as
    steps, for fewer words; DS-CNN's layers gain 5x, docs/perf)."""
    model, _, _ = import_tflite(cnn())
    name = next(iter(model.metadata["block_diagonal"]))
    x = _inputs(model, 8)
    info = P.Info.of(AcceleratorConfig(rows=4, cols=4))
    out, stats = run_network(model, x, ModelEngine(info))
    golden = IntegerDeployable(model).run(x, trace=True)
    np.testing.assert_array_equal(out[name], golden[name])
    st = next(s for s in stats["layers"] if s.name == name)
    assert st.useful_macs == 8 * 5 * 5 * 3 * 3 * 16
    plain = IntegerModel(input=model.input, layers=model.layers, outputs=model.outputs, metadata={})
    out2, stats2 = run_network(plain, x, ModelEngine(info))
    np.testing.assert_array_equal(out2[name], golden[name])
    st2 = next(s for s in stats2["layers"] if s.name == name)
    assert st.mac_steps < st2.mac_steps and st.cycles < st2.cycles


# --- fuzz: mutated flatbuffers import or fail in one line ------------------------------------------

def _mutate(data, rng):
    """One mutation of a TFLite flatbuffer: bytes flipped, cut or inserted, or a field of the
    unpacked model changed (a tensor's shape, type or quantization, an operator's code, inputs
    or options, a buffer's contents) and packed again."""
    import flatbuffers
    S = _S()
    kind = int(rng.integers(6))
    if kind == 0:
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 5))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return bytes(b)
    if kind == 1:
        return data[:int(rng.integers(len(data)))]
    m = S.ModelT.InitFromPackedBuf(data, 0)
    sg = m.subgraphs[0]
    if kind == 2:
        t = sg.tensors[int(rng.integers(len(sg.tensors)))]
        what = int(rng.integers(4))
        if what == 0:
            t.shape = [int(v) for v in rng.integers(-1, 12, int(rng.integers(0, 6)))]
        elif what == 1:
            t.type = int(rng.integers(0, 18))
        elif what == 2:
            t.quantization = None
        else:
            q = S.QuantizationParametersT()
            q.scale = [float(v) for v in rng.choice([0.0, -1.0, np.nan, np.inf, 1e-30, 1e30, 0.5], int(rng.integers(0, 4)))]
            q.zeroPoint = [int(v) for v in rng.integers(-300, 300, int(rng.integers(0, 4)))]
            q.quantizedDimension = int(rng.integers(-1, 5))
            t.quantization = q
    elif kind == 3:
        op = sg.operators[int(rng.integers(len(sg.operators)))]
        what = int(rng.integers(3))
        if what == 0:
            op.opcodeIndex = int(rng.integers(len(m.operatorCodes)))
        elif what == 1:
            op.inputs = [int(v) for v in rng.integers(-1, len(sg.tensors) + 2, int(rng.integers(0, 4)))]
        else:
            if op.builtinOptions is not None:
                for f, v in vars(op.builtinOptions).items():
                    if isinstance(v, int) and not isinstance(v, bool) and rng.random() < 0.5:
                        setattr(op.builtinOptions, f, int(rng.integers(-2, 40)))
    elif kind == 4:
        buf = [b for b in m.buffers if b.data is not None and len(b.data)]
        b = buf[int(rng.integers(len(buf)))]
        b.data = b.data[:int(rng.integers(len(b.data)))]
    else:
        sg.inputs = [int(v) for v in rng.integers(0, len(sg.tensors), int(rng.integers(0, 3)))]
        sg.outputs = [int(v) for v in rng.integers(0, len(sg.tensors), int(rng.integers(0, 3)))]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("count", [int(os.environ.get("INTDEPLOY_FUZZ_EXAMPLES", "300")),
                                   pytest.param(10_000, marks=pytest.mark.regress)])
def test_mutated_tflite_files_import_or_fail_in_one_line(count):
    """A mutated flatbuffer imports, or fails with a one-line ModelFormatError: never another
    exception (a traceback for the user)."""
    rng = np.random.default_rng(11)
    bases = [cnn(), edges()]
    refused = 0
    for i in range(count):
        try:
            import_tflite(_mutate(bases[i % 2], rng))
        except ModelFormatError as e:
            refused += 1
            assert "\n" not in str(e) and str(e)
    assert refused > count // 4


def test_a_pad_that_does_not_feed_a_convolution_is_refused():
    S = _S()
    T, B = S.TensorType, S.BuiltinOperator
    data = tflite_flatbuffer([(B.PAD, [0, 1], [2], S.BuiltinOptions.PadOptions, S.PadOptionsT()),
                              (B.MAX_POOL_2D, [2], [3], S.BuiltinOptions.Pool2DOptions,
                               _pool_opts(S, S.Padding.VALID, 2, 2))],
                             [("x", (1, 4, 4, 1), T.INT8, 0.1, 0), ("pads", (4, 2), T.INT32, None, None),
                              ("p", (1, 6, 6, 1), T.INT8, 0.1, 0), ("y", (1, 3, 3, 1), T.INT8, 0.1, 0)],
                             {1: np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)})
    with pytest.raises(ModelFormatError, match=r"operator #1 \(MAX_POOL_2D\): input 'p' is a PAD's output; allowed "
                                               r"only as the input of a CONV_2D"):
        import_tflite(data)


def test_a_model_with_two_inputs_round_trips_and_runs_on_the_users_inputs(tmp_path, capsys):
    """The model file keeps both inputs; intdeploy run takes an .npz with one array per input and
    compares the accelerator with LiteRT; an .npy (one array) is refused in one line."""
    from intdeploy.golden import model_file
    (tmp_path / "m.tflite").write_bytes(two_inputs())
    assert main(["import", str(tmp_path / "m.tflite"), "-o", str(tmp_path / "m.json"), "--verify", "16"]) == 0
    assert "framework vs golden: 64/64 elements equal" in capsys.readouterr().out
    model = model_file.load(tmp_path / "m.json")
    assert [s.name for s in model.inputs] == ["input", "input_1"] and model.extra_inputs[0].zero_point == 9
    x = _inputs(model, 5)
    np.savez(tmp_path / "x.npz", **x)
    assert main(["run", str(tmp_path / "m.json"), "--inputs", str(tmp_path / "x.npz"), "--reference",
                 str(tmp_path / "m.tflite"), "--rows", "4", "--cols", "4"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact: yes" in out and "vs accelerator: 20/20 elements of the output equal" in out
    np.save(tmp_path / "x.npy", x["input"])
    assert main(["run", str(tmp_path / "m.json"), "--inputs", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the model has 2 inputs" in err
