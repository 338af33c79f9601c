"""Importers from software quantization into the intdeploy model file.

* :func:`intdeploy.golden.importers.from_onnx.import_onnx`: ONNX QLinearConv / QLinearMatMul models and
  QDQ models (QuantizeLinear / DequantizeLinear around Conv, MatMul, Gemm), per tensor and per
  channel, rounding ``half_even``;
* :func:`intdeploy.golden.importers.from_torch.import_torch`: PyTorch ``torch.ao`` quantized Linear /
  Conv2d (fbgemm) modules in a sequential model.

Both produce a :class:`intdeploy.golden.model_file.IntegerModel` whose requantizers are proven equal to the
framework's float32 requantization on every reachable accumulator value
(:func:`intdeploy.golden.importers.fp32.fit_requant`); an unsupported operator or module, or a layer with
no exact integer form, raises :class:`intdeploy.golden.model_file.ModelFormatError` with one line naming the
node and the operator.
"""
