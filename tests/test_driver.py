"""intdeploy.host.driver on the golden engine: every layer kind equals golden's direct computation exactly,
tiling beyond the buffers, the digits network end to end, refusals with the layer named,
engine errors and the mismatch report.

Expected values come from golden (IntegerDeployable, or golden's functions on the test's own
arrays), never from the driver or the accelerator model.
"""

import dataclasses

import numpy as np
import pytest

from intdeploy.golden import digits, model_file
from intdeploy.golden.add import AddParams, add
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.mac_array import conv2d, linear
from intdeploy.golden.model_file import AddLayer, InputSpec, IntegerModel, MacLayer, PoolLayer, RequantLayer, Threshold
from intdeploy.golden.pool import pool_windows
from intdeploy.golden.requantizer import INT32_MAX, ROUNDING_MODES, RequantParams, requantize
from intdeploy.golden.threshold import threshold
from intdeploy.host import protocol as P
from intdeploy.host.diagnosis import compare_outputs, first_mismatch, format_mismatch
from intdeploy.host.driver import Driver
from intdeploy.host.job import EngineError, GemmJob, Pool
from intdeploy.host.network import run_layers, run_network
from intdeploy.host.timing import Overlap
from intdeploy.sim.accel_model import ModelEngine

SMALL = P.Info(rows=4, cols=4, weight_depth=16, weight_banks=2, act_depth=64, param_channels=16,
               residual_depth=32, threshold_channels=8, max_q=3, max_pool_taps=9, max_pool_shift=16)


def _check(model, x, info=SMALL):
    """Run on the golden engine and compare every tensor with IntegerDeployable; returns both."""
    golden = IntegerDeployable(model).run(x, trace=True)
    out, stats = run_network(model, x, ModelEngine(info))
    for name, g in golden.items():
        np.testing.assert_array_equal(out[name], g, err_msg=name)
    assert first_mismatch(model, golden, out) is None
    return golden, out, stats


def _requant(rng, acc, rounding, lo, hi, zero_point=0, per_channel=True, target=60):
    """Requantizer params scaling ``acc`` (..., C) to about +-target (so rounding and clipping show)."""
    c = acc.shape[-1]
    amax = np.maximum(np.abs(acc.reshape(-1, c)).max(axis=0), 1)
    n = c if per_channel else 1
    if rounding == "tflite":
        mult = rng.integers(1 << 30, 1 << 31, n)
    else:
        mult = rng.integers(1 << 20, 1 << 21, n) * rng.choice([1, 1, 1, -1], n)
    shift = np.ceil(np.log2(np.abs(mult) * (amax[:n] if per_channel else amax.max()) / target)).astype(np.int64)
    shift = np.clip(shift, 1, 62)
    bias = rng.integers(-200, 200, n)
    offset = 0 if rounding == "tflite" else rng.integers(-(1 << 20), 1 << 20, n)
    if not per_channel:
        mult, shift, bias, offset = (int(np.ravel(v)[0]) for v in (mult, shift, bias, np.asarray(offset)))
    return RequantParams(mult=mult, shift=shift, bias=bias, offset=offset, zero_point=zero_point, lo=lo, hi=hi,
                         rounding=rounding)


def _conv_model(rng, *, in_dtype="int8", in_zp=-3, rounding="half_even", cin=3, cout=5, kernel=(3, 3),
                stride=(2, 1), padding=((1, 0), (1, 2)), shape=(6, 7), weight_bits=8, out_dtype="int8", out_zp=2):
    lo, hi = model_file.DTYPES[in_dtype]
    wb = weight_bits
    w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (cout,) + kernel + (cin,)).astype(np.int8)
    w_zp = rng.integers(-128, 128, cout)
    x = rng.integers(lo, hi + 1, (3,) + shape + (cin,))
    acc = conv2d(x, w, stride, padding, in_zp, w_zp)
    olo, ohi = model_file.DTYPES[out_dtype]
    rq = _requant(rng, acc, rounding, olo, ohi, out_zp)
    layer = MacLayer(kind="conv2d", name="conv", inputs=("input",), weight=w, weight_zero_point=w_zp,
                     weight_bits=wb, input_zero_point=in_zp, stride=stride, padding=padding, requant=rq,
                     dtype=out_dtype)
    spec = InputSpec(shape=shape + (cin,), dtype=in_dtype, zero_point=in_zp)
    return IntegerModel(input=spec, layers=(layer,), outputs=("conv",)), x


ROUNDINGS = list(ROUNDING_MODES)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_conv_padding_stride_int8_zero_points_each_rounding(rounding):
    rng = np.random.default_rng(ROUNDINGS.index(rounding))
    model, x = _conv_model(rng, rounding=rounding)
    golden, out, stats = _check(model, x)
    g = golden["conv"]
    assert np.mean((g > -128) & (g < 127)) > 0.6                # mostly unclipped: rounding matters
    # tiling happened: K = 27 (not a multiple of C), N = 5 (not a multiple of R), M = 72 > 64 // 7 rows
    assert stats["layers"][0].runs > 1


def test_uint8_input_zero_point_and_linear_on_feature_axis():
    rng = np.random.default_rng(3)
    model, x = _conv_model(rng, in_dtype="uint8", in_zp=131, rounding="floor", out_dtype="uint8", out_zp=100,
                           padding=((1, 1), (1, 1)), stride=(1, 1), shape=(4, 5))
    conv = model.layers[0]
    w2 = rng.integers(-128, 128, (6, 5)).astype(np.int8)
    acc = linear(IntegerDeployable(model).run(x).astype(np.int64), w2, 100, 7)
    fc = MacLayer(kind="linear", name="fc", inputs=("conv",), weight=w2, weight_zero_point=7, input_zero_point=100,
                  requant=_requant(rng, acc, "half_up", -128, 127, per_channel=False), dtype="int8")
    model = IntegerModel(input=model.input, layers=(conv, fc), outputs=("fc",))
    _check(model, x)


