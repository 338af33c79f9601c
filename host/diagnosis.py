"""Comparing an engine's outputs with golden, and the likely cause of a mismatch."""

from dataclasses import dataclass

import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.model_file import AddLayer, MacLayer, PoolLayer, RequantLayer
from intdeploy.golden.requantizer import RequantParams, _wrap32, requantize, ties

__all__ = ["Mismatch", "compare_outputs", "first_mismatch", "format_mismatch"]

@dataclass
class Mismatch:
    """The first element where an engine's layer output differs from golden's."""
    layer: str
    kind: str
    index: tuple           # (image, ..., channel)
    golden: int
    actual: int
    count: int             # differing elements in the layer
    elements: int
    cause: str             # "rounding tie" | "rounding mode" | "saturation" | "overflow/wrap" | "unknown"
    detail: str = ""

    @property
    def channel(self):
        return self.index[-1]


def compare_outputs(model, golden, actual):
    """Per-layer comparison: list of ``(name, elements, differing, max_abs_diff)`` in model order.

    ``golden`` and ``actual`` map tensor names to arrays (e.g. IntegerDeployable's trace and
    :func:`run_network`'s outputs); layers missing from ``actual`` are skipped.
    """
    out = []
    for layer in model.layers:
        if layer.name not in actual:
            continue
        g = np.asarray(golden[layer.name], dtype=np.int64)
        a = np.asarray(actual[layer.name], dtype=np.int64)
        if g.shape != a.shape:
            out.append((layer.name, g.size, g.size, None))
            continue
        diff = g != a
        out.append((layer.name, g.size, int(diff.sum()), int(np.abs(g - a).max()) if g.size else 0))
    return out


def first_mismatch(model, golden, actual):
    """The first differing element of the first differing layer (model order), or None.

    The cause is classified from golden's own computation of that element: ``rounding tie``
    (a requantizer input was exactly halfway for round-to-nearest, or at a rounding step of
    TFLite's double rounding), ``rounding mode`` (the engine's value is what another of the
    ``floor`` / ``half_up`` / ``half_even`` modes gives for that element), ``saturation`` (golden
    is at the clamp ``lo``/``hi``, or at 0 / the top level of a threshold layer), ``overflow/wrap``
    (the accumulator or ``acc + bias`` is within 2**30 of, or beyond, the int32 bounds), else
    ``unknown``.
    """
    for layer in model.layers:
        if layer.name not in actual:
            continue
        g = np.asarray(golden[layer.name], dtype=np.int64)
        a = np.asarray(actual[layer.name], dtype=np.int64)
        if g.shape != a.shape:
            return Mismatch(layer.name, layer.kind, (), 0, 0, g.size, g.size, "unknown",
                            f"shape {a.shape}, golden {g.shape}")
        diff = np.argwhere(g != a)
        if len(diff):
            idx = tuple(int(v) for v in diff[0])
            cause, detail = _classify(model, layer, golden, idx, int(a[idx]))
            return Mismatch(layer.name, layer.kind, idx, int(g[idx]), int(a[idx]), len(diff), g.size, cause, detail)
    return None


def format_mismatch(m):
    """One line for a :class:`Mismatch` (or "all layers match")."""
    if m is None:
        return "all layers match"
    return (f"layer {m.layer!r} ({m.kind}): {m.count} of {m.elements} elements differ; first at index {m.index} "
            f"(channel {m.channel if m.index else '-'}): golden {m.golden}, engine {m.actual}; likely cause: "
            f"{m.cause}{' (' + m.detail + ')' if m.detail else ''}")


