"""Float -> integer quantizers: NEMO linear quantization and affine (scale, zero-point) quantization.

These map real tensors to integer images once, when a model is prepared; they are not on the
bit-exact integer datapath, so they compute in float64 (deterministically: same inputs, same
integers). Everything after them is integer.

* NEMO (report sec. 2.1-2.2, Eq. 10): ``LQ(t) = clip(floor(t / eps), alpha/eps, beta/eps)``;
  activations use PACT (``alpha = 0``, ``eps = beta / (2**Q - 1)``), weights an asymmetric
  range ``[alpha_w, beta_w)`` with ``eps_w = (beta_w - alpha_w) / (2**Q - 1)``.
* Affine (quantization-arithmetic note; TFLite, ONNX, PyTorch): ``q = clip(round(x / scale) +
  zero_point, qmin, qmax)``, ``x ~ scale * (q - zero_point)``.

Integer ranges for ``bits`` (``reduced_range`` drops the most negative code, TFLite's
"narrow range"; it is *not* PyTorch's ``reduce_range``, which drops a whole bit):

=========  ==========================  ==========================
signed     full                        reduced
=========  ==========================  ==========================
True       [-2**(b-1), 2**(b-1) - 1]   [-2**(b-1) + 1, 2**(b-1) - 1]
False      [0, 2**b - 1]               [0, 2**b - 2]
=========  ==========================  ==========================
"""


import numpy as np

from intdeploy.golden.checks import check_int
from intdeploy.golden.requantizer import _as_int_array

__all__ = [
    "linear_quantize", "pact_quantize", "asymmetric_weight_quantize", "int8_storage",
    "qrange", "affine_params", "affine_quantize", "affine_dequantize",
]


def _real_array(name, value):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.dtype == object:
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite")
    return arr


def _positive(name, value):
    arr = _real_array(name, value)
    if np.any(arr <= 0):
        raise ValueError(f"{name}: must be > 0, got {arr.min()!r}")
    return arr


def _bits(bits, lo=1, hi=32):
    return check_int("bits", bits, lo, hi)


def _along(name, param, x_ndim, axis):
    """Reshape a per-channel ``(C,)`` parameter to broadcast along ``axis`` of an ``x_ndim`` array."""
    if param.ndim == 0:
        return param
    if param.ndim != 1:
        raise ValueError(f"{name}: expected a scalar or a 1-D per-channel array, got shape {param.shape}")
    if axis is None:
        raise ValueError(f"{name}: per-channel values need an axis")
    if not -x_ndim <= axis < x_ndim:
        raise ValueError(f"axis: {axis} is out of range for a {x_ndim}-D tensor")
    shape = [1] * x_ndim
    shape[axis] = param.shape[0]
    return param.reshape(shape)


def linear_quantize(t, eps, alpha, beta):
    """NEMO linear quantization (report Eq. 10): ``clip(floor(t/eps), round(alpha/eps), round(beta/eps))``.

    The upper bound is inclusive: ``beta/eps`` (``2**Q - 1`` for PACT) is reachable, as in NEMO's
    ``PACT_Act``, which floors and then clamps to ``[0, beta]`` (it passes ``beta + eps`` as the
    exclusive bound of ``PACT_QuantFunc``). ``alpha/eps`` and ``beta/eps`` are rounded to the
    nearest integer (they are integers up to float error by construction) and used as integer
    bounds. ``eps``, ``alpha``, ``beta`` are scalars or arrays broadcasting against ``t``.
    Returns int64.
    """
    t = _real_array("t", t)
    eps = _positive("eps", eps)
    alpha = _real_array("alpha", alpha)
    beta = _real_array("beta", beta)
    if np.any(alpha > beta):
        raise ValueError("alpha, beta: need alpha <= beta")
    lo = np.rint(alpha / eps)
    hi = np.rint(beta / eps)
    return np.clip(np.floor(t / eps), lo, hi).astype(np.int64)


def pact_quantize(x, beta, bits):
    """PACT activation quantization (report sec. 2.2): ``eps = beta / (2**bits - 1)``, ``alpha = 0``.

    Returns ``(q, eps)``: ``q = clip(floor(x/eps), 0, 2**bits - 1)`` int64 and the float quantum.
    """
    bits = _bits(bits)
    beta = _positive("beta", beta)
    eps = beta / ((1 << bits) - 1)
    return linear_quantize(x, eps, 0.0, beta), (float(eps) if eps.ndim == 0 else eps)


