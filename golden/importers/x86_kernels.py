"""The frameworks' uint8 x int8 integer GEMM on x86-64: exact with VNNI, int16 pair saturation without.

ONNX Runtime (MLAS: ``QLinearMatMul``, ``QLinearConv``, ``MatMulInteger`` and the QDQ form it
fuses into them) and PyTorch's fbgemm (quantized ``Linear``, ``Conv2d``) multiply the uint8
activation codes by the int8 weight codes as stored, and apply the zero points afterwards from row
and column sums (exactly, in int32). How the products are summed depends on the CPU:

* with AVX-512 VNNI (``avx512_vnni``; for ONNX Runtime also AVX-VNNI, ``avx_vnni``),
  ``vpdpbusd`` adds every product into an int32 accumulator: the result is **exact**;
* without VNNI (AVX2 CPUs such as AMD Zen 2/3, AVX-512 CPUs before Cascade Lake),
  ``vpmaddubsw`` multiplies adjacent byte pairs and adds each pair into an int16 **with signed
  saturation** before ``vpmaddwd`` widens to int32: a pair sum
  ``x[k] * w[k] + x[k + 1] * w[k + 1]`` (``k`` even) outside ``[-32768, 32767]`` is clipped.

uint8 x uint8 and int8 x int8 operands take other kernels, which are exact on the same CPU
(measured: ``MatMulInteger``, 3200 accumulators each). The pairs run along K in the order the
kernel packs it. Measured on an AMD EPYC (AVX2, no VNNI) with onnxruntime 1.32.0 and torch 2.13.0,
both frameworks pair K in the order of :func:`intdeploy.golden.mac_array.im2col`: a MatMul / Linear its K
axis in order, a convolution its NHWC patches in ``(kh, kw, c)`` order with the padded taps
holding the input zero point (:func:`pair_saturated_linear`, :func:`pair_saturated_conv2d`
reproduce every output of QLinearMatMul, QLinearConv, fbgemm Linear and Conv2d in the tests).
ONNX Runtime's ``ConvInteger`` operator is exact on that CPU (another code path), so it cannot
stand in for QLinearConv's accumulators; ``MatMulInteger`` on the im2col rows can.

No pair saturates when ``2 * max|x| * max|w| <= 32767``: activations within ``[0, 127]`` (7 bits,
what fbgemm's default ``reduce_range=True`` calibrates for) or weights within ``[-64, 63]``
(ONNX Runtime's ``reduce_range=True``) keep every kernel exact. :func:`pair_sum_range` gives the
exact bound for a layer's weights, :func:`saturation_free_hi` the largest activation code that
keeps it.

:class:`KernelCheck` compares a framework's own int32 accumulators (``MatMulInteger``, or fbgemm's
GEMM through ``quantized.linear_with_input_q_dq_qweight_dq_output_fp32``) with exact arithmetic
and with the pair-saturation model, and says in one line which CPU feature explains the
difference. Pure numpy; the framework runners
(:func:`intdeploy.golden.importers.framework.ort_accumulators`,
:func:`intdeploy.golden.importers.framework.fbgemm_accumulators`) and the replay of a whole imported model
with them live in :mod:`intdeploy.golden.importers.framework`.
"""

from dataclasses import dataclass

import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.requantizer import _as_int_array

__all__ = ["INT16_MIN", "INT16_MAX", "REASON", "VNNI_FLAGS", "pair_saturated_linear", "pair_saturated_conv2d",
           "pair_sum_range", "saturation_free_hi", "saturation_warning", "cpu_flags",
           "expected_kernel", "cpu_note", "KernelCheck"]

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
#: How an output element that differs only because of the kernel is classified.
REASON = "framework deviation (int16 pair saturation)"
#: The CPU features whose ``vpdpbusd`` makes u8 x s8 accumulation exact.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
#: Elements of the (rows, channels, pairs) intermediate per chunk of :func:`pair_saturated_linear`.
_CHUNK = 1 << 22


