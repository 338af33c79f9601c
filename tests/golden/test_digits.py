"""The default network's data split, committed parameters and committed model file."""

import numpy as np

from intdeploy.golden import digits
from intdeploy.golden.model_file import MacLayer, load
from intdeploy.golden.network import FullPrecision, accuracy


def test_split_is_fixed_disjoint_and_complete():
    x_train, y_train, x_test, y_test = digits.load_split()
    assert x_train.shape == (1797 - digits.N_TEST, 8, 8, 1) and x_test.shape == (digits.N_TEST, 8, 8, 1)
    assert x_train.dtype == np.int64 and 0 <= x_train.min() and x_train.max() == 16
    assert sorted(set(y_test.tolist())) == list(range(10))
    # Together the two splits are exactly the data set, each image once.
    both = np.concatenate([x_train, x_test]).reshape(1797, -1)
    assert sorted(r.tobytes() for r in both) == sorted(r.tobytes() for r in digits._digits()[0].reshape(1797, -1))
    again = digits.load_split()
    for a, b in zip((x_train, y_train, x_test, y_test), again):
        np.testing.assert_array_equal(a, b)
    # The legacy RandomState stream is frozen by NumPy; pin its first test indices anyway.
    order = np.random.RandomState(digits.SPLIT_SEED).permutation(1797)
    np.testing.assert_array_equal(x_test[:3], digits._digits()[0][order[:3]])


def test_data_equals_scikit_learn_load_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = digits._digits()
    np.testing.assert_array_equal(x[..., 0], d.images.astype(np.int64))
    np.testing.assert_array_equal(y, d.target)


def test_float_network_accuracy():
    net = digits.float_network()
    _, _, x_test, y_test = digits.load_split()
    assert accuracy(FullPrecision(net).run(x_test / 16.0), y_test) >= 0.97
    assert [layer.name for layer in net.layers] == ["conv1", "conv2", "add", "pool", "flat", "fc"]


def test_committed_model_file_is_the_default_8bit_requantizer_model():
    model = load(digits.MODEL_FILE)
    assert model.name == "digits" and model.outputs == ("fc",)
    assert model.input.shape == (8, 8, 1) and (model.input.lo, model.input.hi) == (0, 16)
    assert model.input.eps == 1 / 16
    macs = [layer for layer in model.layers if isinstance(layer, MacLayer)]
    assert [m.name for m in macs] == ["conv1", "conv2", "fc"]
    for m in macs:
        assert m.requant is not None and m.requant.rounding == "floor" and m.weight.dtype == np.int8
    assert [model.tensors[n].dtype for n in ("conv1", "conv2", "add", "pool", "fc")] == \
        ["uint8", "uint8", "uint8", "uint8", "int8"]
