"""MacArray against intdeploy.golden.mac_array.linear on both simulators, its elaboration-parameter and
host-encoding refusals, and a proof that the bench's check can fail."""

import numpy as np
import pytest

from intdeploy.golden.mac_array import linear
from intdeploy.hw.mac_array import MacArray, step_range
from intdeploy.sim.runner import SIMULATORS, run_bench


def _run(sim, tmp_path, *, rows, cols, weight_bits=8, acc_bits=32, **cfg):
    params = dict(rows=rows, cols=cols, weight_bits=weight_bits, acc_bits=acc_bits)
    run_bench("mac_array", lambda: MacArray(**params), repr(sorted(params.items())), sim,
              dict(params, **cfg), test_dir=tmp_path)


# Quick tier: four builds per simulator, many vectors each. The 8x8 build also measures II = 1
# and runs the accumulations up to the int32 refusal limit (C = 8 keeps them to ~25k steps; on
# Icarus, ~4x slower, those run in the regress tier).
QUICK = [
    dict(rows=1, cols=1, seed=11, gemms=60, max_k=12),
    dict(rows=3, cols=5, weight_bits=4, seed=12, gemms=40),
    dict(rows=4, cols=4, weight_bits=2, seed=13, gemms=40),
    dict(rows=8, cols=8, seed=14, gemms=30, ii_steps=300, limit=True),
]


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("cfg", QUICK, ids=lambda c: f"{c['rows']}x{c['cols']}w{c.get('weight_bits', 8)}")
def test_gemm(sim, cfg, tmp_path):
    _run(sim, tmp_path, **dict(cfg, limit=cfg.get("limit", False) and sim == "verilator"))


# The check can fail: golden deliberately wrong (weight zero point forgotten, int8 activations
# read as uint8) on an existing quick build.
@pytest.mark.parametrize("sim,bug", [("verilator", "ignore_w_zp"), ("icarus", "x_as_uint8")])
def test_wrong_golden_is_caught(sim, bug, tmp_path):
    with pytest.raises(AssertionError) as info:
        _run(sim, tmp_path, **dict(QUICK[1], gemms=5, bug=bug))
    assert "MISMATCH" in str(info.value)


# Regress tier: more shapes, more vectors, long stalls on both sides, every refusal-limit corner.
REGRESS = [
    dict(rows=1, cols=1, seed=21, gemms=300, max_k=20, limit=True, limit_max_steps=140_000),
    dict(rows=1, cols=8, seed=22, gemms=200, ii_steps=200, limit=True),
    dict(rows=8, cols=1, seed=23, gemms=150, max_k=16, ii_steps=200, stall_in=0.6, stall_out=0.6, burst=12),
    dict(rows=2, cols=3, seed=24, gemms=300, weight_bits=2, stall_in=0.1, stall_out=0.8, burst=20, limit=True),
    dict(rows=3, cols=5, weight_bits=4, seed=25, gemms=300, stall_in=0.8, stall_out=0.1, burst=20, limit=True),
    dict(rows=8, cols=8, seed=26, gemms=200, weight_bits=4, ii_steps=500, limit=True),
    dict(rows=16, cols=16, seed=27, gemms=60, ii_steps=300, limit=True, stall_in=0.5, stall_out=0.5, burst=8),
]


@pytest.mark.regress
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("cfg", REGRESS, ids=lambda c: f"{c['rows']}x{c['cols']}w{c.get('weight_bits', 8)}")
def test_gemm_regress(sim, cfg, tmp_path):
    _run(sim, tmp_path, **cfg)


# Elaboration parameters (no simulator) --------------------------------------------------------

@pytest.mark.parametrize("kwargs,name", [
    (dict(rows=0, cols=4), "rows"),
    (dict(rows=-1, cols=4), "rows"),
    (dict(rows=True, cols=4), "rows"),
    (dict(rows=2.0, cols=4), "rows"),
    (dict(rows=4, cols=0), "cols"),
    (dict(rows=4, cols="8"), "cols"),
    (dict(rows=4, cols=4, weight_bits=3), "weight_bits"),
    (dict(rows=4, cols=4, weight_bits=16), "weight_bits"),
    (dict(rows=4, cols=4, weight_bits=True), "weight_bits"),
    (dict(rows=1, cols=1, acc_bits=17), "acc_bits"),     # one step needs 18 bits
    (dict(rows=4, cols=8, acc_bits=20), "acc_bits"),     # one step needs 21 bits
    (dict(rows=4, cols=4, acc_bits=65), "acc_bits"),
])
def test_bad_elaboration_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        MacArray(**kwargs)


def test_smallest_accumulator_holds_one_step():
    assert MacArray(rows=1, cols=1, acc_bits=18).acc_bits == 18
    assert MacArray(rows=4, cols=8, acc_bits=21).latency == 7
    assert MacArray(rows=2, cols=1).latency == 4
    assert MacArray(rows=2, cols=5).latency == 7


