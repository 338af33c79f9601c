"""Numpy golden model of integer-only ("IntegerDeployable") inference; int64 on every bit-exact path.

Modules (import them directly; this package re-exports nothing):

* ``intdeploy.golden.requantizer``  accumulator -> activation requantizer, four rounding conventions
* ``intdeploy.golden.mac_array``    integer linear / conv (im2col GEMM), accumulator range checks
* ``intdeploy.golden.threshold``    batch-norm + activation merged into integer thresholds
* ``intdeploy.golden.add``          integer Add (NEMO, TFLite int8)
* ``intdeploy.golden.pool``         max and average pooling (NEMO, TFLite int8)
* ``intdeploy.golden.quantizers``   float -> integer quantizers (NEMO linear, affine)
* ``intdeploy.golden.fakequant``    simulated quantization forward / backward references (STE, PACT, LSQ)
* ``intdeploy.golden.network``, ``intdeploy.golden.model_file``, ``intdeploy.golden.digits``  networks, model files, demo data
"""