def _rq_element(params, ch):
    f = {k: getattr(params, k) for k in ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi")}
    return {k: int(v if v.ndim == 0 else v[ch]) for k, v in f.items()}, params.rounding


def _tie(x, p, rounding):
    """Whether requantizing ``x`` (int32, after the bias) hits an exact halfway point
    (:func:`intdeploy.golden.requantizer.ties`)."""
    return bool(ties(np.array([x]), RequantParams(rounding=rounding, **dict(p, bias=0)))[0])


def _classify(model, layer, golden, idx, actual=None):
    """(cause, detail) for element ``idx`` of ``layer`` from golden tensors (and the engine's
    value ``actual``)."""
    ch = idx[-1]
    g = int(np.asarray(golden[layer.name])[idx])
    try:
        if isinstance(layer, MacLayer):
            x = np.asarray(golden[layer.inputs[0]], dtype=np.int64)[idx[0]:idx[0] + 1]
            if layer.kind == "conv2d":
                acc = mac_array.conv2d(x, layer.weight, layer.stride, layer.padding, layer.input_zero_point,
                                       layer.weight_zero_point)
            else:
                acc = mac_array.linear(x, layer.weight, layer.input_zero_point, layer.weight_zero_point)
            a = int(acc[(0,) + idx[1:]])
            if layer.requant is not None:
                p, rnd = _rq_element(layer.requant, ch)
                return _rq_cause(a, p, rnd, g, f"accumulator {a}", actual)
            if g in (0, layer.threshold.levels):
                return "saturation", f"threshold level {g} of 0..{layer.threshold.levels}"
            if abs(a) >= 1 << 30:
                return "overflow/wrap", f"accumulator {a}"
            return "unknown", f"accumulator {a}"
        if isinstance(layer, RequantLayer):
            a = int(np.asarray(golden[layer.inputs[0]])[idx])
            p, rnd = _rq_element(layer.requant, ch)
            return _rq_cause(a, p, rnd, g, f"input {a}", actual)
        if isinstance(layer, AddLayer):
            pr = layer.params
            vals = [int(np.asarray(golden[s])[idx]) for s in layer.inputs]
            vs = []
            for v, zp, br in zip(vals, pr.in_zero_points, pr.branches):
                s = int(_wrap32(((v - zp) & 0xFFFFFFFF) << pr.left_shift))
                p, rnd = _rq_element(br, ch)
                if _tie(int(_wrap32(s + p["bias"])), p, rnd):
                    return "rounding tie", f"branch input {s} is a tie for {rnd}"
                vs.append(int(requantize(np.array([s]), RequantParams(rounding=rnd, **p))[0]))
            total = int(_wrap32(vs[0] + vs[1])) >> pr.sum_shift
            p, rnd = _rq_element(pr.output, ch)
            what = f"sum {total}" + (f" (shifted right by {pr.sum_shift})" if pr.sum_shift else "")
            return _rq_cause(total, p, rnd, g, what, actual)
        if isinstance(layer, PoolLayer) and layer.lo is not None and g in (layer.lo, layer.hi):
            return "saturation", f"golden at the clamp [{layer.lo}, {layer.hi}]"
    except (ValueError, IndexError) as e:
        return "unknown", f"classifier: {e}"
    return "unknown", ""


def _rq_cause(a, p, rounding, g, what, actual=None):
    x = int(_wrap32(a + p["bias"]))
    if a + p["bias"] != x or abs(a) >= 1 << 30:
        return "overflow/wrap", f"{what}, + bias {p['bias']} -> {x}"
    if _tie(x, p, rounding):
        return "rounding tie", f"{what} is an exact tie for {rounding} (mult {p['mult']}, shift {p['shift']})"
    if actual is not None and rounding != "tflite":
        # the single-rounding modes share mult, shift and offset; tflite's fields mean other things
        for mode in ("floor", "half_up", "half_even", "half_away"):
            if mode != rounding and int(requantize(np.array([a]), RequantParams(rounding=mode, **p))[0]) == actual:
                return "rounding mode", f"{what}: the engine's value is {mode} rounding, golden's is {rounding}"
    if g in (p["lo"], p["hi"]):
        return "saturation", f"golden at the clamp [{p['lo']}, {p['hi']}], {what}"
    return "unknown", what
