"""Functional coverage of the top-level regressions: named bins, sampled in the bench, merged and
reported at the end of a pytest run.

Bins (group / bin):

* ``rounding_tie``: a requantizer input exactly halfway between two outputs, per rounding mode
  (``floor``, ``half_up``, ``half_even``: the bits shifted out equal ``2**(shift-1)``;
  ``tflite``: a tie in gemmlowp's doubling high multiply (``a*b mod 2**31 == 2**30``) or in its
  rounding divide by a power of two).
* ``saturation``: the requantizer's result clamped at ``lo`` and at ``hi``.
* ``threshold_count``: a RUN through a threshold channel holding ``2**q - 1`` thresholds, for
  ``q = 1..4`` and for a disabled channel (``q = 0``); output level 0 and the top level.
* ``stall``: run lengths of consecutive cycles of the source idling inside the stream
  (``s_axis`` tvalid low), of the top refusing input (tvalid high, tready low) and of the sink
  stalling a response (``m_axis`` tvalid high, tready low): 1, 2-15, 16-255, 256-999, >= 1000.
* ``clock_ratio``: bus:core clock periods 1:8, 1:4, 1:1, 10:11, 11:10, 4:1, 8:1.
* ``packet``: each opcode answered OK.
* ``error``: each error status.
* ``reset``: a reset of the bus domain and of the core domain in the middle of a stream.
* ``overlap``: a buffer write (answered OK) sent behind a RUN with only buffer writes between
  them, so that the top executes it while the RUN computes (``apart``) or holds it until the
  RUN's end because it meets the RUN's entries (``meets``; docs/protocol.md "Overlap"), as
  :attr:`intdeploy.sim.accel_model.AcceleratorModel.overlap` classifies it.

Sampling: the bench (:mod:`intdeploy.sim.tb_top`) starts a :class:`BenchMonitor` when the environment
variable ``INTDEPLOY_COVERAGE_DIR`` names a directory (the pytest plugin sets it); the monitor
watches the AXI4-Stream handshakes every bus cycle, and at the end of a passing run replays the
bench's command packets through an instrumented :class:`intdeploy.sim.accel_model.AcceleratorModel` (the
model the bench compared the RTL with word for word, so the RTL computed the same values) and
writes one JSON file of bin hits. :func:`report` merges the files into a table; a bin without
hits is either explained in :data:`EXPLAINED` or flagged ``UNEXPLAINED``.
"""

from collections import Counter
from dataclasses import replace
from fractions import Fraction
import json
import os
from pathlib import Path
import uuid

import numpy as np

from intdeploy import wire
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, requantize, ties
from intdeploy.host import protocol as P
from intdeploy.sim.accel_model import AcceleratorModel, entry_params

__all__ = ["BINS", "EXPLAINED", "CoverageModel", "BenchMonitor", "directory", "merge", "report",
           "stall_bin", "ratio_bin"]

_STALLS = ["1", "2-15", "16-255", "256-999", ">=1000"]
#: Every bin, by group.
BINS = {
    "rounding_tie": list(P.ROUNDING_CODES),
    "saturation": ["lo", "hi"],
    "threshold_count": ["q=0 (disabled)", "q=1", "q=2", "q=3", "q=4", "level 0", "top level"],
    "stall": [f"{what} {b}" for what in ("source idle", "top not ready", "sink stall") for b in _STALLS],
    "clock_ratio": ["1:8", "1:4", "1:1", "10:11", "11:10", "4:1", "8:1"],
    "packet": list(P.OPCODES),
    "error": [k for k in P.STATUS if k != "OK"],
    "reset": ["bus", "core"],
    "overlap": ["apart", "meets"],
}
#: Why a bin may stay empty in a run (``make test`` runs a subset; ``make regress`` all).
EXPLAINED = {
    "threshold_count/q=4": "only the 3x5 regress configuration has max_q = 4 (make regress)",
    "stall/top not ready >=1000": "the top refuses input that long only behind a sink stall of >= 1000 "
                                  "cycles with a full response path (regress long-stall tests)",
    "stall/source idle >=1000": "input pauses that long only in the regress long-stall tests",
}


def directory():
    """The directory bench runs write their bin hits to (None: coverage off)."""
    d = os.environ.get("INTDEPLOY_COVERAGE_DIR")
    return Path(d) if d else None


def stall_bin(n):
    return _STALLS[0] if n == 1 else _STALLS[1] if n < 16 else _STALLS[2] if n < 256 else \
        _STALLS[3] if n < 1000 else _STALLS[4]


def ratio_bin(bus_period, core_period):
    r = Fraction(bus_period).limit_denominator(1000) / Fraction(core_period).limit_denominator(1000)
    for name in BINS["clock_ratio"]:
        a, b = name.split(":")
        if r == Fraction(int(a), int(b)):
            return name
    return None


