# amaranth: UnusedElaboratable=no
"""PoolUnit: bit-exact with intdeploy.golden.pool on both simulators, the exactness of its reciprocal
division, parameter validation, and the host-side encoder's refusals."""

import numpy as np
import pytest

from intdeploy.golden.pool import pool_windows
from intdeploy.hw.pool import PoolMode, PoolUnit, reciprocal_table
from intdeploy.sim.runner import SIMULATORS, run_bench


def _run(sim, tmp_path, *, lanes, in_bits, max_taps, max_shift, **cfg):
    hw = {"lanes": lanes, "in_bits": in_bits, "max_taps": max_taps, "max_shift": max_shift}
    config = {**hw, "seed": 1, "windows": 300, "images": 8, **cfg}
    run_bench("pool", lambda: PoolUnit(**hw), repr(sorted(hw.items())), sim, config,
              test_dir=tmp_path)


QUICK = {"lanes": 2, "in_bits": 9, "max_taps": 64, "max_shift": 16}


@pytest.mark.parametrize("sim", SIMULATORS)
def test_matches_golden(sim, tmp_path):
    _run(sim, tmp_path, **QUICK, windows=600, images=8)


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("bug", ["half_even", "floor"])
def test_wrong_golden_is_caught(sim, bug, tmp_path):
    """The bench must fail when golden rounds TFLite averages half-to-even or by floor."""
    with pytest.raises(AssertionError) as info:
        _run(sim, tmp_path, **QUICK, windows=150, images=0, bug=bug)
    assert "MISMATCH" in str(info.value)


@pytest.mark.regress
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("hw", [
    {"lanes": 1, "in_bits": 9, "max_taps": 1, "max_shift": 0},
    {"lanes": 3, "in_bits": 8, "max_taps": 9, "max_shift": 8},
    {"lanes": 1, "in_bits": 9, "max_taps": 64, "max_shift": 16},
    {"lanes": 4, "in_bits": 12, "max_taps": 100, "max_shift": 24},
    {"lanes": 2, "in_bits": 9, "max_taps": 64, "max_shift": 16},
])
def test_regress(sim, hw, tmp_path):
    _run(sim, tmp_path, **hw, seed=7, windows=1500, images=16, in_stall=0.4, out_stall=0.5,
         stall_burst=12)


@pytest.mark.regress
@pytest.mark.parametrize("sim", SIMULATORS)
def test_regress_no_stalls(sim, tmp_path):
    _run(sim, tmp_path, **QUICK, seed=11, windows=2000, images=8, in_stall=0, out_stall=0)


# --- arithmetic, elaboration parameters and host-side encoding (no simulator) ---------------

