"""Fault injection and soak on the accelerator top: resets of each clock domain at random points
of a command stream, extreme clock ratios (bus:core 1:8 and 8:1), output sinks that stall for
thousands of cycles; on Verilator and on Icarus.

Every case uses the ``reset`` scenario of :mod:`intdeploy.sim.tb_top`: a first program runs to completion
(each response compared word for word with :class:`intdeploy.sim.accel_model.AcceleratorModel`), a second
one is cut by a reset of ``bus_rst`` or ``core_rst`` after a random number of accepted beats plus
a random number of bus cycles; the responses that came out whole before the reset must be the
model's answers to the first packets of the cut stream; after the reset a third program (buffer
fills, valid RUNs of every epilogue, malformed packets) must be answered completely and bit-exactly
as by a model that saw only a reset. A watchdog in the bench fails any response that takes longer
than ``watchdog`` core cycles (a hang), and nothing may come out after the last response.
The in-flight behaviour this checks is written down in docs/reliability.md.

Quick tier: one short case per simulator. Regress tier: domain x ratio x seed sweeps with long
stalls on Verilator, a smaller sweep on Icarus, and a soak-style random sweep.
"""

import numpy as np
import pytest

from intdeploy.sim.rtl_engine import run_top
from tests.test_top import QUICK, fuzz_program, info_of

#: Clock periods (ns) bus:core of the extreme and near-equal ratios.
RATIOS = {"1:8": (5, 40), "8:1": (40, 5), "1:1": (10, 10), "10:11": (10, 11)}


def watchdog_for(bus, core, bp_burst):
    """Core cycles one response may take: a long stall of ``bp_burst`` bus cycles, plus a RUN."""
    return 20000 + 2 * bp_burst * -(-bus // core)


def reset_case(sim, tmp_path, *, seed, domain, ratio, lengths=(20, 60, 40), stall=0, idle=0.2,
               backpressure=0.3):
    """One reset-mid-stream case; ``stall`` > 0 adds rare sink stalls of up to ``stall`` bus cycles
    (and input pauses of up to ``stall // 4``)."""
    rng = np.random.default_rng(seed)
    info = info_of(QUICK)
    first, interrupted, second = (fuzz_program(seed * 3 + j, info, n) for j, n in enumerate(lengths))
    beats = sum(-(-len(p) // (QUICK["bus_width"] // 32)) for p in interrupted)
    reset_after = int(rng.integers(1, beats))
    reset_delay = int(rng.integers(0, 200))
    bus, core = RATIOS[ratio]
    bench = dict(idle=idle, idle_burst=3, backpressure=backpressure, bp_burst=5)
    if stall:
        bench.update(backpressure=0.002, bp_burst=stall, idle=0.002, idle_burst=max(stall // 4, 1))
    run_top(sim, QUICK, test_dir=tmp_path, scenario="reset", first=first, interrupted=interrupted, second=second,
            reset_domain=domain, reset_after=reset_after, reset_delay=reset_delay, bus_period=bus,
            core_period=core, watchdog=watchdog_for(bus, core, max(stall, 5)), seed=seed, **bench)
    return reset_after, reset_delay


# --- quick tier: one short case per simulator --------------------------------------------------------

def test_reset_bus_at_1_to_8_with_long_stalls_verilator(tmp_path):
    reset_case("verilator", tmp_path, seed=1, domain="bus", ratio="1:8", lengths=(10, 40, 30), stall=3000)


def test_reset_core_at_8_to_1_icarus(tmp_path):
    reset_case("icarus", tmp_path, seed=2, domain="core", ratio="8:1", lengths=(3, 8, 6))


# --- regress tier: the sweeps ---------------------------------------------------------------------

@pytest.mark.regress
@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("ratio", list(RATIOS))
@pytest.mark.parametrize("domain", ["bus", "core"])
def test_reset_sweep_verilator(domain, ratio, seed, tmp_path):
    reset_case("verilator", tmp_path, seed=seed * 7 + len(ratio), domain=domain, ratio=ratio,
               stall=3000 if seed % 2 else 0)


@pytest.mark.regress
@pytest.mark.parametrize("ratio", ["1:8", "8:1"])
@pytest.mark.parametrize("domain", ["bus", "core"])
def test_reset_sweep_icarus(domain, ratio, tmp_path):
    reset_case("icarus", tmp_path, seed=31 + len(domain) + 3 * len(ratio), domain=domain, ratio=ratio,
               lengths=(3, 10, 8), stall=1500 if domain == "bus" else 0)


@pytest.mark.regress
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("ratio", ["1:8", "8:1"])
def test_long_sink_stalls_without_reset(sim, ratio, tmp_path):
    """A sink that stalls for up to 4000 bus cycles at a time, at both extreme ratios: every
    packet of a fuzz program answered (watchdog) and equal to the model."""
    bus, core = RATIOS[ratio]
    length = 150 if sim == "verilator" else 12
    run_top(sim, QUICK, test_dir=tmp_path, packets=fuzz_program(51, info_of(QUICK), length), bus_period=bus,
            core_period=core, idle=0.001, idle_burst=1000, backpressure=0.003, bp_burst=4000,
            watchdog=watchdog_for(bus, core, 4000), seed=51)
