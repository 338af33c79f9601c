"""Float32 requantization of ONNX Runtime and PyTorch fbgemm, and its proven integer form.

ONNX Runtime's QLinearConv / QLinearMatMul (``MlasRequantizeOutput``) and PyTorch's fbgemm
quantized Linear / Conv2d (``fbgemm::ReQuantizeOutput``) requantize an int32 accumulator in
float32:

* ONNX Runtime: ``y = clip(rint(fl(fl(acc + bias) * S)) + zp, lo, hi)`` with the float32 scale
  ``S = fl(fl(x_scale * w_scale) / y_scale)`` and ``bias`` the int32 bias input (QLinearConv);
* fbgemm: ``y = clip(rint(fl(fl(fl(acc) + fl(b / A)) * S)) + zp, lo, hi)`` with
  ``A = fl(x_scale * w_scale)``, ``S = fl(A / y_scale)`` and ``b`` the float bias (no term
  without a bias);

``fl`` is float32 rounding to nearest even, ``rint`` rounds half to even (ORT adds and
subtracts the magic number 1.5 * 2**23, fbgemm uses ``lrintf`` / ``_mm256_cvtps_epi32``) and the
zero point is added after rounding. The golden ``half_even`` requantizer computes
``clip(rhe((acc + bias) * m / 2**s) + zp, lo, hi)`` exactly. A float32 ``S`` is exactly
``m / 2**s`` with a 24-bit ``m``, but ``fl(x * S)`` rounds the product: when ``x * S`` is within
a float32 half-ulp of a ``.5`` without being one, the two formulas can round differently.

:func:`fit_requant` therefore does not assume; it **proves**. Both formulas are non-decreasing in
``acc`` (``fl``, multiplication by a positive float and ``rint`` are monotone), so they agree on
every accumulator value if they agree on the *window* of values whose result is not saturated
(plus one saturated value at each end). The window of a channel is
``[(lo - zp - 1) / S, (hi - zp + 1) / S] - bias``, intersected with the layer's exact
accumulator range; it holds about ``(hi - lo) / S`` values, which numpy enumerates. If the exact
``m / 2**s`` of ``S`` disagrees somewhere, a multiplier ``m' / 2**s'`` (up to 31 bits, shift up
to 62) is searched that reproduces every step of the framework's function inside the window
(each step is an interval constraint on ``m' / 2**s'``), and the window is enumerated again.
If none exists, no integer ``half_even`` requantizer equals the framework on that channel: the
layer is refused (``strict``), or the channel keeps the multiplier that differs on the fewest
window values and the proof lists those accumulator values.
"""

from dataclasses import dataclass, field
from fractions import Fraction
import math

import numpy as np

from intdeploy.golden.requantizer import INT32_MAX, MAX_SHIFT, RequantParams, exact_multiplier, requantize

__all__ = ["f32", "ort_scale", "ort_requantize", "fbgemm_requantize", "Proof", "fit_requant",
           "MAX_WINDOW"]

#: Largest window (accumulator values per channel) :func:`fit_requant` enumerates.
MAX_WINDOW = 1 << 24


def f32(v):
    """``v`` rounded to float32 (numpy float32 scalar or array)."""
    return np.asarray(v, dtype=np.float32) if np.ndim(v) else np.float32(v)


def ort_scale(x_scale, w_scale, y_scale):
    """ONNX Runtime's requantization scale ``fl(fl(x_scale * w_scale) / y_scale)``, float32."""
    return (f32(x_scale) * f32(w_scale)) / f32(y_scale)


def _rint_clip(v, zp, lo, hi):
    return np.clip(np.rint(v).astype(np.int64) + zp, lo, hi)


def ort_requantize(acc, scale, zp, lo, hi):
    """ONNX Runtime's ``MlasRequantizeOutput`` on int64 ``acc`` (the bias already added)."""
    v = np.asarray(acc, dtype=np.int64).astype(np.float32) * f32(scale)
    return _rint_clip(v, zp, lo, hi)


def fbgemm_requantize(acc, act_times_w, scale, zp, lo, hi, bias=None):
    """fbgemm ``ReQuantizeOutput`` with a float bias (``bias`` None: no bias term)."""
    v = np.asarray(acc, dtype=np.int64).astype(np.float32)
    if bias is not None:
        v = v + f32(bias) / f32(act_times_w)
    return _rint_clip(v * f32(scale), zp, lo, hi)


@dataclass
class Proof:
    """What :func:`fit_requant` verified for one layer.

    ``checked``: accumulator values enumerated (all channels); ``exact_scale``: channels whose
    float32 scale ``m / 2**s`` itself is exact; ``fitted``: channels that needed a searched
    multiplier (the float32 product rounding changes a result somewhere in their window);
    ``disagreements``: values where the exact float32 scale disagreed with the framework;
    ``inexact``: channels with no exact integer form, kept with the multiplier (the exact
    float32 scale, or the one meeting the most steps) that differs on fewer values (only with
    ``strict=False``); ``inexact_values``: accumulator values where those differ;
    ``differences``: for each inexact channel ``(what, channel, values)``, the MAC accumulator
    values (before the bias) where the kept requantizer differs from the framework.
    """
    checked: int = 0
    exact_scale: int = 0
    fitted: int = 0
    disagreements: int = 0
    inexact: int = 0
    inexact_values: int = 0
    differences: list = field(default_factory=list)

    @property
    def exact(self):
        """True when every channel is proven equal to the framework on every reachable value."""
        return self.inexact == 0

    def as_dict(self):
        return dict(checked=self.checked, exact_scale=self.exact_scale, fitted=self.fitted,
                    disagreements=self.disagreements, inexact=self.inexact, inexact_values=self.inexact_values)


