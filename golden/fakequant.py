"""Simulated ("fake") quantization for training: numpy forward and backward reference functions.

Quantization-aware training quantizes in the forward pass and passes gradients through the
quantizer in the backward pass (straight-through estimator, STE: simulated-quantization note;
NEMO report sec. 2.2). These functions are the float references a PyTorch training setup can be
checked against; they are float64 and not part of the integer datapath.

* :func:`fake_quantize` / :func:`fake_quantize_backward`: affine fake quantization, as PyTorch's
  ``fake_quantize_per_tensor_affine`` (gradient masked to the unclipped codes).
* :func:`pact_forward` / :func:`pact_backward`: NEMO/PACT activations with a learnable clip.
* :func:`lsq_forward` / :func:`lsq_backward`: the LSQ step-size quantizer (``LsqQuanAct`` and
  ``LsqQuanWeight``, weekly report of 25 May 2019), transcribed operation by operation.

Rounding is ``numpy.rint`` (half to even), like ``torch.round``.
"""

import numpy as np

from intdeploy.golden.quantizers import _bits, _positive, _real_array

__all__ = ["fake_quantize", "fake_quantize_backward", "pact_forward", "pact_backward",
           "lsq_forward", "lsq_backward"]


def _int_scalar(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return int(value)


def _affine_codes(x, scale, zero_point, qmin, qmax):
    x = _real_array("x", x)
    scale = _positive("scale", scale)
    zp = _int_scalar("zero_point", zero_point)
    qmin, qmax = _int_scalar("qmin", qmin), _int_scalar("qmax", qmax)
    if qmin > qmax:
        raise ValueError(f"qmin, qmax: need qmin <= qmax, got {qmin} > {qmax}")
    if not qmin <= zp <= qmax:
        raise ValueError(f"zero_point: {zp} is outside [qmin, qmax] = [{qmin}, {qmax}]")
    return x, scale, zp, qmin, qmax, np.rint(x / scale) + zp


def fake_quantize(x, scale, zero_point, qmin, qmax):
    """``(clip(rint(x/scale) + zero_point, qmin, qmax) - zero_point) * scale`` (float64)."""
    _, scale, zp, qmin, qmax, codes = _affine_codes(x, scale, zero_point, qmin, qmax)
    return (np.clip(codes, qmin, qmax) - zp) * scale


def fake_quantize_backward(x, grad_y, scale, zero_point, qmin, qmax):
    """STE gradient of :func:`fake_quantize`: ``grad_y`` where ``qmin <= rint(x/scale) + zp <= qmax``, else 0.

    The mask is on the rounded code, as PyTorch's ``fake_quantize_per_tensor_affine_cachemask``.
    """
    x, _, _, qmin, qmax, codes = _affine_codes(x, scale, zero_point, qmin, qmax)
    grad_y = np.broadcast_to(_real_array("grad_y", grad_y), x.shape)
    return np.where((codes >= qmin) & (codes <= qmax), grad_y, 0.0)


def _pact_eps(beta, bits):
    beta = _positive("beta", beta)
    if beta.ndim:
        raise ValueError(f"beta: expected a scalar, got shape {beta.shape}")
    return float(beta), float(beta) / ((1 << _bits(bits)) - 1)


def pact_forward(x, beta, bits):
    """PACT forward (report sec. 2.2, Eq. 10): ``eps * clip(floor(x / eps), 0, 2**bits - 1)``, ``eps = beta/(2**bits - 1)``.

    The report writes ``eps * floor(clip(x, 0, beta) / eps)``; the clip is applied to the
    integer code instead (as :func:`intdeploy.golden.quantizers.pact_quantize` and NEMO's ``PACT_Act``):
    in floating point ``beta / eps`` rounds just below ``2**bits - 1`` for about one ``beta`` in
    eight, and clipping ``x`` to ``beta`` first would then make the top level unreachable.
    """
    beta, eps = _pact_eps(beta, bits)
    return eps * np.clip(np.floor(_real_array("x", x) / eps), 0, (1 << bits) - 1)


def pact_backward(x, grad_y, beta, bits):
    """PACT backward: ``(grad_x, grad_beta)``.

    ``grad_x = grad_y`` where ``0 <= x < beta``, else 0 (STE, report sec. 2.2: the report writes
    the indicator of [0, beta]; the half-open mask makes it complementary to the ``grad_beta``
    mask, as in NEMO's ``PACT_QuantFunc``, so each element feeds exactly one of the two
    gradients). ``grad_beta = sum(grad_y where x >= beta)`` (PACT paper, Choi et al. 2018).
    NEMO's code applies both masks at ``beta + eps`` instead of ``beta`` (its internal clip
    parameter); this follows the report.
    """
    beta, _ = _pact_eps(beta, bits)
    x = _real_array("x", x)
    grad_y = np.broadcast_to(_real_array("grad_y", grad_y), x.shape)
    grad_x = np.where((x >= 0) & (x < beta), grad_y, 0.0)
    grad_beta = float(np.sum(np.where(x >= beta, grad_y, 0.0)))
    return grad_x, grad_beta


def _lsq_scale(x, s, bits):
    bits = _bits(bits, 2, 32)
    s = _positive("s", s)
    if s.size != 1:
        raise ValueError(f"s: expected one step size, got shape {s.shape}")
    nlevel = 2 ** (bits - 1) - 1
    x_scale = _real_array("x", x) / s.reshape(())
    return s.reshape(()), nlevel, x_scale


def lsq_forward(x, s, bits):
    """LSQ forward (``LsqQuanAct.forward`` = ``LsqQuanWeight.forward``).

    ``nlevel = 2**(bits-1) - 1``; ``y = rint(clip(x/s, -nlevel, nlevel)) * s``.
    """
    s, nlevel, x_scale = _lsq_scale(x, s, bits)
    return np.rint(np.clip(x_scale, -nlevel, nlevel)) * s


def lsq_backward(x, grad_y, s, bits, weight=False):
    """LSQ backward: ``(grad_x, grad_s)``, transcribing the report's ``backward`` exactly.

    ``x_isclip = |x/s| < nlevel`` (true *inside* the range despite its name);
    ``grad_x = where(x_isclip, grad_y, 0)`` for activations (``weight=False``), and
    ``grad_x = grad_y`` unmasked for weights (``weight=True``), as the report's two classes do;
    ``grad_s = sum(where(x_isclip, rint(x/s) - x/s, rint(clip(x/s, -nlevel, nlevel))) * grad_y)``,
    returned with shape ``(1,)`` like the report's ``.unsqueeze(0)``. (No LSQ gradient scale
    ``1/sqrt(N * Qp)`` is applied: the report's code has none.)
    """
    _, nlevel, x_scale = _lsq_scale(x, s, bits)
    grad_y = np.broadcast_to(_real_array("grad_y", grad_y), x_scale.shape)
    x_isclip = np.abs(x_scale) < nlevel
    x_bin = np.rint(np.clip(x_scale, -nlevel, nlevel))
    grad_x = np.array(grad_y, dtype=np.float64) if weight else np.where(x_isclip, grad_y, 0.0)
    grad_s = np.sum(np.where(x_isclip, np.rint(x_scale) - x_scale, x_bin) * grad_y).reshape(1)
    return grad_x, grad_s
