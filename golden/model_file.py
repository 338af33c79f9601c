"""The IntegerDeployable model file: an integer-only network as a JSON manifest plus one ``.npz``.

The file format is specified in ``docs/model-format.md`` (field table, ranges, semantics, worked
example); this module is its reference implementation. In memory a model is an
:class:`IntegerModel`: an :class:`InputSpec`, a tuple of layers in topological order
(:class:`MacLayer`, :class:`AddLayer`, :class:`RequantLayer`, :class:`PoolLayer`,
:class:`FlattenLayer`) and the names of the output tensors. Every layer carries the golden
parameter objects themselves (:class:`intdeploy.golden.requantizer.RequantParams`,
:class:`intdeploy.golden.add.AddParams`, :class:`Threshold`), so the numbers flow from the file to the
golden model (:class:`intdeploy.golden.network.IntegerDeployable`) and to a hardware driver unchanged.

Validation happens in one place for both origins of a model: constructing an
:class:`IntegerModel` (by :func:`load` or by a converter) checks every field, every array's dtype
and shape, the graph (references, arities, shapes, zero points), and proves with exact interval
arithmetic that every accumulator fits int32 (:func:`intdeploy.golden.mac_array.check_accumulator`) and
every tensor fits its declared storage dtype. Problems raise :class:`ModelFormatError` (a
``ValueError``) with one line that names the field, e.g.
``layers[2].requant.shift: 70 is out of range; allowed [0, 62]``. :func:`load` also turns a
missing, unreadable, non-JSON or truncated file into a :class:`ModelFormatError`.
"""

from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import re
import zipfile
import zlib

import numpy as np

from intdeploy.golden import mac_array, pool
from intdeploy.golden.add import AddParams
from intdeploy.golden.checks import check_int
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, ROUNDING_MODES, RequantParams, requantize
from intdeploy.golden.threshold import EXACT_RANGE

__all__ = [
    "FORMAT", "VERSION", "DTYPES", "LAYER_KINDS", "REQUANT_FIELDS", "ModelFormatError",
    "InputSpec", "Threshold", "MacLayer", "AddLayer", "RequantLayer", "PoolLayer", "FlattenLayer",
    "TensorInfo", "IntegerModel", "save", "load", "same_model",
]

FORMAT = "intdeploy-model"
VERSION = 1
#: Storage dtypes of tensors and their inclusive value ranges.
DTYPES = {
    "int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
    "int32": (INT32_MIN, INT32_MAX),
}
LAYER_KINDS = ("conv2d", "linear", "add", "requant", "maxpool2d", "avgpool2d", "flatten")
#: The integer fields of a requantizer, in file order (plus ``rounding``).
REQUANT_FIELDS = ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
#: Largest tensor dimension accepted (keeps validation and evaluation of a hostile file bounded).
MAX_DIM = 1 << 16
ACC_BITS = 32


class ModelFormatError(ValueError):
    """A model (file) that violates the format. The message is one line naming the field."""


# --- small checkers shared by the dataclasses and the loader ------------------------------------

def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name: {name!r} is not a valid name; allowed: a letter or '_', then letters, "
                         f"digits, '_', '.', '-' (at most 128 characters)")


def _check_inputs(inputs, n):
    if not isinstance(inputs, (tuple, list)) or len(inputs) != n or not all(isinstance(s, str) for s in inputs):
        raise ValueError(f"inputs: expected a list of {n} tensor name(s), got {inputs!r}")
    return tuple(inputs)


def _check_dtype(dtype, name="output.dtype"):
    if dtype not in DTYPES:
        raise ValueError(f"{name}: {dtype!r} is not one of {', '.join(DTYPES)}")


def _check_eps(name, eps, per_channel=None):
    """Reporting quanta: None, a positive finite float, or (``per_channel``) a positive float array."""
    if eps is None:
        return None
    if per_channel is not None and isinstance(eps, np.ndarray) and eps.ndim == 1:
        if eps.dtype.kind != "f" or eps.shape != (per_channel,) or not np.all(np.isfinite(eps) & (eps > 0)):
            raise ValueError(f"{name}: expected {per_channel} positive finite floats, got {eps.dtype} {eps.shape}")
        return eps.astype(np.float64)
    try:
        ok = not isinstance(eps, bool) and isinstance(eps, (int, float, np.floating, np.integer)) \
            and math.isfinite(eps) and eps > 0
    except OverflowError:          # an integer beyond the float range
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected null or a positive finite number, got {eps!r}")
    return float(eps)


def _pair(name, v, minimum):
    if not isinstance(v, (tuple, list)) or len(v) != 2 or not all(_is_int(e) for e in v):
        raise ValueError(f"{name}: expected a pair of integers, got {v!r}")
    if min(v) < minimum or max(v) > MAX_DIM:
        raise ValueError(f"{name}: {list(v)} is out of range; allowed integers in [{minimum}, {MAX_DIM}]")
    return int(v[0]), int(v[1])


def _padding(v):
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"padding: expected [[top, bottom], [left, right]], got {v!r}")
    return _pair("padding", v[0], 0), _pair("padding", v[1], 0)


def _requant_zero_point(name, rq):
    if rq.zero_point.ndim != 0:
        raise ValueError(f"{name}.zero_point: must be a per-tensor integer (it is the output tensor's zero point)")


