"""The threshold unit: batch-norm + activation + linear quantization as integer thresholds.

NEMO report sec. 3.4, "Merging BN with Quantization/Activation" (Eq. 19-20): the Q-bit output
of ``LQ(BN(phi))`` for an integer accumulator ``x`` (the integer image of ``phi``, quantum
``eps_phi``) is the number of integer thresholds that ``x`` has reached. This is QONNX's
``MultiThreshold`` (output = count of thresholds ``t <= x``, out_bias 0, out_scale 1).

Exactness. The real parameters are floats, i.e. binary rationals, so the thresholds are computed
with :class:`fractions.Fraction` from the exact float values: no float rounding anywhere, and
``threshold(x, *bn_thresholds(...))`` equals the exact-rational ``LQ(BN(x * eps_phi))`` for every
accumulator in :data:`EXACT_RANGE` (proof in :func:`bn_thresholds`).

Widths. Thresholds are stored as int64 but always lie in int32 ``[-2**31, 2**31 - 1]``: the
hardware compares them with its int32 accumulator. Output levels are 1..8 bits, unsigned.
"""

from fractions import Fraction
import math

import numpy as np

from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, _as_int_array

__all__ = ["bn_thresholds", "threshold", "EXACT_RANGE"]

#: Accumulators for which the int32-clamped thresholds are exact, with or without negation:
#: ``|x| <= 2**31 - 2``. See :func:`bn_thresholds` for why no int32 encoding covers all of int32.
EXACT_RANGE = (INT32_MIN + 2, INT32_MAX - 1)


