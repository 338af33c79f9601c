"""Networks in NEMO's four representations, and the converter between them (report sec. 1-3).

A network is described once, in float (:class:`Network` of :class:`Conv2d`, :class:`Linear`,
:class:`Add`, :class:`AvgPool2d`, :class:`MaxPool2d`, :class:`Flatten`), channels-last, and is
evaluated in four representations:

``FullPrecision`` (sec. 1)
    Float64: linear operators, batch-norm (Eq. 3), ReLU (Eq. 5).
``FakeQuantized`` (sec. 2)
    Float64, but weights replaced by their quantized versions (per output channel, NEMO's
    asymmetric quantizer or a symmetric one) and every activation by PACT (``eps = beta /
    (2**Q - 1)``, ``alpha = 0``, floor, Eq. 10); layers without activation end in a symmetric
    signed quantizer. Batch-norm stays float; the straight-through estimator only matters for
    training (:mod:`intdeploy.golden.fakequant`), so it does not appear here.
``QuantizedDeployable`` (sec. 3)
    Float64 on the graph of the integer network, where *every* tensor is ``eps * integer image``:
    linear operators on quantized weights and inputs (Eq. 15-16), batch-norm either with
    quantized ``kappa``/``lambda`` (Eq. 21-22) or float and merged into thresholds (Eq. 19-20),
    activations by Eq. 10, an Add followed by a floor to its output quantum, average pooling
    followed by a floor to its input quantum. It is what IntegerDeployable computes with the
    requantization factors taken exactly; the two differ only by the RQ approximations of
    Eq. 12-14 (bounded by :func:`agreement`).
``IntegerDeployable`` (sec. 3)
    Pure integer (int64 numpy), from a model file alone (:class:`intdeploy.golden.model_file.IntegerModel`),
    with the golden units: :mod:`intdeploy.golden.mac_array`, :func:`intdeploy.golden.requantizer.requantize`,
    :func:`intdeploy.golden.threshold.threshold`, :func:`intdeploy.golden.add.add`, :mod:`intdeploy.golden.pool`.

:func:`convert` goes from a FullPrecision network plus calibration inputs to all the others.
Its choices (see :class:`ConvertOptions`):

* weights per output channel, NEMO asymmetric (``[min(w, 0), max(w, 0)]``, floor; stored int8
  with a weight zero point) or symmetric (round half even, zero point 0);
* activation ``beta`` from calibration (maximum or a percentile of the FullPrecision values);
* batch-norm as integer BN in the requantizer (Eq. 21-22: ``kappa`` quantized symmetric with
  ``bn_bits`` per layer, ``lambda`` in the quantum ``eps_kappa * eps_phi``, ``mult = kappa_int *
  m_act``, ``offset = lambda_int * m_act``, floor) or, for activations of at most
  ``threshold_bits`` bits, merged into integer thresholds (Eq. 19-20, exact);
* every requantization factor by NEMO's rule (:func:`intdeploy.golden.requantizer.nemo_multiplier`,
  ``D = 2**ceil(log2(eps_out / (eps_in * eta)))``, relative error <= ``eta / 2``, Eq. 14);
* an Add is NEMO's ``PACT_IntegerAdd`` (Eq. 24): output quantum the larger input quantum,
  per-branch multipliers over a common ``2**d``, unclipped, followed by its activation as an
  element-wise requantizer; average pooling is Eq. 25.
* every MAC layer must fit the int32 accumulator (:func:`intdeploy.golden.mac_array.check_accumulator`),
  else :func:`convert` refuses it with a ValueError naming the layer.

The channel axis is last everywhere; weights are output-channel first (OHWI for conv2d).
"""

from dataclasses import asdict, dataclass, field
from fractions import Fraction
import math

import numpy as np

from intdeploy.golden import mac_array, model_file, pool
from intdeploy.golden.add import AddParams, add
from intdeploy.golden.integer_deployable import IntegerDeployable, flatten, pick, walk
from intdeploy.golden.model_file import (AddLayer, FlattenLayer, InputSpec, IntegerModel, MacLayer, PoolLayer,
                                         RequantLayer, Threshold)
from intdeploy.golden.quantizers import (affine_params, affine_quantize, asymmetric_weight_quantize, int8_storage,
                                         linear_quantize, pact_quantize)
from intdeploy.golden.requantizer import INT32_MAX, RequantParams, nemo_multiplier
from intdeploy.golden.threshold import bn_thresholds

__all__ = [
    "INPUT", "BatchNorm", "Conv2d", "Linear", "Add", "AvgPool2d", "MaxPool2d", "Flatten", "Network",
    "FullPrecision", "FakeQuantized", "QuantizedDeployable", "IntegerDeployable",
    "ConvertOptions", "Deployment", "convert", "LayerAgreement", "agreement", "accuracy",
]

#: Name of the network input tensor in a float description.
INPUT = "input"
_INT48_MAX = (1 << 47) - 1


# --- the float description ----------------------------------------------------------------------

def _floats(name, v, ndim=None):
    a = np.asarray(v)
    if a.dtype.kind not in "iuf" or a.dtype == object:
        raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: must be finite")
    return a


def _pair(name, v, minimum):
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(v) != 2 or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) and e >= minimum for e in v):
        raise ValueError(f"{name}: expected an integer >= {minimum} or a pair of them, got {v!r}")
    return int(v[0]), int(v[1])


