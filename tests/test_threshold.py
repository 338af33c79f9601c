# amaranth: UnusedElaboratable=no
"""ThresholdUnit: bit-exact with intdeploy.golden.threshold on both simulators, parameter validation, and
the host-side encoder's refusals."""

import numpy as np
import pytest

from intdeploy.golden.threshold import bn_thresholds
from intdeploy.hw.threshold import ThresholdUnit
from intdeploy.sim.runner import SIMULATORS, run_bench


def _run(sim, tmp_path, *, channels, max_bits, lanes, banked=False, **cfg):
    hw = {"channels": channels, "max_bits": max_bits, "lanes": lanes, "banked": banked}
    config = {**hw, "seed": 1, "bursts": 3, "n": 300, **cfg}
    run_bench("threshold", lambda: ThresholdUnit(**hw), repr(sorted(hw.items())), sim, config,
              test_dir=tmp_path)


# One build per simulator in the quick tier: Q_max = 8 with per-channel run-time q covers
# Q = 1..8, two lanes exercise the replicated read ports.
QUICK = {"channels": 9, "max_bits": 8, "lanes": 2}


@pytest.mark.parametrize("sim", SIMULATORS)
def test_matches_golden(sim, tmp_path):
    _run(sim, tmp_path, **QUICK, bursts=4, n=400)


# Banked storage (each channel stored once, in the memories of the lane that reads it), as the
# accelerator's default epilogue uses it: 4 lanes over 11 channels (groups of 3 and 2 channels).
BANKED = {"channels": 11, "max_bits": 8, "lanes": 4, "banked": True}


@pytest.mark.parametrize("sim", SIMULATORS)
def test_banked_matches_golden(sim, tmp_path):
    _run(sim, tmp_path, **BANKED, bursts=4, n=400)


def test_banked_lane_reads_only_its_own_group(tmp_path):
    """A lane given a channel of another lane's group reads a wrong row: the bench (which keeps
    each lane in its group) is what makes the banked unit right, and a bench that strays fails."""
    with pytest.raises(AssertionError) as info:
        _run("verilator", tmp_path, **BANKED, bursts=1, n=200, stray=True)
    assert "MISMATCH" in str(info.value)


@pytest.mark.parametrize("sim", SIMULATORS)
def test_wrong_golden_is_caught(sim, tmp_path):
    """The bench must fail when golden uses > instead of >= (x equal to a threshold)."""
    with pytest.raises(AssertionError) as info:
        _run(sim, tmp_path, **QUICK, bursts=1, n=60, bug="gt")
    assert "MISMATCH" in str(info.value)


@pytest.mark.regress
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("hw", [
    {"channels": 1, "max_bits": 1, "lanes": 1},
    {"channels": 3, "max_bits": 2, "lanes": 1},
    {"channels": 5, "max_bits": 4, "lanes": 3},
    {"channels": 16, "max_bits": 8, "lanes": 1},
    {"channels": 9, "max_bits": 8, "lanes": 2},
    {"channels": 64, "max_bits": 8, "lanes": 4, "banked": True},
    {"channels": 3, "max_bits": 3, "lanes": 2, "banked": True},
])
def test_regress(sim, hw, tmp_path):
    _run(sim, tmp_path, **hw, seed=7, bursts=6, n=800, in_stall=0.4, out_stall=0.5,
         load_stall=0.4, stall_burst=12)


@pytest.mark.regress
@pytest.mark.parametrize("sim", SIMULATORS)
def test_regress_no_stalls(sim, tmp_path):
    _run(sim, tmp_path, **QUICK, seed=11, bursts=4, n=1500, in_stall=0, out_stall=0, load_stall=0)


# --- elaboration parameters and host-side encoding (no simulator) ---------------------------

@pytest.mark.parametrize("kw, name", [
    ({"channels": 0, "max_bits": 4}, "channels"),
    ({"channels": 1 << 17, "max_bits": 4}, "channels"),
    ({"channels": 2.0, "max_bits": 4}, "channels"),
    ({"channels": 4, "max_bits": 0}, "max_bits"),
    ({"channels": 4, "max_bits": 9}, "max_bits"),
    ({"channels": 4, "max_bits": True}, "max_bits"),
    ({"channels": 4, "max_bits": 4, "lanes": 0}, "lanes"),
    ({"channels": 4, "max_bits": 4, "lanes": 17}, "lanes"),
    ({"channels": 4, "max_bits": 4, "lanes": 3, "banked": True}, "banked"),
    ({"channels": 4, "max_bits": 4, "lanes": 2, "banked": 1}, "banked"),
])
def test_bad_elaboration_parameters(kw, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        ThresholdUnit(**kw)


def test_load_beats_from_golden():
    unit = ThresholdUnit(channels=4, max_bits=3)
    th, neg = bn_thresholds(np.array([1.0, -2.0]), np.array([0.5, 0.1]), np.array([0.0, 1.0]),
                            np.array([1.0, 0.5]), 0.01, 0.1, 2)
    beats = unit.load_beats(th, neg, channels=[3, 1])
    assert len(beats) == 6
    assert beats[0] == {"channel": 3, "index": 0, "value": int(th[0, 0]), "bits": 2, "negate": 0}
    assert beats[5] == {"channel": 1, "index": 2, "value": int(th[1, 2]), "bits": 2, "negate": 1}
    # every beat packs into the load layout
    for b in beats:
        unit.load_layout.const(b)


@pytest.mark.parametrize("th, neg, kw, match", [
    ([[1, 3, 2]], None, {}, r"thresholds\[0, 2\]: 2 < thresholds\[0, 1\] = 3"),
    ([[0], [5], [2]], None, {}, None),
    ([[1, 2, 3], [4, 3, 5]], None, {}, r"thresholds\[1, 1\]"),
    ([[1 << 31, 0, 0]], None, {}, r"thresholds\[0, 0\]: 2147483648 is outside int32"),
    ([[-(1 << 31) - 1, 0, 0]], None, {}, r"outside int32"),
    ([[1, 2]], None, {}, r"thresholds: row length must be 2\*\*q - 1"),
    ([list(range(15))], None, {}, r"max_bits=3"),
    ([[0.5, 1.0, 2.0]], None, {}, r"thresholds: expected integers"),
    ([1, 2, 3], None, {}, r"thresholds: expected shape"),
    ([[1, 2, 3]], [True, False], {}, r"negate: expected 1 booleans"),
    ([[1, 2, 3]], [2], {}, r"negate"),
    ([[1, 2, 3]], None, {"channels": [4]}, r"^channels: 4 is out of range; allowed \[0, 3\]$"),
    ([[1, 2, 3]], None, {"channels": [0, 1]}, r"channels: expected 1 channel slots"),
])
def test_load_beats_refuses(th, neg, kw, match):
    unit = ThresholdUnit(channels=4, max_bits=3)
    if match is None:          # a valid control case among the refusals
        unit.load_beats(th, neg, **kw)
        return
    with pytest.raises(ValueError, match=match):
        unit.load_beats(th, neg, **kw)
