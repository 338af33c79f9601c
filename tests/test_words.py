"""intdeploy.hw.words: the bus-beat <-> 32-bit-word converters in Amaranth's simulator, round trip at
every bus width and two words per cycle."""

import pytest

from intdeploy.host import protocol as P


async def _take_beats(ctx, stream, rng, p_ready, count, out):
    """Consume ``count`` beats ``(data, last)`` of ``stream`` into ``out``, ready with
    probability ``p_ready`` each cycle."""
    while len(out) < count:
        ctx.set(stream.ready, int(rng.random() < p_ready))
        _, _, v, r, d, last = await ctx.tick().sample(stream.valid, stream.ready, stream.payload.data,
                                                       stream.payload.last)
        if v and r:
            out.append((d, bool(last)))



@pytest.mark.parametrize("bus_width", [32, 64, 128])
def test_beat_word_converters_round_trip(bus_width):
    """BeatsToWords then WordsToBeats: the words of each packet in order, ``end``/``last`` on
    the right words, ``ge_prev`` the signed order of consecutive words, the last beat
    zero-padded; random stalls on both sides."""
    import random

    from amaranth import Module
    from amaranth.sim import Simulator

    from intdeploy.hw.words import BeatsToWords, WordsToBeats

    rng = random.Random(bus_width)
    per = bus_width // 32
    packets = [[rng.getrandbits(32) for _ in range(rng.randint(1, 9))] for _ in range(12)]
    m = Module()
    m.submodules.split = split = BeatsToWords(bus_width=bus_width)
    m.submodules.join = join = WordsToBeats(bus_width=bus_width)
    m.d.comb += [join.i.valid.eq(split.o.valid), split.o.ready.eq(join.i.ready),
                 join.i.payload.data.eq(split.o.payload.data), join.i.payload.last.eq(split.o.payload.last)]
    beats_in = [b for pk in packets for b in P.to_beats(pk, bus_width)]
    flags, beats_out = [], []

    async def tx(ctx):
        for beat, last in beats_in:
            ctx.set(split.i.payload, {"data": beat, "last": int(last)})
            ctx.set(split.i.valid, 1)
            await ctx.tick().until(split.i.ready)
            ctx.set(split.i.valid, 0)
            if rng.random() < 0.3:
                await ctx.tick()

    ges = []

    async def mid(ctx):
        async for _, _, v, r, end, last, ge in ctx.tick().sample(split.o.valid, split.o.ready, split.o.payload.end,
                                                                split.o.payload.last, split.o.payload.ge_prev):
            if v and r:
                flags.append((end, last))
                ges.append(ge)

    async def rx(ctx):
        await _take_beats(ctx, join.o, rng, 0.6, len(beats_in), beats_out)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(tx)
    sim.add_process(mid)
    sim.add_testbench(rx)
    sim.run_until(1e-8 * 1000)
    assert beats_out == [(b, bool(last)) for b, last in beats_in]
    words = [w for pk in packets for w in pk + [0] * (-len(pk) % per)]
    assert len(flags) == len(words)
    ends = [(j % per == per - 1) for pk in packets for j in range(len(pk) + (-len(pk) % per))]
    lasts = [j == len(pk) + (-len(pk) % per) - 1 for pk in packets for j in range(len(pk) + (-len(pk) % per))]
    assert [bool(e) for e, _ in flags] == ends and [bool(last) for _, last in flags] == lasts
    # ge_prev: each word against the one before it in the stream (padding included), as int32
    s32 = [w - (1 << 32) if w >> 31 else w for w in words]
    assert [bool(g) for g in ges[1:]] == [b >= a for a, b in zip(s32, s32[1:])]


@pytest.mark.parametrize("bus_width", [32, 64, 128])
def test_words_to_beats_takes_pairs(bus_width):
    """WordsToBeats with a producer that offers random pairs: the beats are the packets' words in
    order, zero-padded, ``last`` on each packet's final beat; pairs are taken whenever two
    word slots are free (never on a 32-bit bus), under random output stalls."""
    import random

    from amaranth.sim import Simulator

    from intdeploy.hw.words import WordsToBeats

    rng = random.Random(bus_width + 1)
    packets = [[rng.getrandbits(32) for _ in range(rng.randint(1, 9))] for _ in range(30)]
    words = [(w, j == len(pk) - 1) for pk in packets for j, w in enumerate(pk)]
    beats_in = [b for pk in packets for b in P.to_beats(pk, bus_width)]
    dut = WordsToBeats(bus_width=bus_width)
    beats_out, pairs = [], []

    async def tx(ctx):
        k = 0
        while k < len(words):
            offer = rng.random() < 0.8 and k + 1 < len(words) and not words[k][1]
            ctx.set(dut.i.payload, {"data": words[k][0], "last": int(words[k][1]),
                                    "has_next": int(offer), "next": words[k + 1][0] if offer else 0,
                                    "next_last": int(offer and words[k + 1][1])})
            ctx.set(dut.i.valid, int(rng.random() < 0.9))
            _, _, v, r, two = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.two)
            if v and r:
                k += 2 if offer and two else 1
                if offer and two:
                    pairs.append(k)
        ctx.set(dut.i.valid, 0)

    async def rx(ctx):
        await _take_beats(ctx, dut.o, rng, 0.7, len(beats_in), beats_out)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tx)
    sim.add_testbench(rx)
    sim.run_until(1e-8 * 2000)
    assert beats_out == [(b, bool(last)) for b, last in beats_in]
    assert bool(pairs) == (bus_width >= 64)