def _reals(name, value, shape=None):
    """``value`` as a list of exact Fractions (finite floats), broadcast to ``shape``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.dtype == object:
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)    # float32 -> float64 is exact
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite, got {arr.tolist()}")
    if shape is not None:
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape != shape):
            raise ValueError(f"{name}: expected a scalar or shape {shape}, got shape {arr.shape}")
        arr = np.broadcast_to(arr, shape)
    return [Fraction(float(v)) for v in arr.reshape(-1)]


def bn_thresholds(gamma, beta, mu, sigma, eps_phi, eps_y, bits):
    """Integer thresholds of ``y = clip(floor((gamma/sigma*(x*eps_phi - mu) + beta)/eps_y), 0, 2**Q-1)``.

    Parameters
    ----------
    gamma, beta, mu, sigma : float arrays ``(C,)``
        Batch-norm scale, shift, mean and standard deviation (``sigma = sqrt(var + eps) > 0``).
    eps_phi : positive float or ``(C,)``
        Quantum of the accumulator ``x`` (``eps_w * eps_x``, Eq. 15).
    eps_y : positive float
        Quantum of the output.
    bits : int, 1..8
        Output bits ``Q``; ``T = 2**Q - 1`` thresholds per channel.

    Returns
    -------
    thresholds : int64 ``(C, T)``, non-decreasing per channel, within int32
    negate : bool ``(C,)``; ``threshold`` counts ``t <= -x`` on these channels

    Derivation. Write the BN + LQ argument as ``f(x) = A*x + B`` with ``A = gamma*eps_phi /
    (sigma*eps_y)`` and ``B = (beta - gamma*mu/sigma)/eps_y``. For integer ``i``,
    ``floor(f) >= i  <=>  f >= i``, so ``y = #{i in 1..T : A*x + B >= i}`` (counting levels
    reached is the clip to [0, T]).

    * ``gamma > 0`` (``A > 0``): ``A*x + B >= i  <=>  x >= (i - B)/A  <=>  x >= TH_i`` with
      ``TH_i = ceil((i - B)/A)`` because ``x`` is an integer. This is Eq. 19 with the level index
      starting at 1 (``TH_i`` is where level ``i`` begins).
    * ``gamma < 0`` (``A < 0``; the report assumes ``gamma > 0``): BN is decreasing.
      ``A*x + B >= i  <=>  x <= (i - B)/A  <=>  -x >= (i - B)/|A|  <=>  -x >= ceil((i - B)/|A|)``.
      So ``TH_i = ceil((i - B)/|A|)`` again, compared with ``-x``: ``negate = True``.
    * ``gamma == 0``: ``y = clip(floor(B), 0, T) = k`` for every ``x``: ``k`` thresholds at
      ``-2**31`` (always reached) and ``T - k`` at ``2**31 - 1`` (never reached in ``EXACT_RANGE``).

    ``TH_i`` is non-decreasing in ``i`` because ``|A| > 0``; equal neighbours (levels narrower
    than one accumulator step) are legal and skip levels, as the real function does.

    Clamping to int32, and its exact range. Let ``u`` be the compared value (``x`` or ``-x``).
    A threshold below ``-2**31`` becomes ``-2**31``: for every ``u >= -2**31`` both the original
    and the clamped one satisfy ``t <= u``, so nothing changes. A threshold above ``2**31 - 1``
    becomes ``2**31 - 1``: for every ``u <= 2**31 - 2`` both fail ``t <= u``, so nothing changes.
    Hence the clamped thresholds are exact for ``u`` in ``[-2**31, 2**31 - 2]``, i.e. for every
    accumulator ``x`` in :data:`EXACT_RANGE` = ``[-2**31 + 2, 2**31 - 2]`` whatever ``negate``.
    No int32 encoding can do better: "count ``t <= u``" with ``u`` ranging over 2**32 values has
    2**32 + 1 distinct behaviours per threshold (reached from some ``u`` on, or never), while an
    int32 ``t`` has only 2**32 values. Keep accumulators inside ``EXACT_RANGE``
    (:func:`intdeploy.golden.mac_array.accumulator_range` gives the exact range of a layer).

    Raises
    ------
    ValueError
        ``sigma <= 0``, ``eps_phi <= 0``, ``eps_y <= 0``, ``bits`` outside 1..8, non-finite or
        mis-shaped parameters; the message names the parameter.
    """
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise ValueError(f"bits: expected an integer in 1..8, got {bits!r}")
    g = np.asarray(gamma)
    if g.ndim != 1 or g.shape[0] == 0:
        raise ValueError(f"gamma: expected a 1-D per-channel array (C,), got shape {g.shape}")
    shape = g.shape
    gamma = _reals("gamma", gamma, shape)
    beta = _reals("beta", beta, shape)
    mu = _reals("mu", mu, shape)
    sigma = _reals("sigma", sigma, shape)
    eps_phi = _reals("eps_phi", eps_phi, shape)
    eps_y = _reals("eps_y", eps_y)
    if len(eps_y) != 1:
        raise ValueError(f"eps_y: expected a scalar, got {len(eps_y)} values")
    eps_y = eps_y[0]
    for name, vals in (("sigma", sigma), ("eps_phi", eps_phi), ("eps_y", [eps_y])):
        if min(vals) <= 0:
            raise ValueError(f"{name}: must be > 0, got {float(min(vals))!r}")
    levels = (1 << bits) - 1
    th = np.empty((shape[0], levels), dtype=np.int64)
    negate = np.zeros(shape[0], dtype=bool)
    for c in range(shape[0]):
        a = gamma[c] * eps_phi[c] / (sigma[c] * eps_y)
        b = (beta[c] - gamma[c] * mu[c] / sigma[c]) / eps_y
        if a == 0:
            k = min(max(math.floor(b), 0), levels)
            row = [INT32_MIN] * k + [INT32_MAX] * (levels - k)
        else:
            negate[c] = a < 0
            row = [min(max(math.ceil((i - b) / abs(a)), INT32_MIN), INT32_MAX) for i in range(1, levels + 1)]
        th[c] = row
    return th, negate


def threshold(x, thresholds, negate=None):
    """QONNX MultiThreshold on integers: per channel, how many thresholds ``t`` satisfy ``t <= u``.

    ``u = -x`` on channels where ``negate`` is true, else ``u = x``. ``x == t`` counts (the level
    starts *at* its threshold). Repeated thresholds are legal and are all counted together.

    Parameters
    ----------
    x : integer array ``(..., C)``, channels last (``-x`` must fit int64)
    thresholds : integer array ``(C, T)``, ``T = 2**Q - 1`` for ``Q`` in 1..8, non-decreasing
        along ``T`` in every channel
    negate : None, bool, or bool array ``(C,)``

    Returns
    -------
    int64 array shaped like ``x``, values in ``[0, T]``.
    """
    x = _as_int_array("x", x)
    th = _as_int_array("thresholds", thresholds)
    if th.ndim != 2:
        raise ValueError(f"thresholds: expected shape (C, T), got shape {th.shape}")
    c, t = th.shape
    if t not in {(1 << q) - 1 for q in range(1, 9)}:
        raise ValueError(f"thresholds: T = {t} thresholds per channel; allowed 2**Q - 1 for Q in 1..8")
    if x.ndim == 0 or x.shape[-1] != c:
        raise ValueError(f"x: last axis must be the {c} channels of thresholds, got shape {x.shape}")
    bad = np.nonzero(np.any(np.diff(th, axis=1) < 0, axis=1))[0]
    if bad.size:
        raise ValueError(f"thresholds: channel {int(bad[0])} is not non-decreasing")
    if negate is None:
        neg = np.zeros(c, dtype=bool)
    else:
        neg = np.asarray(negate)
        if neg.dtype != bool or neg.ndim > 1 or (neg.ndim == 1 and neg.shape != (c,)):
            raise ValueError(f"negate: expected None, a bool or a bool array ({c},), got {neg.dtype} {neg.shape}")
        neg = np.broadcast_to(neg, (c,))
    if np.any(neg) and x.size and int(x.min()) == -(1 << 63):
        raise ValueError("x: -x must fit int64 on negated channels")
    u = np.where(neg, -x, x)
    out = np.empty(u.shape, dtype=np.int64)
    for ch in range(c):
        # side="right": the number of thresholds <= u (a value equal to a threshold reaches it).
        out[..., ch] = np.searchsorted(th[ch], u[..., ch], side="right")
    return out