def _padding(v):
    """int, ``(ph, pw)`` or ``((top, bottom), (left, right))`` -> the explicit form."""
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(e, (tuple, list)) for e in v):
        return _pair("padding", v[0], 0), _pair("padding", v[1], 0)
    ph, pw = _pair("padding", v, 0)
    return (ph, ph), (pw, pw)


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Batch-normalization parameters (report Eq. 3), per channel ``(C,)``:
    ``phi = gamma / sigma * (varphi - mean) + beta`` with ``sigma = sqrt(var + eps)``."""
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-5

    def __post_init__(self):
        for f in ("gamma", "beta", "mean", "var"):
            object.__setattr__(self, f, _floats(f, getattr(self, f), 1))
        if len({getattr(self, f).shape for f in ("gamma", "beta", "mean", "var")}) != 1:
            raise ValueError("gamma, beta, mean, var: must have the same shape (C,)")
        if np.any(self.var < 0) or not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError("var, eps: need var >= 0 and eps > 0")

    @property
    def sigma(self):
        return np.sqrt(self.var + self.eps)


@dataclass(frozen=True, kw_only=True, eq=False)
class Conv2d:
    """Convolution ``weight`` OHWI ``(Cout, KH, KW, Cin)``, optional ``bias`` ``(Cout,)``,
    ``stride``, ``padding`` (int, pair or ``((top, bottom), (left, right))``), optional ``bn``,
    activation ``act`` ``"relu"`` or None. A NEMO layer: it ends at its activation."""
    name: str
    inputs: tuple = (INPUT,)
    weight: np.ndarray
    bias: np.ndarray = None
    stride: object = 1
    padding: object = 0
    bn: BatchNorm = None
    act: str = "relu"

    def __post_init__(self):
        _check_mac(self, 4)
        object.__setattr__(self, "stride", _pair("stride", self.stride, 1))
        object.__setattr__(self, "padding", _padding(self.padding))


@dataclass(frozen=True, kw_only=True, eq=False)
class Linear:
    """Fully-connected layer on the last axis: ``weight`` ``(M, K)``, optional ``bias`` ``(M,)``,
    optional ``bn``, ``act`` ``"relu"`` or None."""
    name: str
    inputs: tuple
    weight: np.ndarray
    bias: np.ndarray = None
    bn: BatchNorm = None
    act: str = "relu"

    def __post_init__(self):
        _check_mac(self, 2)


def _check_mac(layer, ndim):
    object.__setattr__(layer, "inputs", tuple(layer.inputs))
    object.__setattr__(layer, "weight", _floats("weight", layer.weight, ndim))
    cout = layer.weight.shape[0]
    if layer.bias is not None:
        object.__setattr__(layer, "bias", _floats("bias", layer.bias, 1))
        if layer.bias.shape != (cout,):
            raise ValueError(f"{layer.name}: bias: expected shape ({cout},), got {layer.bias.shape}")
    if layer.bn is not None and (not isinstance(layer.bn, BatchNorm) or layer.bn.gamma.shape != (cout,)):
        raise ValueError(f"{layer.name}: bn: expected a BatchNorm with {cout} channels")
    if layer.act not in ("relu", None):
        raise ValueError(f"{layer.name}: act: {layer.act!r} is not 'relu' or None")


@dataclass(frozen=True, kw_only=True, eq=False)
class Add:
    """Element-wise sum of two tensors, then ``act`` (``"relu"`` or None)."""
    name: str
    inputs: tuple
    act: str = "relu"

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.act not in ("relu", None):
            raise ValueError(f"{self.name}: act: {self.act!r} is not 'relu' or None")


@dataclass(frozen=True, kw_only=True, eq=False)
class _Pool2d:
    name: str
    inputs: tuple
    kernel: object
    stride: object = None

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "kernel", _pair("kernel", self.kernel, 1))
        object.__setattr__(self, "stride", self.kernel if self.stride is None else _pair("stride", self.stride, 1))


class AvgPool2d(_Pool2d):
    """Average pooling, no padding; ``stride`` defaults to ``kernel``."""


class MaxPool2d(_Pool2d):
    """Max pooling, no padding; ``stride`` defaults to ``kernel``."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Flatten:
    """Flatten each sample in row-major (``h, w, c``) order."""
    name: str
    inputs: tuple

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))


_ARITY = {Conv2d: 1, Linear: 1, Add: 2, AvgPool2d: 1, MaxPool2d: 1, Flatten: 1}


def _out_size(size, k, s, pads):
    return (size + pads[0] + pads[1] - k) // s + 1