# --- parameter objects ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Threshold:
    """Threshold epilogue (report Eq. 19-20, :func:`intdeploy.golden.threshold.threshold`).

    ``thresholds``: integer ``(C, T)``, ``T = 2**Q - 1`` (Q in 1..8), non-decreasing per channel,
    within int32; ``negate``: bool ``(C,)``. Output = number of thresholds ``t <= x`` (``-x`` on
    negated channels), in ``[0, T]``.
    """
    thresholds: np.ndarray
    negate: np.ndarray

    def __post_init__(self):
        th, neg = self.thresholds, self.negate
        if not isinstance(th, np.ndarray) or th.dtype.kind not in "iu" or th.ndim != 2 or th.shape[0] == 0:
            raise ValueError(f"thresholds: expected an integer array (C, T), got "
                             f"{getattr(th, 'dtype', type(th).__name__)} {getattr(th, 'shape', '')}")
        if th.shape[1] not in {(1 << q) - 1 for q in range(1, 9)}:
            raise ValueError(f"thresholds: T = {th.shape[1]} per channel; allowed 2**Q - 1 for Q in 1..8")
        if th.size and (int(th.min()) < INT32_MIN or int(th.max()) > INT32_MAX):
            bad = int(th.min()) if int(th.min()) < INT32_MIN else int(th.max())
            raise ValueError(f"thresholds: {bad} is out of range; allowed int32 [{INT32_MIN}, {INT32_MAX}]")
        th = th.astype(np.int64)
        down = np.nonzero(np.any(np.diff(th, axis=1) < 0, axis=1))[0]
        if down.size:
            raise ValueError(f"thresholds: channel {int(down[0])} is not non-decreasing")
        if not isinstance(neg, np.ndarray) or neg.dtype != bool or neg.shape != (th.shape[0],):
            raise ValueError(f"negate: expected a bool array ({th.shape[0]},), got "
                             f"{getattr(neg, 'dtype', type(neg).__name__)} {getattr(neg, 'shape', '')}")
        object.__setattr__(self, "thresholds", th)

    @property
    def levels(self):
        return self.thresholds.shape[1]


