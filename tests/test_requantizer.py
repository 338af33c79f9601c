# amaranth: UnusedElaboratable=no
"""Requantizer RTL vs intdeploy.golden.requantizer.requantize on both simulators, plus the host encoder and
the elaboration-parameter checks."""

import pytest

from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams
from intdeploy.hw.requantizer import Requantizer, Rounding
from intdeploy.sim.runner import SIMULATORS, run_bench


def run(sim, tmp_path, *, lanes, out_bits, **cfg):
    config = {"seed": 1, "lanes": lanes, "out_bits": out_bits, "n": 2000, **cfg}
    run_bench("requantizer", lambda: Requantizer(lanes=lanes, out_bits=out_bits),
              f"lanes={lanes},out_bits={out_bits}", sim, config, test_dir=tmp_path)


# Two hardware configurations in the quick tier (each is one Verilator build): one lane with the
# full int32 output (clip at the int32 ends), four lanes with an int8 output.
QUICK = [(1, 32), (4, 8)]


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("lanes,out_bits", QUICK)
def test_requantizer(sim, lanes, out_bits, tmp_path):
    """A no-stall phase (exact latency, II = 1), then the corner list (ties at every shift in
    every mode, extremes, wraps, clips) and random items under random stalls on both sides.
    Icarus, the slower simulator, gets fewer random items."""
    run(sim, tmp_path, lanes=lanes, out_bits=out_bits, n=(1000 if sim == "verilator" else 200) * lanes)


def test_bench_catches_wrong_rounding(tmp_path):
    """The check can fail: golden told to round half-up everywhere disagrees with the RTL."""
    with pytest.raises(AssertionError) as info:
        run("verilator", tmp_path, lanes=4, out_bits=8, n=200, corners=False, golden_rounding="half_up")
    assert "MISMATCH" in str(info.value)


@pytest.mark.regress
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("lanes,out_bits,seed", [(1, 32, 2), (3, 16, 4), (8, 8, 5), (2, 2, 6)])
def test_requantizer_regress(sim, lanes, out_bits, seed, tmp_path):
    """More lanes and output widths, every tie quotient, a long no-stall phase, long stalls."""
    run(sim, tmp_path, lanes=lanes, out_bits=out_bits, seed=seed, corners="thorough",
        n=12000 if sim == "verilator" else 3000, full_rate=400, burst=8, in_stall=0.4, out_stall=0.5)


# --- elaboration parameters and host encoder (no simulator) ---------------------------------

@pytest.mark.parametrize("kwargs,name", [
    ({"lanes": 0}, "lanes"), ({"lanes": 2.0}, "lanes"), ({"lanes": True}, "lanes"),
    ({"out_bits": 1}, "out_bits"), ({"out_bits": 33}, "out_bits"), ({"out_bits": "8"}, "out_bits"),
    ({"user": "wide"}, "user"),
])
def test_elaboration_parameters_are_validated(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        Requantizer(**kwargs)


def test_encode_fields():
    p = RequantParams(mult=[3, -7], shift=[0, 62], bias=[INT32_MIN, INT32_MAX], offset=[-(1 << 47), 5],
                      zero_point=[1, -1], lo=[-128, 0], hi=[127, 5], rounding="half_even")
    assert Requantizer(out_bits=8).encode(p, [1]) == [
        {"bias": INT32_MAX, "mult": -7, "offset": 5, "shift": 62, "zero_point": -1, "lo": 0, "hi": 5,
         "rounding": Rounding.HALF_EVEN}]
    per_tensor = RequantParams(mult=1 << 30, shift=40, rounding="tflite")
    fields = Requantizer().encode(per_tensor, 3)
    assert len(fields) == 3 and all(f["rounding"] is Rounding.TFLITE and f["lo"] == INT32_MIN
                                    for f in fields)
    # Every golden rounding name has a member, and the fields pack into the beat layout.
    rq = Requantizer(lanes=2, out_bits=8)
    for mode in ("floor", "half_up", "half_even", "tflite", "half_away"):
        f = rq.encode(RequantParams(mult=1, shift=1, lo=-128, hi=127, rounding=mode), 2)
        beat = rq.i_layout.const({"acc": [0, 0], "params": f})
        assert beat.params[1].rounding is Rounding.of(mode)


@pytest.mark.parametrize("params,channels,out_bits,name", [
    (RequantParams(mult=1, shift=0), 1, 8, "lo"),                            # int32 lo into int8
    (RequantParams(mult=1, shift=0, lo=-128, hi=128), 1, 8, "hi"),
    (RequantParams(mult=1, shift=0, lo=-3, hi=2), 1, 2, "lo"),
    (RequantParams(mult=[1, 2], shift=0), 3, 32, "channels"),                # count mismatch
    (RequantParams(mult=[1, 2], shift=0), [2], 32, "channels"),              # index out of range
    (RequantParams(mult=1, shift=0), 0, 32, "channels"),
    (RequantParams(mult=1, shift=0), "all", 32, "channels"),
    ({"mult": 1, "shift": 0}, 1, 32, "params"),
])
def test_encode_refuses(params, channels, out_bits, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        Requantizer(out_bits=out_bits).encode(params, channels)


def test_rounding_names():
    with pytest.raises(ValueError, match="^rounding:"):
        Rounding.of("nearest")
    assert [Rounding.of(n).value for n in ("floor", "half_up", "half_even", "tflite", "half_away")] == [0, 1, 2, 3, 4]


def test_clip_flags_split_compare():
    """Stage 8's saturation flags (a 64-bit value against 33-bit bounds, compared as 32 + 32
    bits) equal the plain comparison at every boundary of the split and on random values."""
    from amaranth import Module, Signal, signed
    from amaranth.sim import Simulator
    import numpy as np

    from intdeploy.hw.requantizer import _outside
    v, b = Signal(signed(64)), Signal(signed(33))
    below, above = Signal(), Signal()
    m = Module()
    m.d.comb += [below.eq(_outside(v, b, b)[0]), above.eq(_outside(v, b, b)[1])]
    edges = [0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 32) + 1]
    bounds = sorted({s * e for e in edges[:-2] for s in (1, -1)} | {-(1 << 32), -(1 << 32) + 1, 5, -5})
    values = {s * e + d for e in edges for s in (1, -1) for d in (-1, 0, 1)}
    values |= {(1 << 63) - 1, -(1 << 63), (1 << 40) + 3, -(1 << 40) - 3}
    rng = np.random.default_rng(7)
    pairs = [(x, y) for x in sorted(values) for y in bounds]
    pairs += [(int(rng.integers(-(1 << 34), 1 << 34)), int(rng.integers(-(1 << 32), 1 << 32))) for _ in range(300)]
    assert all(-(1 << 32) <= y < 1 << 32 for _, y in pairs)
    bad = []

    async def bench(ctx):
        for x, y in pairs:
            ctx.set(v, x)
            ctx.set(b, y)
            if (ctx.get(below), ctx.get(above)) != (x < y, x > y):
                bad.append((x, y, ctx.get(below), ctx.get(above)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"{len(bad)} wrong flags, first {bad[:5]}"