def _window(scale, bias, zp, lo, hi, a_lo, a_hi):
    """Accumulator window of one channel (see the module docstring), clipped to [a_lo, a_hi]."""
    s = float(scale)
    lo_x = math.floor((lo - zp - 1) / s) - 2
    hi_x = math.ceil((hi - zp + 1) / s) + 2
    # Kept inside [a_lo, a_hi] also when every reachable value saturates (a channel whose
    # accumulators all lie below the window is one value at a_hi, saturated low).
    w_lo = min(max(a_lo, lo_x - bias), a_hi)
    return w_lo, max(min(a_hi, hi_x - bias), w_lo)


_NONE = Fraction(-1)      # marks an absent bound


def _interval(x, v, how):
    """Constraint ``rhe(x * r) == v`` (``how`` "eq"), ``<= v`` ("le") or ``>= v`` ("ge") on
    ``r > 0`` as ``(lo, lo_closed, hi, hi_closed)`` (``_NONE`` for an absent bound) or None."""
    closed = v % 2 == 0           # v +- 1/2 rounds to v only when v is even
    a, b = Fraction(2 * v - 1, 2), Fraction(2 * v + 1, 2)
    if how == "le":
        a = None
    elif how == "ge":
        b = None
    if x == 0:
        ok = (a is None or 0 >= v) and (b is None or 0 <= v)
        return None if ok else (Fraction(1), False, Fraction(0), False)   # empty
    if x < 0:
        a, b = b, a
    return (_NONE if a is None else a / x, closed, _NONE if b is None else b / x, closed)


def _pick(lo, lo_c, hi, hi_c):
    """Smallest-shift ``m / 2**s`` (``0 < m <= INT32_MAX``) in the interval, or None."""
    for s in range(MAX_SHIFT + 1):
        scaled = lo * (1 << s)
        m = math.ceil(scaled) if lo_c else math.floor(scaled) + 1
        if m > INT32_MAX:
            return None
        r = Fraction(m, 1 << s)
        if m > 0 and (r < hi or (r == hi and hi_c)):
            return m, s
    return None


def _search(xs, vs, hows):
    """Smallest-shift ``(m, s)`` with ``rhe(x * m / 2**s)`` (=, <=, >=) ``v`` for all triples, or None."""
    lo, lo_c, hi, hi_c = Fraction(0), False, Fraction(1 << 40), False
    for x, v, how in zip(xs, vs, hows):
        c = _interval(int(x), int(v), how)
        if c is None:
            continue
        a, ac, b, bc = c
        if a is not _NONE and (a > lo or (a == lo and not ac)):
            lo, lo_c = a, ac
        if b is not _NONE and (b < hi or (b == hi and not bc)):
            hi, hi_c = b, bc
    if lo > hi or (lo == hi and not (lo_c and hi_c)):
        return None
    return _pick(lo, lo_c, hi, hi_c)


def _most(xs, vs, hows):
    """``(m, s)`` inside an open range of multipliers that satisfies the most triples (a sweep
    over the constraint intervals), for a channel with no exact form; None if none is found."""
    events = []
    for x, v, how in zip(xs, vs, hows):
        c = _interval(int(x), int(v), how)
        if c is None:
            continue
        a, ac, b, bc = c
        if a is not _NONE and b is not _NONE and (a > b or (a == b and not (ac and bc))):
            continue                                        # never satisfied
        # keys (value, 0) = at value, (value, 1) = just above it; intervals are [start, end)
        events.append(((Fraction(0), 1) if a is _NONE else (a, 0 if ac else 1), 1))
        if b is not _NONE:
            events.append(((b, 1 if bc else 0), -1))
    events.sort(key=lambda e: e[0])
    best, region, cov = -1, None, 0
    for i, (key, delta) in enumerate(events):
        cov += delta
        if i + 1 < len(events) and events[i + 1][0] == key:
            continue
        nxt = events[i + 1][0][0] if i + 1 < len(events) else Fraction(1 << 40)
        if nxt > key[0] and cov > best:
            best, region = cov, (key[0], nxt)
    return None if region is None else _pick(region[0], False, region[1], False)