def test_threshold_layer_negate_weight_zero_points():
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, (7, 2, 2, 3)).astype(np.int8)
    w_zp = rng.integers(-20, 20, 7)
    x = rng.integers(0, 256, (2, 5, 5, 3))
    acc = conv2d(x, w, 1, 0, 0, w_zp)
    th = np.sort(rng.integers(int(acc.min()), int(acc.max()), (7, 7)), axis=1)
    neg = rng.integers(0, 2, 7).astype(bool)
    th[neg] = np.sort(-th[neg], axis=1)
    layer = MacLayer(kind="conv2d", name="th", inputs=("input",), weight=w, weight_zero_point=w_zp,
                     threshold=Threshold(th, neg), dtype="uint8")
    model = IntegerModel(input=InputSpec(shape=(5, 5, 3)), layers=(layer,), outputs=("th",))
    golden, _, _ = _check(model, x)
    assert len(np.unique(golden["th"])) >= 5
    np.testing.assert_array_equal(golden["th"], threshold(acc, th, neg))    # the oracle is golden's


def _two_branches(rng, out_zps, dtype, target=90):
    """input -> conv a, conv b (3x3 same padding, 4 channels): tensors for an Add."""
    lo, hi = model_file.DTYPES[dtype]
    x = rng.integers(-128, 128, (2, 4, 4, 2))
    layers = []
    for name, zp in zip("ab", out_zps):
        w = rng.integers(-128, 128, (6, 3, 3, 2)).astype(np.int8)
        acc = conv2d(x, w, 1, 1, -1, 0)
        layers.append(MacLayer(kind="conv2d", name=name, inputs=("input",), weight=w, input_zero_point=-1,
                               padding=((1, 1), (1, 1)), requant=_requant(rng, acc, "tflite", lo, hi, zp, target=target),
                               dtype=dtype))
    return InputSpec(shape=(4, 4, 2), dtype="int8", zero_point=-1), layers, x


def test_add_tflite_style():
    rng = np.random.default_rng(5)
    spec, layers, x = _two_branches(rng, (5, -3), "int8")
    p = AddParams.tflite(0.05, 5, 0.031, -3, 0.07, 2, lo=-128, hi=127)
    layers.append(AddLayer(name="sum", inputs=("a", "b"), params=p, dtype="int8"))
    golden, _, _ = _check(IntegerModel(input=spec, layers=tuple(layers), outputs=("sum",)), x)
    np.testing.assert_array_equal(golden["sum"], add(golden["a"], golden["b"], p))


def test_add_nemo_style_with_16_bit_sum_and_operand_swap():
    rng = np.random.default_rng(6)
    spec, layers, x = _two_branches(rng, (0, 0), "uint8", target=300)
    p = AddParams.nemo(16384, 16384, 14)
    layers.append(AddLayer(name="sum", inputs=("a", "b"), params=p, dtype="uint16"))      # [0, 510]
    layers.append(RequantLayer(name="act", inputs=("sum",), dtype="uint8",
                               requant=RequantParams(mult=6973, shift=13, bias=-7, lo=0, hi=255)))
    # a wide first operand: the driver swaps it into the GEMM and the byte operand into the residual
    layers.append(AddLayer(name="sum2", inputs=("act", "sum"), params=AddParams.nemo(3, -5, 1), dtype="int32"))
    model = IntegerModel(input=spec, layers=tuple(layers), outputs=("sum2",))
    assert model.tensors["sum"].hi > 255
    golden, _, _ = _check(model, x)
    assert golden["sum"].max() > 255


def test_requant_layer_on_signed_16_bit_tensor():
    rng = np.random.default_rng(7)
    spec, layers, x = _two_branches(rng, (0, 0), "int8")
    layers.append(AddLayer(name="sum", inputs=("a", "b"), params=AddParams.nemo(150, -77, 0), dtype="int16"))
    layers.append(RequantLayer(name="act", inputs=("sum",), dtype="int8",
                               requant=RequantParams(mult=np.arange(1, 7) * 3, shift=8, bias=-12345,
                                                     lo=-128, hi=127, rounding="half_even")))
    model = IntegerModel(input=spec, layers=tuple(layers), outputs=("act",))
    assert model.tensors["sum"].lo < -128
    _check(model, x)


@pytest.mark.parametrize("lo, span, steps", [(-32768, 65535, 3), (-40000, 65280, 3), (-40000, 65279, 2),
                                            (1000, 368, 2), (-7, 255, 2)])
def test_wide_tensor_split_into_two_or_three_bytes(lo, span, steps):
    """A 16-bit range goes through the identity GEMM as a + 255*b (2 bytes) up to 65279 above its
    minimum, else as a + 128*b + 128*b (3 bytes); both exact, at both ends of the range."""
    rng = np.random.default_rng(span)
    hi = lo + span
    spec = InputSpec(shape=(3, 3, 4), dtype="int32", zero_point=0, lo=lo, hi=hi)
    x = rng.integers(lo, hi + 1, (3, 3, 3, 4))
    x[0, 0, 0], x[0, 0, 1] = lo, hi
    x[1, 0, 0] = lo + 255 * 255 if span >= 255 * 255 else hi - 1
    rq = RequantParams(mult=np.arange(3, 7), shift=9, bias=-5, lo=-128, hi=127, rounding="half_even")
    model = IntegerModel(input=spec, layers=(RequantLayer(name="r", inputs=("input",), requant=rq, dtype="int8"),),
                         outputs=("r",))
    _, _, stats = _check(model, x, P.Info(rows=4, cols=4))
    assert stats["mac_steps"] == 27 * steps                 # 27 pixels of 4 channels, K = 4 * bytes


@pytest.mark.parametrize("mode, kernel, stride, d, lo, hi", [
    ("max", (2, 2), (2, 2), None, None, None),
    ("max", (2, 2), (1, 1), None, None, None),           # overlapping windows: rows are duplicated
    ("max", (3, 2), (1, 2), None, None, None),
    ("avg_nemo", (2, 2), (2, 2), 16, None, None),
    ("avg_nemo", (3, 3), (3, 3), 10, None, None),        # K1*K2 = 9, not a power of two
    ("avg_nemo", (2, 2), (2, 2), 4, -1000, 1000),        # a clamp that cannot bite is accepted
    ("avg_tflite", (2, 2), (2, 2), None, -20, 100),
    ("avg_tflite", (3, 3), (1, 1), None, -128, 127),
])
def test_pools(mode, kernel, stride, d, lo, hi):
    rng = np.random.default_rng(8)
    spec, layers, x = _two_branches(rng, (0, 0), "int8")
    x = rng.integers(-128, 128, (3, 7, 6, 2))
    spec = InputSpec(shape=(7, 6, 2), dtype="int8", zero_point=-1)
    layers = [layers[0], PoolLayer(name="pool", inputs=("a",), mode=mode, kernel=kernel, stride=stride, d=d,
                                   lo=lo, hi=hi, dtype="int8")]
    model = IntegerModel(input=spec, layers=tuple(layers), outputs=("pool",))
    _check(model, x)


