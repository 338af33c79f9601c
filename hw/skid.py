"""A one-entry skid buffer: a stream whose ``i.ready`` is a register.

Put between a producer whose stall is a wide enable (the MAC array's stall-all pipeline) and a
consumer whose ``ready`` is a long combinational function of what lies downstream (the
epilogue, the packer, the response path), it cuts that ``ready`` path at a flip-flop without
adding latency: an empty buffer passes the beat through in the same cycle.
"""

from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Stream pass-through with a one-beat buffer and a registered ``i.ready``.

    ``i.ready`` is high exactly when the buffer is empty (``skid_valid`` low: a flip-flop
    output, no combinational path from ``o.ready``). An empty buffer presents ``i``'s beat on
    ``o`` in the same cycle (latency 0); a beat accepted on ``i`` but not taken on ``o`` in that cycle is kept and
    presented on ``o`` from the next cycle until taken, while ``i.ready`` is low. Nothing is
    lost, duplicated or reordered; throughput one beat per cycle when ``o.ready`` stays high.
    The payload is not changed (any shape). The buffer is empty after reset.

    Parameters
    ----------
    shape : shape-castable
        The payload.

    Attributes
    ----------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))``
    """

    def __init__(self, *, shape):
        Shape.cast(shape)
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        buf = Signal(Shape.cast(self.shape), reset_less=True)
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            self.o.valid.eq(skid_valid | self.i.valid),
            self.o.payload.eq(Mux(skid_valid, buf, self.i.payload)),
        ]
        with m.If(skid_valid):
            with m.If(self.o.ready):
                m.d.sync += skid_valid.eq(0)
        with m.Elif(self.i.valid & ~self.o.ready):
            m.d.sync += [skid_valid.eq(1), buf.eq(self.i.payload)]
        return m