@pytest.mark.parametrize("weight_bits", [8, 4, 2])
def test_step_range_is_golden_extreme(weight_bits):
    """step_range (which sizes acc_bits) is the exact extreme of golden over every field value."""
    wlo, whi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    got = []
    for x in (-128, 255):
        for zx in (-256, 255):
            for w in (wlo, whi):
                for zw in (-128, 127):
                    got.append(int(linear(np.full((1, 3), x), np.full((1, 3), w), zx, zw)[0, 0]))
    assert step_range(3, weight_bits) == (min(got), max(got))


# Host-side encoding (no simulator) --------------------------------------------------------------

def _model(array, beats):
    """The accumulations that ``beats`` ask for, by the field semantics of the payload."""
    out, acc = [], np.zeros(array.rows, dtype=np.int64)
    for b in beats:
        x = np.array(b["x"], dtype=np.int64)
        if b["x_signed"]:
            x = np.where(x >= 128, x - 256, x)
        w = np.array(b["w"], dtype=np.int64)
        step = (w - np.array(b["w_zp"])[:, None]) @ (x - b["x_zp"])
        acc = step if b["first"] else acc + step
        if b["last"]:
            out.append(acc)
    return np.array(out)


@pytest.mark.parametrize("rows,cols,weight_bits,k", [(3, 5, 8, 7), (4, 4, 4, 4), (2, 3, 2, 1), (1, 1, 8, 5)])
def test_encode_pads_k_with_zero_terms(rows, cols, weight_bits, k):
    rng = np.random.default_rng(k)
    array = MacArray(rows=rows, cols=cols, weight_bits=weight_bits)
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    for x_signed, xr in ((True, (-128, 127)), (False, (0, 255))):
        x = rng.integers(*xr, (3, k), endpoint=True)
        w = rng.integers(lo, hi, (rows, k), endpoint=True)
        zx, zw = int(rng.integers(*xr, endpoint=True)), rng.integers(-128, 127, rows, endpoint=True)
        beats = array.encode(x, w, x_signed=x_signed, x_zero_point=zx, w_zero_point=zw)
        assert len(beats) == 3 * -(-k // cols)
        np.testing.assert_array_equal(_model(array, beats), linear(x, w, zx, zw))
        for beat in beats:                      # every beat is representable by the layout
            array.in_layout.const(beat)


def test_encode_fewer_channels_than_rows_gives_zero_rows():
    array = MacArray(rows=4, cols=2)
    x, w = np.array([[3, -7, 100]]), np.array([[1, 2, 3], [-4, 5, -6]])
    got = _model(array, array.encode(x, w, x_signed=True, x_zero_point=5, w_zero_point=[2, -3]))
    np.testing.assert_array_equal(got[:, :2], linear(x, w, 5, np.array([2, -3])))
    np.testing.assert_array_equal(got[:, 2:], 0)


@pytest.mark.parametrize("args,name", [
    (dict(x=[[256]], w=[[1]], x_signed=False), "x"),
    (dict(x=[[-1]], w=[[1]], x_signed=False), "x"),
    (dict(x=[[128]], w=[[1]], x_signed=True), "x"),
    (dict(x=[[1.0]], w=[[1]], x_signed=True), "x"),
    (dict(x=[[1, 2]], w=[[1]], x_signed=True), "x"),
    (dict(x=[[1]], w=[[8]], x_signed=True), "w"),           # 4-bit build
    (dict(x=[[1]], w=[[-9]], x_signed=True), "w"),
    (dict(x=[[1]], w=[[1]] * 5, x_signed=True), "w"),       # N > rows
    (dict(x=[[1]], w=[1], x_signed=True), "w"),
    (dict(x=[[1]], w=[[1]], x_signed=True, x_zero_point=128), "x_zero_point"),
    (dict(x=[[1]], w=[[1]], x_signed=False, x_zero_point=-1), "x_zero_point"),
    (dict(x=[[1]], w=[[1]], x_signed=True, w_zero_point=128), "w_zero_point"),
    (dict(x=[[1]], w=[[1]], x_signed=True, w_zero_point=[1, 2]), "w_zero_point"),
    (dict(x=[[1]], w=[[1]], x_signed=2), "x_signed"),
])
def test_encode_refuses(args, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        MacArray(rows=4, cols=2, weight_bits=4).encode(**args)


def test_encode_refuses_layer_that_overflows_int32():
    """The worst case 255 * 255 * K fits int32 up to K = 33025 (golden.check_accumulator)."""
    array = MacArray(rows=1, cols=8)
    kw = dict(x_signed=False, x_zero_point=0, w_zero_point=-128, name="fc1")
    array.encode(np.zeros((1, 33025), dtype=int), np.full((1, 33025), 127), **kw)
    with pytest.raises(ValueError, match=r"^fc1: accumulator needs 33 bits, hardware has 32"):
        array.encode(np.zeros((1, 33026), dtype=int), np.full((1, 33026), 127), **kw)