def asymmetric_weight_quantize(w, alpha_w, beta_w, bits, axis=None):
    """NEMO asymmetric weight quantization (report sec. 2.2): ``q = floor(clip(w, alpha_w, beta_w) / eps_w)``.

    ``eps_w = (beta_w - alpha_w) / (2**bits - 1)`` over ``[alpha_w, beta_w)`` (``alpha_w < 0 <
    beta_w`` typically; NEMO stores ``-alpha_w``). ``alpha_w``/``beta_w`` are scalars (per
    tensor) or ``(C,)`` arrays per output channel along ``axis`` (default 0 when they are
    arrays). Returns ``(q, eps_w)``: int64 ``q`` and ``eps_w`` (float or ``(C,)``). ``q`` spans
    at most ``2**bits`` codes, ``[floor(alpha_w/eps_w), floor(alpha_w/eps_w) + 2**bits - 1]``
    (``alpha_w/eps_w`` within 1e-9 relative of an integer counts as that integer: float error),
    so :func:`int8_storage` can always store it in ``bits`` signed bits.
    NEMO's code (``PACT_QuantFunc_Asymm``) rounds instead of flooring; this follows the report.
    """
    bits = _bits(bits)
    w = _real_array("w", w)
    a = _real_array("alpha_w", alpha_w)
    b = _real_array("beta_w", beta_w)
    if np.any(a >= b):
        raise ValueError("alpha_w, beta_w: need alpha_w < beta_w")
    eps = (b - a) / ((1 << bits) - 1)
    if axis is None and (a.ndim or b.ndim):
        axis = 0
    ab, bb, eb = (_along(n, v, w.ndim, axis) for n, v in (("alpha_w", a), ("beta_w", b), ("eps_w", eps)))
    # Mathematically floor(clip(w)/eps) lies in [floor(alpha/eps), floor(alpha/eps) + 2**bits - 1]
    # because beta/eps = alpha/eps + 2**bits - 1. In float, alpha/eps is often an integer plus
    # or minus an ulp (alpha = -147 * eps); snap such values so that the image spans exactly
    # 2**bits codes, and clip to that span so float error can never add a 2**bits + 1-th code.
    ratio = ab / eb
    near = np.rint(ratio)
    qlo = np.where(np.abs(ratio - near) <= 1e-9 * np.maximum(1.0, np.abs(ratio)), near, np.floor(ratio))
    q = np.clip(np.floor(np.clip(w, ab, bb) / eb), qlo, qlo + ((1 << bits) - 1)).astype(np.int64)
    return q, (float(eps) if eps.ndim == 0 else eps)


def int8_storage(q, bits=8, axis=None):
    """Shift an integer image ``q`` into the signed ``bits`` range: ``(stored, zero_point)``.

    ``stored = q + zero_point`` fits ``[-2**(bits-1), 2**(bits-1) - 1]`` and ``stored -
    zero_point == q``, which is exactly what :func:`intdeploy.golden.mac_array.linear` subtracts
    (``w_zero_point``). ``zero_point`` is the smallest shift in magnitude: 0 if ``q`` already
    fits, else it moves ``q``'s minimum to ``-2**(bits-1)`` (e.g. NEMO weights spanning
    ``[-147, 108]`` get ``zero_point = 19``: stored ``[-128, 127]``) or its maximum to
    ``2**(bits-1) - 1``. Per tensor (``axis=None``) or per channel along ``axis`` (then
    ``zero_point`` is ``(C,)``). ValueError if the span exceeds ``2**bits`` codes.
    """
    bits = _bits(bits, 2, 32)
    q = _as_int_array("q", q)
    if q.size == 0:
        raise ValueError("q: empty")
    if axis is None:
        qmin, qmax = np.array(q.min()), np.array(q.max())
    else:
        if not -q.ndim <= axis < q.ndim:
            raise ValueError(f"axis: {axis} is out of range for a {q.ndim}-D tensor")
        red = tuple(i for i in range(q.ndim) if i != axis % q.ndim)
        qmin, qmax = q.min(axis=red), q.max(axis=red)
    smin, smax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if np.any(qmax - qmin > smax - smin):
        raise ValueError(f"q: spans {int((qmax - qmin).max()) + 1} codes, more than the {1 << bits} of {bits} bits")
    zp = np.where(qmin < smin, smin - qmin, np.where(qmax > smax, smax - qmax, 0)).astype(np.int64)
    stored = q + (_along("zero_point", zp, q.ndim, axis) if zp.ndim else zp)
    return stored, (int(zp) if zp.ndim == 0 else zp)