def _pairs(w):
    """``w`` (M, K) padded with a zero column to even K, as (M, K / 2, 2)."""
    if w.shape[1] % 2:
        w = np.concatenate([w, np.zeros((w.shape[0], 1), dtype=np.int64)], axis=1)
    return w.reshape(w.shape[0], -1, 2)


def pair_saturated_linear(x, w, x_zero_point=0, w_zero_point=0):
    """:func:`intdeploy.golden.mac_array.linear` as a u8 x s8 kernel without VNNI computes it.

    ``sum_j sat16(x[2j] * w[m, 2j] + x[2j + 1] * w[m, 2j + 1])`` over the raw codes (an odd K
    pairs its last product with a zero), then ``- x_zp * sum_k w[m, k] - w_zp[m] * sum_k x[k]
    + K * x_zp * w_zp[m]``, exact. ``x`` (..., K) and ``w`` (M, K) as in ``linear``; returns
    int64 (..., M). Equals ``linear`` whenever no pair sum leaves int16.
    """
    exact = mac_array.linear(x, w, x_zero_point, w_zero_point)   # validates the operands
    x = _as_int_array("x", x)
    w = _as_int_array("w", w)
    k = w.shape[1]
    rows = x.reshape(-1, k)
    wp = _pairs(w)
    xp = _pairs(rows)
    raw = np.empty((rows.shape[0], w.shape[0]), dtype=np.int64)
    step = max(1, _CHUNK // max(1, w.shape[0] * wp.shape[1]))
    for r in range(0, rows.shape[0], step):
        s = np.einsum("rjt,mjt->rmj", xp[r:r + step], wp)
        raw[r:r + step] = np.clip(s, INT16_MIN, INT16_MAX).sum(axis=2)
    zx = int(x_zero_point)
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64), (w.shape[0],))
    acc = raw - zx * w.sum(axis=1) - rows.sum(axis=1, keepdims=True) * zw + k * zx * zw
    return acc.reshape(exact.shape)


def pair_saturated_conv2d(x, w, stride=1, padding=0, x_zero_point=0, w_zero_point=0):
    """:func:`intdeploy.golden.mac_array.conv2d` as a u8 x s8 kernel without VNNI computes it: the im2col
    rows (``(kh, kw, c)`` order, padded taps = ``x_zero_point``) through
    :func:`pair_saturated_linear`. NHWC x OHWI -> NHWC int64."""
    w = _as_int_array("w", w)
    if w.ndim != 4:
        raise ValueError(f"w: expected OHWI (Cout, KH, KW, Cin), got shape {w.shape}")
    cols = mac_array.im2col(x, (w.shape[1], w.shape[2]), stride, padding, pad_value=x_zero_point)
    return pair_saturated_linear(cols, w.reshape(w.shape[0], -1), x_zero_point, w_zero_point)


def pair_sum_range(w, x_lo, x_hi):
    """Smallest and largest pair sum ``x[k] * w[m, k] + x[k + 1] * w[m, k + 1]`` (``k`` even)
    over every output channel and every activation code in ``[x_lo, x_hi]``: ``(lo, hi)``.
    ``w``: (M, K) or OHWI, the raw int8 codes in the kernel's K order. The kernel cannot
    saturate when ``INT16_MIN <= lo`` and ``hi <= INT16_MAX``."""
    w = _as_int_array("w", w)
    wp = _pairs(w.reshape(w.shape[0], -1))
    a, b = int(x_lo) * wp, int(x_hi) * wp
    return int(np.minimum(a, b).sum(axis=2).min()), int(np.maximum(a, b).sum(axis=2).max())


