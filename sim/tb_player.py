"""cocotb bench of the native-speed path: the accelerator top inside the stream player
(:mod:`intdeploy.sim.player`).

Starts the two clocks (cocotb's ``Clock``, driven from the simulator side; with ``self_clocked``
the player makes its own, see :mod:`intdeploy.sim.player`), holds both resets
for a few cycles, then awaits ``done`` or ``hang``: the player feeds the command beats, stalls and
back-pressures from its LFSRs and records the responses by itself, so Python does not run per beat
or per cycle. Writes ``{"cycles", "hang", "out_beats", "out_packets", "seconds"}`` to the
configuration's ``result_file``; the beats themselves are in the player's ``+player_out`` file.

Configuration keys: ``bus_period`` / ``core_period`` (ns), ``result_file``, ``timeout`` (seconds
of simulated time allowed, default one hour).
"""

import json
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, RisingEdge, Timer

from intdeploy.sim.bench import config


@cocotb.test(timeout_time=86400, timeout_unit="sec")
async def run(dut):
    cfg = config()
    periods = cfg.get("bus_period", 10), cfg.get("core_period", 10)
    if not cfg.get("self_clocked"):
        cocotb.start_soon(Clock(dut.bus_clk, periods[0], unit="ns").start())
        cocotb.start_soon(Clock(dut.core_clk, periods[1], unit="ns").start())
    dut.bus_rst.value = 1
    dut.core_rst.value = 1
    await Timer(4 * max(periods) + 1, unit="ns")            # four cycles of the slower clock
    dut.bus_rst.value = 0
    dut.core_rst.value = 0
    t0 = time.perf_counter()
    limit = Timer(int(cfg.get("timeout", 3600)), unit="sec")
    await First(RisingEdge(dut.done), RisingEdge(dut.hang), limit)
    result = {"cycles": int(dut.core_cycles.value), "hang": int(dut.hang.value),
              "done": int(dut.done.value), "out_beats": int(dut.out_beats.value),
              "out_packets": int(dut.out_packets.value), "seconds": time.perf_counter() - t0}
    with open(cfg["result_file"], "w") as f:
        json.dump(result, f)
    dut._log.info("player: %s", result)
