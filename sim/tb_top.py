"""cocotb bench of the accelerator top (:class:`intdeploy.hw.top.Accelerator`).

Two clocks from cocotb ``Clock`` (periods from the configuration, so any bus:core ratio),
cocotbext-axi's ``AxiStreamSource`` on ``s_axis`` and ``AxiStreamSink`` on ``m_axis`` (ports
``s_axis__tdata`` ..., found with ``bus_separator="__"``), their pause generators for random idle
cycles on the input and backpressure on the output. The command packets come from a JSON file
written by the pytest side (:func:`intdeploy.sim.rtl_engine.write_packets`); the bench sends them, reads
one response per packet under a watchdog, and

* ``scenario = "model"``: compares every response, word for word, with the executable model
  :class:`intdeploy.sim.accel_model.AcceleratorModel` fed the same packets (STATUS ``cycles`` and
  ``busy_cycles`` excepted), and writes the responses for the pytest side's golden checks;
* ``scenario = "reset"``: sends the first phase, resets the domain ``reset_domain`` in the middle
  of the stream (the drivers drop what they were sending), then sends the second phase and
  compares its responses with a model that saw only a reset (buffers the second phase writes
  are rewritten, so their earlier contents do not matter);
* ``scenario = "batch"``: the RTL engine: sends everything, writes the responses and the core
  cycle count to ``responses_file``, no comparison.

Configuration keys: ``accel`` (elaboration parameters), ``packets_file``, ``responses_file``,
``scenario``, ``seed``, ``bus_period`` / ``core_period`` (ns), ``idle`` / ``idle_burst`` (input
pause rate and longest pause), ``backpressure`` / ``bp_burst``, ``watchdog`` (core cycles
allowed per response), ``reset_domain`` (``"bus"`` / ``"core"``), ``reset_after`` (beats of the
second packet stream sent before the reset), ``reset_delay`` (further bus cycles before it), ``bug`` (compare against a deliberately wrong
model, to show that a mismatch is caught).
"""

import json
import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
import numpy as np

from intdeploy.host import protocol as P
from intdeploy.sim import coverage
from intdeploy.sim.accel_model import AcceleratorModel, response_mismatch
from intdeploy.sim.bench import config, stall_pattern, write_report

# The command streams are long; cocotbext-axi logs every frame at INFO.
logging.getLogger("cocotb.top.s_axis").setLevel(logging.WARNING)
logging.getLogger("cocotb.top.m_axis").setLevel(logging.WARNING)


def info_of(params):
    """:class:`intdeploy.host.protocol.Info` for the elaboration parameters ``params`` (a dict)."""
    return P.Info.of(params)


def words_to_bytes(words, bus_width):
    words = list(words) + [0] * (-len(words) % (bus_width // 32))
    return b"".join((int(w) & P.MASK32).to_bytes(4, "little") for w in words)


def bytes_to_words(data):
    data = bytes(data)
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


class TB:
    """Clocks, resets and the AXI4-Stream drivers of one bench run."""

    def __init__(self, dut, cfg):
        self.dut = dut
        self.cfg = cfg
        self.params = cfg["accel"]
        self.bus_width = self.params.get("bus_width", 32)
        self.rng = np.random.default_rng(int(cfg.get("seed", 0)))
        dut._log.info("bench config: %s", json.dumps({k: v for k, v in cfg.items()}))
        cocotb.start_soon(Clock(dut.bus_clk, cfg.get("bus_period", 10), unit="ns").start())
        cocotb.start_soon(Clock(dut.core_clk, cfg.get("core_period", 10), unit="ns").start())
        self.core_cycles = 0
        cocotb.start_soon(self._count())
        dut.bus_rst.value = 1
        dut.core_rst.value = 1
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis", bus_separator="__"),
                                      dut.bus_clk)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis", bus_separator="__"),
                                  dut.bus_clk)
        for drv in (self.source, self.sink):
            drv.log.setLevel(logging.WARNING)
        self.source.set_pause_generator(self._stalls(cfg.get("idle", 0), cfg.get("idle_burst", 1)))
        self.sink.set_pause_generator(self._stalls(cfg.get("backpressure", 0), cfg.get("bp_burst", 1)))

    def _stalls(self, rate, burst):
        return stall_pattern(np.random.default_rng(self.rng.integers(1 << 63)), rate, burst)

    async def _count(self):
        while True:
            await RisingEdge(self.dut.core_clk)
            self.core_cycles += 1

    async def reset(self, domain="both", cycles=4):
        """Pulse the reset input(s) of ``domain``; the drivers drop what they were doing."""
        for drv in (self.source, self.sink):
            drv.assert_reset(True)
        self.source.clear()
        self.sink.clear()
        sigs = {"bus": [self.dut.bus_rst], "core": [self.dut.core_rst],
                "both": [self.dut.bus_rst, self.dut.core_rst]}[domain]
        clk = self.dut.core_clk if domain == "core" else self.dut.bus_clk
        for s in sigs:
            s.value = 1
        await ClockCycles(clk, cycles)
        for s in sigs:
            s.value = 0
        # Let both synchronizers release before the drivers resume.
        await ClockCycles(self.dut.bus_clk, 4)
        await ClockCycles(self.dut.core_clk, 4)
        for drv in (self.source, self.sink):
            drv.assert_reset(False)

    async def send(self, packets):
        for words in packets:
            await self.source.send(AxiStreamFrame(words_to_bytes(words, self.bus_width)))

    async def recv(self, count, watchdog):
        """``count`` responses; AssertionError (a hang) if one takes more than ``watchdog``
        core cycles."""
        period = self.cfg.get("core_period", 10)
        out = []
        for k in range(count):
            try:
                frame = await with_timeout(self.sink.recv(), watchdog * period, "ns")
            except cocotb.triggers.SimTimeoutError:
                fail(f"top: HANG: response #{k} of {count} did not arrive within {watchdog} core "
                     f"cycles ({len(out)} received)")
            words = bytes_to_words(frame.tdata)
            try:
                out.append(P.parse_response(words))
            except ValueError as e:
                fail(f"top: MISMATCH: response #{k} is malformed ({e}): "
                     f"{[hex(w) for w in words[:12]]}")
        return out