@dataclass(frozen=True, eq=False)
class Network:
    """A FullPrecision network: a DAG of layers in topological order.

    Parameters
    ----------
    input_shape : per-sample input shape, e.g. ``(H, W, C)``
    layers : layers whose ``inputs`` name :data:`INPUT` or earlier layers
    outputs : output tensor names (default: the last layer)
    input_eps : the input's natural quantum (report sec. 3.7): the float input is
        ``input_eps * integer image``; needed by :func:`convert`
    input_range : ``(lo, hi)`` of the input's integer image

    Construction checks names, references, arities and shapes, and NEMO's rule that a tensor
    feeding several layers (a branch) is the input or the output of an activation (sec. 1).
    ``shapes`` maps every tensor to its per-sample shape.
    """
    input_shape: tuple
    layers: tuple
    outputs: tuple = None
    input_eps: float = None
    input_range: tuple = None
    shapes: dict = field(init=False, repr=False)

    def __post_init__(self):
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        shapes = {INPUT: self.input_shape}
        uses = {INPUT: 0}
        for layer in layers:
            arity = _ARITY.get(type(layer))
            if arity is None:
                raise ValueError(f"layers: {type(layer).__name__} is not a layer type")
            if layer.name in shapes:
                raise ValueError(f"{layer.name}: the name is used twice")
            if len(layer.inputs) != arity:
                raise ValueError(f"{layer.name}: inputs: expected {arity}, got {list(layer.inputs)}")
            for s in layer.inputs:
                if s not in shapes:
                    raise ValueError(f"{layer.name}: inputs: {s!r} is not {INPUT!r} or an earlier layer")
                uses[s] += 1
            shapes[layer.name] = self._shape(layer, [shapes[s] for s in layer.inputs])
            uses[layer.name] = 0
        producers = {layer.name: layer for layer in layers}
        for name, n in uses.items():
            if n > 1 and name != INPUT and getattr(producers[name], "act", None) != "relu":
                raise ValueError(f"{name}: feeds {n} layers, but NEMO branches start only at an "
                                 f"activation (report sec. 1)")
        outputs = (layers[-1].name,) if self.outputs is None else tuple(self.outputs)
        for o in outputs:
            if o not in shapes:
                raise ValueError(f"outputs: {o!r} is not a tensor of the network")
        object.__setattr__(self, "outputs", outputs)
        object.__setattr__(self, "shapes", shapes)
        if self.input_eps is not None and not (math.isfinite(self.input_eps) and self.input_eps > 0):
            raise ValueError(f"input_eps: must be a positive number, got {self.input_eps!r}")
        if self.input_range is not None:
            lo, hi = self.input_range
            if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
                raise ValueError(f"input_range: expected integers lo <= hi, got {self.input_range!r}")

    @staticmethod
    def _shape(layer, xs):
        x = xs[0]
        if isinstance(layer, Conv2d):
            o, kh, kw, c = layer.weight.shape
            if len(x) != 3 or x[2] != c:
                raise ValueError(f"{layer.name}: weight expects (H, W, {c}) inputs, got {x}")
            (pt, pb), (pl, pr) = layer.padding
            oh, ow = _out_size(x[0], kh, layer.stride[0], (pt, pb)), _out_size(x[1], kw, layer.stride[1], (pl, pr))
            if oh < 1 or ow < 1:
                raise ValueError(f"{layer.name}: kernel larger than the padded input {x}")
            return (oh, ow, o)
        if isinstance(layer, Linear):
            if x[-1] != layer.weight.shape[1]:
                raise ValueError(f"{layer.name}: weight expects {layer.weight.shape[1]} features, got shape {x}")
            return x[:-1] + (layer.weight.shape[0],)
        if isinstance(layer, Add):
            if xs[0] != xs[1]:
                raise ValueError(f"{layer.name}: input shapes differ: {xs[0]} and {xs[1]}")
            return x
        if isinstance(layer, _Pool2d):
            (kh, kw), (sh, sw) = layer.kernel, layer.stride
            if len(x) != 3 or x[0] < kh or x[1] < kw:
                raise ValueError(f"{layer.name}: kernel {layer.kernel} does not fit the input {x}")
            return (_out_size(x[0], kh, sh, (0, 0)), _out_size(x[1], kw, sw, (0, 0)), x[2])
        return (int(np.prod(x)),)

    def layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


# --- float operators ----------------------------------------------------------------------------

def _windows(x, kernel, stride, padding=((0, 0), (0, 0))):
    """NHWC float ``x`` -> ``(N, OH, OW, C, KH, KW)`` windows (a view)."""
    (pt, pb), (pl, pr) = padding
    if pt or pb or pl or pr:
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(1, 2))
    return win[:, ::stride[0], ::stride[1]]


def _conv_float(x, w, stride, padding):
    win = _windows(x, w.shape[1:3], stride, padding)
    # (N, OH, OW, C, KH, KW) . (O, KH, KW, C) over C, KH, KW
    return np.tensordot(win, w, axes=([3, 4, 5], [3, 1, 2]))


def _mac_float(layer, x, w):
    if isinstance(layer, Conv2d):
        return _conv_float(x, w, layer.stride, layer.padding)
    return x @ w.T



class FullPrecision:
    """FullPrecision evaluator (report sec. 1), float64.

    ``run(x, trace=False)``: ``x`` float ``(N,) + input_shape``; returns the output (a tuple for
    several outputs) or, with ``trace``, a dict of every tensor by name.
    """

    def __init__(self, net):
        if not isinstance(net, Network):
            raise ValueError(f"net: expected Network, got {type(net).__name__}")
        self.net = net

    def weight(self, layer):
        return layer.weight

    def input(self, x):
        return x

    def activation(self, layer, phi):
        return np.maximum(phi, 0.0) if layer.act == "relu" else phi

    def _step(self, layer, xs):
        x = xs[0]
        if isinstance(layer, (Conv2d, Linear)):
            phi = _mac_float(layer, x, self.weight(layer))
            if layer.bias is not None:
                phi = phi + layer.bias
            if layer.bn is not None:
                bn = layer.bn
                phi = bn.gamma / bn.sigma * (phi - bn.mean) + bn.beta
            return self.activation(layer, phi)
        if isinstance(layer, Add):
            return self.activation(layer, xs[0] + xs[1])
        if isinstance(layer, MaxPool2d):
            return _windows(x, layer.kernel, layer.stride).max(axis=(4, 5))
        if isinstance(layer, AvgPool2d):
            return _windows(x, layer.kernel, layer.stride).mean(axis=(4, 5))
        return flatten(x)

    def run(self, x, trace=False):
        x = _floats("x", x)
        if x.shape[1:] != self.net.input_shape:
            raise ValueError(f"x: expected shape (N, {', '.join(map(str, self.net.input_shape))}), got {x.shape}")
        t = walk(self.net.layers, {INPUT: self.input(x)}, self._step)
        return pick(t, self.net.outputs, trace)


