"""Campaigns over several simulator processes or machines, on Dask ``distributed``.

A campaign (``intdeploy soak``) is a stream of independent cases, each a function call with a
seed. :func:`run_cases` runs them in this process (one worker, no cluster), or on a Dask cluster:
a ``LocalCluster`` of ``workers`` single-threaded processes by default, or the scheduler at
``cluster`` (``tcp://host:8786``; on a Slurm, LSF or PBS farm start one with ``dask-jobqueue``,
docs/reliability.md). Dask does the scheduling and the recovery: a case whose worker dies is run
again on another worker (up to Dask's ``distributed.scheduler.allowed-failures``, 3), so nothing is
lost; each case reports once, and :func:`run_cases` hands the outcomes back sorted by case, so the
report is the same whatever the sharding.

Simulator builds are shared through the build directory's file locks when the workers share a
file system (one build per design); workers on other machines build in their own checkout.
"""

from contextlib import contextmanager
from dataclasses import dataclass
import functools
import logging
import os
from pathlib import Path
import socket
import sys
import time

__all__ = ["Outcome", "run_cases", "open_client", "budget", "simulate", "split", "output_to", "ShardError", "CONNECT_SECONDS"]

#: How long a cluster address may take to answer.
CONNECT_SECONDS = 10


@dataclass
class Outcome:
    """One case: ``value`` (the function's result), or ``failure`` (its AssertionError's first line:
    a check failed), or ``error`` (anything else, naming the worker: it could not run the case)."""
    case: int
    value: object = None
    failure: str = None
    error: str = None


def _where():
    try:
        from distributed import get_worker  # only on a Dask worker
        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _call(fn, case):
    """``fn(case)`` as an :class:`Outcome`; never raises (a worker's death aside)."""
    try:
        return Outcome(case, value=fn(case))
    except AssertionError as e:
        text = str(e).strip()
        return Outcome(case, failure=text.splitlines()[0] if text else "assertion failed")
    except Exception as e:   # noqa: BLE001 - whatever stops a case is reported with the worker
        first = (str(e).strip().splitlines() or [""])[0]
        return Outcome(case, error=f"worker {_where()}: {type(e).__name__}: {first}")


def open_client(workers, cluster=None):
    """A Dask client: the scheduler at ``cluster``, else a ``LocalCluster`` of ``workers``
    single-threaded worker processes. ValueError naming ``--cluster`` when the address does not
    answer within :data:`CONNECT_SECONDS`."""
    from distributed import Client, LocalCluster  # only for a sharded campaign
    if cluster:
        try:
            return Client(cluster, timeout=f"{CONNECT_SECONDS}s")
        except (OSError, TimeoutError) as e:
            raise ValueError(f"--cluster: {cluster} did not answer within {CONNECT_SECONDS} s "
                             f"({type(e).__name__})") from None
    local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(local)


