"""Width conversion between bus beats and the 32-bit words of the command protocol.

The protocol (docs/protocol.md) is defined on 32-bit words; a beat of the ``bus_width``-bit
AXI4-Stream carries ``bus_width / 32`` of them, word 0 in the low bits. The command processor
reads one word per cycle, and needs to know where beats end (padding may only fill the end of
a beat) and where the packet ends (TLAST). The response side packs words into beats and
zero-pads the last beat of a packet.
"""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["beat_layout", "WORD_IN", "WORD_OUT", "BeatsToWords", "WordsToBeats"]

#: A word of a command packet: ``end`` marks the last word of a beat, ``last`` the last word
#: of the packet (the last word of the beat that carried TLAST). ``has_next``: the same beat
#: holds a further word, ``next`` (with its own ``next_end`` / ``next_last``), which the
#: consumer may take in the same cycle (``BeatsToWords.two``). ``ge_prev``: ``data`` >= the word
#: before it in the stream, both read as int32 (for a beat's word 0, the last word of the beat
#: before; meaningless for the first beat after reset), compared when the beat is registered so
#: that the command processor's threshold-order check reads a flip-flop.
WORD_IN = data.StructLayout({"data": unsigned(32), "end": unsigned(1), "last": unsigned(1),
                             "next": unsigned(32), "has_next": unsigned(1), "next_end": unsigned(1),
                             "next_last": unsigned(1), "ge_prev": unsigned(1)})

#: A word of a response packet; ``last`` marks its final word. ``has_next``: the producer
#: also offers the packet's following word, ``next`` (``next_last`` if it is the final one),
#: which the consumer takes in the same transfer when it raises ``two``
#: (:attr:`WordsToBeats.two`); otherwise only ``data`` is taken.
WORD_OUT = data.StructLayout({"data": unsigned(32), "last": unsigned(1),
                              "next": unsigned(32), "has_next": unsigned(1), "next_last": unsigned(1)})


def beat_layout(bus_width):
    """One bus beat: ``data`` (``bus_width`` bits) and ``last`` (TLAST)."""
    return data.StructLayout({"data": unsigned(bus_width), "last": unsigned(1)})


def _words_per_beat(bus_width):
    if not isinstance(bus_width, int) or isinstance(bus_width, bool) or bus_width < 32 or bus_width % 32:
        raise ValueError(f"bus_width: {bus_width!r} is not allowed; a multiple of 32 (32, 64, 128, ...)")
    return bus_width // 32