def fail(text):
    write_report(text)
    raise AssertionError(text)


def load_packets(cfg):
    with open(cfg["packets_file"]) as f:
        return json.load(f)


def compare(model_responses, responses, packets, first_index=0):
    """Response-by-response, word-by-word comparison; the first mismatch fails with context."""
    if len(responses) != len(model_responses):
        fail(f"top: MISMATCH: {len(responses)} responses, model {len(model_responses)}")
    for k, (e, a) in enumerate(zip(model_responses, responses)):
        why = response_mismatch(e, a)
        if why:
            pk = packets[k]
            fail(f"top: MISMATCH at response #{first_index + k}: {why}\n"
                 f"  command: opcode 0x{pk[0] & 0xFF:02x}, {len(pk)} words, head "
                 f"{[hex(w & P.MASK32) for w in pk[:6]]}\n"
                 f"  model = {e}: {[hex(w) for w in e.payload[:16]]}\n"
                 f"  RTL   = {a}: {[hex(w) for w in a.payload[:16]]}")


def write_responses(cfg, responses, cycles):
    path = cfg.get("responses_file")
    if path:
        with open(path, "w") as f:
            json.dump({"cycles": cycles,
                       "responses": [[r.opcode, r.tag, r.status, r.payload] for r in responses]}, f)


def _model(cfg):
    model = AcceleratorModel(info_of(cfg["accel"]))
    if cfg.get("bug"):
        # A deliberately wrong expectation: results one LSB off (the check must catch it).
        run = model._run

        def wrong(w):
            payload, steps = run(w)
            return [(payload[0] + 1) & P.MASK32] + payload[1:], steps
        model._run = wrong
    return model


@cocotb.test(timeout_time=20, timeout_unit="sec")
async def run(dut):
    cfg = config()
    tb = TB(dut, cfg)
    cov = coverage.BenchMonitor.start(dut, cfg)        # functional coverage (sim/coverage.py)
    watchdog = int(cfg.get("watchdog", 20000))
    data = load_packets(cfg)
    scenario = cfg.get("scenario", "model")
    await tb.reset("both")

    if scenario in ("model", "batch"):
        packets = data["packets"]
        start = tb.core_cycles
        cocotb.start_soon(tb.send(packets))
        responses = await tb.recv(len(packets), watchdog)
        cycles = tb.core_cycles - start
        write_responses(cfg, responses, cycles)
        dut._log.info("%d packets, %d responses, %d core cycles", len(packets), len(responses), cycles)
        if scenario == "model":
            compare(_model(cfg).transact(packets), responses, packets)

    elif scenario == "reset":
        # Phase 1 runs fully (its responses are checked); the interrupted stream is then cut
        # by a reset after `reset_after` beats; phase 2 must be answered as after a reset.
        first, interrupted, second = data["first"], data["interrupted"], data["second"]
        model = _model(cfg)
        cocotb.start_soon(tb.send(first))
        compare(model.transact(first), await tb.recv(len(first), watchdog), first)
        beats = sum(-(-len(p) // (tb.bus_width // 32)) for p in interrupted)
        cocotb.start_soon(tb.send(interrupted))
        target = min(int(cfg.get("reset_after", beats // 2)), beats - 1)
        sent = 0
        while sent < target:
            await RisingEdge(dut.bus_clk)
            if dut.s_axis__tvalid.value and dut.s_axis__tready.value:
                sent += 1
        await ClockCycles(dut.bus_clk, int(cfg.get("reset_delay", 0)) + 1)
        # Responses that came out whole before the reset answer the first packets of the
        # interrupted stream, in order (docs/reliability.md): checked, then the reset.
        early = []
        while not tb.sink.empty():
            early.append(P.parse_response(bytes_to_words(tb.sink.recv_nowait().tdata)))
        compare(model.transact(interrupted[:len(early)]), early, interrupted, first_index=len(first))
        dut._log.info("reset of %s after %d beats: %d of %d interrupted packets answered before it",
                      cfg.get("reset_domain", "core"), sent, len(early), len(interrupted))
        await tb.reset(cfg.get("reset_domain", "core"))
        model.reset()
        cocotb.start_soon(tb.send(second))
        compare(model.transact(second), await tb.recv(len(second), watchdog), second,
                first_index=len(first))
    else:
        fail(f"top: unknown scenario {scenario!r}")
    # Nothing more may come out.
    await ClockCycles(dut.bus_clk, 50)
    if not tb.sink.empty():
        fail(f"top: MISMATCH: {tb.sink.count()} unexpected extra response(s)")
    if cov:
        cov.finish(data)