def run_cases(fn, cases, *, workers=1, cluster=None, keep_going=None, on_outcome=None):
    """Run ``fn(case)`` for the cases of the iterator ``cases``; returns the :class:`Outcome`\\ s sorted
    by case.

    ``keep_going()`` (default: always) is asked before each new case is started (a time budget);
    ``on_outcome(outcome)`` is called as each case ends (progress). With ``workers == 1`` and no
    ``cluster`` everything runs here; otherwise on Dask (:func:`open_client`), ``workers`` cases
    (or the cluster's worker count) in flight. A case whose worker died more often than Dask allows
    ends as an ``error``; nothing is counted twice.
    """
    keep_going = keep_going or (lambda: True)
    on_outcome = on_outcome or (lambda o: None)
    cases = iter(cases)
    outcomes = []
    if workers <= 1 and not cluster:
        for case in cases:
            if not keep_going():
                break
            outcomes.append(_call(fn, case))
            on_outcome(outcomes[-1])
        return sorted(outcomes, key=lambda o: o.case)

    from distributed import as_completed  # only for a sharded campaign
    client = open_client(workers, cluster)
    try:
        slots = max(workers, len(client.scheduler_info().get("workers", {})) if cluster else workers)
        pending = as_completed()
        submitted = {}
        for _ in range(slots):
            case = next(cases, None)
            if case is None or not keep_going():
                break
            fut = client.submit(_call, fn, case, pure=False)
            submitted[fut.key] = case
            pending.add(fut)
        for fut in pending:
            case = submitted.pop(fut.key)
            try:
                outcome = fut.result()
            except Exception as e:   # noqa: BLE001 - KilledWorker and friends: the case could not run
                outcome = Outcome(case, error=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
            outcomes.append(outcome)
            on_outcome(outcome)
            nxt = next(cases, None) if keep_going() else None
            if nxt is not None:
                new = client.submit(_call, fn, nxt, pure=False)
                submitted[new.key] = nxt
                pending.add(new)
    finally:
        cluster_obj = getattr(client, "cluster", None)
        # tearing down our own LocalCluster: its workers' heartbeats may still race the scheduler's
        # exit and log a CommClosedError traceback, which is noise, not a result
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            client.close()
            if cluster_obj is not None and not cluster:
                cluster_obj.close()
        finally:
            quiet.setLevel(level)
    return sorted(outcomes, key=lambda o: o.case)


def budget(seconds):
    """A ``keep_going`` for :func:`run_cases`: True until ``seconds`` have passed."""
    start = time.monotonic()
    return lambda: time.monotonic() - start < seconds


class ShardError(RuntimeError):
    """A shard of :func:`simulate` could not be simulated; ``groups`` is its ``(start, end)`` range
    of groups."""

    def __init__(self, groups, message):
        super().__init__(message)
        self.groups = groups


def split(count, shards):
    """``shards`` contiguous, balanced ranges over ``count`` items (at most ``count`` of them), as
    ``[(start, end), ...]``."""
    shards = max(1, min(shards, count))
    bounds = [round(k * count / shards) for k in range(shards + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


@contextmanager
def output_to(log, fds=(1, 2), mode="ab"):
    """File descriptors ``fds`` (default 1 and 2: the simulator's and cocotb's output) sent to
    ``log``, opened with ``mode`` (default: appended)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    with open(log, mode) as f:
        for fd in fds:
            os.dup2(f.fileno(), fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip(fds, saved):
            os.dup2(old, fd)
            os.close(old)


def _simulate_one(shard, *, sim, hardware, programs, work):
    from intdeploy.sim.rtl_engine import RtlEngine  # a simulator process's own import
    where = Path(work) / f"shard{shard}"
    where.mkdir(parents=True, exist_ok=True)
    with output_to(where / "sim.log"):
        return RtlEngine(sim, hardware, work_dir=where).execute(programs[shard])


def simulate(sim, hardware, groups, work, *, workers=1, cluster=None):
    """Simulate independent programs (``groups``: lists of packets, e.g. one per chunk of images or
    per case) on the RTL top in shards of consecutive groups, ``workers`` of them (every group its
    own shard on a ``cluster``), each shard from reset in its own directory ``work/shard<k>`` (log
    ``sim.log``), on a Dask ``LocalCluster`` or the scheduler at ``cluster`` (:func:`run_cases`);
    returns the responses of all groups, in order. A group must not depend on the ones before it.
    :class:`ShardError` naming the shard, its log and the cause when one cannot be simulated."""
    ranges = split(len(groups), workers if not cluster else len(groups))
    programs = [[p for g in groups[a:b] for p in g] for a, b in ranges]
    fn = functools.partial(_simulate_one, sim=sim, hardware=hardware, programs=programs, work=str(work))
    outcomes = run_cases(fn, iter(range(len(programs))), workers=workers, cluster=cluster)
    for o in outcomes:
        if o.value is None:
            raise ShardError(ranges[o.case], f"shard {o.case} failed: {o.failure or o.error} "
                                             f"(log: {Path(work) / f'shard{o.case}' / 'sim.log'})")
    return [r for o in outcomes for r in o.value]