class CoverageModel(AcceleratorModel):
    """The executable model, counting arithmetic and packet bins in :attr:`hits` as it runs."""

    def __init__(self, info):
        self.hits = Counter()
        super().__init__(info)

    def packet(self, words):
        resp = super().packet(words)
        header = wire.RESPONSE_HEADER.decode(resp[:2])
        opcode, status = header["opcode"], header["status"]
        if self.overlap is not None:
            self.hits[f"overlap/{self.overlap}"] += 1
        if status == 0 and opcode in P.OPCODE_NAMES:
            self.hits[f"packet/{P.OPCODE_NAMES[opcode]}"] += 1
        elif status:
            self.hits[f"error/{P.STATUS_NAMES.get(status, status)}"] += 1
        return resp

    def _requant(self, acc, entries):
        acc = np.asarray(acc, dtype=np.int64)
        for idx, params in entry_params(entries):
            a = acc[:, idx]
            n = int(np.count_nonzero(ties(a, params)))
            if n:
                self.hits[f"rounding_tie/{params.rounding}"] += n
            # a clamp is visible as a result equal to lo (hi) where the unclamped value is beyond it
            unclamped = requantize(a, replace(params, lo=INT32_MIN, hi=INT32_MAX))
            self.hits["saturation/lo"] += int(np.count_nonzero(unclamped < params.lo))
            self.hits["saturation/hi"] += int(np.count_nonzero(unclamped > params.hi))
        return super()._requant(acc, entries)

    def _thresholds(self, acc, channels):
        y = super()._thresholds(acc, channels)
        for j, ch in enumerate(np.asarray(channels).tolist()):
            q = int(self.th_q[ch])
            self.hits[f"threshold_count/q={q}" if q else "threshold_count/q=0 (disabled)"] += 1
            if q:
                col = y[:, j]
                self.hits["threshold_count/level 0"] += int(np.count_nonzero(col == 0))
                self.hits["threshold_count/top level"] += int(np.count_nonzero(col == (1 << q) - 1))
        return y


def _info(params):
    return P.Info.of(params)


class BenchMonitor:
    """Samples the stall, ratio and reset bins of one run of :mod:`intdeploy.sim.tb_top` (cocotb side)."""

    def __init__(self, dut, cfg):
        import cocotb  # imported inside a simulator process only
        self.dut, self.cfg = dut, cfg
        self.hits = Counter()
        r = ratio_bin(cfg.get("bus_period", 10), cfg.get("core_period", 10))
        if r:
            self.hits[f"clock_ratio/{r}"] += 1
        if cfg.get("scenario") == "reset":
            self.hits[f"reset/{cfg.get('reset_domain', 'core')}"] += 1
        cocotb.start_soon(self._watch())

    @classmethod
    def start(cls, dut, cfg):
        """A monitor if coverage is on (``INTDEPLOY_COVERAGE_DIR``), else None."""
        return cls(dut, cfg) if directory() else None

    async def _watch(self):
        from cocotb.triggers import RisingEdge  # imported inside a simulator process only
        d = self.dut
        runs = {"source idle": 0, "top not ready": 0, "sink stall": 0}
        started = False
        while True:
            await RisingEdge(d.bus_clk)
            try:
                sv, sr = int(d.s_axis__tvalid.value), int(d.s_axis__tready.value)
                mv, mr = int(d.m_axis__tvalid.value), int(d.m_axis__tready.value)
            except ValueError:          # X/Z before the first reset
                continue
            started |= bool(sv)
            now = {"source idle": started and not sv, "top not ready": sv and not sr, "sink stall": mv and not mr}
            for k, on in now.items():
                if on:
                    runs[k] += 1
                elif runs[k]:
                    self.hits[f"stall/{k} {stall_bin(runs[k])}"] += 1
                    runs[k] = 0

    def finish(self, data):
        """Replay the run's packets through :class:`CoverageModel` and write the hits."""
        model = CoverageModel(_info(self.cfg["accel"]))
        if "packets" in data:
            model.transact(data["packets"])
        else:
            model.transact(data["first"])
            model.reset()
            model.transact(data["second"])
        self.hits.update(model.hits)
        out = directory()
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{uuid.uuid4().hex}.json").write_text(json.dumps(dict(self.hits)))


def merge(path=None):
    """Bin hits summed over every run in ``path`` (default :func:`directory`), and the run count."""
    path = Path(path) if path else directory()
    total, runs = Counter(), 0
    if path and path.is_dir():
        for f in sorted(path.glob("*.json")):
            total.update(json.loads(f.read_text()))
            runs += 1
    return total, runs


def report(path=None):
    """Lines of the coverage table: every bin with its hits; empty bins explained or flagged.
    Returns ``(lines, unexplained)``."""
    hits, runs = merge(path)
    lines = [f"functional coverage of {runs} top-level bench run(s)",
             f"{'group':16} {'bin':28} {'hits':>10}  note"]
    unexplained = []
    for group, bins in BINS.items():
        for b in bins:
            key = f"{group}/{b}"
            n = hits.get(key, 0)
            note = "" if n else ("explained: " + EXPLAINED[key] if key in EXPLAINED else "UNEXPLAINED empty bin")
            if not n and key not in EXPLAINED:
                unexplained.append(key)
            lines.append(f"{group:16} {b:28} {n:10d}  {note}")
    hit = sum(1 for g, bs in BINS.items() for b in bs if hits.get(f"{g}/{b}", 0))
    total = sum(len(bs) for bs in BINS.values())
    lines.append(f"{hit} of {total} bins hit, {len(unexplained)} empty bin(s) unexplained")
    return lines, unexplained
