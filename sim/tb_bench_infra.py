"""Bench of the bench: a 1-stage pipeline (y = 3x) through the shared drivers, stalls and
scoreboard. With ``bug`` set the golden side is deliberately wrong, to show that a mismatch is
reported with inputs, golden, RTL and cycle."""

import cocotb

from intdeploy.sim.bench import Bench, Scoreboard


@cocotb.test(timeout_time=200, timeout_unit="us")
async def run(dut):
    tb = Bench(dut)
    src = tb.source("i", None)
    snk = tb.sink("o", None)
    src.stall(tb.stalls(0.3, 3))
    snk.stall(tb.stalls(0.3, 3))
    await tb.reset()
    sb = Scoreboard("bench_infra", dut._log)
    values = [int(v) for v in tb.rng.integers(-128, 128, tb.cfg["n"])]
    factor = 2 if tb.cfg.get("bug") else 3
    for v in values:
        sb.expect(v * factor, {"x": v})
        await src.send(v & 0xFF)
    for _ in values:
        raw = await snk.recv()
        sb.check(raw - (1 << 16) if raw >> 15 else raw, tb.cycle)
    sb.finish()
