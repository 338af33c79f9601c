# amaranth: UnusedElaboratable=no
"""Add unit RTL vs intdeploy.golden.add.add on both simulators (NEMO, TFLite and generic parameter sets),
plus the host encoder and the elaboration-parameter checks."""

import re

import pytest

from intdeploy.golden.add import AddParams
from intdeploy.golden.requantizer import RequantParams
from intdeploy.host import protocol as P
from intdeploy.host.timing import ADD_TABLE_CYCLES, AddTable
from intdeploy.hw.add import AddUnit
from intdeploy.hw.config import QUICK, AcceleratorConfig
from intdeploy.hw.core import Core
from intdeploy.hw.requantizer import Rounding
from intdeploy.sim.runner import SIMULATORS, run_bench


def run(sim, tmp_path, *, lanes, in_bits=9, out_bits=32, b_table_bits=None, **cfg):
    config = {"seed": 1, "lanes": lanes, "in_bits": in_bits, "out_bits": out_bits, "n": 1500,
              "b_table_bits": b_table_bits, **cfg}
    run_bench("add", lambda: AddUnit(lanes=lanes, in_bits=in_bits, out_bits=out_bits, b_table_bits=b_table_bits),
              f"lanes={lanes},in_bits={in_bits},out_bits={out_bits},b_table_bits={b_table_bits}", sim, config,
              test_dir=tmp_path)


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("b_table_bits", [None, 8], ids=["requantizer", "table"])
def test_add(sim, b_table_bits, tmp_path):
    """A no-stall run (exact latency, II = 1), then one run of held parameters per item: corners
    (ties in each requantizer and mode, wraps, saturation) and random NEMO, TFLite and generic
    items, two lanes, random stalls on both sides; branch b by its requantizer or (as the
    accelerator top has it) by the table, refilled for every item. Icarus, the slower simulator,
    gets fewer random items."""
    n = {(None, "verilator"): 1500, (8, "verilator"): 600}.get((b_table_bits, sim), 150)
    run(sim, tmp_path, lanes=2, n=n, b_table_bits=b_table_bits)


@pytest.mark.parametrize("b_table_bits", [None, 8], ids=["requantizer", "table"])
def test_bench_catches_wrong_rounding(b_table_bits, tmp_path):
    """The check can fail: golden told to round half-even in all three requantizers."""
    with pytest.raises(AssertionError) as info:
        run("verilator", tmp_path, lanes=2, n=200, corners=False, golden_rounding="half_even",
            b_table_bits=b_table_bits)
    assert "MISMATCH" in str(info.value)


def test_bench_catches_a_missing_sum_shift(tmp_path):
    """The check can fail: golden told to ignore the sum shift."""
    with pytest.raises(AssertionError) as info:
        run("verilator", tmp_path, lanes=2, n=200, corners=False, golden_no_sum_shift=True)
    assert "MISMATCH" in str(info.value)


@pytest.mark.regress
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("lanes,in_bits,out_bits,seed,table", [(2, 9, 32, 2, 8), (1, 8, 8, 3, 7), (3, 32, 16, 4, None),
                                                               (2, 9, 32, 5, None)])
def test_add_regress(sim, lanes, in_bits, out_bits, seed, table, tmp_path):
    """More lanes and widths (int8-only, 32-bit inputs), more corners, long stalls; the table
    and the requantizer for branch b."""
    run(sim, tmp_path, lanes=lanes, in_bits=in_bits, out_bits=out_bits, seed=seed, corners="thorough",
        n=4000 if sim == "verilator" else 1000, full_rate=400, burst=8, in_stall=0.4, out_stall=0.5,
        b_table_bits=table)


# --- elaboration parameters and host encoder (no simulator) ---------------------------------

@pytest.mark.parametrize("kwargs,name", [
    ({"lanes": 0}, "lanes"), ({"lanes": None}, "lanes"), ({"in_bits": 1}, "in_bits"),
    ({"in_bits": 33}, "in_bits"), ({"out_bits": 0}, "out_bits"), ({"out_bits": 64}, "out_bits"),
])
def test_elaboration_parameters_are_validated(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        AddUnit(**kwargs)


def test_encode_tflite_and_nemo():
    p = AddParams.tflite(0.02, 3, 0.05, -2, 0.06, 1)
    f = AddUnit(out_bits=8).encode(p)
    assert f["in_zero_points"] == [3, -2] and f["left_shift"] == 20
    for fields, rq in zip(f["branches"] + [f["output"]], p.branches + (p.output,)):
        assert fields["rounding"] is Rounding.TFLITE
        assert (fields["mult"], fields["shift"], fields["zero_point"], fields["lo"], fields["hi"]) == \
            (int(rq.mult), int(rq.shift), int(rq.zero_point), int(rq.lo), int(rq.hi))
    f = AddUnit().encode(AddParams.nemo(3, 5, 4))
    assert [b["mult"] for b in f["branches"]] == [3, 5] and f["output"]["shift"] == 4
    assert f["output"]["rounding"] is Rounding.FLOOR and f["sum_shift"] == 0
    f = AddUnit().encode(AddParams.nemo(3, 5, 4).then(RequantParams(mult=7, shift=2)))
    assert f["sum_shift"] == 4 and (f["output"]["mult"], f["output"]["shift"]) == (7, 2)
    unit = AddUnit(lanes=2)
    unit.param_layout.const(unit.encode(AddParams.nemo(3, 5, 4)))
    unit.i_layout.const({"a": [0, 1], "b": [2, 3]})


@pytest.mark.parametrize("params,out_bits,name", [
    (AddParams.nemo(3, 5, 4), 8, "output.lo"),          # NEMO's unclipped int32 range into int8
    (AddParams.tflite(0.02, 3, 0.05, -2, 0.06, 1), 4, "output.lo"),
    (AddParams(branches=(RequantParams(mult=[1, 2], shift=0), RequantParams(mult=1, shift=0)),
               output=RequantParams(mult=1, shift=0)), 32, "branches[0].channels"),
    (AddParams(branches=(RequantParams(mult=1, shift=0), RequantParams(mult=1, shift=0)),
               output=RequantParams(mult=[1, 2, 3], shift=0)), 32, "output.channels"),
    (RequantParams(mult=1, shift=0), 32, "params"),
])
def test_encode_refuses(params, out_bits, name):
    with pytest.raises(ValueError, match=f"^{re.escape(name)}:"):
        AddUnit(out_bits=out_bits).encode(params)


def test_the_timing_model_charges_the_tops_table_fill():
    """host.timing charges a refill of the add unit's branch-b table ADD_TABLE_CYCLES cycles: the
    accelerator's epilogue has a table of that many entries, filled at one per cycle; a RUN
    with the same branch-b parameters as the last RUN with an add costs nothing, a reset clears it."""
    core = Core(config=AcceleratorConfig(**QUICK))
    assert 1 << core.epilogue.add.b_table_bits == ADD_TABLE_CYCLES
    table = AddTable()
    rq = RequantParams(mult=3, shift=2)
    run = lambda zp_b, add=True: P.RunDescriptor(   # noqa: E731
        m_count=1, k_steps=1, n_tiles=1, add=add, add_zero_points=(0, zp_b), add_left_shift=20,
        add_branches=(rq, rq), add_output=rq).encode()
    assert [table.run(run(5)), table.run(run(5)), table.run(run(6)), table.run(run(6, add=False)),
            table.run(run(6)), table.run(run(5), ok=False), table.run(run(5))] == \
        [ADD_TABLE_CYCLES, 0, ADD_TABLE_CYCLES, 0, 0, 0, ADD_TABLE_CYCLES]