@dataclass(frozen=True)
class _ActQuant:
    """An activation quantizer: PACT (``signed=False``: ``[0, 2**bits - 1]``) or symmetric signed
    (``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``), quantum ``eps``, floor (Eq. 10)."""
    beta: float
    bits: int
    signed: bool

    @property
    def eps(self):
        return self.beta / ((1 << (self.bits - (1 if self.signed else 0))) - 1)

    @property
    def range(self):
        if self.signed:
            top = (1 << (self.bits - 1)) - 1
            return -top, top
        return 0, (1 << self.bits) - 1

    def integer(self, phi):
        if self.signed:
            return linear_quantize(phi, self.eps, -self.beta, self.beta)
        return pact_quantize(phi, self.beta, self.bits)[0]


class FakeQuantized(FullPrecision):
    """FakeQuantized evaluator (report sec. 2): quantized weights ``w_hat`` and quantized
    activations (PACT / symmetric, Eq. 10), float64 elsewhere (batch-norm, sums, pooling).

    Built by :func:`convert`; ``weights`` maps layer names to ``w_hat``, ``acts`` to quantizers.
    """

    def __init__(self, net, weights, acts, input_eps, input_range):
        super().__init__(net)
        self.weights = dict(weights)
        self.acts = dict(acts)
        self.input_eps = input_eps
        self.input_range = input_range

    def weight(self, layer):
        return self.weights[layer.name]

    def input(self, x):
        lo, hi = self.input_range
        return self.input_eps * linear_quantize(x, self.input_eps, lo * self.input_eps, hi * self.input_eps)

    def activation(self, layer, phi):
        q = self.acts.get(layer.name)
        if q is None:
            return phi
        return q.eps * q.integer(phi)


# --- QuantizedDeployable ------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _QNode:
    """QuantizedDeployable view of one integer layer.

    The node's output is ``eps * clip(floor(x), lo, hi)`` where ``x`` is the exact real value in
    units of ``eps`` computed by :meth:`QuantizedDeployable.value`. ``eta`` bounds the relative
    error of IntegerDeployable's requantization factors (0 where the integer op is exact);
    ``factor`` is, per channel, the real number that the layer's ``mult / 2**shift`` stands for.
    ``w_int`` (MAC layers) is the weights' integer image ``Q(w)`` (float64) and ``affine`` the
    form of the layer's batch-norm / bias (``ibn``, ``bias`` or ``bn``) with its parameters.
    """
    eps: float
    lo: int = None
    hi: int = None
    eta: float = 0.0
    w_int: np.ndarray = None
    affine: tuple = None
    factor: np.ndarray = None


