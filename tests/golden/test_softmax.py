"""golden/softmax.py: int8 softmax against the LiteRT interpreter's reference kernel, element by
element, over input scales from 1e-4 to 100, beta 0.5..2, rows with ties and rows whose small
elements fall below diff_min; the model file round trip of a softmax layer."""

import numpy as np
import pytest

from intdeploy.golden import model_file
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import InputSpec, IntegerModel, SoftmaxLayer
from intdeploy.golden.softmax import softmax, softmax_params
from intdeploy.sim.crosscheck import tflite_run


def _litert(x, scale, zp, beta):
    from ai_edge_litert import schema_py_generated as S
    o = S.SoftmaxOptionsT()
    o.beta = beta
    return tflite_run([(S.BuiltinOperator.SOFTMAX, [0], [1], S.BuiltinOptions.SoftmaxOptions, o)],
                      [("x", x.shape, S.TensorType.INT8, scale, zp), ("y", x.shape, S.TensorType.INT8, 1 / 256, -128)],
                      {}, x)


@pytest.mark.parametrize("seed", range(6))
def test_softmax_equals_litert(seed):
    rng = np.random.default_rng(seed)
    total = 0
    for trial in range(20):
        depth = int(rng.integers(2, 40))
        scale = float(np.float32([2.0 ** -4, 10 ** rng.uniform(-4, 2), rng.uniform(0.05, 2)][trial % 3]))
        beta = float([1.0, 0.5, 2.0][trial % 3])
        x = rng.integers(-128, 128, (32, depth))
        if trial % 2:
            x[:, :depth // 2] = x[:, :1]                   # ties with the row's other elements
        want = _litert(x, scale, int(rng.integers(-128, 128)), beta)
        np.testing.assert_array_equal(softmax(x, *softmax_params(beta, scale)), want)
        total += want.size
    assert total > 10_000


def test_softmax_by_hand():
    """Two equal logits share the probability: 0.5 -> 128/256 - 128 = 0; a lone maximum far above
    the rest (below diff_min) takes it all: 127, the others -128."""
    m, s, d = softmax_params(1.0, 1.0)
    np.testing.assert_array_equal(softmax(np.array([[5, 5]]), m, s, d), [[0, 0]])
    np.testing.assert_array_equal(softmax(np.array([[100, -100, -128]]), m, s, d), [[127, -128, -128]])


def test_softmax_layer_round_trip_and_checks(tmp_path):
    m, s, d = softmax_params(1.0, 0.1)
    model = IntegerModel(input=InputSpec(name="x", shape=(10,), dtype="int8"),
                         layers=(SoftmaxLayer(name="p", inputs=("x",), multiplier=m, left_shift=s, diff_min=d),),
                         outputs=("p",))
    back = model_file.load(model_file.save(model, tmp_path / "m.json"))
    assert model_file.same_model(model, back)
    x = np.random.default_rng(0).integers(-128, 128, (5, 10))
    np.testing.assert_array_equal(IntegerDeployable(back).run(x), softmax(x, m, s, d))
    with pytest.raises(ValueError, match="multiplier: 5 is out of range"):
        IntegerModel(input=model.input, layers=(SoftmaxLayer(name="p", inputs=("x",), multiplier=5, left_shift=s,
                                                              diff_min=d),), outputs=("p",))
