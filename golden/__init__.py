"""Numpy golden model of integer-only ("IntegerDeployable") inference; int64 on every bit-exact path.

Modules (import them directly; this package re-exports nothing):

* ``golden.requantizer``  accumulator -> activation requantizer, four rounding conventions
* ``golden.mac_array``    integer linear / conv (im2col GEMM), accumulator range checks
* ``golden.threshold``    batch-norm + activation merged into integer thresholds
* ``golden.add``          integer Add (NEMO, TFLite int8)
* ``golden.pool``         max and average pooling (NEMO, TFLite int8)
* ``golden.quantizers``   float -> integer quantizers (NEMO linear, affine)
* ``golden.fakequant``    simulated quantization forward / backward references (STE, PACT, LSQ)
* ``golden.network``, ``golden.model_file``, ``golden.digits``  networks, model files, demo data
"""