class BeatsToWords(wiring.Component):
    """Splits beats into their 32-bit words, word 0 (``data[0:32]``) first.

    One word per cycle, or two when the consumer raises ``two`` with the handshake (the word
    after the offered one, ``next``, is then taken too; only when ``has_next``): the next beat
    is taken in the cycle the current beat's last word is, so a stream of beats becomes an
    unbroken stream of words. Latency 1 cycle (the beat is registered).

    Parameters
    ----------
    bus_width : int
        Beat width, a multiple of 32.

    Attributes
    ----------
    i : ``In(stream.Signature(beat_layout(bus_width)))``
    o : ``Out(stream.Signature(WORD_IN))``
        ``end`` on each beat's last word, ``last`` also when that beat had TLAST.
    two : ``In(1)``
        With ``o.valid & o.ready``: the consumer also takes ``o.payload.next``.
    """

    def __init__(self, *, bus_width):
        self.per = _words_per_beat(bus_width)
        self.bus_width = bus_width
        super().__init__({"i": In(stream.Signature(beat_layout(bus_width))),
                          "o": Out(stream.Signature(WORD_IN)), "two": In(1)})

    def elaborate(self, platform):
        m = Module()
        beat = Signal(self.bus_width, reset_less=True)
        tlast = Signal(reset_less=True)
        held = Signal()
        # A zero-width index would be an empty Verilog range; a 1-bit one stays 0.
        idx = Signal(range(max(self.per, 2)))
        at_end = Signal()
        two = Signal()                       # both offered words go this cycle
        o = self.o.payload
        m.d.comb += [
            at_end.eq(idx == self.per - 1),
            self.o.valid.eq(held),
            o.data.eq(beat.word_select(idx, 32) if self.per > 1 else beat),
            o.end.eq(at_end),
            o.last.eq(at_end & tlast),
            two.eq(self.two & o.has_next),
            self.i.ready.eq(~held | (self.o.ready & (at_end | (two & o.next_end)))),
        ]
        if self.per > 1:
            m.d.comb += [o.has_next.eq(~at_end), o.next.eq(beat.word_select(idx + 1, 32)),
                         o.next_end.eq(idx == self.per - 2), o.next_last.eq((idx == self.per - 2) & tlast)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += idx.eq(0 if self.per == 1 else idx + 1 + two)
            with m.If(at_end | (two & o.next_end)):
                m.d.sync += [held.eq(0), idx.eq(0)]
        # word k >= word k - 1 of the incoming beat, word 0 against the last word of this one
        ge = Signal(self.per, reset_less=True)
        new = self.i.payload.data
        m.d.comb += o.ge_prev.eq(ge.bit_select(idx, 1) if self.per > 1 else ge)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [beat.eq(new), tlast.eq(self.i.payload.last), held.eq(1), idx.eq(0)]
            m.d.sync += [ge[k].eq(new.word_select(k, 32).as_signed() >=
                                  (new.word_select(k - 1, 32) if k else beat.word_select(self.per - 1, 32)).as_signed())
                         for k in range(self.per)]
        return m


class WordsToBeats(wiring.Component):
    """Packs 32-bit words into beats, word 0 in ``data[0:32]``; a packet's last beat is padded
    with zero words and carries ``last``.

    One word per cycle in, or two: :attr:`two` is high when the word after the offered one,
    ``next`` (offered with ``has_next``), fits the beat being assembled (``bus_width >= 64``
    and at least two free word slots), and then the transfer takes both. A completed beat waits
    in an output register, so the producer stalls only when that register is full and not
    being taken. Latency 1 cycle after a beat's last word.

    Parameters
    ----------
    bus_width : int
        Beat width, a multiple of 32.

    Attributes
    ----------
    i : ``In(stream.Signature(WORD_OUT))``
    o : ``Out(stream.Signature(beat_layout(bus_width)))``
    two : ``Out(1)``
        With ``i.valid & i.ready & i.payload.has_next``: ``i.payload.next`` is taken too. Comes
        from a register.
    """

    def __init__(self, *, bus_width):
        self.per = _words_per_beat(bus_width)
        self.bus_width = bus_width
        super().__init__({"i": In(stream.Signature(WORD_OUT)),
                          "o": Out(stream.Signature(beat_layout(bus_width))),
                          "two": Out(1)})

    def elaborate(self, platform):
        m = Module()
        per = self.per
        pay = self.i.payload
        asm = Signal(self.bus_width, reset_less=True)
        idx = Signal(range(max(per, 2)))        # (never a zero-width signal)
        pair = Signal()                         # this transfer takes data and next
        done = Signal()
        last = Signal()
        beat = Signal(self.bus_width)
        out_free = Signal()
        if per >= 2:
            two_ok = Signal(init=1)             # idx <= per - 2, kept with idx
            m.d.comb += self.two.eq(two_ok)
        m.d.comb += [
            out_free.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(out_free),
            pair.eq(self.two & pay.has_next),
            last.eq(Mux(pair, pay.next_last, pay.last)),
            done.eq((idx == per - 1) | (pair & (idx == per - 2)) | last),
        ]
        # The assembled words below idx plus the incoming word(s) at idx (zeros above).
        words = [asm.word_select(k, 32) for k in range(per)]
        m.d.comb += beat.eq(0)
        for k in range(per):
            with m.If(idx == k):
                if k + 1 < per:
                    m.d.comb += beat.eq(Cat(*words[:k], pay.data, Mux(pair, pay.next, 0)))
                else:
                    m.d.comb += beat.eq(Cat(*words[:k], pay.data))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            nxt = Mux(done, 0, idx + 1 + pair)
            m.d.sync += idx.eq(nxt)
            if per >= 2:
                m.d.sync += two_ok.eq(nxt <= per - 2)
            with m.If(done):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(beat),
                             self.o.payload.last.eq(last)]
            with m.Else():
                m.d.sync += asm.eq(beat)
        return m
