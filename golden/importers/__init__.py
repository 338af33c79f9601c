"""Importers from software quantization into the intdeploy model file.

* :func:`intdeploy.golden.importers.from_onnx.import_onnx`: ONNX QLinearConv / QLinearMatMul models and
  QDQ models (QuantizeLinear / DequantizeLinear around Conv, MatMul, Gemm), per tensor and per
  channel, rounding ``half_even``;
* :func:`intdeploy.golden.importers.from_tflite.import_tflite`: int8 TFLite models (the operators
  LiteRT's reference kernels run that the accelerator or the host can), proven against the
  reference kernels' integer formulas;
* :func:`intdeploy.golden.importers.from_torch.import_torch`: PyTorch ``torch.ao`` quantized Linear /
  Conv2d (fbgemm) modules in a sequential model.

The ONNX and PyTorch importers produce a :class:`intdeploy.golden.model_file.IntegerModel` whose requantizers are proven equal to the
framework's float32 requantization on every reachable accumulator value
(:func:`intdeploy.golden.importers.fp32.fit_requant`); an unsupported operator or module, or a layer with
no exact integer form, raises :class:`intdeploy.golden.model_file.ModelFormatError` with one line naming the
node and the operator.
"""

import numpy as np



def unique_name(base, taken):
    """``base``, or ``base_1``, ``base_2``, ... : the first not in the set ``taken``, which it joins."""
    out, i = base, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def window_sum_weights(channels, kernel):
    """OHWI int8 weights ``(C, KH, KW, C)`` of a convolution that sums each channel's own window:
    1 on the channel's taps, 0 elsewhere (block-diagonal; an average pool or a mean before its
    divisor)."""
    w = np.zeros((channels,) + tuple(kernel) + (channels,), dtype=np.int8)
    w[np.arange(channels), :, :, np.arange(channels)] = 1
    return w