class QuantizedDeployable:
    """QuantizedDeployable evaluator (report sec. 3) on the graph of an :class:`IntegerModel`.

    Every tensor is ``eps * integer image`` (float64); see the module docstring. The arithmetic
    is float64 on the integer images and the real quanta, arranged so that float rounding
    cannot move a value that is exactly an integer: sums of integer images are exact in float64
    (below 2**53), and each layer multiplies by its real factor once, at the end.

    ``run(x, trace=False)`` takes the float input (``input_eps * integer image``) and returns
    float tensors; :meth:`images` returns the integer images ``Q(t)``.
    """

    def __init__(self, model, nodes):
        self.model = model
        self.nodes = dict(nodes)

    def eps(self, name):
        return self.model.input.eps if name == self.model.input.name else self.nodes[name].eps

    def value(self, layer, images):
        """``x``: the layer's exact output in units of its ``eps``, before floor and clip, from
        the integer images of its inputs."""
        n = self.nodes[layer.name]
        x = images[0].astype(np.float64)
        if isinstance(layer, MacLayer):
            # phi_hat / eps_phi = sum Q(w) * Q(x) (Eq. 16), exact in float64.
            q = n.w_int
            acc = _conv_float(x, q, layer.stride, layer.padding) if layer.kind == "conv2d" else x @ q.T
            how, *p = n.affine
            if how == "ibn":            # integer BN, Eq. 21-22: kappa_hat * phi_hat + lambda_hat
                kappa_int, lam_int, scale = p
                return (kappa_int * acc + lam_int) * scale
            if how == "bias":
                bias, scale = p
                return (acc + bias) * scale
            eps_phi, gamma, beta, mu, sigma = p     # float BN merged into thresholds, Eq. 19-20
            return (gamma / sigma * (eps_phi * acc - mu) + beta) / n.eps
        if isinstance(layer, AddLayer):
            ea, eb = (self.eps(s) for s in layer.inputs)
            return x * (ea / n.eps) + images[1] * (eb / n.eps)
        if isinstance(layer, RequantLayer):
            return x * (self.eps(layer.inputs[0]) / n.eps)
        if isinstance(layer, PoolLayer):
            win = _windows(x, layer.kernel, layer.stride)
            return win.max(axis=(4, 5)) if layer.mode == "max" else win.sum(axis=(4, 5)) / (win.shape[4] * win.shape[5])
        return flatten(x)

    def delta(self, layer, images, x):
        """Bound on ``|IntegerDeployable's value before rounding - x|`` in units of ``eps`` (the
        RQ relative error ``eta`` of Eq. 14), plus an allowance for float64 rounding of ``x``."""
        n = self.nodes[layer.name]
        if isinstance(layer, AddLayer):
            ea, eb = (self.eps(s) for s in layer.inputs)
            d = n.eta * (np.abs(images[0]) * (ea / n.eps) + np.abs(images[1]) * (eb / n.eps))
        else:
            d = n.eta * np.abs(x)
        if isinstance(layer, (PoolLayer, FlattenLayer)):
            # Max and flatten are exact; an average is one correctly rounded division of
            # integers, whose floor is exact (|sum/K - n| >= 1/K whenever it is not an integer).
            return d
        return d + 1e-9 * (1.0 + np.abs(x))

    def image(self, layer, x):
        """The integer image: ``clip(floor(x), lo, hi)``."""
        n = self.nodes[layer.name]
        q = np.floor(x)
        if n.lo is not None or n.hi is not None:
            q = np.clip(q, n.lo, n.hi)
        return q.astype(np.int64)

    def images(self, x):
        """Integer images of every tensor for the float input ``x``."""
        x = _floats("x", x)
        q = np.rint(x / self.model.input.eps).astype(np.int64)
        return walk(self.model.layers, {self.model.input.name: q},
                     lambda layer, xs: self.image(layer, self.value(layer, xs)))

    def run(self, x, trace=False):
        t = {k: v * self.eps(k) for k, v in self.images(x).items()}
        return pick(t, self.model.outputs, trace)



# --- the converter ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvertOptions:
    """Choices of :func:`convert`.

    Attributes
    ----------
    act_bits : bits of ReLU activations (PACT, unsigned), 2..16
    out_bits : bits of the symmetric signed quantizer ending a layer without activation, 2..16
    weight_bits : weight bits, 2..8 (stored int8)
    weights : ``"asymmetric"`` (NEMO, floor, zero point) or ``"symmetric"`` (round, zero point 0)
    calibration : ``"max"`` or a percentile in (0, 100] of the FullPrecision activations
    bn_bits : bits of NEMO's symmetric per-layer quantizer of ``kappa = gamma / sigma``
    eta : requantization relative-error target (Eq. 14; NEMO's ``1 / requantization_factor``)
    pool_d : ``d`` of the average pooling (Eq. 25)
    threshold_bits : ReLU activations of at most this many bits use thresholds (Eq. 19-20)
    """
    act_bits: int = 8
    out_bits: int = 8
    weight_bits: int = 8
    weights: str = "asymmetric"
    calibration: object = "max"
    bn_bits: int = 16
    eta: float = 2.0 ** -12
    pool_d: int = 16
    threshold_bits: int = 4

    def __post_init__(self):
        for f, lo, hi in (("act_bits", 2, 16), ("out_bits", 2, 16), ("weight_bits", 2, 8),
                          ("bn_bits", 2, 24), ("pool_d", 0, 30), ("threshold_bits", 0, 8)):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{f}: expected an integer in [{lo}, {hi}], got {v!r}")
        if self.weights not in ("asymmetric", "symmetric"):
            raise ValueError(f"weights: {self.weights!r} is not 'asymmetric' or 'symmetric'")
        c = self.calibration
        if c != "max" and not (isinstance(c, (int, float)) and not isinstance(c, bool) and 0 < c <= 100):
            raise ValueError(f"calibration: expected 'max' or a percentile in (0, 100], got {c!r}")
        if not (isinstance(self.eta, float) and 0 < self.eta < 1):
            raise ValueError(f"eta: expected a float in (0, 1), got {self.eta!r}")


@dataclass(frozen=True, eq=False)
class Deployment:
    """The four representations of one network, as produced by :func:`convert`."""
    full_precision: FullPrecision
    fake_quantized: FakeQuantized
    quantized: QuantizedDeployable
    integer: IntegerDeployable
    options: ConvertOptions

    @property
    def model(self):
        return self.integer.model


def _dtype_for(lo, hi):
    for name in ("uint8", "int8", "uint16", "int16", "int32"):
        a, b = model_file.DTYPES[name]
        if a <= lo and hi <= b:
            return name
    raise ValueError(f"range [{lo}, {hi}] does not fit int32")


def _calibrate(values, how):
    """Activation range ``beta`` from FullPrecision ``values`` (>= 0)."""
    v = values.reshape(-1)
    beta = float(v.max()) if how == "max" else float(np.percentile(v, how))
    # A layer that never activates on the calibration set has no range to measure; any beta
    # quantizes its zeros exactly.
    return beta if beta > 0 else 1.0


