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
from pathlib import Path
import re
import zipfile
import zlib

import numpy as np

from intdeploy.golden.add import AddParams
from intdeploy.golden.model_ir import (_POOL_FILE_MODE, DTYPES, FORMAT, LAYER_KINDS, REQUANT_FIELDS, VERSION, AddLayer,
                                       FlattenLayer, InputSpec, MacLayer, ModelFormatError, PoolLayer, RequantLayer,
                                       SoftmaxLayer,
                                       TensorInfo, Threshold)
from intdeploy.golden.model_ranges import layer_output
from intdeploy.golden.requantizer import ROUNDING_MODES, RequantParams

__all__ = [
    "FORMAT", "VERSION", "DTYPES", "LAYER_KINDS", "REQUANT_FIELDS", "ModelFormatError",
    "InputSpec", "Threshold", "MacLayer", "AddLayer", "RequantLayer", "PoolLayer", "FlattenLayer", "SoftmaxLayer",
    "TensorInfo", "IntegerModel", "save", "load", "same_model",
]


@dataclass(frozen=True, eq=False)
class IntegerModel:
    """An IntegerDeployable network; constructing one validates it (raises :class:`ModelFormatError`).

    Attributes
    ----------
    input : InputSpec
    layers : tuple of layers, topologically ordered (inputs refer to an input or earlier layers)
    outputs : tuple of str, the network's output tensors
    name : str
    metadata : dict, JSON-serialisable, free-form (provenance, converter options, accuracies)
    extra_inputs : tuple of InputSpec, the network's further inputs (a model with several inputs;
        :attr:`inputs` lists them all, ``input`` first)
    tensors : dict ``name -> TensorInfo`` for the inputs and every layer (computed)
    """
    input: InputSpec
    layers: tuple
    outputs: tuple
    name: str = "model"
    metadata: dict = field(default_factory=dict)
    extra_inputs: tuple = ()
    tensors: dict = field(init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.input, InputSpec):
            raise ModelFormatError(f"input: expected InputSpec, got {type(self.input).__name__}")
        object.__setattr__(self, "extra_inputs", tuple(self.extra_inputs))
        for j, spec in enumerate(self.extra_inputs):
            if not isinstance(spec, InputSpec):
                raise ModelFormatError(f"extra_inputs[{j}]: expected InputSpec, got {type(spec).__name__}")
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
        tensors = {}
        for j, spec in enumerate(self.inputs):
            if spec.name in tensors:
                raise ModelFormatError(f"extra_inputs[{j - 1}].name: {spec.name!r} is already an input's name")
            tensors[spec.name] = TensorInfo(spec.shape, spec.dtype, spec.zero_point, spec.lo, spec.hi, spec.eps)
        for i, layer in enumerate(layers):
            path = f"layers[{i}]"
            if not isinstance(layer, (MacLayer, AddLayer, RequantLayer, PoolLayer, FlattenLayer, SoftmaxLayer)):
                raise ModelFormatError(f"{path}: expected a layer object, got {type(layer).__name__}")
            if layer.name in tensors:
                raise ModelFormatError(f"{path}.name: {layer.name!r} is already used by "
                                       f"{'an input' if layer.name in self.input_names else 'an earlier layer'}")
            srcs = []
            for j, src in enumerate(layer.inputs):
                if src not in tensors:
                    raise ModelFormatError(f"{path}.inputs[{j}]: {src!r} is not {'an' if self.extra_inputs else 'the'} "
                                           f"input or an earlier layer")
                srcs.append(tensors[src])
            try:
                shape, zp, lo, hi = layer_output(layer, srcs, path)
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

    @property
    def inputs(self):
        """Every input's :class:`InputSpec`, ``input`` first."""
        return (self.input,) + self.extra_inputs

    @property
    def input_names(self):
        return tuple(spec.name for spec in self.inputs)

    def feed(self, x, what="x"):
        """The model's inputs as ``{name: int64 array}``, checked: ``x`` is one array (a model with
        one input), or a dict by input name / a tuple in :attr:`inputs` order; every array
        ``(N,) + shape`` with the same ``N`` and its values in the input's range. ValueError
        naming ``what`` (and the input) otherwise."""
        specs = self.inputs
        if isinstance(x, dict):
            missing = [s.name for s in specs if s.name not in x]
            if missing or len(x) != len(specs):
                raise ValueError(f"{what}: expected arrays for the inputs {list(self.input_names)}, got {list(x)}")
            arrays = [x[s.name] for s in specs]
        elif isinstance(x, (tuple, list)) and len(specs) > 1:
            if len(x) != len(specs):
                raise ValueError(f"{what}: expected {len(specs)} arrays (inputs {list(self.input_names)}), got {len(x)}")
            arrays = list(x)
        elif len(specs) > 1:
            raise ValueError(f"{what}: the model has {len(specs)} inputs {list(self.input_names)}; give a dict or a "
                             f"tuple of arrays")
        else:
            arrays = [x]
        out = {}
        for spec, a in zip(specs, arrays):
            a = np.asarray(a)
            name = f"{what}[{spec.name!r}]" if len(specs) > 1 else what
            if a.dtype.kind not in "iu":
                raise ValueError(f"{name}: expected an integer array, got dtype {a.dtype}")
            if a.shape[1:] != spec.shape or a.ndim != len(spec.shape) + 1:
                raise ValueError(f"{name}: expected shape (N, {', '.join(map(str, spec.shape))}), got {a.shape}")
            if a.size and (int(a.min()) < spec.lo or int(a.max()) > spec.hi):
                raise ValueError(f"{name}: values must be in the input range [{spec.lo}, {spec.hi}], "
                                 f"got [{int(a.min())}, {int(a.max())}]")
            out[spec.name] = a.astype(np.int64)
        if len({len(a) for a in out.values()}) > 1:
            raise ValueError(f"{what}: the inputs hold different numbers of samples "
                             f"{[len(a) for a in out.values()]}")
        return out

    def layer(self, name):
        """The layer called ``name`` (KeyError if none)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


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
    "softmax": (_COMMON + ("multiplier", "left_shift", "diff_min"), ()),
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
    elif kind == "softmax":
        layer = _construct(SoftmaxLayer, dict(common, **{f: r.int(v[f], f"{path}.{f}")
                                                         for f in ("multiplier", "left_shift", "diff_min")}), path)
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
    r.obj(manifest, "", ("format", "version", "name", "arrays", "input", "layers", "outputs"),
          ("metadata", "extra_inputs"))
    r.str(manifest["arrays"], "arrays")

    def input_spec(v, path):
        iv = r.obj(v, path, ("name", "shape", "dtype", "zero_point", "lo", "hi", "eps"))
        shape_v = r.list(iv["shape"], f"{path}.shape")
        return _construct(InputSpec, {
            "name": r.str(iv["name"], f"{path}.name"),
            "shape": tuple(r.int_list(shape_v, f"{path}.shape", len(shape_v))),
            "dtype": r.str(iv["dtype"], f"{path}.dtype", tuple(DTYPES)),
            "zero_point": r.int(iv["zero_point"], f"{path}.zero_point"),
            "lo": r.int(iv["lo"], f"{path}.lo"), "hi": r.int(iv["hi"], f"{path}.hi"),
            "eps": r.eps(iv["eps"], f"{path}.eps")}, path)
    spec = input_spec(manifest["input"], "input")
    extra = tuple(input_spec(v, f"extra_inputs[{j}]")
                  for j, v in enumerate(r.list(manifest.get("extra_inputs", []), "extra_inputs")))
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
                         name=r.str(manifest["name"], "name"), metadata=metadata, extra_inputs=extra)
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
        elif isinstance(layer, SoftmaxLayer):
            d.update(multiplier=layer.multiplier, left_shift=layer.left_shift, diff_min=layer.diff_min)
        layers.append(d)
    manifest = {
        "format": FORMAT, "version": VERSION, "name": model.name, "arrays": arrays_name,
        "input": {"name": inp.name, "shape": list(inp.shape), "dtype": inp.dtype, "zero_point": inp.zero_point,
                  "lo": inp.lo, "hi": inp.hi, "eps": inp.eps},
        "layers": layers, "outputs": list(model.outputs), "metadata": model.metadata,
    }
    if model.extra_inputs:
        manifest["extra_inputs"] = [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype,
                                     "zero_point": s.zero_point, "lo": s.lo, "hi": s.hi, "eps": s.eps}
                                    for s in model.extra_inputs]
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
