"""Host driver: compiles IntegerDeployable layers into command packets and runs them on an engine.

The accelerator runs one GEMM per RUN (docs/protocol.md): ``M`` rows of ``K`` 8-bit activations
times ``N`` weight rows, then the requantizer or threshold epilogue, an optional add with a
residual operand and an optional pooling of consecutive rows. This module lowers every layer of
an :class:`intdeploy.golden.model_file.IntegerModel` to that form and tiles it to the buffers reported by
INFO (docs/driver.md explains each lowering):

* ``conv2d``: im2col on the host (:func:`intdeploy.golden.mac_array.im2col`, padded taps hold the input
  zero point), then a GEMM with OHWI weights flattened in ``(kh, kw, c)`` order, or, when that
  costs less, strips of the input whose GEMM rows share activation entries (the descriptor's
  ``row_step``; :func:`_conv_strips`); ``linear``: a GEMM on the last axis.
* ``add``: an identity GEMM carries the first operand through the epilogue unchanged and the add
  unit adds the second, loaded in the residual buffer (:func:`intdeploy.golden.add.add`).
* ``requant`` (element-wise): an identity GEMM whose epilogue is the layer's requantizer.
* ``maxpool2d``/``avgpool2d``: an identity GEMM whose rows are ordered window by window, and the
  pooling unit (any stride, no padding).
* ``flatten``: done on the host (a reshape, no arithmetic).

With ``fuse`` (:meth:`Driver.plan`) an ``add``, the ``requant`` layer after it and then a pooling
layer run in the epilogue of the layer before them, in the same RUNs, where the hardware can.

A tensor wider than 8 bits whose proven range has at most 65536 values (e.g. NEMO's int32 Add
sum, proven to fit ``[0, 368]``) enters an identity GEMM offset by its minimum and split into two
bytes ``a + 255*b`` (three, ``a + 128*b + 128*b``, for a range of more than 65280 values), exact,
so the element-wise layers after it still run on the accelerator.

Layers the accelerator cannot run exactly are refused with ``ValueError("layer 'name' (kind):
reason")`` before anything is sent: accumulator overflow (:func:`intdeploy.golden.mac_array.check_accumulator`
with the bias, which the requantizer adds in int32), ``K`` beyond a weight bank or the activation
buffer, threshold ``Q`` beyond ``max_q``, weights wider than ``weight_bits``, inputs that are not
8-bit, per-channel Add requantizers, padded pooling, a clamp the pooling unit cannot apply.

An *engine* executes packets: ``execute(list of packets) -> list of Response``, one response per
packet, in order. :class:`intdeploy.sim.accel_model.ModelEngine` wraps the executable model (the
``model`` engine); an RTL engine only has to send the packets to the top and parse the
responses. :func:`run_network` calls the engine once per layer with all packets of that layer
for the whole batch of images; :func:`run_layers` compiles every layer from reference (golden)
tensors and runs the whole network in one engine call (one simulator run on the RTL).
"""



from intdeploy.host import protocol as P
from intdeploy.host.fusion import Fusion
from intdeploy.host.lowering import Lowering
from intdeploy.host.tiling import Tiling

__all__ = ["Driver"]


class Driver(Lowering, Fusion, Tiling):
    """Compiles layers for the accelerator described by ``info`` (a :class:`intdeploy.host.protocol.Info`).

    ``conv_strips``: ``auto`` (default) feeds a convolution as strips of shared activation entries
    when that costs fewer MAC steps plus words than im2col rows, ``always`` whenever they fit,
    ``never`` not at all (docs/driver.md, "Convolution strips")."""

    def __init__(self, info, conv_strips="auto"):
        if not isinstance(info, P.Info):
            raise ValueError(f"info: expected intdeploy.host.protocol.Info, got {type(info).__name__}")
        if conv_strips not in ("auto", "always", "never"):
            raise ValueError(f"conv_strips: {conv_strips!r} is not one of auto, always, never")
        self.info = info
        self.conv_strips = conv_strips