def _quantize_weights(w, opts, eps_w=None):
    """Per-output-channel weight quantization: ``(stored int8, zero point, eps_w (C,), q)``.

    ``eps_w`` (symmetric only): given per-channel quanta (e.g. LSQ steps learned in training)
    instead of the ones derived from the weights' range."""
    flat = w.reshape(w.shape[0], -1)
    if eps_w is not None:
        eps_w = _floats("weight_eps", eps_w, 1)
        if opts.weights != "symmetric" or eps_w.shape != (w.shape[0],) or np.any(eps_w <= 0):
            raise ValueError(f"weight_eps: expected {w.shape[0]} positive quanta and weights='symmetric'")
    if opts.weights == "asymmetric":
        alpha = np.minimum(flat.min(axis=1), 0.0)
        beta = np.maximum(flat.max(axis=1), 0.0)
        beta = np.where(beta > alpha, beta, alpha + 1.0)       # an all-zero channel
        q, eps_w = asymmetric_weight_quantize(w, alpha, beta, opts.weight_bits, axis=0)
        stored, zp = int8_storage(q, opts.weight_bits, axis=0)
    else:
        if eps_w is None:
            eps_w, _ = affine_params(flat.min(axis=1), flat.max(axis=1), opts.weight_bits, signed=True,
                                     reduced_range=True, symmetric=True)
        q = affine_quantize(w, eps_w, 0, opts.weight_bits, signed=True, reduced_range=True, axis=0)
        stored, zp = q, 0
    return stored.astype(np.int8), zp, np.asarray(eps_w, dtype=np.float64), q


def _bcast(v, ndim):
    """A per-output-channel ``(C,)`` array shaped to broadcast over axis 0 of an ``ndim`` tensor."""
    return v.reshape((-1,) + (1,) * (ndim - 1))


def _nemo_rq(ratios, eta, what):
    """Per channel ``(mult, d)`` for real factors ``ratios`` (> 0) by NEMO's rule with rf = 1/eta."""
    mults, shifts = [], []
    for r in ratios:
        # nemo_multiplier(eps_in, eps_out) approximates eps_in / eps_out; pass (r, 1).
        m, d = nemo_multiplier(float(r), 1.0, 1.0 / eta)
        mults.append(m)
        shifts.append(d)
    if max(shifts) > 62:
        raise ValueError(f"{what}: requantization needs a shift of {max(shifts)} > 62; raise eta")
    return np.array(mults, dtype=np.int64), np.array(shifts, dtype=np.int64)