@pytest.mark.parametrize("max_taps, in_bits", [(1, 9), (2, 2), (9, 8), (64, 9), (100, 12), (256, 9)])
def test_reciprocal_division_is_exact(max_taps, in_bits):
    """Every (n, A) the unit can meet divides exactly: A = |S| + n//2 with |S| <= n * 2**(in_bits-1)."""
    unit = PoolUnit(max_taps=max_taps, in_bits=in_bits)
    s, recip = unit.recip_shift, unit.recip
    m = 1 << (in_bits - 1)
    for n in range(1, max_taps + 1):
        a = np.arange(n * m + n // 2 + 1, dtype=np.int64)
        np.testing.assert_array_equal((a * recip[n]) >> s, a // n)


def test_reciprocal_tight_default():
    """At the default size the bound is tight: one bit less of reciprocal is wrong somewhere."""
    unit = PoolUnit()
    assert unit.recip_shift == 20 and unit.sum_bits == 15
    assert reciprocal_table(64, unit.a_max) == (20, unit.recip) and reciprocal_table(1, 7) == (0, [0, 1])
    n = np.arange(1, 65)
    a = np.arange(unit.a_max + 1, dtype=np.int64)[:, None]
    assert np.all((a * np.array(unit.recip[1:])) >> 20 == a // n)
    r19 = -(-(1 << 19) // n)
    assert np.any((a * r19) >> 19 != a // n)


@pytest.mark.parametrize("kw, name", [
    ({"lanes": 0}, "lanes"), ({"lanes": 65}, "lanes"), ({"lanes": 1.5}, "lanes"),
    ({"in_bits": 1}, "in_bits"), ({"in_bits": 25}, "in_bits"),
    ({"max_taps": 0}, "max_taps"), ({"max_taps": 4097}, "max_taps"), ({"max_taps": True}, "max_taps"),
    ({"max_shift": -1}, "max_shift"), ({"max_shift": 33}, "max_shift"),
])
def test_bad_elaboration_parameters(kw, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        PoolUnit(**kw)


def test_params_mirror_golden_defaults():
    unit = PoolUnit()
    rmin, rmax = -(1 << 14), (1 << 14) - 1
    assert unit.params("max") == {"mode": PoolMode.MAX, "mult": 0, "shift": 0, "lo": rmin, "hi": rmax}
    assert unit.params("avg_tflite") == {"mode": PoolMode.AVG_TFLITE, "mult": 0, "shift": 0,
                                         "lo": -128, "hi": 127}
    assert unit.params("avg_nemo", count=9, d=16) == {"mode": PoolMode.AVG_NEMO, "mult": 7281,
                                                      "shift": 16, "lo": rmin, "hi": rmax}
    # clamps beyond the result range are brought to its edge (results never leave it)
    assert unit.params("max", lo=-(1 << 31), hi=1 << 40)["lo"] == rmin
    for p in (unit.params("avg_nemo", count=64, d=6, lo=0, hi=255), unit.params("max", lo=3)):
        unit.in_layout.const({"x": [0], "last": 1, **p})
    # golden and the encoder agree on Eq. 25's factor
    w = np.array([[5], [7], [-3]])
    assert pool_windows(w, "avg_nemo", d=5)[0] == (unit.params("avg_nemo", count=3, d=5)["mult"] * 9) >> 5


@pytest.mark.parametrize("args, kw, match", [
    (("avg",), {}, r"mode: 'avg' is not one of max, avg_nemo, avg_tflite"),
    (("avg_nemo",), {"d": 4}, r"count, d: avg_nemo needs both"),
    (("avg_nemo",), {"count": 9}, r"count, d: avg_nemo needs both"),
    (("avg_nemo",), {"count": 9, "d": 3}, r"d: 2\*\*3 < count 9"),
    (("avg_nemo",), {"count": 9, "d": 17}, r"^d: 17 is out of range; allowed \[0, 16\]$"),
    (("avg_nemo",), {"count": 65, "d": 8}, r"^count: 65 is out of range; allowed \[1, 64\]$"),
    (("avg_tflite",), {"count": 4}, r"the unit counts the taps"),
    (("max",), {"d": 4}, r"count, d: not used by max"),
    (("max",), {"lo": 5, "hi": 4}, r"lo, hi: lo must be <= hi"),
    (("max",), {"lo": 1 << 20}, r"lo, hi: lo must be <= hi|lies outside"),
    (("avg_tflite",), {"lo": 20000, "hi": 30000}, r"lies outside the results' range"),
    (("max",), {"hi": 2.5}, r"^hi: expected an integer, got 2.5$"),
])
def test_params_refuses(args, kw, match):
    with pytest.raises(ValueError, match=match):
        PoolUnit().params(*args, **kw)


@pytest.mark.parametrize("window, match", [
    (np.zeros((0, 2), dtype=np.int64), r"window: expected shape \(n, 2\)"),
    (np.zeros((65, 2), dtype=np.int64), r"max_taps=64"),
    (np.zeros((3, 1), dtype=np.int64), r"window: expected shape"),
    (np.array([[256, 0]]), r"window: 256 is outside signed\(9\) \[-256, 255\]"),
    (np.array([[0, -257]]), r"window: -257 is outside"),
    (np.array([[0.5, 1.0]]), r"window: expected integers"),
])
def test_window_beats_refuses(window, match):
    unit = PoolUnit(lanes=2)
    with pytest.raises(ValueError, match=match):
        unit.window_beats(window, unit.params("max"))


def test_window_beats():
    unit = PoolUnit(lanes=2)
    p = unit.params("avg_tflite")
    beats = unit.window_beats(np.array([[1, -2], [255, -256]]), p)
    assert [b["last"] for b in beats] == [0, 1] and beats[1]["x"] == [255, -256]
    assert all(b["mode"] == PoolMode.AVG_TFLITE for b in beats)
