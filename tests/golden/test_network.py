"""The four NEMO representations and the converter: agreement within the RQ bound, accuracy,
exactness against an independent Python-int reference, and the converter's refusals."""

from fractions import Fraction

import numpy as np
import pytest

from intdeploy.golden import digits
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import AddLayer, IntegerModel, MacLayer, RequantLayer, load, same_model
from intdeploy.golden.network import (INPUT, Add, AvgPool2d, BatchNorm, Conv2d, ConvertOptions, Deployment, Flatten,
                                      FullPrecision, Linear, MaxPool2d, Network, accuracy, agreement, convert)
from intdeploy.golden.requantizer import RequantParams

OPTIONS = {
    "default": None,
    "symmetric-weights": ConvertOptions(weights="symmetric"),
    "thresholds-4bit": ConvertOptions(act_bits=4),
    "nemo-rf16": ConvertOptions(eta=1 / 16),          # NEMO's default requantization_factor
    "percentile": ConvertOptions(calibration=99.9),
}


@pytest.fixture(scope="module")
def split():
    return digits.load_split()


@pytest.fixture(scope="module", params=list(OPTIONS))
def deployment(request):
    return digits.convert(OPTIONS[request.param])


@pytest.fixture(scope="module")
def default():
    return digits.convert()


def test_integer_within_rq_bound_layer_by_layer(deployment, split):
    rows = agreement(deployment, split[2])
    assert [r.name for r in rows] == [layer.name for layer in deployment.model.layers]
    for r in rows:
        assert r.within, r
        assert r.iso_max_diff <= r.bound, r
    thresholds = {layer.name for layer in deployment.model.layers
                  if isinstance(layer, MacLayer) and layer.threshold is not None}
    assert bool(thresholds) == (deployment.options.act_bits <= deployment.options.threshold_bits)
    for r in rows:
        if r.name in thresholds or r.kind in ("avgpool2d", "flatten"):
            assert r.iso_max_diff == 0, r        # exact operators: thresholds (Eq. 19-20), pooling


def test_bound_check_catches_a_wrong_multiplier(default, split):
    # A multiplier off by 8 eta (relative) must push some elements outside the bound.
    model = default.model
    eta = default.options.eta
    layers = []
    for layer in model.layers:
        if layer.name == "conv2":
            rq = layer.requant
            mult = np.round(rq.mult * (1 + 8 * eta)).astype(np.int64)
            layer = MacLayer(kind=layer.kind, name=layer.name, inputs=layer.inputs, weight=layer.weight,
                             weight_zero_point=layer.weight_zero_point, input_zero_point=layer.input_zero_point,
                             stride=layer.stride, padding=layer.padding, dtype=layer.dtype, eps=layer.eps,
                             requant=RequantParams(mult=mult, shift=rq.shift, offset=rq.offset, lo=rq.lo, hi=rq.hi))
        layers.append(layer)
    bad = IntegerModel(input=model.input, layers=tuple(layers), outputs=model.outputs)
    dep = Deployment(default.full_precision, default.fake_quantized, default.quantized, IntegerDeployable(bad),
                     default.options)
    rows = {r.name: r for r in agreement(dep, split[2])}
    assert not rows["conv2"].within
    assert rows["conv1"].within


def test_requantizers_meet_eq14(deployment):
    """Every realized requantization factor has relative error <= eta / 2 (NEMO's rounding of
    D * ratio, with D from Eq. 14), checked exactly with rationals."""
    eta = Fraction(deployment.options.eta)
    qd = deployment.quantized
    checked = 0
    for layer in deployment.model.layers:
        node = qd.nodes[layer.name]
        if isinstance(layer, AddLayer):
            es = Fraction(node.eps)
            d = int(layer.params.output.shift)
            for src, br in zip(layer.inputs, layer.params.branches):
                ratio = Fraction(qd.eps(src)) / es
                assert abs(Fraction(int(br.mult), 1 << d) - ratio) <= eta / 2 * ratio
                checked += 1
        elif node.factor is not None:
            rq = layer.requant
            c = node.factor.shape[0]
            for m, s, f in zip(np.broadcast_to(rq.mult, c), np.broadcast_to(rq.shift, c), node.factor):
                f = Fraction(float(f))
                # factor is a float product; allow its rounding (1e-12 relative) on top.
                assert abs(Fraction(int(m), 1 << int(s)) - f) <= (eta / 2 + Fraction(1, 10 ** 12)) * abs(f)
                checked += 1
    assert checked > 0


