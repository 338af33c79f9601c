"""The default network: a small residual CNN for scikit-learn's bundled 8x8 handwritten digits.

Data
----
``sklearn.datasets.load_digits`` (1797 images, 8x8, one channel, pixel values 0..16, shipped with
scikit-learn, no download). The pixels are naturally integers, so the input is quantized with
``eps_in = 1/16`` and integer image = pixel value (report Sec. 3.7); the float input of the
FullPrecision network is ``pixel / 16`` in [0, 1].

The split is fixed: ``numpy.random.RandomState(0).permutation(1797)`` (the legacy generator, whose
stream NumPy keeps stable across versions); its first :data:`N_TEST` indices are the test split,
the rest the training split (also used for calibration).

Network (channels-last, NEMO layers each ending in an activation)::

    input (8, 8, 1), integer image 0..16, eps 1/16
    conv1   conv 3x3, 1 -> 8, pad 1, BN, ReLU           (8, 8, 8)
    conv2   conv 3x3, 8 -> 8, pad 1, BN, ReLU           (8, 8, 8)
    add     conv1 + conv2, ReLU                         (8, 8, 8)   residual branch from conv1
    pool    average pool 2x2                            (4, 4, 8)
    flat    flatten in (h, w, c) order                  (128,)
    fc      linear 128 -> 10 with bias                  (10,) logits

The float parameters are trained by ``scripts/train_digits.py`` (PyTorch) and committed as
``golden/models/digits_float.npz``; the IntegerDeployable model file produced from them by
:func:`convert` with the default options is committed as ``golden/models/digits.json`` + ``.npz``.
"""

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from intdeploy.golden.model_file import save
from intdeploy.golden.network import INPUT, Add, AvgPool2d, BatchNorm, Conv2d, Flatten, Linear, Network
from intdeploy.golden.network import convert as _convert

__all__ = [
    "N_TEST", "SPLIT_SEED", "MODELS_DIR", "FLOAT_PARAMS", "MODEL_FILE",
    "load_split", "float_network", "convert", "build_model_file",
]

N_TEST = 360
SPLIT_SEED = 0
MODELS_DIR = Path(__file__).resolve().parent / "models"
FLOAT_PARAMS = MODELS_DIR / "digits_float.npz"
MODEL_FILE = MODELS_DIR / "digits.json"


@functools.lru_cache(maxsize=1)
def _digits():
    """All 1797 images (int64, NHWC) and labels, read from scikit-learn's bundled data file.

    The file is read directly (it is what ``sklearn.datasets.load_digits`` parses) because
    importing scikit-learn takes seconds; a test checks that both give the same arrays.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("scikit-learn is not installed; it provides the digits data set")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x = data[:, :-1].reshape(-1, 8, 8, 1)
    y = data[:, -1]
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def load_split():
    """The fixed train/test split: ``(x_train, y_train, x_test, y_test)``.

    ``x`` are int64 integer images of shape ``(N, 8, 8, 1)`` (NHWC) with values 0..16; ``y`` int64
    labels 0..9. The float input of the network is ``x / 16``.
    """
    x, y = _digits()
    order = np.random.RandomState(SPLIT_SEED).permutation(len(y))
    test, train = order[:N_TEST], order[N_TEST:]
    return x[train], y[train], x[test], y[test]


def float_network(path=FLOAT_PARAMS):
    """The FullPrecision :class:`intdeploy.golden.network.Network` with the parameters stored at ``path``."""

    with np.load(path, allow_pickle=False) as p:
        a = {k: p[k] for k in p.files}

    def bn(prefix):
        return BatchNorm(gamma=a[f"{prefix}.bn.gamma"], beta=a[f"{prefix}.bn.beta"], mean=a[f"{prefix}.bn.mean"],
                         var=a[f"{prefix}.bn.var"], eps=float(a[f"{prefix}.bn.eps"]))

    layers = (
        Conv2d(name="conv1", inputs=(INPUT,), weight=a["conv1.weight"], padding=1, bn=bn("conv1")),
        Conv2d(name="conv2", inputs=("conv1",), weight=a["conv2.weight"], padding=1, bn=bn("conv2")),
        Add(name="add", inputs=("conv1", "conv2")),
        AvgPool2d(name="pool", inputs=("add",), kernel=2),
        Flatten(name="flat", inputs=("pool",)),
        Linear(name="fc", inputs=("flat",), weight=a["fc.weight"], bias=a["fc.bias"], act=None),
    )
    return Network(input_shape=(8, 8, 1), layers=layers, input_eps=1 / 16, input_range=(0, 16))


def convert(options=None, path=FLOAT_PARAMS):
    """All four representations of the digits network (:func:`intdeploy.golden.network.convert`),
    calibrated on the training split, with ``options`` (default :class:`ConvertOptions`)."""

    x_train = load_split()[0]
    return _convert(float_network(path), x_train / 16.0, options, name="digits",
                    metadata={"description": "8x8 digits CNN (golden/digits.py), calibrated on the "
                                             "training split of the fixed split"})


def build_model_file(out=MODEL_FILE, options=None):
    """Convert the committed float parameters and write the model file ``out`` (+ ``.npz``)."""

    return save(convert(options).model, out)