@pytest.mark.parametrize("bits", [4, 2])
def test_sub_byte_weights(bits):
    rng = np.random.default_rng(bits)
    info = P.Info(**{**SMALL.__dict__, "weight_bits": bits})
    model, x = _conv_model(rng, weight_bits=bits, rounding="half_up")
    _check(model, x, info)


def test_digits_network_end_to_end():
    model = model_file.load(digits.MODEL_FILE)
    _, _, x_test, _ = digits.load_split()
    golden, out, stats = _check(model, x_test[:48], P.Info())
    assert [s.host for s in stats["layers"]] == [layer.kind == "flatten" for layer in model.layers]
    assert stats["mac_cycles"] == stats["mac_steps"] > 0
    assert 0 < stats["utilisation"] < 1


# --- convolution strips (row_step) ----------------------------------------------------------------

def _row_steps(driver, model, tensors, fuse=False):
    """The row_step field of every RUN, per program."""
    progs = [driver.compile_group(model, g, tensors) for g in driver.plan(model, fuse)]
    return [sorted({pk[2 + 7] >> 16 for pk in p.packets if pk[0] & 0xFF == P.OPCODES["RUN"]}) for p in progs]


@pytest.mark.parametrize("cin, kernel, stride, padding, cols", [
    (3, (3, 3), (2, 1), ((1, 0), (1, 2)), 4),     # channels padded to one entry, asymmetric padding
    (8, (3, 3), (1, 1), ((1, 1), (1, 1)), 8),     # one entry per pixel exactly (the digits conv2)
    (5, (2, 3), (1, 2), ((0, 0), (2, 1)), 4),     # two entries per pixel, column stride 2
    (4, (3, 2), (3, 3), ((0, 0), (0, 0)), 4),     # stride beyond the kernel: columns skipped
])
def test_conv_strips_bit_exact_both_ways(cin, kernel, stride, padding, cols):
    rng = np.random.default_rng(cin + cols)
    model, x = _conv_model(rng, cin=cin, cout=6, kernel=kernel, stride=stride, padding=padding, shape=(7, 9),
                           in_dtype="uint8", in_zp=7)
    info = P.Info(**{**SMALL.__dict__, "cols": cols, "act_depth": 256, "weight_depth": 64})
    golden = IntegerDeployable(model).run(x, trace=True)
    cycles = {}
    for mode in ("always", "never"):
        d = Driver(info, conv_strips=mode)
        out, st = run_network(model, x, ModelEngine(info), driver=d)
        np.testing.assert_array_equal(out["conv"], golden["conv"], err_msg=mode)
        steps = _row_steps(d, model, golden)[0]
        sh, sw = stride
        p_ = -(-cin // cols)
        assert steps == ([sw * kernel[0] * p_] if mode == "always" else [0])
        cycles[mode] = st["cycles"]
    auto = run_network(model, x, ModelEngine(info), driver=Driver(info))[1]["cycles"]
    assert auto == min(cycles.values())              # the cost model picks the cheaper of the two here


def test_conv_strips_with_add_thresholds_and_small_buffers():
    """Strips fused with an add (residual rows between strip outputs are zeros), split over many
    RUNs by a small activation and residual buffer, with a threshold epilogue."""
    from intdeploy.sim.soak import random_network
    for seed in range(40):
        model, x = random_network(seed)
        if [la.name for la in model.layers][1:3] == ["conv2", "res"]:
            break
    golden = IntegerDeployable(model).run(x, trace=True)
    for info in (_soak_info(), _soak_info(act_depth=64, residual_depth=16)):
        d = Driver(info, conv_strips="always")
        out, st = run_network(model, x, ModelEngine(info), driver=d, fuse=True)
        for name, a in out.items():
            np.testing.assert_array_equal(a, golden[name], err_msg=name)
        assert any(r != [0] for r in _row_steps(d, model, golden, fuse=True))
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, (7, 3, 3, 3)).astype(np.int8)
    x = rng.integers(0, 256, (2, 6, 6, 3))
    acc = conv2d(x, w, 1, 1, 0, 0)
    th = np.sort(rng.integers(int(acc.min()), int(acc.max()), (7, 7)), axis=1)
    model = IntegerModel(input=InputSpec(shape=(6, 6, 3)), outputs=("th",), layers=(
        MacLayer(kind="conv2d", name="th", inputs=("input",), weight=w, padding=((1, 1), (1, 1)),
                 threshold=Threshold(th, np.zeros(7, bool)), dtype="uint8"),))
    info = P.Info(**{**SMALL.__dict__, "act_depth": 40})
    out, _ = run_network(model, x, ModelEngine(info), driver=Driver(info, conv_strips="always"))
    np.testing.assert_array_equal(out["th"], IntegerDeployable(model).run(x))


def test_digits_conv2_runs_as_strips_on_a_32_bit_bus():
    """The strips' fewer words pay where words are dear: on a 32-bit bus (one word per cycle)
    digits conv2 runs as strips; on the default 64-bit bus (activation entries at two words per
    cycle) im2col rows cost fewer cycles than the strips' extra rows, so auto picks them."""
    model = model_file.load(digits.MODEL_FILE)
    x = digits.load_split()[2][:4]
    golden = IntegerDeployable(model).run(x, trace=True)
    d = Driver(P.Info(bus_width=32))
    assert _row_steps(d, model, golden) == [[0], [3], [0], [0], [0], [], [0]]      # conv1: 1 channel, im2col
    # fused with the pooling, conv2 needs its rows window by window: im2col rows on either bus
    assert _row_steps(d, model, golden, fuse=True) == [[0], [0], [], [0]]
    assert _row_steps(Driver(P.Info()), model, golden, fuse=True) == [[0], [0], [], [0]]
    with pytest.raises(ValueError, match="^conv_strips: 'yes' is not one of auto, always, never$"):
        Driver(P.Info(), conv_strips="yes")


# --- fusion (Driver.plan) --------------------------------------------------------------------------

def _names(groups):
    return [tuple(la.name for la in g) for g in groups]