def fit_requant(reference, scale, bias, zp, lo, hi, acc_lo, acc_hi, what, proof=None, strict=True):
    """Integer ``half_even`` :class:`RequantParams` equal to ``reference`` on every reachable
    accumulator value, or ValueError naming ``what``.

    Parameters
    ----------
    reference : function ``(acc int64 array, channel) -> outputs`` (the framework's formula)
    scale : float32 ``(C,)``, the framework's requantization scale (positive)
    bias : int64 ``(C,)``, integer bias of the integer form (added to ``acc`` before scaling)
    zp, lo, hi : int, output zero point and clip range
    acc_lo, acc_hi : int64 ``(C,)``, the layer's exact accumulator range (without bias)
    proof : :class:`Proof` to add the counts to (optional)
    strict : bool
        True: a channel with no exact integer form raises ValueError. False: it keeps the
        multiplier that differs on the fewest values and the proof counts and lists them
        (``inexact``, ``inexact_values``, ``differences``).
    """
    proof = Proof() if proof is None else proof
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    c = scale.shape[0]
    bias = np.broadcast_to(np.asarray(bias, dtype=np.int64), (c,))
    mults, shifts = [], []
    for ch in range(c):
        if not (np.isfinite(scale[ch]) and scale[ch] > 0):
            raise ValueError(f"{what}: channel {ch}: requantization scale {float(scale[ch])!r} is not a positive "
                             f"finite float32")
        b = int(bias[ch])
        w_lo, w_hi = _window(scale[ch], b, zp, lo, hi, int(acc_lo[ch]), int(acc_hi[ch]))
        if w_hi - w_lo + 1 > MAX_WINDOW:
            raise ValueError(f"{what}: channel {ch}: {w_hi - w_lo + 1} unsaturated accumulator values to verify, "
                             f"more than {MAX_WINDOW}")
        acc = np.arange(w_lo, w_hi + 1, dtype=np.int64)
        want = np.asarray(reference(acc, ch), dtype=np.int64)
        for end, a_end, sat in ((0, int(acc_lo[ch]), lo), (-1, int(acc_hi[ch]), hi)):
            # a window cut by the clip must end saturated in the reference
            if int(acc[end]) != a_end and int(want[end]) != sat:
                raise ValueError(f"{what}: channel {ch}: the framework's result {int(want[end])} at accumulator "
                                 f"{int(acc[end])} is not saturated; its scale {float(scale[ch])!r} is not monotone")
        m, s = exact_multiplier(float(scale[ch]))
        got = requantize(acc, RequantParams(mult=m, shift=s, bias=b, zero_point=zp, lo=lo, hi=hi,
                                            rounding="half_even"))
        proof.checked += acc.size
        bad = np.nonzero(got != want)[0]
        if bad.size == 0:
            proof.exact_scale += 1
        else:
            proof.disagreements += bad.size
            # the steps of the reference inside the window (and its ends) pin the multiplier
            x = acc + b
            raw = want - zp
            keep = np.nonzero(np.diff(raw) != 0)[0]
            idx = np.unique(np.concatenate([[0, x.size - 1], keep, keep + 1]))
            # saturated values only bound the unclipped result from one side
            hows = np.where(want[idx] <= lo, "le", np.where(want[idx] >= hi, "ge", "eq"))
            found = _search(x[idx], raw[idx], hows)
            if found is not None:
                m, s = found
                got = requantize(acc, RequantParams(mult=m, shift=s, bias=b, zero_point=zp, lo=lo, hi=hi,
                                                    rounding="half_even"))
            if found is None or np.any(got != want):
                m, s = exact_multiplier(float(scale[ch]))
                got = requantize(acc, RequantParams(mult=m, shift=s, bias=b, zero_point=zp, lo=lo, hi=hi,
                                                    rounding="half_even"))
                k = int(bad[0])
                if not strict:
                    # keep whichever of the exact float32 scale and the multiplier that meets the
                    # most steps differs from the framework on fewer accumulator values
                    alt = _most(x[idx], raw[idx], hows)
                    if alt is not None:
                        got2 = requantize(acc, RequantParams(mult=alt[0], shift=alt[1], bias=b, zero_point=zp,
                                                             lo=lo, hi=hi, rounding="half_even"))
                        bad2 = np.nonzero(got2 != want)[0]
                        if bad2.size < bad.size:
                            (m, s), got, bad = alt, got2, bad2
                if strict:
                    raise ValueError(
                        f"{what}: channel {ch}: no integer half_even requantizer equals the framework's float32 "
                        f"one ({bad.size} of {acc.size} unsaturated accumulator values differ by up to "
                        f"{int(np.abs(got[bad] - want[bad]).max())}, e.g. accumulator {int(acc[k])}: framework "
                        f"{int(want[k])}, exact scale {float(scale[ch])!r} gives {int(got[k])}); "
                        f"a non-strict import keeps that scale and lists the values")
                proof.inexact += 1
                proof.inexact_values += bad.size
                proof.differences.append((what, ch, acc[bad]))
                mults.append(m)
                shifts.append(s)
                continue
            proof.fitted += 1
        mults.append(m)
        shifts.append(s)
    return RequantParams(mult=np.array(mults, dtype=np.int64), shift=np.array(shifts, dtype=np.int64),
                         bias=bias.copy(), zero_point=zp, lo=lo, hi=hi, rounding="half_even"), proof
