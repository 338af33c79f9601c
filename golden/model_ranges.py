"""Range proofs of a model's graph: each layer's output shape and exact value range from its
inputs', by interval arithmetic, with the proof that no accumulator or intermediate wraps int32
(:func:`intdeploy.golden.mac_array.check_accumulator`); a layer that could wrap is refused with one
line (:class:`~intdeploy.golden.model_ir.ModelFormatError`)."""


import numpy as np

from intdeploy.golden import mac_array, pool
from intdeploy.golden.model_ir import ACC_BITS, AddLayer, MacLayer, ModelFormatError, PoolLayer, RequantLayer, SoftmaxLayer
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, requantize
from intdeploy.golden.threshold import EXACT_RANGE

__all__ = ["layer_output"]

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


def _conv_out(size, k, s, pads, axis, path):
    out = (size + pads[0] + pads[1] - k) // s + 1
    if size + pads[0] + pads[1] < k:
        raise ModelFormatError(f"{path}.kernel: {k} is larger than the padded input ({size + sum(pads)}) on {axis}")
    return out


def layer_output(layer, srcs, path):
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
    if isinstance(layer, SoftmaxLayer):
        if x.lo < -128 or x.hi > 127:
            raise ModelFormatError(f"{path}.inputs[0]: a softmax takes int8 values, {layer.inputs[0]!r} spans "
                                   f"[{x.lo}, {x.hi}]")
        return x.shape, -128, -128, 127
    return (int(np.prod(x.shape)),), x.zero_point, x.lo, x.hi          # FlattenLayer
