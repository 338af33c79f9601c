"""The model file: exact round trip, and one clear ModelFormatError for every kind of bad file."""

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden import digits
from intdeploy.golden.add import AddParams
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import (AddLayer, FlattenLayer, InputSpec, IntegerModel, MacLayer, ModelFormatError,
                                         PoolLayer, RequantLayer, Threshold, load, same_model, save)
from intdeploy.golden.network import ConvertOptions
from intdeploy.golden.requantizer import RequantParams


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    """(manifest, arrays) of the committed digits model, re-saved to a scratch directory."""
    d = tmp_path_factory.mktemp("digits")
    path = save(load(digits.MODEL_FILE), d / "m.json")
    with np.load(d / "m.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(path.read_text()), arrays


@pytest.fixture(scope="module")
def threshold_files(tmp_path_factory):
    """(manifest, arrays) of the digits network converted with 4-bit activations (thresholds)."""
    d = tmp_path_factory.mktemp("thr")
    path = save(digits.convert(ConvertOptions(act_bits=4)).model, d / "t.json")
    with np.load(d / "t.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(path.read_text()), arrays


def write(directory, manifest, arrays, name="m"):
    np.savez(directory / f"{name}.npz", **arrays)
    manifest = dict(manifest, arrays=f"{name}.npz")
    path = directory / f"{name}.json"
    path.write_text(json.dumps(manifest))
    return path


def load_error(path):
    with pytest.raises(ModelFormatError) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_committed_model_round_trips_exactly(tmp_path):
    model = load(digits.MODEL_FILE)
    again = load(save(model, tmp_path / "copy.json"))
    assert same_model(model, again)
    x = digits.load_split()[2][:50]
    np.testing.assert_array_equal(IntegerDeployable(model).run(x), IntegerDeployable(again).run(x))
    # Saving the reloaded model gives the same manifest text.
    assert save(again, tmp_path / "copy2.json").read_text() == (tmp_path / "copy.json").read_text() \
        .replace('"copy.npz"', '"copy2.npz"')


def _every_feature_model():
    """A hand-made model using every kind, per-tensor and per-channel fields, all rounding
    modes, zero points, a threshold epilogue, a TFLite add and both average poolings."""
    rng = np.random.default_rng(7)
    w1 = rng.integers(-128, 128, (4, 3, 3, 2), dtype=np.int8)
    th = np.sort(rng.integers(-3000, 3000, (4, 15)), axis=1)
    w2 = rng.integers(-8, 8, (4, 1, 1, 4), dtype=np.int8)
    w3 = rng.integers(-128, 128, (3, 16), dtype=np.int8)
    layers = (
        MacLayer(kind="conv2d", name="c1", inputs=("x",), weight=w1, weight_zero_point=np.array([1, -2, 0, 5]),
                 input_zero_point=-3, stride=(1, 2), padding=((1, 0), (1, 1)), dtype="uint8",
                 threshold=Threshold(th, np.array([False, True, False, True])), eps=0.5,
                 weight_eps=np.array([0.1, 0.2, 0.3, 0.4])),
        MacLayer(kind="conv2d", name="c2", inputs=("c1",), weight=w2, weight_bits=4, dtype="int8",
                 requant=RequantParams(mult=np.array([1 << 30, 3 << 28, 1 << 29, 1 << 30]), shift=np.array([36, 37, 35, 36]),
                                       bias=np.array([5, -5, 0, 7]), zero_point=-4, lo=-128, hi=127, rounding="tflite")),
        AddLayer(name="a", inputs=("c1", "c2"), dtype="int8",
                 params=AddParams.tflite(0.05, 0, 0.02, -4, 0.06, 3)),
        RequantLayer(name="r", inputs=("a",), dtype="int16",
                     requant=RequantParams(mult=7, shift=1, offset=3, zero_point=10, lo=-300, hi=300, rounding="half_even")),
        PoolLayer(name="mp", inputs=("r",), mode="max", kernel=(2, 2), stride=(1, 1), padding=((1, 0), (0, 1)), dtype="int16"),
        PoolLayer(name="ap", inputs=("mp",), mode="avg_nemo", kernel=(2, 2), d=10, dtype="int16"),
        PoolLayer(name="at", inputs=("r",), mode="avg_tflite", kernel=(3, 2), stride=(2, 1), padding=((1, 1), (0, 0)),
                  lo=-100, hi=100, dtype="int8"),
        FlattenLayer(name="f", inputs=("ap",), dtype="int16"),
        MacLayer(kind="linear", name="l", inputs=("f",), weight=w3, input_zero_point=10, dtype="int32",
                 requant=RequantParams(mult=-(1 << 20), shift=25, bias=100, rounding="half_up"), eps=None),
    )
    return IntegerModel(input=InputSpec(shape=(6, 8, 2), dtype="int8", zero_point=-3, lo=-20, hi=20, eps=0.1, name="x"),
                        layers=layers, outputs=("l", "at"), name="every", metadata={"note": "test"})


def test_every_feature_round_trips(tmp_path):
    model = _every_feature_model()
    again = load(save(model, tmp_path / "every.json"))
    assert same_model(model, again)
    x = np.random.default_rng(1).integers(-20, 21, (5, 6, 8, 2))
    a, b = IntegerDeployable(model).run(x), IntegerDeployable(again).run(x)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    # The derived tensor ranges are sound: every value produced lies inside them.
    trace = IntegerDeployable(again).run(np.random.default_rng(2).integers(-20, 21, (64, 6, 8, 2)), trace=True)
    for name, info in again.tensors.items():
        assert info.lo <= trace[name].min() and trace[name].max() <= info.hi, name


# --- one bad file per class of mistake: the message names the field -----------------------------

def _set(path, value):
    def mutate(m, a):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(m, a):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]
    return mutate


def _array(key, fn):
    def mutate(m, a):
        if fn is None:
            del a[key]
        else:
            a[key] = fn(a[key])
    return mutate


BAD = {
    "missing key": (_delete(["layers", 3, "requant", "shift"]), "layers[3].requant.shift: required key is missing"),
    "missing top-level key": (_delete(["outputs"]), "outputs: required key is missing"),
    "wrong JSON type": (_set(["layers", 0, "weight_bits"], "8"), "layers[0].weight_bits: expected an integer"),
    "wrong weight dtype": (_array("conv1.weight", lambda v: v.astype(np.float32)), "layers[0].weight: expected an int8"),
    "wrong param dtype": (_array("conv1.requant.mult", lambda v: v.astype(np.float64)),
                          "layers[0].requant.mult: array 'conv1.requant.mult' has dtype float64"),
    "wrong weight shape": (_array("conv1.weight", lambda v: v.reshape(8, 9, 1, 1)), "layers[0].weight: array 'conv1.weight' has shape [8, 9, 1, 1]"),
    "wrong param shape": (_array("conv1.requant.mult", lambda v: v[:5]), ("layers[0].requant: ", "per-channel fields disagree")),
    "2-D param": (_array("conv1.requant.shift", lambda v: v.reshape(2, 4)), "layers[0].requant.shift: array 'conv1.requant.shift' has shape [2, 4]"),
    "shift out of range": (_set(["layers", 3, "requant", "shift"], 70), "layers[3].requant.shift: 70 is out of range; allowed [0, 62]"),
    "mult out of range": (_set(["layers", 3, "requant", "mult"], 1 << 31), "layers[3].requant.mult: 2147483648 is out of range"),
    "huge integer": (_set(["layers", 3, "requant", "offset"], 10 ** 30), "layers[3].requant.offset"),
    "lo above hi": (_set(["layers", 3, "requant", "lo"], 300), "layers[3].requant: lo, hi: lo must be <= hi"),
    "zero point out of range": (_array("conv1.weight_zero_point", lambda v: np.where(np.arange(8) == 2, 300, v)),
                                "layers[0].weight_zero_point: 300 is out of range; allowed [-128, 127]"),
    "weight outside weight_bits": (_set(["layers", 1, "weight_bits"], 4), "layers[1].weight: "),
    "unknown rounding": (_set(["layers", 3, "requant", "rounding"], "ceil"), "layers[3].requant.rounding: 'ceil' is not one of"),
    "unknown version": (_set(["version"], 2), "version: 2 is not supported; supported: 1"),
    "unknown format": (_set(["format"], "onnx"), "format: 'onnx' is not 'intdeploy-model'"),
    "unknown kind": (_set(["layers", 4, "kind"], "lstm"), "layers[4].kind: 'lstm' is not one of"),
    "unknown key": (_set(["layers", 0, "paddding"], [[1, 1], [1, 1]]), "layers[0]: unknown key 'paddding'"),
    "dangling reference": (_set(["layers", 1, "inputs"], ["nope"]), "layers[1].inputs[0]: 'nope' is not the input or an earlier layer"),
    "forward reference": (_set(["layers", 0, "inputs"], ["conv2"]), "layers[0].inputs[0]: 'conv2' is not the input or an earlier layer"),
    "dangling output": (_set(["outputs"], ["logits"]), "outputs[0]: 'logits' is not the input or a layer"),
    "wrong arity": (_set(["layers", 2, "inputs"], ["conv1"]), "layers[2].inputs: expected a list of 2"),
    "duplicate name": (_set(["layers", 1, "name"], "conv1"), "layers[1].name: 'conv1' is already used"),
    "bad name": (_set(["layers", 1, "name"], "conv 2"), "layers[1].name: 'conv 2' is not a valid name"),
    "missing npz array": (_array("conv2.weight", None), "layers[1].weight: array 'conv2.weight' is not in m.npz"),
    "accumulator overflow": (lambda m, a: m["input"].update(dtype="int32", hi=2 ** 31 - 1),
                             "layers[0].weight: accumulator needs"),
    "output dtype too small": (_set(["layers", 2, "output", "dtype"], "uint8"), "layers[2].output.dtype: values can reach 368"),
    "output shape": (_set(["layers", 0, "output", "shape"], [8, 8, 7]), "layers[0].output.shape: [8, 8, 7] differs"),
    "input zero point": (_set(["layers", 1, "input_zero_point"], 3), "layers[1].input_zero_point: 3 differs"),
    "channels": (_set(["layers", 1, "in_channels"], 4), "layers[1].weight: array 'conv2.weight' has shape [8, 3, 3, 8]"),
    "negative eps": (_set(["layers", 0, "output", "eps"], -1.0), "layers[0].output.eps"),
    "nan eps": (_set(["input", "eps"], float("nan")), "input.eps"),
    "not an object": (_set(["layers", 5], [1, 2]), "layers[5]: expected an object, got a list"),
    "layers not a list": (_set(["layers"], {}), "layers: expected a list, got an object"),
    "bad padding": (_set(["layers", 0, "padding"], [[1, 1], [1]]), "layers[0].padding[1]: expected 2 entries"),
    "kernel too large": (_set(["layers", 4, "kernel"], [16, 16]), "layers[4].kernel"),
    "pool d": (_set(["layers", 4, "d"], 1), "layers[4].d: 2**1 < kernel area 4"),
    "bias wraps": (_set(["layers", 3, "requant", "bias"], 2 ** 31 - 100), "layers[3].requant.bias: input + bias reaches"),
    "tflite shift wraps": (lambda m, a: m["layers"][3]["requant"].update(rounding="tflite", shift=1),
                           "layers[3].requant.shift: tflite rounding shifts the input left"),
    "sum_shift out of range": (_set(["layers", 2, "sum_shift"], 32), "layers[2].sum_shift: expected an integer in 0..31"),
    "sum_shift not an integer": (_set(["layers", 2, "sum_shift"], "3"), "layers[2].sum_shift: expected an integer"),
    "metadata": (_set(["metadata"], [1]), "metadata: expected an object, got a list"),
    "absolute arrays path": (_set(["arrays"], "/etc/m.npz"), "arrays: expected the .npz file name"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_file_is_one_clear_error(case, digits_files, tmp_path):
    mutate, expected = BAD[case]
    manifest, arrays = copy.deepcopy(digits_files[0]), dict(digits_files[1])
    mutate(manifest, arrays)
    path = tmp_path / "m.json"
    np.savez(tmp_path / "m.npz", **arrays)
    path.write_text(json.dumps(manifest))
    msg = load_error(path)
    for fragment in (expected,) if isinstance(expected, str) else expected:
        assert fragment in msg, msg
    if case == "shift out of range":
        assert msg == "layers[3].requant.shift: 70 is out of range; allowed [0, 62]"


def test_add_with_a_sum_shift_is_the_add_then_its_requant(tmp_path):
    """NEMO's Add and the requant layer after it as one add layer (sum_shift = d, AddParams.then):
    the file carries sum_shift, loads back the same, computes the same outputs and proves the same
    range as the two layers; a file without the key reads sum_shift 0."""
    model = load(digits.MODEL_FILE)
    by = {la.name: la for la in model.layers}
    fused = AddLayer(name="add", inputs=by["add.sum"].inputs, dtype=by["add"].dtype, eps=by["add"].eps,
                     params=by["add.sum"].params.then(by["add"].requant))
    layers = tuple(fused if la.name == "add" else la for la in model.layers if la.name != "add.sum")
    one = IntegerModel(input=model.input, layers=layers, outputs=model.outputs, name="one")
    path = save(one, tmp_path / "one.json")
    layer = json.loads(path.read_text())["layers"][2]
    assert layer["name"] == "add" and layer["sum_shift"] == 14
    assert "sum_shift" not in json.loads(Path(digits.MODEL_FILE).read_text())["layers"][2]
    back = load(path)
    assert same_model(back, one) and back.layers[2].params.sum_shift == 14
    assert model.layers[2].params.sum_shift == 0
    assert (back.tensors["add"].lo, back.tensors["add"].hi) == (model.tensors["add"].lo, model.tensors["add"].hi)
    x = digits.load_split()[2][:30]
    np.testing.assert_array_equal(IntegerDeployable(back).run(x), IntegerDeployable(model).run(x))


def test_valid_copy_loads(digits_files, tmp_path):
    # The harness above writes files load() accepts when nothing is mutated.
    model = load(write(tmp_path, *digits_files))
    assert same_model(model, load(digits.MODEL_FILE))


@pytest.mark.parametrize("where,expected", [
    ((0, 5), "layers[0].threshold.thresholds: channel 0 is not non-decreasing"),
    ((3, 0), "layers[1].threshold.thresholds: channel 3 is not non-decreasing"),
])
def test_non_monotonic_thresholds(where, expected, threshold_files, tmp_path):
    manifest, arrays = copy.deepcopy(threshold_files[0]), dict(threshold_files[1])
    layer = "conv1" if expected.startswith("layers[0]") else "conv2"
    th = arrays[f"{layer}.thresholds"].copy()
    c, i = where
    th[c, i] = th[c, i + 1] + 1
    arrays[f"{layer}.thresholds"] = th
    assert expected in load_error(write(tmp_path, manifest, arrays))


def test_threshold_dtype_and_negate(threshold_files, tmp_path):
    manifest, arrays = copy.deepcopy(threshold_files[0]), dict(threshold_files[1])
    arrays["conv1.negate"] = arrays["conv1.negate"].astype(np.int8)
    assert "layers[0].threshold.negate: array 'conv1.negate' has dtype int8; expected a bool dtype" \
        in load_error(write(tmp_path, manifest, arrays))


def test_missing_file(tmp_path):
    assert load_error(tmp_path / "absent.json") == f"{tmp_path / 'absent.json'}: file not found"


def test_not_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"format": "intdeploy-model", "version": 1,')
    assert "not valid JSON" in load_error(path)


def test_not_an_object(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("[1, 2]")
    assert load_error(path) == "manifest: expected a JSON object, got a list"


def test_missing_npz(digits_files, tmp_path):
    path = write(tmp_path, *digits_files)
    (tmp_path / "m.npz").unlink()
    assert "arrays: " in load_error(path) and "file not found" in load_error(path)


def test_truncated_npz(digits_files, tmp_path):
    path = write(tmp_path, *digits_files)
    npz = tmp_path / "m.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    assert "not a readable .npz file" in load_error(path)


def test_npz_that_is_garbage(digits_files, tmp_path):
    path = write(tmp_path, *digits_files)
    (tmp_path / "m.npz").write_bytes(b"\x00" * 100)
    assert "not a readable .npz file" in load_error(path)


@pytest.mark.parametrize("field, value", [(6, 0xFF), (10, 99), (8, 1)],
                         ids=["zip-version", "compression-method", "encrypted"])
def test_npz_with_unsupported_zip_features(digits_files, tmp_path, field, value):
    # The first central-directory entry: "version needed" (offset 6), flags (8, bit 0 =
    # encrypted), compression method (10). zipfile raises NotImplementedError or RuntimeError
    # for these, not BadZipFile; found by the model-file fuzzer.
    path = write(tmp_path, *digits_files)
    npz = tmp_path / "m.npz"
    data = bytearray(npz.read_bytes())
    at = data.index(b"PK\x01\x02") + field
    data[at:at + 2] = value.to_bytes(2, "little")
    npz.write_bytes(bytes(data))
    assert "not a readable .npz file" in load_error(path)


def test_constructed_model_is_validated_too():
    good = load(digits.MODEL_FILE)
    with pytest.raises(ModelFormatError, match=r"layers\[1\]\.inputs\[0\]: 'ghost'"):
        IntegerModel(input=good.input, layers=(good.layers[0], FlattenLayer(name="f", inputs=("ghost",))),
                     outputs=("f",))
    with pytest.raises(ValueError, match="weight: expected an int8 array"):
        MacLayer(kind="linear", name="l", inputs=("x",), weight=np.ones((2, 2)), requant=RequantParams(mult=1, shift=0))


# --- fuzzing: any mutation of a valid manifest loads or raises ModelFormatError -----------------

def _paths(v, prefix=()):
    yield prefix
    if isinstance(v, dict):
        for k, e in v.items():
            yield from _paths(e, prefix + (k,))
    elif isinstance(v, list):
        for i, e in enumerate(v):
            yield from _paths(e, prefix + (i,))


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.integers(-(2 ** 70), 2 ** 70),
    st.sampled_from([0, -1, 1, 2 ** 31, -(2 ** 31) - 1, 2 ** 47, 2 ** 63, 63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["conv1", "input", "fc", "add.sum", "conv1.weight", "conv2.requant.mult", "fc.requant.bias",
                     "floor", "tflite", "uint8", "int32", "nemo", "max", "linear", "requant", "../x.npz", "\x00"]),
)
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=8)


@pytest.fixture(scope="module")
def fuzz_dir(digits_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    np.savez(d / "m.npz", **digits_files[1])
    return d


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_manifest_loads_or_raises_model_format_error(data, digits_files, fuzz_dir):
    manifest = copy.deepcopy(digits_files[0])
    paths = [p for p in _paths(manifest) if p]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(paths), label="path")
        obj = manifest
        try:
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue            # an earlier mutation removed or replaced this path
        if data.draw(st.booleans(), label="delete"):
            del obj[path[-1]]
        else:
            obj[path[-1]] = data.draw(_JSON, label="value")
    path = fuzz_dir / "m.json"
    path.write_text(json.dumps(manifest))
    try:
        model = load(path)
    except ModelFormatError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(model, IntegerModel)


def test_worked_example_in_the_format_document(tmp_path, monkeypatch):
    """docs/model-format.md section 9: its JSON, its array table and its Python snippet describe
    the same model, and the input [1, 2, 3, 4] gives the [7, -3] worked out by hand there."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "model-format.md").read_text()
    example = doc.split("## 9. Worked example")[1].split("## 10.")[0]
    manifest = json.loads(example.split("```json")[1].split("```")[0])
    np.savez(tmp_path / "tiny.npz", **{"fc.weight": np.array([[10, -20, 30, 0], [-1, 2, -3, 4]], dtype=np.int8),
                                      "fc.requant.mult": np.array([3000, 5000]),
                                      "fc.requant.bias": np.array([100, -50])})
    (tmp_path / "tiny.json").write_text(json.dumps(manifest))
    model = load(tmp_path / "tiny.json")
    np.testing.assert_array_equal(IntegerDeployable(model).run(np.array([[1, 2, 3, 4]])), [[7, -3]])
    (tmp_path / "snippet").mkdir()
    monkeypatch.chdir(tmp_path / "snippet")
    exec(example.split("```python")[1].split("```")[0], {})
    assert same_model(load("tiny.json"), model)