def convert(net, calibration, options=None, name="model", metadata=None, *, betas=None, weight_eps=None):
    """Convert a FullPrecision network to the other three representations (see module docstring).

    Parameters
    ----------
    net : Network with ``input_eps`` and ``input_range``
    calibration : float inputs ``(N,) + input_shape`` (``input_eps * integer image``) used to
        choose each activation's ``beta``
    options : ConvertOptions (defaults if None)
    name, metadata : stored in the model file
    betas : dict, optional
        Layer name -> activation range ``beta`` to use instead of the calibrated one (e.g. a
        PACT clip learned by quantization-aware training, :mod:`intdeploy.golden.qat`).
    weight_eps : dict, optional
        MAC layer name -> per-output-channel weight quanta ``(C,)`` to use instead of the ones
        derived from the weights (e.g. learned LSQ steps); needs ``weights="symmetric"``.

    Returns
    -------
    Deployment

    Raises
    ------
    ValueError
        A layer whose accumulator could overflow int32, or whose parameters do not fit the
        requantizer (the message names the layer and what to change).
    """
    opts = ConvertOptions() if options is None else options
    if not isinstance(opts, ConvertOptions):
        raise ValueError(f"options: expected ConvertOptions, got {type(opts).__name__}")
    if net.input_eps is None or net.input_range is None:
        raise ValueError("net: convert needs input_eps and input_range (report sec. 3.7)")
    for what, given, kinds in (("betas", betas, (Conv2d, Linear, Add)), ("weight_eps", weight_eps, (Conv2d, Linear))):
        bad = sorted(set(given or {}) - {fl.name for fl in net.layers if isinstance(fl, kinds)})
        if bad:
            raise ValueError(f"{what}: {bad[0]!r} is not a {'/'.join(k.__name__ for k in kinds)} layer of the network")
    fp = FullPrecision(net)
    cal = fp.run(calibration, trace=True)

    in_lo, in_hi = net.input_range
    spec = InputSpec(shape=net.input_shape, dtype=_dtype_for(in_lo, in_hi), zero_point=0,
                     lo=in_lo, hi=in_hi, eps=float(net.input_eps), name=INPUT)
    eps = {INPUT: float(net.input_eps)}         # quantum of every integer tensor
    rng = {INPUT: (in_lo, in_hi)}               # its value range
    layers, nodes, w_hats, acts = [], {}, {}, {}

    def emit(layer, node, lo, hi):
        layers.append(layer)
        nodes[layer.name] = node
        eps[layer.name] = node.eps
        rng[layer.name] = (lo, hi)

    for fl in net.layers:
        src = list(fl.inputs)
        if isinstance(fl, (Conv2d, Linear)):
            stored, zp, eps_w, q = _quantize_weights(fl.weight, opts, (weight_eps or {}).get(fl.name))
            w_hats[fl.name] = _bcast(eps_w, q.ndim) * q
            eps_x = eps[src[0]]
            eps_phi = eps_w * eps_x
            x_lo, x_hi = rng[src[0]]
            act = _act_quant(fl, cal[fl.name], opts, (betas or {}).get(fl.name))
            acts[fl.name] = act
            lo, hi = act.range
            bn = fl.bn
            b = np.zeros(stored.shape[0]) if fl.bias is None else fl.bias
            q = q.astype(np.float64)
            if not act.signed and act.bits <= opts.threshold_bits:
                gamma, beta, mu, sigma = ((bn.gamma, bn.beta, bn.mean, bn.sigma) if bn is not None
                                          else (np.ones_like(b), np.zeros_like(b), np.zeros_like(b), np.ones_like(b)))
                mu = mu - b             # the linear bias enters as a shift of the mean
                th, neg = bn_thresholds(gamma, beta, mu, sigma, eps_phi, act.eps, act.bits)
                epi = {"threshold": Threshold(th, neg)}
                node = _QNode(act.eps, lo, hi, 0.0, q, ("bn", eps_phi, gamma, beta, mu, sigma))
                bias = None
            elif bn is not None:
                # Integer BN (Eq. 21-22): kappa quantized symmetric per layer with bn_bits
                # (eps = 2 beta / (2**Q - 1)), lambda in the quantum eps_kappa * eps_phi.
                kappa = bn.gamma / bn.sigma
                lam = bn.beta - kappa * bn.mean + kappa * b
                kmax = float(np.abs(kappa).max()) or 1.0
                eps_kappa = 2 * kmax / ((1 << opts.bn_bits) - 1)
                kappa_int = affine_quantize(kappa, eps_kappa, 0, opts.bn_bits, signed=True, reduced_range=True)
                lam_int = np.rint(lam / (eps_kappa * eps_phi)).astype(np.int64)
                m_act, d = _nemo_rq(eps_kappa * eps_phi / act.eps, opts.eta, fl.name)
                mult, offset = kappa_int * m_act, lam_int * m_act
                if np.abs(mult).max() > INT32_MAX:
                    raise ValueError(f"{fl.name}: integer BN multiplier kappa_int * m_act = "
                                     f"{int(np.abs(mult).max())} does not fit int32; lower bn_bits or raise eta")
                if np.abs(offset).max() > _INT48_MAX:
                    raise ValueError(f"{fl.name}: integer BN offset lambda_int * m_act does not fit int48; "
                                     f"lower bn_bits or raise eta")
                epi = {"requant": RequantParams(mult=mult, shift=d, offset=offset, lo=lo, hi=hi)}
                scale = eps_kappa * eps_phi / act.eps
                node = _QNode(act.eps, lo, hi, opts.eta, q, ("ibn", kappa_int, lam_int, scale), kappa_int * scale)
                bias = None
            else:
                bias = np.rint(b / eps_phi).astype(np.int64)
                m, d = _nemo_rq(eps_phi / act.eps, opts.eta, fl.name)
                epi = {"requant": RequantParams(mult=m, shift=d, bias=bias, lo=lo, hi=hi)}
                node = _QNode(act.eps, lo, hi, opts.eta, q, ("bias", bias, eps_phi / act.eps), eps_phi / act.eps)
            x_zp = 0
            pad_lo = min(x_lo, x_zp) if isinstance(fl, Conv2d) else x_lo
            mac_array.check_accumulator(stored, pad_lo, x_hi, x_zp, zp, bias, name=f"layer {fl.name!r}")
            kw = dict(stride=fl.stride, padding=fl.padding) if isinstance(fl, Conv2d) else {}
            layer = MacLayer(kind="conv2d" if isinstance(fl, Conv2d) else "linear", name=fl.name,
                             inputs=tuple(src), weight=stored, weight_zero_point=zp,
                             weight_bits=opts.weight_bits, input_zero_point=x_zp, dtype=_dtype_for(lo, hi),
                             eps=act.eps, weight_eps=eps_w, **kw, **epi)
            emit(layer, node, lo, hi)
        elif isinstance(fl, Add):
            ea, eb = eps[src[0]], eps[src[1]]
            eps_s = max(ea, eb)
            # NEMO PACT_IntegerAdd: D = 2**d from the smaller input quantum, one multiplier per
            # branch (the reference branch gets exactly D), no clip.
            d = max(nemo_multiplier(ea, eps_s, 1.0 / opts.eta)[1], nemo_multiplier(eb, eps_s, 1.0 / opts.eta)[1])
            ma, mb = (round(Fraction(e) * (1 << d) / Fraction(eps_s)) for e in (ea, eb))
            params = AddParams.nemo(ma, mb, d)
            (alo, ahi), (blo, bhi) = rng[src[0]], rng[src[1]]
            corners = add(np.array([alo, alo, ahi, ahi]), np.array([blo, bhi, blo, bhi]), params)
            s_lo, s_hi = int(corners.min()), int(corners.max())
            sum_name = fl.name if fl.act is None else f"{fl.name}.sum"
            emit(AddLayer(name=sum_name, inputs=tuple(src), params=params, dtype=_dtype_for(s_lo, s_hi), eps=eps_s),
                 _QNode(eps_s, None, None, opts.eta), s_lo, s_hi)
            if fl.act is not None:
                act = _act_quant(fl, cal[fl.name], opts, (betas or {}).get(fl.name))
                acts[fl.name] = act
                lo, hi = act.range
                m, dd = _nemo_rq([eps_s / act.eps], opts.eta, fl.name)
                rq = RequantParams(mult=int(m[0]), shift=int(dd[0]), lo=lo, hi=hi)
                emit(RequantLayer(name=fl.name, inputs=(sum_name,), requant=rq, dtype=_dtype_for(lo, hi), eps=act.eps),
                     _QNode(act.eps, lo, hi, opts.eta, factor=np.array([eps_s / act.eps])), lo, hi)
        elif isinstance(fl, _Pool2d):
            e = eps[src[0]]
            lo, hi = rng[src[0]]
            if isinstance(fl, MaxPool2d):
                layer = PoolLayer(name=fl.name, inputs=tuple(src), mode="max", kernel=fl.kernel, stride=fl.stride,
                                  dtype=_dtype_for(lo, hi), eps=e)
                node = _QNode(e)
            else:
                k = fl.kernel[0] * fl.kernel[1]
                layer = PoolLayer(name=fl.name, inputs=tuple(src), mode="avg_nemo", kernel=fl.kernel,
                                  stride=fl.stride, d=opts.pool_d, dtype=_dtype_for(lo, hi), eps=e)
                # Eq. 25 replaces 1/K by factor/2**d; a window of K taps equal to 2**30 gives
                # factor*K*2**(30-d) exactly, hence the relative error |factor*K/2**d - 1|.
                fk = int(pool.pool_windows(np.full((1, k, 1), 1 << 30), "avg_nemo", d=opts.pool_d)[0, 0])
                node = _QNode(e, eta=float(abs(Fraction(fk, 1 << 30) - 1)))
            emit(layer, node, lo, hi)
        else:
            lo, hi = rng[src[0]]
            emit(FlattenLayer(name=fl.name, inputs=tuple(src), dtype=_dtype_for(lo, hi), eps=eps[src[0]]),
                 _QNode(eps[src[0]]), lo, hi)

    meta = {"converter": "golden.network.convert", "options": asdict(opts)}
    meta.update(metadata or {})
    model = IntegerModel(input=spec, layers=tuple(layers), outputs=net.outputs, name=name, metadata=meta)
    fq = FakeQuantized(net, w_hats, acts, float(net.input_eps), net.input_range)
    return Deployment(fp, fq, QuantizedDeployable(model, nodes), IntegerDeployable(model), opts)


