"""intdeploy.hw.cdc.AsyncFIFO in Amaranth's simulator: order and no loss between two free clocks, and a
joint reset in mid-stream."""

import pytest


def _fifo_bench(w_period, r_period, n, seed, reset_at=None):
    """Random words through intdeploy.hw.cdc.AsyncFIFO between two async-reset domains with random valid
    and ready; with ``reset_at`` both domains are reset (jointly, asynchronously) after that many
    words were read. Returns (words written after the last reset, words read after it)."""
    import random

    from amaranth import ClockDomain, Module
    from amaranth.sim import Simulator

    from intdeploy.hw.cdc import AsyncFIFO

    rng = random.Random(seed)
    m = Module()
    m.domains.w = cd_w = ClockDomain(async_reset=True)
    m.domains.r = cd_r = ClockDomain(async_reset=True)
    m.submodules.fifo = fifo = AsyncFIFO(shape=16, depth=8, w_domain="w", r_domain="r")
    state = {"sent": [], "got": [], "resetting": False}

    async def writer(ctx):
        k = 0
        while k < n:
            if state["resetting"]:
                ctx.set(fifo.w.valid, 0)
                await ctx.tick("w")
                continue
            ctx.set(fifo.w.payload, k)
            ctx.set(fifo.w.valid, int(rng.random() < 0.7))
            _, _, valid, ready = await ctx.tick("w").sample(fifo.w.valid, fifo.w.ready)
            if valid and ready and not state["resetting"]:
                state["sent"].append(k)
                k += 1
        ctx.set(fifo.w.valid, 0)
        state["done"] = True

    async def reader(ctx):
        while not (state.get("done") and len(state["got"]) == len(state["sent"])):
            ctx.set(fifo.r.ready, int(rng.random() < 0.6))
            _, _, valid, ready, data = await ctx.tick("r").sample(fifo.r.valid, fifo.r.ready, fifo.r.payload)
            if valid and ready:
                state["got"].append(data)
                if reset_at is not None and len(state["got"]) == reset_at and not state.get("was_reset"):
                    state["was_reset"] = True
                    state["resetting"] = True
                    ctx.set(cd_w.rst, 1)
                    ctx.set(cd_r.rst, 1)
                    for _ in range(2):                # (repeat() would raise DomainReset)
                        await ctx.tick("w")
                    ctx.set(cd_w.rst, 0)
                    ctx.set(cd_r.rst, 0)
                    state["sent"], state["got"] = [], []
                    for _ in range(3):
                        await ctx.tick("r")
                    state["resetting"] = False

    sim = Simulator(m)
    sim.add_clock(w_period * 1e-9, domain="w")
    sim.add_clock(r_period * 1e-9, domain="r", phase=0.37e-9)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run_until(n * 6 * max(w_period, r_period) * 1e-9)
    return state["sent"], state["got"]


@pytest.mark.parametrize("w_period, r_period", [(10, 10), (10, 37), (37, 10)])
def test_async_fifo_order_and_no_loss(w_period, r_period):
    sent, got = _fifo_bench(w_period, r_period, 120, seed=w_period * 100 + r_period)
    assert got == sent == list(range(120))


@pytest.mark.parametrize("w_period, r_period", [(10, 41), (41, 10)])
def test_async_fifo_joint_reset_empties_both_sides(w_period, r_period):
    """After a joint reset in mid-stream nothing written before it comes out, and everything
    written after it does, in order."""
    sent, got = _fifo_bench(w_period, r_period, 100, seed=7, reset_at=40)
    assert got == sent and len(got) > 10 and got == sorted(got)
