"""What every cocotb bench (``sim/tb_<unit>.py``) shares: configuration, clocks, valid/ready
stream drivers with random stalls, payload packing, and a scoreboard that reports mismatches.

Stream drivers are cocotbext-axi's generic ``define_stream`` source and sink attached to the
Amaranth port names (``<name>__payload``, ``__valid``, ``__ready``); payloads are packed and
unpacked with the component's own ``amaranth.lib.data`` layout, so a bench never re-encodes a
field position by hand.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout
from cocotbext.axi.stream import define_stream
import numpy as np

__all__ = ["config", "Bench", "StreamSource", "StreamSink", "stall_pattern", "Scoreboard",
           "write_report", "stream_check", "handshakes", "check_timing"]

_Bus, _Transaction, _Source, _Sink, _Monitor = define_stream(
    "AmaranthStream", signals=["payload", "valid", "ready"])


def config():
    """The bench configuration that the pytest side passed in ``INTDEPLOY_TB``."""
    return json.loads(os.environ["INTDEPLOY_TB"])


def write_report(text):
    """Leave a mismatch report for the pytest side (it quotes it in its failure message)."""
    path = os.environ.get("INTDEPLOY_REPORT")
    if path:
        with open(path, "w") as f:
            f.write(text)


def stall_pattern(rng, rate, burst=1):
    """Endless pause pattern: each cycle starts a pause with probability ``rate``; a pause lasts
    1..``burst`` cycles (uniform). ``rate = 0`` never pauses."""
    while True:
        if rate > 0 and rng.random() < rate:
            for _ in range(int(rng.integers(1, burst + 1))):
                yield True
        else:
            yield False


def _to_int(value):
    return int(value.to_unsigned()) if hasattr(value, "to_unsigned") else int(value)


class StreamSource:
    """Drives an Amaranth ``stream.Signature`` input port ``prefix``; ``send`` takes a dict/list
    matching ``layout`` (or an int for a plain shape)."""

    def __init__(self, dut, prefix, layout, clock, reset=None):
        bus = _Bus.from_prefix(dut, prefix, bus_separator="__")
        self.layout = layout
        self._drv = _Source(bus, clock, reset)
        self.sent = 0

    def pack(self, value):
        if self.layout is None or isinstance(value, int):
            return int(value)
        return int(self.layout.const(value).as_bits())

    async def send(self, value):
        self.sent += 1
        await self._drv.send(_Transaction(payload=self.pack(value)))

    def stall(self, generator):
        self._drv.set_pause_generator(generator)

    async def wait(self):
        await self._drv.wait()

    def idle(self):
        return self._drv.idle()


class StreamSink:
    """Accepts from an Amaranth ``stream.Signature`` output port ``prefix``; ``recv`` returns the
    payload unpacked with ``layout`` (an ``amaranth.lib.data.Const`` view) or an int."""

    def __init__(self, dut, prefix, layout, clock, reset=None):
        bus = _Bus.from_prefix(dut, prefix, bus_separator="__")
        self.layout = layout
        self._drv = _Sink(bus, clock, reset)

    async def recv(self):
        raw = _to_int((await self._drv.recv()).payload)
        return raw if self.layout is None else self.layout.from_bits(raw)

    def count(self):
        return self._drv.count()

    def stall(self, generator):
        self._drv.set_pause_generator(generator)


class Bench:
    """Clock, reset, cycle counter and seeded random numbers for one bench run.

    The configuration's ``seed`` seeds ``self.rng`` (numpy ``default_rng``) and is logged so a
    failing run can be replayed with the same configuration.
    """

    def __init__(self, dut, cfg=None, *, clock="clk", reset="rst", period_ns=10):
        self.dut = dut
        self.cfg = config() if cfg is None else cfg
        self.seed = int(self.cfg.get("seed", 0))
        self.rng = np.random.default_rng(self.seed)
        self.clk = getattr(dut, clock)
        self.rst = getattr(dut, reset)
        self.cycle = 0
        dut._log.info("bench config: %s", json.dumps(self.cfg))
        cocotb.start_soon(Clock(self.clk, period_ns, unit="ns").start())
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1

    async def reset(self, cycles=3):
        self.rst.value = 1
        await ClockCycles(self.clk, cycles)
        self.rst.value = 0
        await RisingEdge(self.clk)

    def source(self, prefix, layout):
        return StreamSource(self.dut, prefix, layout, self.clk, self.rst)

    def sink(self, prefix, layout):
        return StreamSink(self.dut, prefix, layout, self.clk, self.rst)

    def stalls(self, rate, burst=1):
        """A :func:`stall_pattern` drawing from its own generator derived from the seed."""
        return stall_pattern(np.random.default_rng(self.rng.integers(1 << 63)), rate, burst)


class Scoreboard:
    """Compares every output of a unit with golden, element by element, in order.

    ``expect(expected, context)`` queues a golden result (a numpy array or int) with the inputs
    that produced it; ``check(got, cycle)`` compares the next RTL output with the oldest queued
    result. The first mismatch writes a report (unit, index, cycle, inputs, golden, RTL, the
    differing elements) and raises AssertionError; ``finish()`` fails if outputs are missing or
    extra.
    """

    def __init__(self, unit, log=None):
        self.unit = unit
        self.log = log
        self.pending = []
        self.checked = 0

    def expect(self, expected, context=None):
        self.pending.append((np.asarray(expected), context or {}))

    def check(self, got, cycle=None):
        if not self.pending:
            self._fail(f"{self.unit}: unexpected extra output #{self.checked} at cycle {cycle}: "
                       f"{np.asarray(got).tolist()}")
        expected, context = self.pending.pop(0)
        got = np.asarray(got)
        if got.shape != expected.shape or not np.array_equal(got, expected):
            lines = [f"{self.unit}: MISMATCH at output #{self.checked}, cycle {cycle}"]
            for k, v in context.items():
                lines.append(f"  input {k} = {np.asarray(v).tolist()}")
            lines.append(f"  golden = {expected.tolist()}")
            lines.append(f"  RTL    = {got.tolist()}")
            if got.shape == expected.shape:
                idx = np.argwhere(got != expected)
                for i in idx[:8]:
                    t = tuple(int(j) for j in i)
                    lines.append(f"  element {list(t)}: golden {int(expected[t])} RTL {int(got[t])}")
            self._fail("\n".join(lines))
        self.checked += 1

    def finish(self):
        if self.pending:
            self._fail(f"{self.unit}: {len(self.pending)} expected output(s) never arrived "
                       f"(checked {self.checked})")

    def _fail(self, text):
        write_report(text)
        if self.log is not None:
            self.log.error(text)
        raise AssertionError(text)


# --- timing and the two-phase stream check shared by the unit benches --------------------------

async def stream_check(tb, src, snk, beats, sb, values, latency, full_rate=None):
    """Send ``beats`` and check every output with ``sb`` in two phases.

    Phase 1: the first ``full_rate`` beats (default ``cfg["full_rate"]``, else 48) with no stalls on either side;
    a monitor checks the documented ``latency`` exactly (first acceptance to first
    presentation) and II = 1 (acceptances, then presentations, on consecutive cycles).
    Phase 2: the rest, with random stalls ``in_stall`` / ``out_stall`` (pause probability per
    cycle, default 0.3) of 1..``burst`` cycles (default 3). ``values(v)`` turns a received
    beat into the list compared with golden.
    """
    cfg = tb.cfg
    k = min(int(cfg.get("full_rate", 48) if full_rate is None else full_rate), len(beats))

    async def collect(n):
        for _ in range(n):
            v = await snk.recv()
            sb.check(np.array(values(v), dtype=np.int64), tb.cycle)

    burst = int(cfg.get("burst", 3))
    budget = lambda n: (n * (4 + 2 * burst) + 100 + latency) * 10     # ns; 10 ns clock
    if k:
        accepted, presented = [], []
        monitor = cocotb.start_soon(handshakes(tb.dut, accepted, presented))
        for beat in beats[:k]:
            await src.send(beat)            # queued at once: the source drives back to back
        await with_timeout(collect(k), budget(k), "ns")
        monitor.cancel()
        check_timing(accepted, presented, latency)
    src.stall(tb.stalls(float(cfg.get("in_stall", 0.3)), burst))
    snk.stall(tb.stalls(float(cfg.get("out_stall", 0.3)), burst))
    for beat in beats[k:]:
        await src.send(beat)
    await with_timeout(collect(len(beats) - k), budget(len(beats) - k), "ns")
    sb.finish()
    tb.dut._log.debug("checked %d beats, %d cycles", sb.checked, tb.cycle)


async def handshakes(dut, accepted, presented):
    """Append the cycles of input acceptances and output transfers, sampled mid-cycle at the
    falling edge where both sides are settled; runs until cancelled."""
    cycle = 0
    while True:
        await FallingEdge(dut.clk)
        cycle += 1
        if dut.i__valid.value == 1 and dut.i__ready.value == 1:
            accepted.append(cycle)
        if dut.o__valid.value == 1 and dut.o__ready.value == 1:
            presented.append(cycle)


def check_timing(accepted, presented, latency):
    """Without stalls: the first output ``latency`` cycles after the first acceptance, and
    acceptances and outputs each on consecutive cycles (II = 1)."""
    def fail(text):
        write_report(text)
        raise AssertionError(text)
    if not accepted or not presented or presented[0] - accepted[0] != latency:
        fail(f"LATENCY: first acceptance at cycle {accepted[:1]}, first output at "
             f"{presented[:1]}: expected {latency} cycles apart")
    for name, cycles in (("input acceptances", accepted), ("outputs", presented)):
        if cycles[-1] - cycles[0] != len(cycles) - 1:
            fail(f"THROUGHPUT: {len(cycles)} {name} without stalls spread over cycles "
                 f"{cycles[0]}..{cycles[-1]} (II = 1 expected)")