@dataclass(frozen=True, kw_only=True, eq=False)
class InputSpec:
    """The network input: per-sample ``shape`` (e.g. ``(H, W, C)``), storage ``dtype``, the integer
    image's ``zero_point`` and accepted value range ``[lo, hi]`` (defaults: the dtype's range),
    and its quantum ``eps`` (reporting; None if unknown)."""
    shape: tuple
    dtype: str = "uint8"
    zero_point: int = 0
    lo: int = None
    hi: int = None
    eps: float = None
    name: str = "input"

    def __post_init__(self):
        _check_name(self.name)
        if not isinstance(self.shape, (tuple, list)) or not 1 <= len(self.shape) <= 3 \
                or not all(_is_int(d) and 1 <= d <= MAX_DIM for d in self.shape):
            raise ValueError(f"shape: expected 1 to 3 dimensions in [1, {MAX_DIM}], got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        _check_dtype(self.dtype, "dtype")
        dlo, dhi = DTYPES[self.dtype]
        lo = dlo if self.lo is None else check_int("lo", self.lo, dlo, dhi)
        hi = dhi if self.hi is None else check_int("hi", self.hi, dlo, dhi)
        if lo > hi:
            raise ValueError(f"lo, hi: lo must be <= hi, got {lo} > {hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "zero_point", check_int("zero_point", self.zero_point, dlo, dhi))
        object.__setattr__(self, "eps", _check_eps("eps", self.eps))


class _Layer:
    """Checks shared by all layers (name, inputs, output dtype and reporting eps)."""
    n_inputs = 1

    def _check_common(self):
        _check_name(self.name)
        object.__setattr__(self, "inputs", _check_inputs(self.inputs, self.n_inputs))
        _check_dtype(self.dtype)
        object.__setattr__(self, "eps", _check_eps("output.eps", self.eps))


@dataclass(frozen=True, kw_only=True, eq=False)
class MacLayer(_Layer):
    """A conv2d or linear layer: MAC array (:mod:`intdeploy.golden.mac_array`) then one epilogue.

    ``weight`` int8, OHWI ``(Cout, KH, KW, Cin)`` (conv2d) or ``(M, K)`` (linear), values within
    ``weight_bits`` signed bits; ``weight_zero_point`` int or ``(Cout,)``, in [-128, 127];
    ``input_zero_point``: the input tensor's zero point (also the padding value). Exactly one of
    ``requant`` (:class:`RequantParams`, per-tensor ``zero_point``) or ``threshold``.
    ``weight_eps`` (reporting): None, a float or ``(Cout,)`` floats.
    """
    kind: str
    name: str
    inputs: tuple
    weight: np.ndarray
    weight_zero_point: object = 0
    weight_bits: int = 8
    input_zero_point: int = 0
    stride: tuple = (1, 1)
    padding: tuple = ((0, 0), (0, 0))
    requant: RequantParams = None
    threshold: Threshold = None
    dtype: str = "uint8"
    eps: float = None
    weight_eps: object = None

    def __post_init__(self):
        if self.kind not in ("conv2d", "linear"):
            raise ValueError(f"kind: {self.kind!r} is not conv2d or linear")
        self._check_common()
        w = self.weight
        ndim = 4 if self.kind == "conv2d" else 2
        if not isinstance(w, np.ndarray) or w.dtype != np.int8:
            raise ValueError(f"weight: expected an int8 array, got {getattr(w, 'dtype', type(w).__name__)}")
        if w.ndim != ndim or w.size == 0 or max(w.shape) > MAX_DIM:
            raise ValueError(f"weight: expected {ndim} non-empty dimensions "
                             f"({'(Cout, KH, KW, Cin)' if ndim == 4 else '(M, K)'}), got shape {w.shape}")
        bits = check_int("weight_bits", self.weight_bits, 2, 8)
        if int(w.min()) < -(1 << (bits - 1)) or int(w.max()) > (1 << (bits - 1)) - 1:
            bad = int(w.min()) if int(w.min()) < -(1 << (bits - 1)) else int(w.max())
            raise ValueError(f"weight: {bad} is out of range; allowed [{-(1 << (bits - 1))}, "
                             f"{(1 << (bits - 1)) - 1}] (weight_bits {bits})")
        cout = w.shape[0]
        zp = self.weight_zero_point
        if isinstance(zp, np.ndarray) and zp.ndim == 1:
            if zp.dtype.kind not in "iu" or zp.shape != (cout,):
                raise ValueError(f"weight_zero_point: expected an integer or {cout} integers, got {zp.dtype} {zp.shape}")
            if int(zp.min()) < -128 or int(zp.max()) > 127:
                bad = int(zp.min()) if int(zp.min()) < -128 else int(zp.max())
                raise ValueError(f"weight_zero_point: {bad} is out of range; allowed [-128, 127]")
            zp = zp.astype(np.int64)
        else:
            zp = check_int("weight_zero_point", zp, -128, 127)
        object.__setattr__(self, "weight_zero_point", zp)
        object.__setattr__(self, "input_zero_point", check_int("input_zero_point", self.input_zero_point,
                                                                INT32_MIN, INT32_MAX))
        if self.kind == "conv2d":
            object.__setattr__(self, "stride", _pair("stride", self.stride, 1))
            object.__setattr__(self, "padding", _padding(self.padding))
        if (self.requant is None) == (self.threshold is None):
            raise ValueError("requant, threshold: a layer has exactly one epilogue; give one of them")
        if self.requant is not None:
            if not isinstance(self.requant, RequantParams):
                raise ValueError(f"requant: expected RequantParams, got {type(self.requant).__name__}")
            if self.requant.channels not in (None, cout):
                raise ValueError(f"requant: {self.requant.channels} channels, the layer has {cout}")
            _requant_zero_point("requant", self.requant)
        else:
            if not isinstance(self.threshold, Threshold):
                raise ValueError(f"threshold: expected Threshold, got {type(self.threshold).__name__}")
            if self.threshold.thresholds.shape[0] != cout:
                raise ValueError(f"threshold.thresholds: {self.threshold.thresholds.shape[0]} channels, "
                                 f"the layer has {cout}")
        object.__setattr__(self, "weight_eps", _check_eps("weight_eps", self.weight_eps, cout))

    @property
    def out_channels(self):
        return self.weight.shape[0]

    @property
    def in_channels(self):
        return self.weight.shape[-1]


@dataclass(frozen=True, kw_only=True, eq=False)
class AddLayer(_Layer):
    """Integer Add of two tensors (:func:`intdeploy.golden.add.add`); ``params.in_zero_points`` must be the
    inputs' zero points and ``params.output.zero_point`` is per-tensor."""
    name: str
    inputs: tuple
    params: AddParams
    dtype: str = "int32"
    eps: float = None
    kind = "add"
    n_inputs = 2

    def __post_init__(self):
        self._check_common()
        if not isinstance(self.params, AddParams):
            raise ValueError(f"params: expected AddParams, got {type(self.params).__name__}")
        _requant_zero_point("requant", self.params.output)


@dataclass(frozen=True, kw_only=True, eq=False)
class RequantLayer(_Layer):
    """An element-wise requantizer (e.g. NEMO's activation after an Add): ``requantize(x, requant)``."""
    name: str
    inputs: tuple
    requant: RequantParams
    dtype: str = "uint8"
    eps: float = None
    kind = "requant"

    def __post_init__(self):
        self._check_common()
        if not isinstance(self.requant, RequantParams):
            raise ValueError(f"requant: expected RequantParams, got {type(self.requant).__name__}")
        _requant_zero_point("requant", self.requant)


#: Pooling modes of :class:`PoolLayer` (names of :data:`intdeploy.golden.pool.POOL_MODES`) and file names.
_POOL_FILE_MODE = {"avg_nemo": "nemo", "avg_tflite": "tflite"}


@dataclass(frozen=True, kw_only=True, eq=False)
class PoolLayer(_Layer):
    """2-D pooling of an ``(H, W, C)`` tensor: ``mode`` ``max`` (kind maxpool2d), ``avg_nemo``
    (Eq. 25 with ``d``, no padding) or ``avg_tflite`` (padding excluded, clamp ``[lo, hi]``)
    (kind avgpool2d). ``lo``/``hi``: optional clamp (required for ``avg_tflite``)."""
    name: str
    inputs: tuple
    mode: str
    kernel: tuple
    stride: tuple = None
    padding: tuple = ((0, 0), (0, 0))
    d: int = None
    lo: int = None
    hi: int = None
    dtype: str = "uint8"
    eps: float = None

    def __post_init__(self):
        if self.mode not in ("max", "avg_nemo", "avg_tflite"):
            raise ValueError(f"mode: {self.mode!r} is not one of max, avg_nemo, avg_tflite")
        self._check_common()
        k = _pair("kernel", self.kernel, 1)
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", k if self.stride is None else _pair("stride", self.stride, 1))
        pad = _padding(self.padding)
        object.__setattr__(self, "padding", pad)
        if max(pad[0]) >= k[0] or max(pad[1]) >= k[1]:
            raise ValueError(f"padding: {[list(p) for p in pad]} must be smaller than the kernel {list(k)}")
        if self.mode == "avg_nemo":
            if pad != ((0, 0), (0, 0)):
                raise ValueError("padding: NEMO average pooling (Eq. 25) has no padding; allowed [[0, 0], [0, 0]]")
            d = check_int("d", self.d, 0, 31)
            if (1 << d) < k[0] * k[1]:
                raise ValueError(f"d: 2**{d} < kernel area {k[0] * k[1]}; allowed d >= log2(KH*KW)")
        elif self.d is not None:
            raise ValueError(f"d: only NEMO average pooling has d; expected null, got {self.d!r}")
        for nm in ("lo", "hi"):
            v = getattr(self, nm)
            if v is not None:
                check_int(nm, v, INT32_MIN, INT32_MAX)
        if self.mode == "avg_tflite" and (self.lo is None or self.hi is None):
            raise ValueError("lo, hi: TFLite average pooling clamps; both are required")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"lo, hi: lo must be <= hi, got {self.lo} > {self.hi}")

    @property
    def kind(self):
        return "maxpool2d" if self.mode == "max" else "avgpool2d"


@dataclass(frozen=True, kw_only=True, eq=False)
class FlattenLayer(_Layer):
    """Flatten a per-sample tensor in row-major (``h, w, c``) order."""
    name: str
    inputs: tuple
    dtype: str = "uint8"
    eps: float = None
    kind = "flatten"

    def __post_init__(self):
        self._check_common()


@dataclass(frozen=True)
class TensorInfo:
    """What validation proved about a tensor: per-sample ``shape``, storage ``dtype``, ``zero_point``,
    the exact-or-wider value range ``[lo, hi]`` every input in range can produce, and ``eps``."""
    shape: tuple
    dtype: str
    zero_point: int
    lo: int
    hi: int
    eps: float


# --- the model and its graph validation -------------------------------------------------------

def _rq_image(x_lo, x_hi, rq, what):
    """Range of ``requantize`` over inputs in per-channel ``[x_lo, x_hi]`` (int64 arrays).

    The requantizer is monotone per channel (non-decreasing for ``mult >= 0``, non-increasing
    otherwise) as long as nothing wraps, so the ends of the input range give the ends of the
    output range. Two steps could wrap and are refused (ValueError naming ``what``):
    ``acc + bias`` leaving int32, and, for ``tflite`` rounding, gemmlowp's int32 left shift by
    ``31 - shift`` bits.
    """
    c = x_lo.shape[0]
    bias = np.broadcast_to(rq.bias, (c,))
    t_lo, t_hi = x_lo + bias, x_hi + bias
    if int(t_lo.min()) < INT32_MIN or int(t_hi.max()) > INT32_MAX:
        bad = int(t_lo.min()) if int(t_lo.min()) < INT32_MIN else int(t_hi.max())
        raise ValueError(f"{what}.bias: input + bias reaches {bad}, outside int32 (it would wrap)")
    if rq.rounding == "tflite":
        left = np.maximum(31 - np.broadcast_to(rq.shift, (c,)), 0)
        s_lo, s_hi = t_lo << left, t_hi << left
        if int(s_lo.min()) < INT32_MIN or int(s_hi.max()) > INT32_MAX:
            raise ValueError(f"{what}.shift: tflite rounding shifts the input left by 31 - shift bits, "
                             f"which wraps int32 for this input range")
    out = requantize(np.stack([x_lo, x_hi]), rq)
    return int(out.min()), int(out.max())


def _channels_of(*rqs):
    chans = {rq.channels for rq in rqs if rq.channels is not None}
    return chans.pop() if chans else 1


@dataclass(frozen=True, eq=False)
class IntegerModel:
    """An IntegerDeployable network; constructing one validates it (raises :class:`ModelFormatError`).

    Attributes
    ----------
    input : InputSpec
    layers : tuple of layers, topologically ordered (inputs refer to the input or earlier layers)
    outputs : tuple of str, the network's output tensors
    name : str
    metadata : dict, JSON-serialisable, free-form (provenance, converter options, accuracies)
    tensors : dict ``name -> TensorInfo`` for the input and every layer (computed)
    """
    input: InputSpec
    layers: tuple
    outputs: tuple
    name: str = "model"
    metadata: dict = field(default_factory=dict)
    tensors: dict = field(init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.input, InputSpec):
            raise ModelFormatError(f"input: expected InputSpec, got {type(self.input).__name__}")
        if not isinstance(self.name, str):
            raise ModelFormatError(f"name: expected a string, got {self.name!r}")
        if not isinstance(self.metadata, dict):
            raise ModelFormatError(f"metadata: expected an object, got {type(self.metadata).__name__}")
        try:
            json.dumps(self.metadata, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ModelFormatError(f"metadata: not JSON-serialisable ({e})") from None
        layers = tuple(self.layers)
        if not layers:
            raise ModelFormatError("layers: a model needs at least one layer")
        object.__setattr__(self, "layers", layers)
        inp = self.input
        tensors = {inp.name: TensorInfo(inp.shape, inp.dtype, inp.zero_point, inp.lo, inp.hi, inp.eps)}
        for i, layer in enumerate(layers):
            path = f"layers[{i}]"
            if not isinstance(layer, (MacLayer, AddLayer, RequantLayer, PoolLayer, FlattenLayer)):
                raise ModelFormatError(f"{path}: expected a layer object, got {type(layer).__name__}")
            if layer.name in tensors:
                raise ModelFormatError(f"{path}.name: {layer.name!r} is already used by "
                                       f"{'the input' if layer.name == inp.name else 'an earlier layer'}")
            srcs = []
            for j, src in enumerate(layer.inputs):
                if src not in tensors:
                    raise ModelFormatError(f"{path}.inputs[{j}]: {src!r} is not the input or an earlier layer")
                srcs.append(tensors[src])
            try:
                shape, zp, lo, hi = _infer(layer, srcs, path)
            except ModelFormatError:
                raise
            except ValueError as e:
                msg = str(e)
                raise ModelFormatError(msg if msg.startswith(path) else f"{path}: {msg}") from None
            dlo, dhi = DTYPES[layer.dtype]
            if lo < dlo or hi > dhi:
                bad = lo if lo < dlo else hi
                raise ModelFormatError(f"{path}.output.dtype: values can reach {bad}, outside "
                                       f"{layer.dtype} [{dlo}, {dhi}]")
            tensors[layer.name] = TensorInfo(shape, layer.dtype, zp, lo, hi, layer.eps)
        outs = self.outputs
        if isinstance(outs, str) or not isinstance(outs, (tuple, list)) or not outs:
            raise ModelFormatError(f"outputs: expected a non-empty list of tensor names, got {outs!r}")
        for j, o in enumerate(outs):
            if not isinstance(o, str) or o not in tensors:
                raise ModelFormatError(f"outputs[{j}]: {o!r} is not the input or a layer")
        object.__setattr__(self, "outputs", tuple(outs))
        object.__setattr__(self, "tensors", tensors)

    def layer(self, name):
        """The layer called ``name`` (KeyError if none)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def _conv_out(size, k, s, pads, axis, path):
    out = (size + pads[0] + pads[1] - k) // s + 1
    if size + pads[0] + pads[1] < k:
        raise ModelFormatError(f"{path}.kernel: {k} is larger than the padded input ({size + sum(pads)}) on {axis}")
    return out


def _infer(layer, srcs, path):
    """Output ``(shape, zero_point, lo, hi)`` of ``layer`` given its input tensors; checks the
    layer against them (shapes, zero points, accumulator width)."""
    x = srcs[0]
    if isinstance(layer, MacLayer):
        w = layer.weight
        if layer.kind == "conv2d":
            if len(x.shape) != 3:
                raise ModelFormatError(f"{path}.inputs[0]: conv2d needs an (H, W, C) tensor, "
                                       f"{layer.inputs[0]!r} has shape {list(x.shape)}")
            (pt, pb), (pl, pr) = layer.padding
            oh = _conv_out(x.shape[0], w.shape[1], layer.stride[0], (pt, pb), "H", path)
            ow = _conv_out(x.shape[1], w.shape[2], layer.stride[1], (pl, pr), "W", path)
            shape = (oh, ow, w.shape[0])
            padded = (pt, pb, pl, pr) != (0, 0, 0, 0)
        else:
            shape = x.shape[:-1] + (w.shape[0],)
            padded = False
        if x.shape[-1] != w.shape[-1]:
            raise ModelFormatError(f"{path}.weight: expects {w.shape[-1]} input channels, "
                                   f"{layer.inputs[0]!r} has {x.shape[-1]}")
        if layer.input_zero_point != x.zero_point:
            raise ModelFormatError(f"{path}.input_zero_point: {layer.input_zero_point} differs from the "
                                   f"zero point {x.zero_point} of {layer.inputs[0]!r}")
        # Padded taps hold the zero point, so it is part of the input range.
        x_lo, x_hi = (min(x.lo, x.zero_point), max(x.hi, x.zero_point)) if padded else (x.lo, x.hi)
        # The accumulator itself and, for a requantizer, acc + bias must fit int32 (the
        # requantizer wraps acc + bias like the hardware; a proof that it cannot wrap is needed).
        biases = [None] + ([layer.requant.bias] if layer.requant is not None and np.any(layer.requant.bias) else [])
        for bias in biases:
            mac_array.check_accumulator(w, x_lo, x_hi, x.zero_point, layer.weight_zero_point, bias,
                                        bits=ACC_BITS, name=f"{path}.weight")
        acc_lo, acc_hi = mac_array.accumulator_range(w, x_lo, x_hi, x.zero_point, layer.weight_zero_point)
        if layer.requant is not None:
            lo, hi = _rq_image(acc_lo, acc_hi, layer.requant, f"{path}.requant")
            return shape, int(layer.requant.zero_point), lo, hi
        if int(acc_lo.min()) < EXACT_RANGE[0] or int(acc_hi.max()) > EXACT_RANGE[1]:
            raise ModelFormatError(f"{path}.threshold: accumulator range [{int(acc_lo.min())}, "
                                   f"{int(acc_hi.max())}] exceeds the thresholds' exact range {list(EXACT_RANGE)}")
        return shape, 0, 0, layer.threshold.levels
    if isinstance(layer, AddLayer):
        a, b = srcs
        if a.shape != b.shape:
            raise ModelFormatError(f"{path}.inputs: shapes differ: {list(a.shape)} and {list(b.shape)}")
        p = layer.params
        if p.in_zero_points != (a.zero_point, b.zero_point):
            raise ModelFormatError(f"{path}.in_zero_points: {list(p.in_zero_points)} differ from the inputs' "
                                   f"zero points {[a.zero_point, b.zero_point]}")
        for j, rq in enumerate(p.branches + (p.output,)):
            if rq.channels not in (None, a.shape[-1]):
                what = f"branches[{j}]" if j < 2 else "requant"
                raise ModelFormatError(f"{path}.{what}: {rq.channels} channels, the tensors have {a.shape[-1]}")
        # The add unit wraps (x - zp) << left_shift and the branch sum to int32 like TFLite's C
        # code; a valid model proves that neither can wrap. Each requantizer is monotone in its
        # input, so interval arithmetic on the extremes is exact.
        c = _channels_of(*p.branches, p.output)
        s_lo = s_hi = 0
        for j, (t, zp, rq) in enumerate(zip((a, b), p.in_zero_points, p.branches)):
            u_lo, u_hi = (t.lo - zp) << p.left_shift, (t.hi - zp) << p.left_shift
            if u_lo < INT32_MIN or u_hi > INT32_MAX:
                raise ModelFormatError(f"{path}.left_shift: ({layer.inputs[j]!r} - {zp}) << {p.left_shift} "
                                       f"reaches {u_lo if u_lo < INT32_MIN else u_hi}, outside int32")
            v_lo, v_hi = _rq_image(np.full(c, u_lo), np.full(c, u_hi), rq, f"{path}.branches[{j}]")
            s_lo, s_hi = s_lo + v_lo, s_hi + v_hi
        if s_lo < INT32_MIN or s_hi > INT32_MAX:
            raise ModelFormatError(f"{path}.branches: the sum of the branch results reaches "
                                   f"{s_lo if s_lo < INT32_MIN else s_hi}, outside int32")
        lo, hi = _rq_image(np.full(c, s_lo >> p.sum_shift), np.full(c, s_hi >> p.sum_shift), p.output,
                           f"{path}.requant")
        return a.shape, int(p.output.zero_point), lo, hi
    if isinstance(layer, RequantLayer):
        rq = layer.requant
        if rq.channels not in (None, x.shape[-1]):
            raise ModelFormatError(f"{path}.requant: {rq.channels} channels, the input has {x.shape[-1]}")
        c = _channels_of(rq)
        lo, hi = _rq_image(np.full(c, x.lo), np.full(c, x.hi), rq, f"{path}.requant")
        return x.shape, int(rq.zero_point), lo, hi
    if isinstance(layer, PoolLayer):
        if len(x.shape) != 3:
            raise ModelFormatError(f"{path}.inputs[0]: pooling needs an (H, W, C) tensor, "
                                   f"{layer.inputs[0]!r} has shape {list(x.shape)}")
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        shape = (_conv_out(x.shape[0], kh, sh, ph, "H", path), _conv_out(x.shape[1], kw, sw, pw, "W", path), x.shape[2])
        lo, hi = x.lo, x.hi
        if layer.mode == "avg_nemo":
            # Eq. 25 is monotone in the window sum, so constant windows at the input's extremes
            # give the output's.
            ends = pool.pool_windows(np.array([[[lo]] * (kh * kw), [[hi]] * (kh * kw)]), "avg_nemo", d=layer.d)
            lo, hi = int(ends.min()), int(ends.max())
        if layer.lo is not None:
            lo, hi = max(lo, layer.lo), max(hi, layer.lo)
        if layer.hi is not None:
            lo, hi = min(lo, layer.hi), min(hi, layer.hi)
        return shape, x.zero_point, lo, hi
    return (int(np.prod(x.shape)),), x.zero_point, x.lo, x.hi          # FlattenLayer


# --- JSON + npz -----------------------------------------------------------------------------------

def _jtype(v):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


class _Reader:
    """Typed access to the manifest with full paths in every error."""

    def __init__(self, arrays, npz_name):
        self.arrays = arrays
        self.npz_name = npz_name
        self.used = set()

    def obj(self, v, path, required, optional=()):
        """``v`` as an object with all ``required`` keys and no key outside ``required + optional``;
        ``path`` "" is the top level of the manifest."""
        if not isinstance(v, dict):
            raise ModelFormatError(f"{path or 'manifest'}: expected an object, got {_jtype(v)}")
        for k in required:
            if k not in v:
                raise ModelFormatError(f"{path + '.' if path else ''}{k}: required key is missing")
        allowed = set(required) | set(optional)
        for k in v:
            if k not in allowed:
                raise ModelFormatError(f"{path or 'manifest'}: unknown key {k!r}; "
                                       f"allowed: {', '.join(sorted(allowed))}")
        return v

    @staticmethod
    def int(v, path, lo=None, hi=None):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ModelFormatError(f"{path}: expected an integer, got {_jtype(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ModelFormatError(f"{path}: {v} is out of range; allowed [{lo}, {hi}]")
        return v

    @staticmethod
    def str(v, path, choices=None):
        if not isinstance(v, str):
            raise ModelFormatError(f"{path}: expected a string, got {_jtype(v)}")
        if choices is not None and v not in choices:
            raise ModelFormatError(f"{path}: {v!r} is not one of {', '.join(choices)}")
        return v

    @staticmethod
    def list(v, path, n=None):
        if not isinstance(v, list):
            raise ModelFormatError(f"{path}: expected a list, got {_jtype(v)}")
        if n is not None and len(v) != n:
            raise ModelFormatError(f"{path}: expected {n} entries, got {len(v)}")
        return v

    def int_list(self, v, path, n):
        return [self.int(e, f"{path}[{j}]") for j, e in enumerate(self.list(v, path, n))]

    def padding(self, v, path):
        return [self.int_list(e, f"{path}[{j}]", 2) for j, e in enumerate(self.list(v, path, 2))]

    def array(self, ref, path, kinds, ndim):
        """The npz array named by the string ``ref``: dtype kind in ``kinds``, ``ndim`` dims."""
        name = self.str(ref, path)
        if name not in self.arrays:
            raise ModelFormatError(f"{path}: array {name!r} is not in {self.npz_name}")
        arr = self.arrays[name]
        if kinds is not None and arr.dtype.kind not in kinds:
            want = {"iu": "an integer", "b": "a bool", "f": "a float", "i": "a signed integer"}.get(kinds, kinds)
            raise ModelFormatError(f"{path}: array {name!r} has dtype {arr.dtype}; expected {want} dtype")
        if arr.ndim != ndim:
            raise ModelFormatError(f"{path}: array {name!r} has shape {list(arr.shape)}; expected {ndim} dimension(s)")
        self.used.add(name)
        return arr

    def int_or_array(self, v, path):
        """A per-tensor JSON integer or the name of a per-channel 1-D integer array."""
        if isinstance(v, str):
            return self.array(v, path, "iu", 1)
        return self.int(v, path)

    def eps(self, v, path, per_channel=False):
        if v is None:
            return None
        if per_channel and isinstance(v, str):
            return self.array(v, path, "f", 1)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ModelFormatError(f"{path}: expected null or a positive number, got {_jtype(v)}")
        return v

    def requant(self, v, path):
        self.obj(v, path, ("rounding",) + REQUANT_FIELDS)
        kw = {f: self.int_or_array(v[f], f"{path}.{f}") for f in REQUANT_FIELDS}
        kw["rounding"] = self.str(v["rounding"], f"{path}.rounding", tuple(ROUNDING_MODES))
        return _construct(RequantParams, kw, path)


_FIELD_MSG = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")


def _construct(cls, kw, path):
    """``cls(**kw)``, turning its ValueError into a ModelFormatError under ``path``: a message
    ``"field: ..."`` becomes ``"<path>.field: ..."``, any other ``"<path>: ..."``."""
    try:
        return cls(**kw)
    except ModelFormatError:
        raise
    except ValueError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFormatError(f"{path}.{msg}" if _FIELD_MSG.match(msg) else f"{path}: {msg}") from None


_COMMON = ("name", "kind", "inputs", "output")
_MAC = ("weight", "weight_bits", "weight_zero_point", "weight_eps", "input_zero_point")
_KIND_KEYS = {
    "conv2d": (_COMMON + _MAC + ("kernel", "stride", "padding", "in_channels", "out_channels"), ("requant", "threshold")),
    "linear": (_COMMON + _MAC + ("in_features", "out_features"), ("requant", "threshold")),
    "add": (_COMMON + ("in_zero_points", "left_shift", "branches", "requant"), ("sum_shift",)),
    "requant": (_COMMON + ("requant",), ()),
    "maxpool2d": (_COMMON + ("kernel", "stride", "padding"), ()),
    "avgpool2d": (_COMMON + ("kernel", "stride", "padding", "mode", "d", "lo", "hi"), ()),
    "flatten": (_COMMON, ()),
}


def _parse_layer(r, v, path):
    r.obj(v, path, ("kind",), [k for keys in _KIND_KEYS.values() for k in keys[0] + keys[1]])
    kind = r.str(v["kind"], f"{path}.kind", LAYER_KINDS)
    required, optional = _KIND_KEYS[kind]
    r.obj(v, path, required, optional)
    out = r.obj(v["output"], f"{path}.output", ("shape", "dtype", "eps"))
    common = {
        "name": r.str(v["name"], f"{path}.name"),
        "inputs": [r.str(s, f"{path}.inputs[{j}]") for j, s in enumerate(r.list(v["inputs"], f"{path}.inputs"))],
        "dtype": r.str(out["dtype"], f"{path}.output.dtype", tuple(DTYPES)),
        "eps": r.eps(out["eps"], f"{path}.output.eps"),
    }
    shape = r.int_list(out["shape"], f"{path}.output.shape", len(r.list(out["shape"], f"{path}.output.shape")))
    if kind in ("conv2d", "linear"):
        ndim = 4 if kind == "conv2d" else 2
        w = r.array(v["weight"], f"{path}.weight", None, ndim)     # MacLayer names the dtype it wants
        kw = dict(common, kind=kind, weight=w,
                  weight_bits=r.int(v["weight_bits"], f"{path}.weight_bits"),
                  weight_zero_point=r.int_or_array(v["weight_zero_point"], f"{path}.weight_zero_point"),
                  weight_eps=r.eps(v["weight_eps"], f"{path}.weight_eps", per_channel=True),
                  input_zero_point=r.int(v["input_zero_point"], f"{path}.input_zero_point"))
        if kind == "conv2d":
            kernel = r.int_list(v["kernel"], f"{path}.kernel", 2)
            cin = r.int(v["in_channels"], f"{path}.in_channels")
            cout = r.int(v["out_channels"], f"{path}.out_channels")
            if list(w.shape) != [cout] + kernel + [cin]:
                raise ModelFormatError(f"{path}.weight: array {v['weight']!r} has shape {list(w.shape)}; expected "
                                       f"[out_channels, kernel[0], kernel[1], in_channels] = {[cout] + kernel + [cin]}")
            kw["stride"] = r.int_list(v["stride"], f"{path}.stride", 2)
            kw["padding"] = r.padding(v["padding"], f"{path}.padding")
        else:
            k = r.int(v["in_features"], f"{path}.in_features")
            m = r.int(v["out_features"], f"{path}.out_features")
            if list(w.shape) != [m, k]:
                raise ModelFormatError(f"{path}.weight: array {v['weight']!r} has shape {list(w.shape)}; "
                                       f"expected [out_features, in_features] = {[m, k]}")
        if ("requant" in v) == ("threshold" in v):
            raise ModelFormatError(f"{path}: exactly one of 'requant' or 'threshold' is required")
        if "requant" in v:
            kw["requant"] = r.requant(v["requant"], f"{path}.requant")
        else:
            t = r.obj(v["threshold"], f"{path}.threshold", ("thresholds", "negate"))
            kw["threshold"] = _construct(Threshold, {
                "thresholds": r.array(t["thresholds"], f"{path}.threshold.thresholds", "iu", 2),
                "negate": r.array(t["negate"], f"{path}.threshold.negate", "b", 1)}, f"{path}.threshold")
        layer = _construct(MacLayer, kw, path)
    elif kind == "add":
        zps = r.int_list(v["in_zero_points"], f"{path}.in_zero_points", 2)
        branches = [r.requant(b, f"{path}.branches[{j}]") for j, b in enumerate(r.list(v["branches"], f"{path}.branches", 2))]
        params = _construct(AddParams, {"in_zero_points": tuple(zps),
                                        "left_shift": r.int(v["left_shift"], f"{path}.left_shift"),
                                        "sum_shift": r.int(v["sum_shift"], f"{path}.sum_shift") if "sum_shift" in v else 0,
                                        "branches": tuple(branches),
                                        "output": r.requant(v["requant"], f"{path}.requant")}, path)
        layer = _construct(AddLayer, dict(common, params=params), path)
    elif kind == "requant":
        layer = _construct(RequantLayer, dict(common, requant=r.requant(v["requant"], f"{path}.requant")), path)
    elif kind in ("maxpool2d", "avgpool2d"):
        kw = dict(common, kernel=r.int_list(v["kernel"], f"{path}.kernel", 2),
                  stride=r.int_list(v["stride"], f"{path}.stride", 2),
                  padding=r.padding(v["padding"], f"{path}.padding"))
        if kind == "maxpool2d":
            kw["mode"] = "max"
        else:
            mode = r.str(v["mode"], f"{path}.mode", ("nemo", "tflite"))
            kw["mode"] = "avg_" + mode
            for f in ("d", "lo", "hi"):
                kw[f] = None if v[f] is None else r.int(v[f], f"{path}.{f}")
        layer = _construct(PoolLayer, kw, path)
    else:
        layer = _construct(FlattenLayer, common, path)
    return layer, tuple(shape)


def _from_manifest(manifest, arrays, npz_name):
    r = _Reader(arrays, npz_name)
    if not isinstance(manifest, dict):
        raise ModelFormatError(f"manifest: expected a JSON object, got {_jtype(manifest)}")
    for k in ("format", "version"):
        if k not in manifest:
            raise ModelFormatError(f"{k}: required key is missing")
    if manifest["format"] != FORMAT:
        raise ModelFormatError(f"format: {manifest['format']!r} is not {FORMAT!r}")
    version = manifest["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version != VERSION:
        raise ModelFormatError(f"version: {version!r} is not supported; supported: {VERSION}")
    r.obj(manifest, "", ("format", "version", "name", "arrays", "input", "layers", "outputs"), ("metadata",))
    r.str(manifest["arrays"], "arrays")
    iv = r.obj(manifest["input"], "input", ("name", "shape", "dtype", "zero_point", "lo", "hi", "eps"))
    shape_v = r.list(iv["shape"], "input.shape")
    spec = _construct(InputSpec, {
        "name": r.str(iv["name"], "input.name"), "shape": tuple(r.int_list(shape_v, "input.shape", len(shape_v))),
        "dtype": r.str(iv["dtype"], "input.dtype", tuple(DTYPES)), "zero_point": r.int(iv["zero_point"], "input.zero_point"),
        "lo": r.int(iv["lo"], "input.lo"), "hi": r.int(iv["hi"], "input.hi"), "eps": r.eps(iv["eps"], "input.eps")}, "input")
    layers, shapes = [], []
    for i, lv in enumerate(r.list(manifest["layers"], "layers")):
        layer, shape = _parse_layer(r, lv, f"layers[{i}]")
        layers.append(layer)
        shapes.append(shape)
    outputs = [r.str(o, f"outputs[{j}]") for j, o in enumerate(r.list(manifest["outputs"], "outputs"))]
    metadata = manifest.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFormatError(f"metadata: expected an object, got {_jtype(metadata)}")
    model = IntegerModel(input=spec, layers=tuple(layers), outputs=tuple(outputs),
                         name=r.str(manifest["name"], "name"), metadata=metadata)
    for i, (layer, shape) in enumerate(zip(layers, shapes)):
        if model.tensors[layer.name].shape != shape:
            raise ModelFormatError(f"layers[{i}].output.shape: {list(shape)} differs from the computed "
                                   f"{list(model.tensors[layer.name].shape)}")
    return model


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise ModelFormatError(f"arrays: {path}: file not found") from None
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError, RuntimeError, zlib.error,
            zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        # zipfile raises NotImplementedError for an unknown zip version or compression method and
        # RuntimeError for an encrypted member; zlib.error comes from a corrupt compressed member.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFormatError(f"arrays: {path}: not a readable .npz file ({reason})") from None


def load(path):
    """Load and validate a model file (the JSON manifest; its ``arrays`` names the ``.npz`` beside it).

    Returns an :class:`IntegerModel`. Raises :class:`ModelFormatError` with one line naming the
    problem for anything wrong with the files (missing, unreadable, not JSON, truncated npz,
    missing or unknown key, wrong type, dtype or shape, value out of range, inconsistent graph).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot read ({e})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ModelFormatError(f"{path}: not valid JSON (nested too deeply)") from None
    arrays_name = manifest.get("arrays") if isinstance(manifest, dict) else None
    if isinstance(manifest, dict) and manifest.get("format") == FORMAT and manifest.get("version") == VERSION:
        if not isinstance(arrays_name, str) or not arrays_name or Path(arrays_name).is_absolute() \
                or ".." in Path(arrays_name).parts:
            raise ModelFormatError(f"arrays: expected the .npz file name relative to the manifest, got {arrays_name!r}")
        arrays = _read_npz(path.parent / arrays_name)
    else:
        arrays = {}     # format / version errors are reported before the arrays are read
    return _from_manifest(manifest, arrays, arrays_name)


# --- writing --------------------------------------------------------------------------------------

class _Writer:
    def __init__(self):
        self.arrays = {}

    def put(self, key, arr):
        if key in self.arrays:
            raise ValueError(f"{key}: two arrays would share this name; layer names must be distinct")
        self.arrays[key] = arr
        return key

    def int_or_array(self, key, arr):
        arr = np.asarray(arr)
        return int(arr) if arr.ndim == 0 else self.put(key, arr.astype(np.int64))

    def requant(self, key, rq):
        d = {"rounding": rq.rounding}
        for f in REQUANT_FIELDS:
            d[f] = self.int_or_array(f"{key}.{f}", getattr(rq, f))
        return d


def _pads(p):
    return [list(p[0]), list(p[1])]


def _to_manifest(model, arrays_name):
    """``(manifest dict, arrays dict)`` for ``model``; the inverse of loading."""
    wr = _Writer()
    t = model.tensors
    inp = model.input
    layers = []
    for layer in model.layers:
        n = layer.name
        d = {"name": n, "kind": layer.kind, "inputs": list(layer.inputs),
             "output": {"shape": list(t[n].shape), "dtype": layer.dtype, "eps": layer.eps}}
        if isinstance(layer, MacLayer):
            d["weight"] = wr.put(f"{n}.weight", layer.weight)
            d["weight_bits"] = layer.weight_bits
            d["weight_zero_point"] = wr.int_or_array(f"{n}.weight_zero_point", layer.weight_zero_point)
            we = layer.weight_eps
            d["weight_eps"] = wr.put(f"{n}.weight_eps", we) if isinstance(we, np.ndarray) else we
            d["input_zero_point"] = layer.input_zero_point
            if layer.kind == "conv2d":
                d.update(kernel=list(layer.weight.shape[1:3]), stride=list(layer.stride),
                         padding=_pads(layer.padding), in_channels=layer.in_channels,
                         out_channels=layer.out_channels)
            else:
                d.update(in_features=layer.in_channels, out_features=layer.out_channels)
            if layer.requant is not None:
                d["requant"] = wr.requant(f"{n}.requant", layer.requant)
            else:
                d["threshold"] = {"thresholds": wr.put(f"{n}.thresholds", layer.threshold.thresholds),
                                  "negate": wr.put(f"{n}.negate", layer.threshold.negate)}
        elif isinstance(layer, AddLayer):
            p = layer.params
            d.update(in_zero_points=list(p.in_zero_points), left_shift=p.left_shift,
                     branches=[wr.requant(f"{n}.branches{j}", b) for j, b in enumerate(p.branches)],
                     requant=wr.requant(f"{n}.requant", p.output))
            if p.sum_shift:
                d["sum_shift"] = p.sum_shift
        elif isinstance(layer, RequantLayer):
            d["requant"] = wr.requant(f"{n}.requant", layer.requant)
        elif isinstance(layer, PoolLayer):
            d.update(kernel=list(layer.kernel), stride=list(layer.stride), padding=_pads(layer.padding))
            if layer.mode != "max":
                d.update(mode=_POOL_FILE_MODE[layer.mode], d=layer.d, lo=layer.lo, hi=layer.hi)
        layers.append(d)
    manifest = {
        "format": FORMAT, "version": VERSION, "name": model.name, "arrays": arrays_name,
        "input": {"name": inp.name, "shape": list(inp.shape), "dtype": inp.dtype, "zero_point": inp.zero_point,
                  "lo": inp.lo, "hi": inp.hi, "eps": inp.eps},
        "layers": layers, "outputs": list(model.outputs), "metadata": model.metadata,
    }
    return manifest, wr.arrays


def _dumps(v, indent=""):
    """JSON with one key per line, but lists of scalars (and of such lists) on one line."""
    flat = lambda e: not isinstance(e, (dict, list)) or (isinstance(e, list) and all(
        not isinstance(f, (dict, list)) for f in e))
    if isinstance(v, dict) and v:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {_dumps(e, inner)}" for k, e in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(v, list) and v and not all(flat(e) for e in v):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _dumps(e, inner) for e in v) + "\n" + indent + "]"
    return json.dumps(v, allow_nan=False, separators=(", ", ": "))


def same_model(a, b, metadata=True):
    """True if models ``a`` and ``b`` would be saved as the same manifest and the same arrays
    (dtypes and values); ``metadata=False`` ignores their metadata."""
    ma, aa = _to_manifest(a, "")
    mb, ab = _to_manifest(b, "")
    if not metadata:
        ma.pop("metadata")
        mb.pop("metadata")
    return ma == mb and aa.keys() == ab.keys() and all(
        aa[k].dtype == ab[k].dtype and aa[k].shape == ab[k].shape and np.array_equal(aa[k], ab[k]) for k in aa)


def save(model, path):
    """Write ``model`` as ``path`` (JSON manifest) and ``path`` with suffix ``.npz`` (arrays).

    Per-tensor parameters are JSON integers; per-channel ones and weights are npz arrays named
    ``<layer>.<field>``. :func:`load` of the result gives back an equal model.
    """
    if not isinstance(model, IntegerModel):
        raise ValueError(f"model: expected IntegerModel, got {type(model).__name__}")
    path = Path(path)
    npz_path = path.with_suffix(".npz")
    manifest, arrays = _to_manifest(model, npz_path.name)
    text = _dumps(manifest) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(npz_path, "wb") as f:
        np.savez(f, **dict(sorted(arrays.items())))
    path.write_text(text, encoding="utf-8")
    return path