def qrange(bits=8, signed=True, reduced_range=False):
    """Integer range ``(qmin, qmax)`` of the affine quantizers (table in the module docstring)."""
    bits = _bits(bits, 2, 32)
    if signed:
        qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return (qmin + 1 if reduced_range else qmin), qmax
    return 0, (1 << bits) - 1 - (1 if reduced_range else 0)


def affine_params(rmin, rmax, bits=8, signed=True, reduced_range=False, symmetric=False):
    """Affine ``(scale, zero_point)`` for a real range, as PyTorch's ``MinMaxObserver`` computes them.

    The range is first extended to contain 0 (``rmin <= 0 <= rmax``) so that real zero is exact.

    * asymmetric: ``scale = (rmax - rmin) / (qmax - qmin)``,
      ``zero_point = clip(qmin - round(rmin / scale), qmin, qmax)``;
    * symmetric: ``scale = max(-rmin, rmax) / ((qmax - qmin) / 2)``; ``zero_point = 0`` if signed,
      ``(qmin + qmax + 1) // 2`` if unsigned (128 for 8 bits, as PyTorch's quint8).

    ``round`` is half to even. A zero-width range gives ``scale = float32 eps`` (PyTorch's
    floor on the scale) so the result is usable. ``rmin``/``rmax`` scalars give a float and an
    int; ``(C,)`` arrays give per-channel arrays. Returns float64 scales and int64 zero points.
    """
    rmin = np.minimum(_real_array("rmin", rmin), 0.0)
    rmax = np.maximum(_real_array("rmax", rmax), 0.0)
    if rmin.shape != rmax.shape:
        raise ValueError(f"rmin, rmax: shapes differ, {rmin.shape} and {rmax.shape}")
    qmin, qmax = qrange(bits, signed, reduced_range)
    tiny = float(np.finfo(np.float32).eps)
    if symmetric:
        scale = np.maximum(np.maximum(-rmin, rmax) / ((qmax - qmin) / 2), tiny)
        zp = np.full(scale.shape, 0 if signed else (qmin + qmax + 1) // 2, dtype=np.int64)
    else:
        scale = np.maximum((rmax - rmin) / (qmax - qmin), tiny)
        zp = np.clip(qmin - np.rint(rmin / scale), qmin, qmax).astype(np.int64)
    if scale.ndim == 0:
        return float(scale), int(zp)
    return scale, zp


def affine_quantize(x, scale, zero_point, bits=8, signed=True, reduced_range=False, axis=None):
    """``clip(round_half_even(x / scale) + zero_point, qmin, qmax)`` as int64.

    This is ONNX ``QuantizeLinear`` (divide, round half to even, add the zero point, saturate);
    PyTorch's ``quantize_per_tensor`` also rounds half to even but multiplies by ``1/scale``
    in float32, so it can differ at exact ties. ``scale``/``zero_point`` scalars, or ``(C,)``
    per channel along ``axis``. Zero or negative scale -> ValueError.
    """
    x = _real_array("x", x)
    scale = _along("scale", _positive("scale", scale), x.ndim, axis)
    zp = _along("zero_point", _as_int_array("zero_point", zero_point), x.ndim, axis)
    qmin, qmax = qrange(bits, signed, reduced_range)
    return np.clip(np.rint(x / scale) + zp, qmin, qmax).astype(np.int64)


def affine_dequantize(q, scale, zero_point, axis=None):
    """``(q - zero_point) * scale`` in float64 (ONNX ``DequantizeLinear``); per channel along ``axis``."""
    q = _as_int_array("q", q)
    scale = _along("scale", _positive("scale", scale), q.ndim, axis)
    zp = _along("zero_point", _as_int_array("zero_point", zero_point), q.ndim, axis)
    return (q - zp) * scale