def _check_fused(model, x, info=SMALL):
    """The fused run on the golden engine: every tensor it returns equals IntegerDeployable's, the
    fused-away tensors are absent and the network outputs present. Returns the plan and the
    fused and unfused stats."""
    golden, _, plain = _check(model, x, info)
    groups = Driver(info).plan(model, fuse=True)
    out, stats = run_network(model, x, ModelEngine(info), fuse=True)
    inner = {la.name for g in groups for la in g[:-1]}
    assert set(out) == set(golden) - inner and set(model.outputs) <= set(out)
    for name, a in out.items():
        np.testing.assert_array_equal(a, golden[name], err_msg=name)
    assert first_mismatch(model, golden, out) is None
    return groups, stats, plain


def test_fusion_digits_network():
    model = model_file.load(digits.MODEL_FILE)
    x = digits.load_split()[2][:8]
    assert _names(Driver(P.Info()).plan(model)) == [(la.name,) for la in model.layers]
    groups, st, plain = _check_fused(model, x, P.Info())
    # conv1 feeds conv2 and the add, so it does not fuse. conv2 is the add's SECOND input (swapped
    # branches); the add's requantizer is NEMO's floor division, so the requant layer after it
    # fuses (the add unit's sum shift), and then the pooling.
    assert _names(groups) == [("conv1",), ("conv2", "add.sum", "add", "pool"), ("flat",), ("fc",)]
    assert [s.output for s in st["layers"]] == ["conv1", "pool", "flat", "fc"]
    assert [s.name for s in st["layers"]][1] == "conv2+add.sum+add+pool"
    assert st["words_sent"] < plain["words_sent"] and st["cycles"] < plain["cycles"]
    # with im2col rows everywhere, fusion removes exactly the identity GEMMs of the add, the
    # requant and the pooling
    d = Driver(P.Info(), conv_strips="never")
    _, plain = run_network(model, x, ModelEngine(P.Info()), driver=d)
    _, st = run_network(model, x, ModelEngine(P.Info()), driver=d, fuse=True)
    by = {s.name: s for s in plain["layers"]}
    assert st["mac_steps"] == plain["mac_steps"] - sum(by[n].mac_steps for n in ("add.sum", "add", "pool"))
    golden = IntegerDeployable(model).run(x, trace=True)
    out, _ = run_layers(model, golden, ModelEngine(P.Info()), fuse=True)
    assert set(out) == set(golden) - {"conv2", "add.sum", "add"}
    for name, a in out.items():
        np.testing.assert_array_equal(a, golden[name], err_msg=name)


def _soak_info(**kw):
    from intdeploy.sim.soak import HARDWARE
    return P.Info.of({**HARDWARE, **kw})


def test_add_layer_with_a_sum_shift():
    """One add layer that is NEMO's Add and the requant after it (sum_shift 14, AddParams.then):
    equal to golden layer by layer and fused, on the soak's 4x4 top and the default one."""
    model = model_file.load(digits.MODEL_FILE)
    by = {la.name: la for la in model.layers}
    one = AddLayer(name="add", inputs=by["add.sum"].inputs, dtype="uint8",
                   params=by["add.sum"].params.then(by["add"].requant))
    layers = tuple(one if la.name == "add" else la for la in model.layers if la.name != "add.sum")
    model = IntegerModel(input=model.input, layers=layers, outputs=model.outputs)
    x = digits.load_split()[2][:6]
    for info in (_soak_info(), P.Info()):
        _check(model, x, info)
        groups, _, _ = _check_fused(model, x, info)
    assert ("conv2", "add", "pool") in _names(groups)


def test_fusion_random_networks():
    from intdeploy.sim.soak import random_network
    kinds = set()
    for seed in range(60):
        model, x = random_network(seed)
        groups, _, _ = _check_fused(model, x, _soak_info())
        kinds |= {"+".join(la.kind for la in g) for g in groups}
    # every pattern the random networks contain was fused at least once
    assert {"conv2d+add", "conv2d+add+maxpool2d", "conv2d+add+avgpool2d", "conv2d+maxpool2d",
            "conv2d+avgpool2d", "conv2d+add+requant", "conv2d+add+requant+avgpool2d",
            "conv2d+add+requant+maxpool2d"} <= kinds


def test_fusion_threshold_then_overlapping_max_pool():
    rng = np.random.default_rng(6)
    w = rng.integers(-128, 128, (7, 2, 2, 3)).astype(np.int8)
    x = rng.integers(0, 256, (2, 6, 5, 3))
    acc = conv2d(x, w, 1, 0, 0, 0)
    th = np.sort(rng.integers(int(acc.min()), int(acc.max()), (7, 7)), axis=1)
    layers = (MacLayer(kind="conv2d", name="th", inputs=("input",), weight=w, threshold=Threshold(th, np.zeros(7, bool)),
                       dtype="uint8"),
              PoolLayer(name="pool", inputs=("th",), mode="max", kernel=(3, 2), stride=(1, 2), dtype="uint8"))
    model = IntegerModel(input=InputSpec(shape=(6, 5, 3)), layers=layers, outputs=("pool",))
    groups, st, plain = _check_fused(model, x)
    assert _names(groups) == [("th", "pool")]
    assert st["mac_steps"] > plain["layers"][0].mac_steps     # overlapping windows repeat rows


def test_fusion_falls_back_where_it_cannot_apply():
    from intdeploy.sim.soak import random_network
    model = model_file.load(digits.MODEL_FILE)
    x = digits.load_split()[2][:2]
    # a network output stays a program's output
    both = IntegerModel(input=model.input, layers=model.layers, outputs=("fc", "conv2"))
    groups, _, _ = _check_fused(both, x, P.Info())
    assert ("conv2",) in _names(groups) and ("add.sum", "add", "pool") in _names(groups)
    # the requant after the add stays apart when the add's requantizer is more than a floor
    # division (here a clamp), or when it is per-channel
    by = {la.name: la for la in model.layers}
    p = by["add.sum"].params
    clamped = dataclasses.replace(by["add.sum"], params=dataclasses.replace(
        p, output=dataclasses.replace(p.output, lo=-1000)))
    rq = by["add"].requant
    per_channel = dataclasses.replace(by["add"], requant=RequantParams(
        mult=np.full(8, int(rq.mult)), shift=int(rq.shift), lo=int(rq.lo), hi=int(rq.hi)))
    for swap in (clamped, per_channel):
        layers = tuple(swap if la.name == swap.name else la for la in model.layers)
        groups, _, _ = _check_fused(IntegerModel(input=model.input, layers=layers, outputs=model.outputs), x, P.Info())
        assert ("conv2", "add.sum") in _names(groups) and ("add", "pool") in _names(groups)
    # a pooling window that does not fit the residual buffer: the add fuses, the pooling does not
    seed = next(s for s in range(100) if [la.name for la in random_network(s)[0].layers][1:4] == ["conv2", "res", "pool"])
    model, x = random_network(seed)
    assert ("conv2", "res", "pool") in _names(Driver(_soak_info()).plan(model, fuse=True))
    groups, _, _ = _check_fused(model, x, _soak_info(residual_depth=3))
    assert ("conv2", "res") in _names(groups) and ("pool",) in _names(groups)