def saturation_free_hi(w, x_lo, x_hi):
    """The largest ``h`` in ``[x_lo, x_hi]`` for which no pair sum of codes in ``[x_lo, h]`` leaves
    int16 (``x_hi`` when none can), or None when even ``[x_lo, x_lo]`` can saturate."""
    def fits(h):
        lo, hi = pair_sum_range(w, x_lo, h)
        return INT16_MIN <= lo and hi <= INT16_MAX
    if not fits(x_lo):
        return None
    good, bad = int(x_lo), int(x_hi) + 1
    if fits(x_hi):
        return int(x_hi)
    while bad - good > 1:                       # pair sums grow monotonically with h
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def cpu_flags(path="/proc/cpuinfo"):
    """The first processor's feature flags (a set; empty where ``/proc/cpuinfo`` cannot be read)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def expected_kernel(flags=None):
    """What both frameworks' u8 x s8 kernels do on a CPU with these flags: ``"exact"``
    (``avx512_vnni``: both use vpdpbusd), ``"saturate"`` (AVX2 and no VNNI at all: both use
    vpmaddubsw), or None where they may differ (``avx_vnni`` alone, which fbgemm does not use;
    no AVX2)."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags:
        return "exact"
    if "avx2" in flags and not flags & set(VNNI_FLAGS):
        return "saturate"
    return None


def cpu_note(flags=None):
    """What this CPU offers the u8 x s8 kernels, in a few words."""
    flags = cpu_flags() if flags is None else flags
    vnni = [f for f in VNNI_FLAGS if f in flags]
    if vnni:
        return f"{' and '.join(vnni)}: vpdpbusd accumulates exactly"
    isa = "AVX-512" if "avx512bw" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{isa} without avx512_vnni / avx_vnni: vpmaddubsw saturates each u8 x s8 pair sum to int16"


def saturation_warning(label, w, x_lo, x_hi, fix):
    """One line when activation codes in ``[x_lo, x_hi]`` times the int8 weights ``w`` (kernel K
    order) can saturate a pair sum, naming the layer (``label``) and the fix; None when they
    cannot."""
    lo, hi = pair_sum_range(w, x_lo, x_hi)
    if INT16_MIN <= lo and hi <= INT16_MAX:
        return None
    safe = saturation_free_hi(w, x_lo, x_hi)
    where = "" if safe is None else f"; no pair saturates while activations stay <= {safe}"
    return (f"{label}: uint8 activations in [{x_lo}, {x_hi}] times its int8 weights reach pair sums in "
            f"[{lo}, {hi}], beyond int16: ONNX Runtime and fbgemm on x86-64 CPUs without VNNI saturate them "
            f"and differ from exact arithmetic there{where}; {fix}, or trust the accelerator's exact result")


@dataclass
class KernelCheck:
    """A framework's own int32 accumulators compared with exact arithmetic on the same inputs.

    ``accumulators``: values compared; ``differing``: the framework's differ from exact;
    ``unexplained``: of those, the ones the pair-saturation model does not reproduce either
    (zero means every difference is int16 pair saturation).
    """
    framework: str
    accumulators: int = 0
    differing: int = 0
    unexplained: int = 0

    def add(self, framework_acc, exact, model):
        """Count one layer's accumulators: the framework's, the exact ones and the model's."""
        framework_acc, exact, model = (np.asarray(v, dtype=np.int64) for v in (framework_acc, exact, model))
        wrong = framework_acc != exact
        self.accumulators += int(exact.size)
        self.differing += int(np.count_nonzero(wrong))
        self.unexplained += int(np.count_nonzero(wrong & (framework_acc != model)))
        return self

    @property
    def exact(self):
        return self.differing == 0

    @property
    def explained(self):
        return self.unexplained == 0

    def line(self):
        """One line: exact, or how many accumulators differ and whether pair saturation explains them."""
        if self.exact:
            return f"{self.framework}: integer accumulators exact on this CPU ({self.accumulators} compared)"
        why = ("every one as int16 pair saturation predicts" if self.explained else
               f"{self.unexplained} of them NOT explained by int16 pair saturation")
        return (f"{self.framework} is not exact on this CPU: {self.differing} of {self.accumulators} int32 "
                f"accumulators differ from exact arithmetic, {why} ({cpu_note()})")

    def as_dict(self):
        return dict(framework=self.framework, accumulators=self.accumulators, differing=self.differing,
                    unexplained=self.unexplained)