def _act_quant(fl, values, opts, beta=None):
    """The activation quantizer of a FullPrecision layer, calibrated on its outputs ``values``
    unless its range ``beta`` is given."""
    if beta is not None and not (isinstance(beta, (int, float, np.floating)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"betas: {fl.name}: expected a positive number, got {beta!r}")
    if fl.act == "relu":
        return _ActQuant(float(beta) if beta else _calibrate(values, opts.calibration), opts.act_bits, False)
    return _ActQuant(float(beta) if beta else _calibrate(np.abs(values), opts.calibration), opts.out_bits, True)


# --- agreement between IntegerDeployable and QuantizedDeployable --------------------------------

@dataclass(frozen=True)
class LayerAgreement:
    """IntegerDeployable vs QuantizedDeployable / eps for one integer layer.

    ``equal`` / ``max_diff``: end to end (both representations run on the same input; errors
    accumulate). ``iso_equal`` / ``iso_max_diff``: isolated (QuantizedDeployable's layer fed the
    IntegerDeployable inputs). ``bound``: largest allowed isolated difference from the RQ error
    bound (Eq. 14); ``within``: every element lies in its interval
    ``[floor(x - delta), floor(x + delta)]`` (clipped), ``delta = eta * |x|`` (Add: ``eta *
    (|a| + |b|) / eps``) plus a float64 allowance.
    """
    name: str
    kind: str
    elements: int
    equal: float
    max_diff: int
    iso_equal: float
    iso_max_diff: int
    bound: int
    within: bool


def agreement(deployment, x):
    """Per-layer agreement of IntegerDeployable and QuantizedDeployable on integer inputs ``x``.

    Returns a list of :class:`LayerAgreement`, one per integer layer, in model order.
    """
    model = deployment.model
    qd = deployment.quantized
    ids = deployment.integer.run(x, trace=True)
    qds = qd.images(np.asarray(x, dtype=np.float64) * model.input.eps)
    out = []
    for layer in model.layers:
        got = ids[layer.name]
        diff = np.abs(got - qds[layer.name])
        xs = [ids[s] for s in layer.inputs]
        val = qd.value(layer, xs)
        delta = qd.delta(layer, xs, val)
        ref = qd.image(layer, val)
        lo_b, hi_b = qd.image(layer, val - delta), qd.image(layer, val + delta)
        iso = np.abs(got - ref)
        out.append(LayerAgreement(
            name=layer.name, kind=layer.kind, elements=int(got.size),
            equal=float(np.mean(diff == 0)), max_diff=int(diff.max()),
            iso_equal=float(np.mean(iso == 0)), iso_max_diff=int(iso.max()),
            bound=int(np.maximum(ref - lo_b, hi_b - ref).max()),
            within=bool(np.all((lo_b <= got) & (got <= hi_b)))))
    return out


def accuracy(logits, labels):
    """Fraction of rows of ``logits`` whose argmax (first on ties) equals ``labels``."""
    return float(np.mean(np.argmax(np.asarray(logits), axis=-1) == np.asarray(labels)))