def test_accuracy_float_fakequant_integer(default, split):
    x_test, y_test = split[2], split[3]
    fp = accuracy(default.full_precision.run(x_test / 16.0), y_test)
    fq = accuracy(default.fake_quantized.run(x_test / 16.0), y_test)
    qd = accuracy(default.quantized.run(x_test / 16.0), y_test)
    iq = accuracy(IntegerDeployable(load(digits.MODEL_FILE)).run(x_test), y_test)
    assert fp >= 0.97
    for a in (fq, qd, iq):
        assert abs(a - fp) <= 0.02


def test_low_bit_thresholds_accuracy(split):
    dep = digits.convert(ConvertOptions(act_bits=4))
    fp = accuracy(dep.full_precision.run(split[2] / 16.0), split[3])
    # 4-bit post-training quantization without fine-tuning costs a few points.
    assert abs(accuracy(dep.integer.run(split[2]), split[3]) - fp) <= 0.05


def test_committed_model_equals_converter_output():
    """The committed model file is what the converter makes of the committed float parameters."""
    assert same_model(load(digits.MODEL_FILE), digits.convert().model)


# --- an independent reference in Python integers -------------------------------------------------

def _rq(v, c, p):
    """The requantizer written out for one value of channel ``c``: floor((v + bias) * mult + offset) /
    2**shift) + zero_point, clipped; Python ints, floor division."""
    assert p.rounding == "floor"
    f = {k: int(getattr(p, k)[c] if getattr(p, k).ndim else getattr(p, k))
         for k in ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi")}
    t = v + f["bias"]
    assert -2 ** 31 <= t < 2 ** 31
    y = (t * f["mult"] + f["offset"]) // 2 ** f["shift"] + f["zero_point"]
    return min(max(y, f["lo"]), f["hi"])


def _reference(model, image):
    """The digits model on one image, in nested lists of Python ints, from the model's fields."""
    t = {model.input.name: image.tolist()}
    for layer in model.layers:
        x = t[layer.inputs[0]]
        if isinstance(layer, MacLayer) and layer.kind == "conv2d":
            w = layer.weight.tolist()
            zw = np.broadcast_to(layer.weight_zero_point, (len(w),)).tolist()
            (pt, _), (pl, _) = layer.padding
            h, wd = len(x), len(x[0])
            cout, kh, kw, cin = layer.weight.shape
            out = [[[0] * cout for _ in range(wd)] for _ in range(h)]
            for i in range(h):
                for j in range(wd):
                    for o in range(cout):
                        acc = 0
                        for a in range(kh):
                            for b in range(kw):
                                r, s = i + a - pt, j + b - pl
                                if 0 <= r < h and 0 <= s < wd:     # padding holds the zero point: adds 0
                                    for c in range(cin):
                                        acc += (x[r][s][c] - layer.input_zero_point) * (w[o][a][b][c] - zw[o])
                        out[i][j][o] = _rq(acc, o, layer.requant)
        elif isinstance(layer, MacLayer):
            w = layer.weight.tolist()
            zw = np.broadcast_to(layer.weight_zero_point, (len(w),)).tolist()
            out = [_rq(sum((xv - layer.input_zero_point) * (wv - zw[o]) for xv, wv in zip(x, w[o])), o, layer.requant)
                   for o in range(len(w))]
        elif isinstance(layer, AddLayer):
            p = layer.params
            y = t[layer.inputs[1]]
            out = [[[_rq(_rq(x[i][j][c] - p.in_zero_points[0], c, p.branches[0])
                         + _rq(y[i][j][c] - p.in_zero_points[1], c, p.branches[1]), c, p.output)
                     for c in range(len(x[0][0]))] for j in range(len(x[0]))] for i in range(len(x))]
        elif isinstance(layer, RequantLayer):
            out = [[[_rq(v, c, layer.requant) for c, v in enumerate(px)] for px in row] for row in x]
        elif layer.kind == "avgpool2d":
            (kh, kw), (sh, sw), d = layer.kernel, layer.stride, layer.d
            factor = 2 ** d // (kh * kw)                      # report Eq. 25
            out = [[[factor * sum(x[i * sh + a][j * sw + b][c] for a in range(kh) for b in range(kw)) // 2 ** d
                     for c in range(len(x[0][0]))]
                    for j in range((len(x[0]) - kw) // sw + 1)] for i in range((len(x) - kh) // sh + 1)]
        else:
            assert layer.kind == "flatten"
            out = [v for row in x for px in row for v in px]
        t[layer.name] = out
    return t


def test_integer_deployable_equals_python_int_reference(split):
    model = load(digits.MODEL_FILE)
    images = split[2][:3]
    trace = IntegerDeployable(model).run(images, trace=True)
    for n, image in enumerate(images):
        ref = _reference(model, image)
        for layer in model.layers:
            np.testing.assert_array_equal(trace[layer.name][n], np.array(ref[layer.name]), err_msg=layer.name)


def test_reference_sees_a_rounding_change(split):
    """The comparison above has teeth: the same model with half_up instead of floor rounding in
    conv1 gives different integers on these images."""
    model = load(digits.MODEL_FILE)
    conv1 = model.layers[0]
    rq = conv1.requant
    swapped = RequantParams(mult=rq.mult, shift=rq.shift, offset=rq.offset, lo=rq.lo, hi=rq.hi, rounding="half_up")
    layer = MacLayer(kind="conv2d", name="conv1", inputs=conv1.inputs, weight=conv1.weight,
                     weight_zero_point=conv1.weight_zero_point, stride=conv1.stride, padding=conv1.padding,
                     requant=swapped)
    other = IntegerModel(input=model.input, layers=(layer,) + model.layers[1:], outputs=model.outputs)
    images = split[2][:3]
    ref = np.array([_reference(model, im)["conv1"] for im in images])
    assert np.any(IntegerDeployable(other).run(images, trace=True)["conv1"] != ref)


# --- representations on a synthetic network with the other features -------------------------------

def _synthetic():
    rng = np.random.default_rng(3)
    gamma = rng.uniform(0.5, 2, 4)
    gamma[1] = -gamma[1]                     # a decreasing BN channel (thresholds negate it)
    layers = (
        Conv2d(name="c1", weight=rng.normal(0, 0.3, (4, 3, 3, 2)), bias=rng.normal(0, 0.2, 4), stride=1, padding=1),
        Conv2d(name="c2", inputs=("c1",), weight=rng.normal(0, 0.3, (4, 3, 3, 4)), padding=(1, 1),
               bn=BatchNorm(gamma, rng.normal(0.5, 0.2, 4), rng.normal(0, 0.3, 4), rng.uniform(0.5, 2, 4))),
        Add(name="a", inputs=("c1", "c2")),
        MaxPool2d(name="mp", inputs=("a",), kernel=(1, 3)),
        AvgPool2d(name="ap", inputs=("mp",), kernel=(3, 1)),            # K = 3: Eq. 25 is inexact
        Conv2d(name="c3", inputs=("ap",), weight=rng.normal(0, 0.3, (5, 2, 2, 4)), stride=1,
               bn=BatchNorm(rng.uniform(0.5, 2, 5), rng.normal(0.2, 0.1, 5), rng.normal(0, 0.3, 5), rng.uniform(0.5, 2, 5))),
        Flatten(name="f", inputs=("c3",)),
        Linear(name="out", inputs=("f",), weight=rng.normal(0, 0.3, (3, 20)), bias=rng.normal(0, 0.1, 3), act=None),
    )
    net = Network(input_shape=(9, 9, 2), layers=layers, input_eps=1 / 255, input_range=(0, 255))
    x = rng.integers(0, 256, (64, 9, 9, 2))
    return net, x


@pytest.mark.parametrize("opts", [ConvertOptions(), ConvertOptions(act_bits=3, weights="symmetric"),
                                  ConvertOptions(act_bits=6, threshold_bits=6, eta=2.0 ** -6)],
                         ids=["8bit", "3bit-thresholds-symmetric", "6bit-thresholds"])
def test_synthetic_network_within_bound(opts):
    net, x = _synthetic()
    dep = convert(net, x[:32] / 255.0, opts)
    kinds = {layer.kind for layer in dep.model.layers}
    assert kinds == {"conv2d", "add", "requant", "maxpool2d", "avgpool2d", "flatten", "linear"}
    for r in agreement(dep, x[32:]):
        assert r.within, r
    # Eq. 25: floor(2**d / K) / 2**d is within 2**-d of 1/K, so the pooling's relative error
    # (which the bound above uses, measured on the golden pool) is at most K / 2**d.
    for layer in dep.model.layers:
        if layer.kind == "avgpool2d":
            k = layer.kernel[0] * layer.kernel[1]
            assert 0 < dep.quantized.nodes[layer.name].eta <= k / 2 ** layer.d
    # The converted model survives the file format.
    assert isinstance(IntegerDeployable(dep.model).run(x[:2]), np.ndarray)


def test_quantized_deployable_tensors_are_eps_times_integers(default, split):
    qd = default.quantized
    trace = qd.run(split[2][:20] / 16.0, trace=True)
    for name, v in trace.items():
        q = v / qd.eps(name)
        np.testing.assert_allclose(q, np.rint(q), atol=1e-6, err_msg=name)


def test_fake_quantized_weights_and_activations(default, split):
    fq = default.fake_quantized
    for layer in default.full_precision.net.layers:
        if isinstance(layer, (Conv2d, Linear)):
            w, w_hat = layer.weight, fq.weights[layer.name]
            eps_w = default.model.layer(layer.name).weight_eps
            e = eps_w.reshape((-1,) + (1,) * (w.ndim - 1))
            # NEMO's asymmetric quantizer floors: w - w_hat in [0, eps_w) (up to float error).
            assert np.all(w - w_hat >= -1e-12) and np.all(w - w_hat < e * (1 + 1e-9))
            np.testing.assert_allclose(w_hat / e, np.rint(w_hat / e), atol=1e-6)
    trace = fq.run(split[2][:20] / 16.0, trace=True)
    for name, q in fq.acts.items():
        v = trace[name] / q.eps
        np.testing.assert_allclose(v, np.rint(v), atol=1e-6, err_msg=name)
        lo, hi = q.range
        assert v.min() >= lo - 1e-6 and v.max() <= hi + 1e-6


def test_full_precision_conv_matches_loops():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 6, 3))
    w = rng.normal(size=(4, 3, 2, 3))
    net = Network(input_shape=(5, 6, 3), layers=(
        Conv2d(name="c", weight=w, stride=(2, 1), padding=((1, 0), (0, 1)), act=None),))
    got = FullPrecision(net).run(x)
    xp = np.pad(x, ((0, 0), (1, 0), (0, 1), (0, 0)))
    ref = np.zeros((2, 2, 6, 4))        # OH = (5 + 1 - 3) // 2 + 1, OW = (6 + 1 - 2) // 1 + 1
    assert got.shape == ref.shape
    for n in range(2):
        for i in range(2):
            for j in range(6):
                for o in range(4):
                    ref[n, i, j, o] = np.sum(xp[n, 2 * i:2 * i + 3, j:j + 2, :] * w[o])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


# --- refusals -----------------------------------------------------------------------------------

def test_convert_refuses_accumulator_overflow():
    net = Network(input_shape=(40000,), input_eps=1 / 255, input_range=(0, 255), layers=(
        Linear(name="wide", inputs=(INPUT,), weight=np.ones((2, 40000)), act=None),))
    with pytest.raises(ValueError, match=r"layer 'wide': accumulator needs 33 bits, hardware has 32"):
        convert(net, np.ones((1, 40000)))


def test_network_rejects_branch_from_non_activation():
    with pytest.raises(ValueError, match="NEMO branches start only at an activation"):
        Network(input_shape=(4, 4, 1), layers=(
            Conv2d(name="c", weight=np.ones((1, 1, 1, 1)), act=None),
            Add(name="a", inputs=("c", "c")),))


@pytest.mark.parametrize("layers,match", [
    ((Conv2d(name="c", inputs=("nope",), weight=np.ones((1, 1, 1, 1))),), "'nope' is not 'input' or an earlier layer"),
    ((Conv2d(name="c", weight=np.ones((1, 1, 1, 2))),), "weight expects"),
    ((Conv2d(name="c", weight=np.ones((1, 1, 1, 1))), Conv2d(name="c", inputs=("c",), weight=np.ones((1, 1, 1, 1)))),
     "used twice"),
])
def test_network_validation(layers, match):
    with pytest.raises(ValueError, match=match):
        Network(input_shape=(4, 4, 1), layers=layers)


def test_integer_deployable_checks_its_input(default):
    run = default.integer.run
    with pytest.raises(ValueError, match=r"x: values must be in the input range \[0, 16\]"):
        run(np.full((1, 8, 8, 1), 17))
    with pytest.raises(ValueError, match="x: expected an integer array"):
        run(np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 8, 8, 1\)"):
        run(np.zeros((1, 8, 8), dtype=np.int64))
