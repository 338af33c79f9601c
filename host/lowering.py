"""Lowering: each layer kind of a model file to a :class:`~intdeploy.host.job.GemmJob`
(docs/driver.md explains each: convolutions by im2col or strips, element-wise layers as identity
GEMMs, the add unit's residual operand, pooling windows)."""

import dataclasses

import numpy as np

from intdeploy import wire
from intdeploy.golden import mac_array
from intdeploy.golden.pool import pool_windows
from intdeploy.golden.requantizer import RequantParams, _wrap32, requantize
from intdeploy.host.job import EngineError, GemmJob, Pool, Refusal
from intdeploy.host.strips import conv_strips

__all__ = ["Lowering", "out_format"]

class Lowering:
    """Layer lowering of :class:`intdeploy.host.driver.Driver` (uses ``self.info``, ``self.conv_strips``)."""

    def _input8(self, model, name, zero_point, what, values):
        """(x_signed) for an input tensor carried as 8-bit activations, else ValueError."""
        t = model.tensors[name]
        signed = _fits8(t.lo, t.hi, zero_point)
        if signed is None:
            raise Refusal(f"{what}: input {name!r} spans [{t.lo}, {t.hi}] with zero point {zero_point}; "
                             f"the activation buffer holds int8 or uint8 values")
        _check_values(values, t.lo, t.hi, name, what)
        return signed

    def _mac(self, model, layer, x, what):
        src = layer.inputs[0]
        zp = layer.input_zero_point
        x_signed = self._input8(model, src, zp, what, x)
        t = model.tensors[src]
        w = layer.weight.astype(np.int64)
        if layer.kind == "conv2d":
            cols = mac_array.im2col(x, w.shape[1:3], layer.stride, layer.padding, pad_value=zp)
            padded = layer.padding != ((0, 0), (0, 0))
            w = w.reshape(w.shape[0], -1)
        else:
            cols, padded = x, False
        rows = cols.reshape(-1, w.shape[1])
        # padded taps hold the zero point: part of the input range
        x_range = (min(t.lo, zp), max(t.hi, zp)) if padded else (t.lo, t.hi)
        n = w.shape[0]
        # a grouped (depthwise) convolution imported as a block-diagonal conv2d (metadata
        # "block_diagonal": input channels per output) needs KH*KW*that multiplies per output, not
        # KH*KW*Cin: the weights outside the block are not useful work
        per_in = model.metadata.get("block_diagonal", {}).get(layer.name)
        k_useful = w.shape[1] // layer.in_channels * per_in if per_in else w.shape[1]
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=x_signed, x_zero_point=zp,
                      w_zero_point=np.broadcast_to(np.asarray(layer.weight_zero_point, dtype=np.int64), (n,)),
                      x_range=x_range, useful_macs=rows.shape[0] * k_useful * n)
        if layer.kind == "conv2d" and self.conv_strips != "never":
            job.strips = conv_strips(x, layer, self.info)
            if job.strips is not None and x.shape[-1] % self.info.cols:       # channel padding holds zp
                job.x_range = (min(job.x_range[0], zp), max(job.x_range[1], zp))
        if layer.requant is not None:
            job.requant = layer.requant
        else:
            th = layer.threshold
            q = int(th.levels + 1).bit_length() - 1
            if q > self.info.max_q:
                raise Refusal(f"{what}: thresholds of Q = {q} bits ({th.levels} per channel); the threshold "
                                 f"unit holds Q <= {self.info.max_q}")
            job.thresholds, job.negate = th.thresholds, th.negate
        return job

    def _identity(self, model, name, values, what):
        """Rows, weights, zero points carrying tensor ``name`` through an identity GEMM.

        Returns ``(rows (M, K), w (C, K), w_zp (C,), x_signed, base)`` such that the accumulator
        of channel ``c`` is ``value - base`` exactly (the epilogue's bias adds ``base`` back). A byte
        tensor passes as it is (``K = C``, base 0). A wider one, of at most 65536 values, is offset
        by its proven minimum (``base = lo``, ``u = value - lo``) and split into bytes weighted by
        ``w - w_zp`` with ``w_zp = -128``: ``u = a + 255*b`` (``a = u mod 255``, weights ``-127, 127``
        give 1, 255; two bytes, ``K = 2C``) when ``u <= 255*255 + 254 = 65279``, else ``u = a +
        128*b + 128*b`` (``a = u mod 256``, weights ``-127, 0, 0`` give 1, 128, 128; three bytes,
        ``K = 3C``). Every other weight equals the zero point and contributes 0.
        """
        t = model.tensors[name]
        _check_values(values, t.lo, t.hi, name, what)
        v = values.reshape(-1, values.shape[-1])
        ch = v.shape[1]
        signed = _fits8(t.lo, t.hi, 0)
        if signed is not None:
            return v, np.eye(ch, dtype=np.int64), np.zeros(ch, dtype=np.int64), signed, 0
        if t.hi - t.lo > 0xFFFF:
            raise Refusal(f"{what}: input {name!r} spans [{t.lo}, {t.hi}], wider than 16 bits (more than 65536 "
                             f"values); the activation buffer holds bytes")
        if self.info.weight_bits != 8:
            raise Refusal(f"{what}: input {name!r} spans [{t.lo}, {t.hi}]; splitting it into bytes needs 8-bit "
                             f"weights, the accelerator has {self.info.weight_bits}-bit weights")
        base = t.lo
        u = v - base
        if t.hi - t.lo <= 255 * 255 + 254:
            parts, pattern = [u % 255, u // 255], (-127, 127)
        else:
            parts, pattern = [u & 0xFF, u >> 8, u >> 8], (-127, 0, 0)
        n = len(parts)
        rows = np.stack(parts, axis=2).reshape(v.shape[0], n * ch)
        w = np.full((ch, n * ch), -128, dtype=np.int64)
        for c in range(ch):
            w[c, n * c:n * c + n] = pattern
        return rows, w, np.full(ch, -128, dtype=np.int64), False, base

    def _add(self, model, layer, xs, what):
        """Identity GEMM of one operand (the one that is not a byte, else the first), the add unit
        adding the other from the residual buffer."""
        a, b = layer.inputs
        ta, tb = model.tensors[a], model.tensors[b]
        k = 0
        if _fits8(tb.lo, tb.hi, 0) is None:
            if _fits8(ta.lo, ta.hi, 0) is None:
                raise Refusal(f"{what}: neither input is 8-bit ({a!r} spans [{ta.lo}, {ta.hi}], {b!r} "
                                 f"[{tb.lo}, {tb.hi}]); the residual operand is a byte")
            k = 1
        rows, w, w_zp, signed, base = self._identity(model, layer.inputs[k], xs[k], what)
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=signed, x_zero_point=0, w_zero_point=w_zp,
                      requant=RequantParams(mult=1, shift=0, bias=base), bias_in_check=False)
        self._attach_add(model, layer, job, k, xs[1 - k], what)
        return job

    def _attach_add(self, model, layer, job, k, residual, what):
        """The add unit of ``job``'s RUNs computes ``layer``: the GEMM's epilogue output is its input
        ``k``, the other input (``residual``, a byte tensor) goes to the residual buffer. The sum
        ``wrap32(v0 + v1)`` is symmetric, so for ``k = 1`` the zero points and branch requantizers
        are swapped."""
        p = layer.params
        for j, rq in enumerate(p.branches + (p.output,)):
            if rq.channels is not None:
                part = f"branches[{j}]" if j < 2 else "requant"
                raise Refusal(f"{what}: {part} is per-channel; the add unit has one requantizer per branch")
        other = layer.inputs[1 - k]
        t = model.tensors[other]
        if _fits8(t.lo, t.hi, 0) is None:
            raise Refusal(f"{what}: input {other!r} spans [{t.lo}, {t.hi}]; the residual operand is a byte")
        _check_values(residual, t.lo, t.hi, other, what)
        if k == 1:
            p = dataclasses.replace(p, in_zero_points=p.in_zero_points[::-1], branches=p.branches[::-1])
        job.add = p
        job.residual = residual.reshape(-1, residual.shape[-1])
        job.residual_signed = bool(t.lo < 0)

    def _requant(self, model, layer, x, what):
        rows, w, w_zp, signed, base = self._identity(model, layer.inputs[0], x, what)
        rq = layer.requant
        if base:
            # wrap32(acc + bias') with acc = x - base and bias' = wrap32(bias + base) is wrap32(x + bias)
            f = {k: getattr(rq, k) for k in ("mult", "shift", "offset", "zero_point", "lo", "hi")}
            rq = RequantParams(bias=_wrap32(rq.bias + base), rounding=rq.rounding, **f)
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=signed, x_zero_point=0, w_zero_point=w_zp,
                      requant=rq, bias_in_check=False)
        return job

    def _pool(self, model, layer, x, what):
        """Identity GEMM of the pooling layer's input, then the pooling unit; an average pool of
        more taps than the pooling unit takes runs on the MAC array instead (:meth:`_window_sum`)."""
        padded = layer.padding != ((0, 0), (0, 0))
        if layer.mode != "max" and (padded or layer.kernel[0] * layer.kernel[1] > self.info.max_pool_taps):
            return self._window_sum(model, layer, x, what)
        hw = None
        if padded:
            # a max pool: padding with the input's proven minimum leaves every window's maximum as it is
            (pt, pb), (pl, pr) = layer.padding
            x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=model.tensors[layer.inputs[0]].lo)
            layer, hw = dataclasses.replace(layer, padding=((0, 0), (0, 0))), x.shape[1:3]
        rows, w, w_zp, signed, base = self._identity(model, layer.inputs[0], x, what)
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=signed, x_zero_point=0, w_zero_point=w_zp,
                      requant=RequantParams(mult=1, shift=0, bias=base), bias_in_check=False)
        self._attach_pool(model, layer, job, x.shape[0], what, hw)
        return job

    def _window_sum(self, model, layer, x, what):
        """An average pool as a GEMM: row ``(image, oh, ow, c)`` holds the ``T = KH*KW`` taps of
        channel ``c``'s window (``K = T``; padded taps hold 0), every weight is 1, so the
        accumulator is the window's sum ``S`` of its ``n`` real taps exactly; the requantizer
        divides. ``avg_nemo`` (no padding) is ``(floor(2**d / T) * S) >> d``: mult
        ``floor(2**d / T)``, shift ``d``, ``floor``. ``avg_tflite`` is ``S / n`` rounded half away
        from zero: ``half_away`` with mult ``ceil(2**k / n)`` for the smallest ``k`` that gives
        golden's result on every reachable sum (checked here, on all of them). With padding the
        windows have different ``n`` (fewer at the edges): one output column per distinct ``n``,
        each with its own divisor, and each row keeps its window's column (:attr:`GemmJob.columns`)."""
        src = layer.inputs[0]
        t = model.tensors[src]
        taps = layer.kernel[0] * layer.kernel[1]
        signed = self._input8(model, src, 0, what, x)
        ch = x.shape[-1]
        cols = mac_array.im2col(x, layer.kernel, layer.stride, layer.padding)   # (B, OH, OW, T*C), (kh, kw, c)
        rows = cols.reshape(cols.shape[:3] + (taps, ch)).swapaxes(-1, -2).reshape(-1, taps)
        real = mac_array.im2col(np.ones(x.shape[1:3] + (1,), dtype=np.int64)[None], layer.kernel, layer.stride,
                                layer.padding).sum(axis=-1)[0]                  # (OH, OW): real taps per window
        counts, index = np.unique(real, return_inverse=True)
        clamp = dict(lo=-(1 << 31) if layer.lo is None else layer.lo, hi=(1 << 31) - 1 if layer.hi is None else layer.hi)
        params = []
        for n in counts.tolist():
            sums = np.arange(n * t.lo, n * t.hi + 1, dtype=np.int64)
            windows = np.zeros((sums.size, n, 1), dtype=np.int64)
            windows[:, 0, 0] = sums                             # the sum in one tap, the others 0
            want = pool_windows(windows, layer.mode, count=n, d=layer.d, lo=layer.lo, hi=layer.hi)[:, 0]
            if layer.mode == "avg_nemo":
                candidates = [RequantParams(mult=(1 << layer.d) // n, shift=layer.d, rounding="floor", **clamp)]
            else:
                candidates = (RequantParams(mult=-(-(1 << k) // n), shift=k, rounding="half_away", **clamp)
                              for k in range(0, 32))
            rq = next((r for r in candidates if np.array_equal(requantize(sums, r), want)), None)
            if rq is None:
                raise Refusal(f"{what}: no requantizer divides every window sum of {n} taps as the pooling layer does")
            params.append(rq)
        rq = params[0] if len(params) == 1 else RequantParams(
            mult=[r.mult for r in params], shift=[r.shift for r in params], rounding=params[0].rounding, **clamp)
        columns = None if len(params) == 1 else \
            np.broadcast_to(index.reshape(real.shape)[None, :, :, None], cols.shape[:3] + (ch,)).reshape(-1)
        x_range = (min(t.lo, 0), max(t.hi, 0)) if layer.padding != ((0, 0), (0, 0)) else (t.lo, t.hi)
        return GemmJob(name=layer.name, x=rows, w=np.ones((len(params), taps), dtype=np.int64), x_signed=signed,
                       x_zero_point=0, w_zero_point=np.zeros(len(params), dtype=np.int64), requant=rq,
                       x_range=x_range, columns=columns)

    def _attach_pool(self, model, layer, job, batch, what, hw=None):
        """The pooling unit of ``job``'s RUNs computes ``layer``: ``job``'s rows (one per element of
        the pooling input's ``(image, h, w)`` grid, with the residual rows if any) are reordered
        window by window, the ``T = KH*KW`` taps of each window consecutively (any stride;
        overlapping windows duplicate rows)."""
        i = self.info
        src = layer.inputs[0]
        t = model.tensors[src]
        if layer.padding != ((0, 0), (0, 0)):
            raise Refusal(f"{what}: padding {[list(p) for p in layer.padding]}; the pooling unit needs every "
                             f"window to have its {layer.kernel[0] * layer.kernel[1]} real taps (no padding)")
        taps = layer.kernel[0] * layer.kernel[1]
        if taps > i.max_pool_taps:
            raise Refusal(f"{what}: a {layer.kernel[0]}x{layer.kernel[1]} window has {taps} taps; the pooling "
                             f"unit takes at most {i.max_pool_taps}")
        tap_lo, tap_hi = -(1 << (wire.POOL_TAP_BITS - 1)), (1 << (wire.POOL_TAP_BITS - 1)) - 1
        if t.lo < tap_lo or t.hi > tap_hi:
            raise Refusal(f"{what}: input {src!r} spans [{t.lo}, {t.hi}]; pooling taps are {wire.POOL_TAP_BITS}-bit "
                             f"[{tap_lo}, {tap_hi}]")
        d, lo, hi = 0, -128, 127
        if layer.mode == "avg_nemo":
            if layer.d > i.max_pool_shift:
                raise Refusal(f"{what}: d = {layer.d}; the pooling unit's largest d is {i.max_pool_shift}")
            d = layer.d
            factor = (1 << layer.d) // taps
            pre = ((factor * taps * t.lo) >> layer.d, (factor * taps * t.hi) >> layer.d)
        else:
            pre = (t.lo, t.hi)                  # max and averages stay within the input range
        if layer.mode == "avg_tflite":
            lo, hi = max(layer.lo, -0x8000), min(layer.hi, 0x7FFF)
            if lo > 0x7FFF or hi < -0x8000:
                raise Refusal(f"{what}: clamp [{layer.lo}, {layer.hi}] does not fit the int16 clamp fields")
        elif (layer.lo is not None and layer.lo > pre[0]) or (layer.hi is not None and layer.hi < pre[1]):
            raise Refusal(f"{what}: clamp [{layer.lo}, {layer.hi}] can change values in [{pre[0]}, {pre[1]}]; "
                             f"the pooling unit clamps only in avg_tflite mode")
        pool = Pool(mode=layer.mode, taps=taps, d=d, lo=lo, hi=hi)
        h, w = (t.shape[0], t.shape[1]) if hw is None else hw

        def windows(rows):
            k = rows.shape[1]
            win = mac_array.im2col(rows.reshape(batch, h, w, k), layer.kernel, layer.stride, 0)
            return win.reshape(-1, k)                       # (B, OH, OW, T*k) -> T rows per window
        job.x = windows(job.x)
        if job.residual is not None:
            job.residual = windows(job.residual)
        job.pool = pool


def _fits8(lo, hi, zero_point):
    """True (int8), False (uint8) or None: how values in [lo, hi] and the zero point fit a byte."""
    if 0 <= lo and hi <= 255 and 0 <= zero_point <= 255:
        return False
    if -128 <= lo and hi <= 127 and -128 <= zero_point <= 127:
        return True
    return None


def out_format(lo, hi, what):
    for nbytes in (1, 2, 4):
        bits = 8 * nbytes
        if 0 <= lo and hi < (1 << bits):
            return nbytes, False
        if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
            return nbytes, True
    raise Refusal(f"{what}: output range [{lo}, {hi}] does not fit 32 bits")


def _check_values(values, lo, hi, name, what):
    v = np.asarray(values)
    if v.size and (int(v.min()) < lo or int(v.max()) > hi):
        raise EngineError(f"{what}: input {name!r} has values in [{int(v.min())}, {int(v.max())}], outside its "
                          f"proven range [{lo}, {hi}] (an engine produced wrong values upstream)")
