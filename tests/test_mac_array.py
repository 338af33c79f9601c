"""MacArray against golden.mac_array.linear on both simulators, its elaboration-parameter and
host-encoding refusals, and a proof that the bench's check can fail."""

import numpy as np
import pytest

from golden.mac_array import linear
from hw.mac_array import MacArray, step_range
from sim.runner import SIMULATORS, run_bench


def _run(sim, tmp_path, *, rows, cols, weight_bits=8, acc_bits=32, **cfg):
    params = dict(rows=rows, cols=cols, weight_bits=weight_bits, acc_bits=acc_bits)
    run_bench("mac_array", lambda: MacArray(**params), repr(sorted(params.items())), sim,
              dict(params, **cfg), test_dir=tmp_path)


# Quick tier: four builds per simulator, many vectors each. The 8x8 build also measures II = 1
# and runs the accumulations up to the int32 refusal limit (C = 8 keeps them short).
QUICK = [
    dict(rows=1, cols=1, seed=11, gemms=60, max_k=12),
    dict(rows=3, cols=5, weight_bits=4, seed=12, gemms=40),
    dict(rows=4, cols=4, weight_bits=2, seed=13, gemms=40),
    dict(rows=8, cols=8, seed=14, gemms=30, ii_steps=300, limit=True),
]


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("cfg", QUICK, ids=lambda c: f"{c['rows']}x{c['cols']}w{c.get('weight_bits', 8)}")
def test_gemm(sim, cfg, tmp_path):
    _run(sim, tmp_path, **cfg)