# --- tiling at the GEMM level -------------------------------------------------------------------------

def _gemm_expected(job):
    acc = linear(job.x, job.w, job.x_zero_point, job.w_zero_point)
    y = requantize(acc, job.requant) if job.requant is not None else threshold(acc, job.thresholds, job.negate)
    if job.add is not None:
        y = add(y, job.residual, job.add)
    if job.pool:
        pl = job.pool
        kw = {"avg_nemo": dict(d=pl.d), "avg_tflite": dict(lo=pl.lo, hi=pl.hi)}.get(pl.mode, {})
        y = pool_windows(y.reshape(-1, pl.taps, y.shape[1]), pl.mode, **kw)
    return y


def _run_job(info, job):
    prog = Driver(info).compile_gemm(job)
    responses = ModelEngine(info).execute(prog.packets)
    return prog, prog.decode(responses)


TINY = P.Info(rows=4, cols=4, weight_depth=8, weight_banks=2, act_depth=32, param_channels=8, residual_depth=8,
              threshold_channels=8, max_q=3, max_pool_taps=4)


def _job(rng, M, K, N, **kw):
    x = rng.integers(-128, 128, (M, K))
    w = rng.integers(-128, 128, (N, K))
    w_zp = rng.integers(-128, 128, N)
    acc = linear(x, w, 3, w_zp)
    job = GemmJob(name="g", x=x, w=w, x_signed=True, x_zero_point=3, w_zero_point=w_zp, out_bytes=4,
                  requant=_requant(rng, acc, "half_even", -1000, 1000), **kw)
    return job


@pytest.mark.parametrize("M, K, N", [
    (50, 30, 13),     # K not a multiple of C, 8 steps = a whole bank; N > param channels; 13 row chunks
    (7, 5, 3),        # everything smaller than one tile
    (33, 8, 16),      # two tiles per bank: 2 chunks, both resident
    (9, 4, 40),       # many weight chunks, few rows
])
def test_tiling_beyond_buffers(M, K, N):
    rng = np.random.default_rng(M * K * N)
    job = _job(rng, M, K, N)
    prog, got = _run_job(TINY, job)
    np.testing.assert_array_equal(got, _gemm_expected(job))
    banks = [pk[2] for pk in prog.packets if pk[0] & 0xFF == 0x02]
    assert banks == [j % 2 for j in range(len(banks))]    # load l in bank l mod 2
    assert _waits(prog.packets) == []


def test_tiling_loop_orders():
    rng = np.random.default_rng(9)
    # 3 weight chunks (more than the banks), 16 row chunks of half the activation buffer: resending
    # weights (16 x 96 words) costs more than resending activations (3 x 256): weight chunks
    # outside, activations reloaded per chunk
    many_rows = _job(rng, 64, 16, 24)
    # K = 4: 3 weight chunks (2 tiles each: the parameter channels), 24 words in all; 4 row
    # chunks of 16 rows: resending the weights (4 x 24 words) costs less than resending the
    # activations (3 x 64): row chunks outside, weights reloaded per row chunk
    few_rows = _job(rng, 64, 4, 24)
    for job, loads in ((many_rows, (3, 48)), (few_rows, (12, 4))):
        prog, got = _run_job(TINY, job)
        np.testing.assert_array_equal(got, _gemm_expected(job))
        count = lambda op: sum(1 for pk in prog.packets if pk[0] & 0xFF == op)
        assert (count(0x02), count(0x05)) == loads
        assert _waits(prog.packets) == []


def _waits(packets):
    """The write packets that would wait for the RUN before them (the model's
    :class:`intdeploy.sim.accel_model.Overlap`: behind a RUN with only buffer writes between, meeting its
    entries)."""
    overlap, waits = Overlap(), []
    for k, pk in enumerate(packets):
        overlap.packet(pk, True, 0)
        if overlap.last == "meets":
            waits.append(k)
    return waits


def test_tiling_thresholds_beyond_threshold_channels():
    rng = np.random.default_rng(10)
    job = _job(rng, 10, 6, 19)
    acc = linear(job.x, job.w, job.x_zero_point, job.w_zero_point)
    job.requant = None
    job.thresholds = np.sort(rng.integers(int(acc.min()), int(acc.max()), (19, 7)), axis=1)
    job.negate = rng.integers(0, 2, 19).astype(bool)
    job.out_bytes, job.out_signed = 1, False
    _, got = _run_job(TINY, job)
    np.testing.assert_array_equal(got, _gemm_expected(job))


def test_tiling_add_small_residual_buffer_and_pool():
    rng = np.random.default_rng(11)
    job = _job(rng, 24, 6, 9)
    job.add = AddParams.nemo(3, 5, 2)
    job.residual = rng.integers(0, 256, (24, 9))
    job.residual_signed = False
    _, got = _run_job(TINY, job)
    np.testing.assert_array_equal(got, _gemm_expected(job))
    job = _job(rng, 24, 6, 9)
    job.requant = RequantParams(mult=1, shift=9, lo=-256, hi=255)
    job.pool = Pool(mode="avg_tflite", taps=4, lo=-50, hi=60)
    job.add = AddParams.nemo(1, 1, 1, lo=-256, hi=255)
    job.residual = rng.integers(-128, 128, (24, 9))
    job.residual_signed = True
    _, got = _run_job(TINY, job)
    np.testing.assert_array_equal(got, _gemm_expected(job))


