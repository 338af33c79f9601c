"""The native-speed path (intdeploy.sim.player): the top inside the Verilog stream player.

Expected values are the executable model's responses (:class:`intdeploy.sim.accel_model.ModelEngine`)
and the cocotbext-axi bench's on the same program, never the player's own. Quick tier: one lean
Verilator build of the 4x4 top; the protocol fuzz stream (malformed packets included) on both
paths, with and without stalls; a hang; the argument checks; one digits image end to end on Icarus
through the player; the same program with every register's initial value stripped (random on
Verilator at three seeds, X on Icarus in -g2005 and -g2012 mode) gives the same response words.
"""

import pytest

from intdeploy.golden import digits, model_file
from intdeploy.host import protocol as P
from intdeploy.hw.config import QUICK, AcceleratorConfig
from intdeploy.sim import player
from intdeploy.sim.accel_model import ModelEngine, response_mismatch
from intdeploy.sim.rtl_engine import run_player, run_top
from intdeploy.tools.run import run
from tests.test_top import fuzz_program

INFO = P.Info.of(AcceleratorConfig(**QUICK))
MODEL = model_file.load(digits.MODEL_FILE)


def _mismatches(expected, actual):
    """Every (index, difference) between two response lists (STATUS cycle counts excepted)."""
    out = [(k, d) for k, (e, a) in enumerate(zip(expected, actual)) if (d := response_mismatch(e, a))]
    if len(expected) != len(actual):
        out.append((min(len(expected), len(actual)), f"{len(expected)} responses vs {len(actual)}"))
    return out


@pytest.mark.parametrize("stalls", [dict(), dict(idle=0.3, idle_burst=4, backpressure=0.3, bp_burst=5)],
                         ids=["no stalls", "stalls"])
def test_player_agrees_with_cocotbext_axi(stalls, tmp_path):
    """The same program (buffer fill, valid and malformed packets) on both paths: the responses agree
    word for word with each other and with the executable model, STATUS's cycle counts excepted."""
    packets = fuzz_program(17, INFO, 60)
    model = ModelEngine(INFO).execute(packets)
    axi, axi_cycles = run_top("verilator", QUICK, test_dir=tmp_path / "axi", scenario="batch", packets=packets,
                              seed=3, **stalls)
    native, native_cycles = run_player("verilator", QUICK, packets, test_dir=tmp_path / "player", seed=3,
                                       **stalls)
    assert _mismatches(axi, native) == []
    assert _mismatches(model, native) == []
    assert any(not r.ok for r in native), "the program holds malformed packets: some answer an error"
    assert native_cycles > 0 and axi_cycles > 0


def test_stalls_change_the_timing_not_the_responses(tmp_path):
    packets = fuzz_program(23, INFO, 30)
    plain, plain_cycles = run_player("verilator", QUICK, packets, test_dir=tmp_path / "plain")
    stalled, stalled_cycles = run_player("verilator", QUICK, packets, test_dir=tmp_path / "stalled", seed=9,
                                         idle=0.5, idle_burst=8, backpressure=0.5, bp_burst=8)
    assert _mismatches(plain, stalled) == []
    assert stalled_cycles > plain_cycles * 1.2, (plain_cycles, stalled_cycles)


def test_player_reports_a_hang(tmp_path):
    """A watchdog shorter than a RUN's silence ends the run as a hang that names what came back."""
    packets = fuzz_program(17, INFO, 20)
    with pytest.raises(AssertionError, match=r"HANG: \d+ of \d+ responses within the watchdog of 3 core cycles"):
        run_player("verilator", QUICK, packets, test_dir=tmp_path, watchdog=3)


@pytest.mark.parametrize("field, kwargs", [("idle", dict(idle=1.0)), ("backpressure", dict(backpressure=-0.1)),
                                           ("bp_burst", dict(bp_burst=0)), ("watchdog", dict(watchdog=0))])
def test_player_refuses_bad_arguments(field, kwargs, tmp_path):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        run_player("verilator", QUICK, [P.info()], test_dir=tmp_path, **kwargs)


def test_a_stream_larger_than_the_player_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(player, "ADDR_BITS", 3)
    with pytest.raises(ValueError, match=r"^packets: 10 command beats; the stream player holds at most 8"):
        player.write_beats(tmp_path / "c.hex", [P.info()] * 10, 64)


# --- no dependence on power-up values ------------------------------------------------------------

def _words(responses):
    return [(r.opcode, r.tag, r.status, list(r.payload)) for r in responses]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The fuzz program (buffer fill, valid and malformed packets) with the registers at their
    initial values: the responses every power-up variant must reproduce word for word."""
    packets = fuzz_program(29, INFO, 40)
    responses, cycles = run_player("verilator", QUICK, packets, test_dir=tmp_path_factory.mktemp("init"))
    assert _mismatches(ModelEngine(INFO).execute(packets), responses) == []
    return packets, responses, cycles


@pytest.mark.parametrize("sim, power_up, seed", [("verilator", "random", 1), ("verilator", "random", 2),
                                                 ("verilator", "random", 3), ("icarus", "random", 1),
                                                 ("icarus", "random-2012", 1)])
def test_no_dependence_on_power_up_values(reference_run, sim, power_up, seed, tmp_path):
    """Every register's initial value stripped from the Verilog (an ASIC has none): on Verilator
    each register starts at a random value of the seed (``--x-initial unique``,
    ``+verilator+rand+reset+2``), on Icarus at X in Verilog-2005 and in SystemVerilog mode. After
    the resets the responses are the reference run's, every word of them (STATUS's cycle counts
    included), and so are the core cycles."""
    packets, responses, cycles = reference_run
    got, got_cycles = run_player(sim, QUICK, packets, test_dir=tmp_path, seed=seed, power_up=power_up)
    assert _words(got) == _words(responses)
    assert got_cycles == cycles


def test_beats_round_trip(tmp_path):
    """write_beats / read_beats: the player's hex format, Icarus's address comments skipped."""
    packets = [P.info(tag=3), P.status(tag=4), [1, 2, 3]]
    n = player.write_beats(tmp_path / "c.hex", packets, 64)
    text = (tmp_path / "c.hex").read_text()
    (tmp_path / "c.hex").write_text("// 0x00000000\n" + text)
    beats = player.read_beats(tmp_path / "c.hex", 64)
    padded = [list(p) + [0] * (len(p) % 2) for p in packets]          # two words per 64-bit beat
    assert len(beats) == n == 4 and P.split_packets(beats, 64) == padded


def test_a_digits_image_on_icarus(tmp_path):
    """One whole image of the digits network on the 4x4 top under Icarus through the player,
    every layer bit-exact with golden."""
    r = run(MODEL, sim="icarus", rows=4, cols=4, images=1, work_dir=tmp_path, hardware=dict(QUICK))
    assert r["bit_exact"], r["mismatch_line"]
    assert r["images"] == 1 and r["cycles"] > 0


def test_wrapped_memories_give_the_same_responses(reference_run, tmp_path):
    """The memories as instances of their wrapper modules (``intdeploy verilog --memories wrapped``,
    behavioural bodies from hw/ram.py): the fuzz program's responses are the reference run's, every
    word (STATUS's cycle counts included), and so are the core cycles."""
    packets, responses, cycles = reference_run
    got, got_cycles = run_player("verilator", QUICK, packets, test_dir=tmp_path, memories="wrapped")
    assert _words(got) == _words(responses)
    assert got_cycles == cycles
