"""intdeploy.hw.packer.ResultPacker in Amaranth's simulator: the protocol's packing of result values
across beats, one and two words per cycle."""

import pytest

from intdeploy.host import protocol as P


@pytest.mark.parametrize("lanes", [1, 3, 4, 5])
def test_result_packer_bytes_across_outputs(lanes):
    """Values of each width packed little-endian across beats, zero-padded final word,
    under random output stalls (the protocol's packing, intdeploy.host.protocol.pack_elements)."""
    import random

    from amaranth.sim import Simulator

    from intdeploy.hw.packer import ResultPacker

    for code, width in ((0, 1), (1, 2), (2, 4)):
        rng = random.Random(lanes * 10 + code)
        dut = ResultPacker(lanes=lanes)
        beats = [[rng.randint(-2**31, 2**31 - 1) for _ in range(lanes)] for _ in range(7)]
        expected = P.pack_elements([v for b in beats for v in b], 8 * width)
        got = []

        async def tx(ctx):
            ctx.set(dut.out_bytes, code)
            for j, b in enumerate(beats):
                ctx.set(dut.i.payload, {"y": b, "last": int(j == len(beats) - 1)})
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)

        pairs = []

        async def rx(ctx):
            while not got or not got[-1][1]:
                ctx.set(dut.o.ready, int(rng.random() < 0.6))
                ctx.set(dut.two, int(rng.random() < 0.7))
                _, _, v, r, two, d, last, has_next, nxt, next_last = await ctx.tick().sample(
                    dut.o.valid, dut.o.ready, dut.two, dut.o.payload.data, dut.o.payload.last,
                    dut.o.payload.has_next, dut.o.payload.next, dut.o.payload.next_last)
                if v and r:
                    got.append((d, last))
                    if two and has_next:
                        assert not last
                        got.append((nxt, next_last))
                        pairs.append(len(got))

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(tx)
        sim.add_testbench(rx)
        sim.run_until(1e-8 * 400)
        assert [d for d, _ in got] == expected and [last for _, last in got] == [0] * (len(got) - 1) + [1]
        assert bool(pairs) == (lanes * width >= 8), (lanes, width, pairs)


def test_result_packer_two_words_per_cycle():
    """With the consumer always ready for pairs, 8 one-byte lanes (2 words a beat) leave at a beat
    per cycle, and 2-byte ones (4 words) at a beat per 2 cycles."""
    from amaranth.sim import Simulator

    from intdeploy.hw.packer import ResultPacker

    for code, per_beat in ((0, 1), (1, 2)):
        dut = ResultPacker(lanes=8)
        n, done = 20, []

        async def tx(ctx):
            ctx.set(dut.out_bytes, code)
            ctx.set(dut.o.ready, 1)
            ctx.set(dut.two, 1)
            for j in range(n):
                ctx.set(dut.i.payload, {"y": [j] * 8, "last": int(j == n - 1)})
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

        async def rx(ctx):
            cycle = 0
            async for _, _, v, last, has_next, next_last in ctx.tick().sample(
                    dut.o.valid, dut.o.payload.last, dut.o.payload.has_next, dut.o.payload.next_last):
                cycle += 1
                if v:
                    done.append(cycle)
                if v and (last or (has_next and next_last)):
                    break

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(tx)
        sim.add_testbench(rx, background=True)
        sim.run_until(1e-8 * 200)
        assert len(done) == n * per_beat and done[-1] - done[0] == n * per_beat - 1, (code, done)
