"""The result packer: a layer's output values -> the 32-bit words of the RUN response payload.

docs/protocol.md (RUN): for each output, the R channel values, each ``out_bytes`` wide
(1, 2 or 4: the low bytes of the value, two's complement), packed little-endian one after the
other across outputs, the last word padded with zero bytes.
"""

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from intdeploy import wire
from intdeploy.hw.descriptor import layout_signal
from intdeploy.hw.words import WORD_OUT

__all__ = ["OUT_BYTES", "ResultPacker"]

#: ``out_bytes`` code of the RUN descriptor -> bytes per value.
#: ``out_bytes`` code -> bytes per result (the inverse of :data:`intdeploy.wire.OUT_BYTES`).
OUT_BYTES = {code: size for size, code in wire.OUT_BYTES.items()}


class ResultPacker(wiring.Component):
    """Packs beats of ``lanes`` values into response words, one word per cycle.

    Each input beat is a *chunk* of ``lanes * out_bytes`` bytes (value ``r``'s low
    ``out_bytes`` bytes at byte ``r * out_bytes``, little-endian). Chunks are concatenated
    byte-exactly; a word is emitted as soon as 4 bytes are gathered, and the beat marked
    ``last`` flushes the final partial word padded with zero bytes, with ``last`` set on the
    final word. Values wider than ``out_bytes`` are truncated (their low bytes are sent), as the
    protocol specifies.

    Throughput: one word per cycle, or two when the consumer raises ``two``: a word that
    starts at a word boundary with at least 8 bytes of the beat left is offered with the next
    one (``has_next``, ``next``, ``next_last``; :data:`intdeploy.hw.words.WORD_OUT`). When
    ``lanes * out_bytes`` is a multiple of 4 every cycle emits full words, so a beat takes
    ``lanes * out_bytes / 8`` cycles with pairs (``/ 4`` without) and the next beat is taken
    in the cycle the previous one finishes. Otherwise a cycle takes at most the bytes left in
    the current beat and a word may take two cycles to fill. Latency 1 cycle.

    Parameters
    ----------
    lanes : int
        Values per beat (the array's R).

    Attributes
    ----------
    out_bytes : ``In(2)``
        The descriptor's ``out_bytes`` code (0: 1 byte, 1: 2, 2: 4); hold it constant while a
        result is being packed.
    i : ``In(stream.Signature(StructLayout))``
        ``y``: ``ArrayLayout(signed(32), lanes)``; ``last``: 1 on the result's final beat.
    o : ``Out(stream.Signature(WORD_OUT))``
        Payload words; ``last`` (or ``next_last``) on the final word.
    two : ``In(1)``
        With ``o.valid & o.ready & o.payload.has_next``: the consumer takes ``next`` too.
    """

    def __init__(self, *, lanes):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes: {lanes!r} is not allowed; an integer >= 1")
        self.lanes = lanes
        self.in_layout = data.StructLayout({"y": data.ArrayLayout(signed(32), lanes),
                                            "last": unsigned(1)})
        super().__init__({"out_bytes": In(2),
                          "i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(WORD_OUT)),
                          "two": In(1)})

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        nmax = 4 * L

        held = Signal()                                  # a chunk is in `chunk`
        chunk = layout_signal(data.ArrayLayout(unsigned(32), L), name="chunk", reset_less=True)
        chunk_last = Signal(reset_less=True)
        p = Signal(range(nmax + 1))                      # next byte of the chunk
        f = Signal(range(4))                             # bytes gathered in `acc`
        acc = layout_signal(data.ArrayLayout(unsigned(8), 4), name="acc", reset_less=True)

        # The chunk's bytes for the current width, zero beyond its end (and slack up to a power
        # of 2 so that any index is inside the array).
        n = Signal(range(nmax + 1))
        m.d.comb += n.eq(Mux(self.out_bytes == 0, L, Mux(self.out_bytes == 1, 2 * L, 4 * L)))
        ibits = ceil_log2(nmax + 4)
        byte = []
        for b in range(1 << ibits):
            opts = []
            for width in (1, 2, 4):
                r, k = divmod(b, width)
                opts.append(chunk[r].word_select(k, 8) if r < L else Const(0, 8))
            byte.append(Mux(self.out_bytes == 0, opts[0], Mux(self.out_bytes == 1, opts[1], opts[2])))
        byte = Array(byte)

        # `avail` (the chunk's bytes not yet taken, n - p) is a register loaded with the chunk,
        # so `finish`, `emit` and with them `i.ready` depend on registers and `o.ready` only:
        # no arithmetic on the ready path that runs back through the epilogue into the MAC
        # array's stall.
        avail = Signal(range(nmax + 1))
        take = Signal(range(5))
        fill = Signal(range(8))
        finish = Signal()                                # this cycle consumes the chunk's end
        emit = Signal()
        word = layout_signal(data.ArrayLayout(unsigned(8), 4), name="word")
        m.d.comb += [
            take.eq(Mux(avail < 4 - f, avail, 4 - f)),
            fill.eq(f + take),
            finish.eq(held & (avail <= 4 - f)),
            emit.eq(held & ((avail >= 4 - f) | (finish & chunk_last))),
        ]
        for k in range(4):
            # Byte k of the outgoing word: gathered, or the chunk's byte p + (k - f), or pad.
            idx = Signal(ibits, name=f"idx{k}")
            m.d.comb += idx.eq(p + k - f)            # wraps when k < f: then unused
            from_chunk = byte[idx]
            fresh = Mux(k < fill, from_chunk, 0)
            # f <= 3, so byte 3 is never a gathered one.
            m.d.comb += word[k].eq(Mux(k < f, acc[k], fresh) if k < 3 else fresh)

        # The pair: a word-aligned word (f = 0) with at least 8 bytes left, and the word after it.
        has_next = Signal()
        pair = Signal()                                  # the consumer takes both
        nxt = layout_signal(data.ArrayLayout(unsigned(8), 4), name="next_word")
        m.d.comb += [has_next.eq(held & (f == 0) & (avail >= 8)), pair.eq(has_next & self.two)]
        for k in range(4):
            idx = Signal(ibits, name=f"next_idx{k}")
            m.d.comb += [idx.eq(p + 4 + k), nxt[k].eq(byte[idx])]

        advance = Signal()
        done = Signal()                                  # this transfer ends the chunk
        m.d.comb += [
            advance.eq(held & (~emit | self.o.ready)),
            done.eq(Mux(pair, avail == 8, finish)),
            self.o.valid.eq(emit),
            self.o.payload.data.eq(word),
            self.o.payload.last.eq(finish & chunk_last),
            self.o.payload.next.eq(nxt),
            self.o.payload.has_next.eq(has_next),
            self.o.payload.next_last.eq((avail == 8) & chunk_last),
            self.i.ready.eq(~held | (advance & done)),
        ]
        with m.If(advance & pair):
            m.d.sync += [p.eq(p + 8), avail.eq(avail - 8)]
            with m.If(avail == 8):
                m.d.sync += held.eq(0)
        with m.Elif(advance):
            m.d.sync += [p.eq(p + take), avail.eq(avail - take)]
            with m.If(emit):
                m.d.sync += f.eq(0)
            with m.Else():
                m.d.sync += [f.eq(fill), acc.eq(word)]
            with m.If(finish):
                m.d.sync += held.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(1), p.eq(0), avail.eq(n),
                         chunk_last.eq(self.i.payload.last)]
            m.d.sync += [chunk[r].eq(self.i.payload.y[r]) for r in range(L)]
        return m