def test_consecutive_runs_never_share_entries():
    """No write the driver sends behind a RUN meets the entries that RUN reads (so the
    accelerator never makes it wait): the digits network layer by layer and fused, on the default
    buffers and on small ones (many RUNs, strips with an add; a half of the activation buffer
    holds a strip: else nothing can overlap), and GEMMs tiled over TINY buffers
    with an add and pooling. And the writes that can overlap a RUN are there: most RUNs but the
    last of a program are followed by a write."""
    from intdeploy.sim.soak import random_network
    model = model_file.load(digits.MODEL_FILE)
    _, _, x_test, _ = digits.load_split()
    golden = IntegerDeployable(model).run(x_test[:8], trace=True)
    programs = []
    # half of it holds one conv2 strip (60 entries) and one pooling window of conv2 rows (4 x 18)
    small = _soak_info(act_depth=160, residual_depth=16)
    for info in (P.Info(), small):
        d = Driver(info)
        for fuse in (False, True):
            programs += [d.compile_group(model, g, golden).packets for g in d.plan(model, fuse)]
    for seed in range(40):
        net, x = random_network(seed)
        if [la.name for la in net.layers][1:3] == ["conv2", "res"]:
            break
    ref = IntegerDeployable(net).run(x, trace=True)
    d = Driver(small, conv_strips="always")
    programs += [d.compile_group(net, g, ref).packets for g in d.plan(net, True)]
    rng = np.random.default_rng(11)
    job = _job(rng, 24, 6, 9)
    job.add = AddParams.nemo(3, 5, 2)
    job.residual = rng.integers(0, 256, (24, 9))
    programs.append(Driver(TINY).compile_gemm(job).packets)
    followed = runs = 0
    for packets in programs:
        assert _waits(packets) == []
        ops = [pk[0] & 0xFF for pk in packets]
        at = [k for k, op in enumerate(ops) if op == P.OPCODES["RUN"]]
        runs += len(at) - 1
        followed += sum(1 for k in at[:-1] if P.writes(packets[k + 1]) is not None)
    assert runs > 50 and followed > 0.9 * runs, (followed, runs)


@pytest.mark.parametrize("zp", [5, 100])         # 100 is not a 4-bit weight: K padding uses 0
def test_k_padding_is_exact_with_any_weight_zero_point(zp):
    rng = np.random.default_rng(zp)
    info = P.Info(**{**TINY.__dict__, "weight_bits": 4})
    job = GemmJob(name="g", x=rng.integers(0, 256, (6, 5)), w=rng.integers(-8, 8, (3, 5)), x_signed=False,
                  x_zero_point=77, w_zero_point=np.full(3, zp), requant=RequantParams(mult=1, shift=0), out_bytes=4)
    prog, got = _run_job(info, job)
    np.testing.assert_array_equal(got, linear(job.x, job.w, 77, zp))


# --- refusals --------------------------------------------------------------------------------------------

