"""NEMO's IntegerDeployable representation run from a model file: int64 numpy, layer by layer.

:class:`IntegerDeployable` is golden's inference of an :class:`~intdeploy.golden.model_file.IntegerModel`
(NEMO report sec. 3): every layer with golden's integer functions (:func:`mac_accumulators`,
:func:`~intdeploy.golden.requantizer.requantize`, :func:`~intdeploy.golden.threshold.threshold`,
:func:`~intdeploy.golden.add.add`, :mod:`~intdeploy.golden.pool`). The float representations and
the converter that writes model files are in :mod:`intdeploy.golden.network`.
"""


import numpy as np

from intdeploy.golden import mac_array, model_file, pool
from intdeploy.golden.add import add
from intdeploy.golden.model_file import AddLayer, IntegerModel, MacLayer, PoolLayer, RequantLayer, SoftmaxLayer
from intdeploy.golden.requantizer import requantize
from intdeploy.golden.softmax import softmax
from intdeploy.golden.threshold import threshold

__all__ = ["IntegerDeployable", "mac_accumulators", "walk", "pick"]


def flatten(x):
    return x.reshape(x.shape[0], -1)


def walk(layers, inputs, step):
    """Evaluate ``layers`` in order with ``step(layer, [input tensors])``; ``inputs`` seeds the
    tensor dict. Returns the dict of every tensor by name."""
    t = dict(inputs)
    for layer in layers:
        t[layer.name] = step(layer, [t[s] for s in layer.inputs])
    return t


def pick(t, outputs, trace):
    if trace:
        return t
    return t[outputs[0]] if len(outputs) == 1 else tuple(t[o] for o in outputs)


def mac_accumulators(layer, x):
    """The exact int64 accumulators of a :class:`MacLayer` on its integer input (NEMO Eq. 16)."""
    if layer.kind == "conv2d":
        return mac_array.conv2d(x, layer.weight, layer.stride, layer.padding, layer.input_zero_point,
                                layer.weight_zero_point)
    return mac_array.linear(x, layer.weight, layer.input_zero_point, layer.weight_zero_point)


class IntegerDeployable:
    """IntegerDeployable evaluator (report sec. 3): int64 numpy from an :class:`IntegerModel` alone.

    ``run(x, trace=False)``: ``x`` integer ``(N,) + input.shape`` within the input's ``[lo, hi]``;
    returns the int64 output(s) or, with ``trace``, every tensor by name.

    ``mac_layer``: optional ``(layer, x) -> int64 output`` of a :class:`MacLayer` in place of
    golden's (:mod:`intdeploy.golden.importers.framework` replays a framework's own arithmetic through it).
    """

    def __init__(self, model, mac_layer=None):
        if not isinstance(model, IntegerModel):
            raise ValueError(f"model: expected IntegerModel, got {type(model).__name__}")
        self.model = model
        self.mac_layer = mac_layer

    @classmethod
    def from_file(cls, path):
        return cls(model_file.load(path))

    def step(self, layer, xs):
        """One integer layer on its integer inputs (int64)."""
        x = xs[0]
        if isinstance(layer, MacLayer):
            if self.mac_layer is not None:
                return self.mac_layer(layer, x)
            acc = mac_accumulators(layer, x)
            if layer.requant is not None:
                return requantize(acc, layer.requant)
            return threshold(acc, layer.threshold.thresholds, layer.threshold.negate)
        if isinstance(layer, AddLayer):
            return add(xs[0], xs[1], layer.params)
        if isinstance(layer, RequantLayer):
            return requantize(x, layer.requant)
        if isinstance(layer, PoolLayer):
            if layer.mode == "max":
                y = pool.max_pool2d(x, layer.kernel, layer.stride, layer.padding)
            elif layer.mode == "avg_nemo":
                y = pool.avg_pool2d_nemo(x, layer.kernel, layer.stride, layer.d)
            else:
                return pool.avg_pool2d_tflite(x, layer.kernel, layer.stride, layer.padding, layer.lo, layer.hi)
            if layer.lo is not None or layer.hi is not None:
                y = np.clip(y, layer.lo, layer.hi)
            return y
        if isinstance(layer, SoftmaxLayer):
            return softmax(x, layer.multiplier, layer.left_shift, layer.diff_min)
        return flatten(x)

    def run(self, x, trace=False):
        """The outputs on ``x`` (an integer array ``(N,) + input shape``; for a model with several
        inputs a dict by name or a tuple, :meth:`intdeploy.golden.model_file.IntegerModel.feed`):
        the output array, or a tuple of them for several outputs; ``trace``: every tensor by name."""
        t = walk(self.model.layers, self.model.feed(x), self.step)
        return pick(t, self.model.outputs, trace)