K_MAX = (INT32_MAX // (255 * 127))       # largest K whose worst case 255 * 127 * K fits int32


def _overflow_job(k, bias=0):
    return GemmJob(name="wide", x=np.zeros((1, k), dtype=np.int64), w=np.full((1, k), 127), x_signed=False,
                   x_zero_point=0, w_zero_point=np.zeros(1, dtype=np.int64),
                   requant=RequantParams(mult=1, shift=0, bias=bias), out_bytes=4)


def test_accumulator_limit_accepted_at_k_max_refused_above():
    info = P.Info(rows=1, cols=64, weight_depth=1100, act_depth=1100)
    d = Driver(info)
    d.compile_gemm(_overflow_job(K_MAX))
    with pytest.raises(ValueError, match=r"layer 'wide': accumulator needs 33 bits, hardware has 32"):
        d.compile_gemm(_overflow_job(K_MAX + 1))
    headroom = INT32_MAX - 255 * 127 * K_MAX
    d.compile_gemm(_overflow_job(K_MAX, bias=headroom))
    with pytest.raises(ValueError, match="accumulator"):
        d.compile_gemm(_overflow_job(K_MAX, bias=headroom + 1))        # acc + bias would wrap


def test_mac_layer_overflow_refused_before_anything_is_sent():
    w = np.full((1, 1000), 127, dtype=np.int8)
    layer = MacLayer(kind="linear", name="fc", inputs=("input",), weight=w,
                     requant=RequantParams(mult=1, shift=0), dtype="int32")
    model = IntegerModel(input=InputSpec(shape=(1000,)), layers=(layer,), outputs=("fc",))
    # a bias that makes acc + bias overflow, set after the model file's own (identical) check
    object.__setattr__(layer.requant, "bias", np.array(INT32_MAX - 1000))
    calls = []

    class Counting(ModelEngine):
        def execute(self, packets):
            calls.append(len(packets))
            return super().execute(packets)

    info = P.Info(rows=1, cols=64, weight_depth=1100, act_depth=1100)
    with pytest.raises(ValueError, match=r"layer 'fc' \(linear\): accumulator needs 33 bits"):
        run_network(model, np.zeros((1, 1000), dtype=np.int64), Counting(info))
    assert calls == [1]                  # INFO only


def test_padded_conv_range_includes_the_zero_point():
    # input range [1, 255], zero point 0: padded taps hold 0, so a -128 weight can meet x = 0 (product 0)
    # instead of x = 1 (-128). 66312 weights 127 and 243 weights -128 fit int32 only without the padding.
    cin = 7395
    spec = InputSpec(shape=(1, 1, cin), dtype="uint8", zero_point=0, lo=1, hi=255)
    layer = MacLayer(kind="conv2d", name="c", inputs=("input",), weight=np.zeros((1, 3, 3, cin), dtype=np.int8),
                     padding=((1, 1), (1, 1)), requant=RequantParams(mult=1, shift=0), dtype="int32")
    model = IntegerModel(input=spec, layers=(layer,), outputs=("c",))
    w = np.full(9 * cin, 127, dtype=np.int8)
    w[66312:] = -128
    assert 255 * 127 * 66312 - 128 * 243 <= INT32_MAX < 255 * 127 * 66312
    object.__setattr__(layer, "weight", w.reshape(1, 3, 3, cin))          # after the model file's check
    info = P.Info(rows=1, cols=64, weight_depth=1100, act_depth=1100)
    with pytest.raises(ValueError, match=r"layer 'c' \(conv2d\): accumulator needs 33 bits"):
        Driver(info).check(model)


def test_k_beyond_a_weight_bank():
    info = P.Info(rows=4, cols=4, weight_depth=4, act_depth=64)
    rng = np.random.default_rng(0)
    Driver(info).compile_gemm(_job(rng, 2, 16, 4))
    with pytest.raises(ValueError, match=r"layer 'g': K = 17 needs 5 steps .*largest K = 16"):
        Driver(info).compile_gemm(_job(rng, 2, 17, 4))


def _refusal_models():
    rng = np.random.default_rng(12)
    spec8 = InputSpec(shape=(4, 4, 2), dtype="int8")
    w = rng.integers(-8, 8, (4, 2, 2, 2)).astype(np.int8)
    conv = dict(kind="conv2d", name="c", inputs=("input",), weight=w, dtype="int8",
                requant=RequantParams(mult=1, shift=4, lo=-128, hi=127))
    th = Threshold(np.sort(rng.integers(-50, 50, (4, 7)), axis=1), np.zeros(4, dtype=bool))
    pool = lambda **kw: IntegerModel(input=spec8, layers=(MacLayer(**conv), PoolLayer(
        name="p", inputs=("c",), dtype="int8", **kw)), outputs=("p",))
    wide = IntegerModel(input=spec8, layers=(
        MacLayer(**conv), AddLayer(name="s", inputs=("c", "c"), params=AddParams.nemo(1 << 20, 1 << 20, 0),
                                   dtype="int32"),
        RequantLayer(name="r", inputs=("s",), requant=RequantParams(mult=1, shift=21, lo=-128, hi=127),
                     dtype="int8")), outputs=("r",))
    per_channel_add = AddParams(branches=(RequantParams(mult=np.ones(4, dtype=np.int64), shift=0),
                                          RequantParams(mult=1, shift=0)), output=RequantParams(mult=1, shift=1))
    return [
        ("Q = 3", P.Info(**{**SMALL.__dict__, "max_q": 2}), IntegerModel(input=spec8, layers=(
            MacLayer(**{**conv, "requant": None, "threshold": th, "dtype": "uint8"}),), outputs=("c",))),
        ("4-bit weights", P.Info(**{**SMALL.__dict__, "weight_bits": 4}), IntegerModel(input=spec8, layers=(
            MacLayer(**{**conv, "weight": np.full((4, 2, 2, 2), 9, dtype=np.int8)}),), outputs=("c",))),
        ("at most 4", P.Info(**{**SMALL.__dict__, "max_pool_taps": 4}), pool(mode="max", kernel=(3, 3))),
        ("largest d is 16", SMALL, pool(mode="avg_nemo", kernel=(2, 2), d=17)),
        ("clamps only in avg_tflite", SMALL, pool(mode="avg_nemo", kernel=(2, 2), d=8, lo=-20)),
        ("per-channel", SMALL, IntegerModel(input=spec8, layers=(MacLayer(**conv), AddLayer(
            name="s", inputs=("c", "c"), params=per_channel_add, dtype="int16")), outputs=("s",))),
        ("int8 or uint8", SMALL, IntegerModel(input=InputSpec(shape=(4, 4, 2), dtype="int16"),
                                              layers=(MacLayer(**conv),), outputs=("c",))),
        ("wider than 16 bits", SMALL, wide),
        ("threshold channels", P.Info(**{**SMALL.__dict__, "threshold_channels": 2}), IntegerModel(
            input=spec8, layers=(MacLayer(**{**conv, "requant": None, "threshold": th, "dtype": "uint8"}),),
            outputs=("c",))),
    ]


@pytest.mark.parametrize("reason, info, model", _refusal_models(), ids=[r[0] for r in _refusal_models()])
def test_refusals_name_layer_and_reason(reason, info, model):
    with pytest.raises(ValueError) as e:
        Driver(info).check(model)
    msg = str(e.value)
    assert reason in msg and "layer '" in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("mode, k, stride, padding", [
    ("avg_tflite", 3, 1, ((1, 1), (1, 1))),      # SAME: edge windows of 4 and 6 real taps
    ("avg_tflite", 2, 2, ((0, 1), (0, 1))),
    ("avg_tflite", 5, 1, ((2, 2), (2, 2))),      # 25 taps, six different counts
    ("avg_tflite", 7, 7, ((0, 0), (0, 0))),      # 49 taps: more than the pooling unit's
    ("avg_nemo", 6, 1, ((0, 0), (0, 0))),        # 36 taps, Eq. 25
    ("max", 3, 2, ((1, 1), (1, 1))),             # padding with the input's minimum
])
def test_padded_and_large_pools_equal_golden(mode, k, stride, padding):
    """Pools the pooling unit cannot take as they are: padded average pools and average pools of
    more taps than it has run as window-sum GEMMs (a divisor per number of real taps), a padded max
    pool on the unit with the input's minimum as padding; every element equals golden."""
    extra = dict(lo=-100, hi=120) if mode == "avg_tflite" else dict(d=12) if mode == "avg_nemo" else {}
    layer = PoolLayer(name="p", inputs=("x",), mode=mode, kernel=(k, k), stride=(stride, stride), padding=padding,
                      dtype="int8", **extra)
    model = IntegerModel(input=InputSpec(name="x", shape=(7, 7, 3), dtype="int8"), layers=(layer,), outputs=("p",))
    x = np.random.default_rng(k).integers(-128, 128, (4, 7, 7, 3))
    out, _ = run_network(model, x, ModelEngine(SMALL))
    np.testing.assert_array_equal(out["p"], IntegerDeployable(model).run(x))


def test_split_needs_8_bit_weights():
    rng = np.random.default_rng(13)
    spec, layers, x = _two_branches(rng, (0, 0), "uint8")
    layers.append(AddLayer(name="sum", inputs=("a", "b"), params=AddParams.nemo(7302, 16384, 14), dtype="uint16"))
    layers.append(RequantLayer(name="act", inputs=("sum",), dtype="uint8",
                               requant=RequantParams(mult=6973, shift=13, lo=0, hi=255)))
    model = IntegerModel(input=spec, layers=tuple(layers), outputs=("act",))
    d = Driver(P.Info(**{**SMALL.__dict__, "weight_bits": 4}))
    with pytest.raises(ValueError, match=r"layer 'act' \(requant\).*8-bit weights"):
        d.compile(model, model.layer("act"), {"sum": np.zeros((1, 4, 4, 6), dtype=np.int64)})


def test_bad_images():
    model, x = _conv_model(np.random.default_rng(0))
    for bad, what in ((x[..., :2], "shape"), (x.astype(float), "integer"), (x * 0 + 500, "range")):
        with pytest.raises(ValueError, match="images"):
            run_network(model, bad, ModelEngine(SMALL))


# --- engines, errors, comparison ---------------------------------------------------------------------

class _Corrupting(ModelEngine):
    """Flips one bit of one result byte of the ``nth`` RUN response of a chosen call."""

    def __init__(self, info, call, nth=0, byte=0):
        super().__init__(info)
        self.calls, self.call, self.nth, self.byte = 0, call, nth, byte

    def execute(self, packets):
        rs = super().execute(packets)
        if self.calls == self.call:
            runs = [r for r in rs if r.opcode == 0x07]
            r = runs[self.nth]
            r.payload[self.byte // 4] ^= 1 << (8 * (self.byte % 4))
        self.calls += 1
        return rs


def test_one_engine_call_per_layer_and_mismatch_localised():
    model = model_file.load(digits.MODEL_FILE)
    _, _, x_test, _ = digits.load_split()
    x = x_test[:4]
    golden = IntegerDeployable(model).run(x, trace=True)
    # call 0 is INFO; conv1 = 1, conv2 = 2, add.sum = 3: corrupt byte 2*13 = element 13 (tile 0), low byte
    eng = _Corrupting(P.Info(), call=3, byte=26)
    out, stats = run_network(model, x, eng)
    assert eng.calls == 1 + sum(1 for layer in model.layers if layer.kind != "flatten")
    m = first_mismatch(model, golden, out)
    assert m.layer == "add.sum" and m.count == 1
    assert m.index == (0, 0, 1, 5) and m.channel == 5                  # element 13 = pixel 1, channel 5
    assert m.golden == golden["add.sum"][0, 0, 1, 5] and m.actual == m.golden ^ 1
    line = format_mismatch(m)
    assert "add.sum" in line and str(m.golden) in line and str(m.actual) in line
    cmp = dict((n, d) for n, _, d, _ in compare_outputs(model, golden, out))
    assert cmp["conv2"] == 0 and cmp["add.sum"] == 1
    assert format_mismatch(None) == "all layers match"


class _FromReset(ModelEngine):
    """An engine that starts every call from power-up, as the RTL engine does."""

    def execute(self, packets):
        self.model.power_up()
        return super().execute(packets)


def test_each_layer_program_is_self_contained():
    model = model_file.load(digits.MODEL_FILE)
    _, _, x_test, _ = digits.load_split()
    golden = IntegerDeployable(model).run(x_test[:8], trace=True)
    out, stats = run_network(model, x_test[:8], _FromReset(P.Info(rows=4, cols=8, bus_width=64)))
    assert first_mismatch(model, golden, out) is None
    assert all(s.mac_cycles == s.mac_steps for s in stats["layers"])


def test_engine_status_counters_checked():
    class Lying(ModelEngine):
        def execute(self, packets):
            rs = super().execute(packets)
            rs[-1].payload[7] += 1                       # one MAC step too many in the last STATUS
            return rs

    model, x = _conv_model(np.random.default_rng(0))
    with pytest.raises(EngineError, match=r"layer 'conv': STATUS reports \d+ MAC steps"):
        run_network(model, x, Lying(SMALL))


def test_engine_error_names_layer():
    class Failing(ModelEngine):
        def execute(self, packets):
            rs = super().execute(packets)
            for r in rs:
                if r.opcode == 0x07:
                    r.status, r.payload = 5, []
            return rs

    model, x = _conv_model(np.random.default_rng(0))
    with pytest.raises(EngineError, match=r"layer 'conv'.*RUN.*BAD_PARAM"):
        run_network(model, x, Failing(SMALL))


def _single_layer(requant, x_values, in_dtype="int16"):
    layer = RequantLayer(name="rq", inputs=("input",), requant=requant, dtype="int32")
    model = IntegerModel(input=InputSpec(shape=(len(x_values),), dtype=in_dtype), layers=(layer,), outputs=("rq",))
    x = np.array([x_values])
    return model, IntegerDeployable(model).run(x, trace=True)


def test_mismatch_cause_classifier():
    # rounding tie: 12 * 1 / 2**3 = 1.5 exactly
    model, g = _single_layer(RequantParams(mult=1, shift=3, rounding="half_even"), [12, 13, 4, 100])
    bad = {k: v.copy() for k, v in g.items()}
    bad["rq"][0, 0] += 1
    assert first_mismatch(model, g, bad).cause == "rounding tie"
    bad = {k: v.copy() for k, v in g.items()}
    bad["rq"][0, 1] += 1
    assert first_mismatch(model, g, bad).cause == "unknown"
    # saturation: golden at the clamp
    model, g = _single_layer(RequantParams(mult=1, shift=0, lo=-5, hi=5), [100, 1])
    bad = {k: v.copy() for k, v in g.items()}
    bad["rq"][0, 0] = 100
    assert first_mismatch(model, g, bad).cause == "saturation"
    # tflite double rounding tie in RoundingDivideByPOT: (x * 2**30 * 2 + 2**30) >> 31 then / 2
    model, g = _single_layer(RequantParams(mult=1 << 30, shift=32, rounding="tflite"), [3, 4])
    bad = {k: v.copy() for k, v in g.items()}
    bad["rq"][0, 0] -= 1
    assert first_mismatch(model, g, bad).cause == "rounding tie"
    # overflow/wrap: an accumulator above 2**30
    w = np.full((1, 40000), 127, dtype=np.int8)
    layer = MacLayer(kind="linear", name="fc", inputs=("input",), weight=w,
                     requant=RequantParams(mult=1, shift=0), dtype="int32")
    model = IntegerModel(input=InputSpec(shape=(40000,)), layers=(layer,), outputs=("fc",))
    g = IntegerDeployable(model).run(np.full((1, 40000), 255), trace=True)
    bad = {k: v.copy() for k, v in g.items()}
    bad["fc"][0, 0] ^= 1 << 31
    m = first_mismatch(model, g, bad)
    assert m.cause == "overflow/wrap" and m.layer == "fc"


def test_an_accelerator_of_another_protocol_version_is_refused():
    """An engine whose INFO reports another protocol version (an accelerator built from an older
    tree: version 1 placed w_zero_point where version 2 has the rounding field's third bit) is
    refused before any packet is sent, in one line naming both versions."""
    class OldEngine(ModelEngine):
        def execute(self, packets):
            rs = super().execute(packets)
            return [dataclasses.replace(r, payload=[1] + list(r.payload[1:])) if r.opcode == P.OPCODES["INFO"] else r
                    for r in rs]
    model = model_file.load(digits.MODEL_FILE)
    engine = OldEngine(P.Info())
    with pytest.raises(EngineError, match=r"^engine: INFO reports protocol version 1; this host speaks version 2 "):
        run_network(model, digits.load_split()[2][:1], engine)
    assert engine.execute([P.info()])[0].payload[0] == 1 and P.Info().version == 2
