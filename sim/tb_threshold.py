# amaranth: UnusedElaboratable=no
"""Bench of intdeploy.hw.threshold.ThresholdUnit against intdeploy.golden.threshold.threshold.

Configuration (``INTDEPLOY_TB``): ``channels``, ``max_bits``, ``lanes``, ``banked`` (the hardware; banked:
lane ``j``'s channels are those with ``c % lanes == j``), ``seed``,
``bursts`` (load/data rounds), ``n`` (data beats per burst), ``in_stall``, ``out_stall``,
``load_stall`` (pause probabilities), ``stall_burst`` (longest pause), and ``bug``: ``"gt"``
makes golden count thresholds strictly below the input (``>`` instead of ``>=``) to show the
scoreboard catches a wrong golden.

Each burst (re)loads thresholds into some channels (all of them in the first burst), each with
its own run-time ``bits`` in 1..max_bits and a random kind of threshold set, then streams data
beats whose lanes pick random channels and values aimed at the channel's thresholds (equal,
one below, one above), at int32 extremes, and at random. The first ``full_rate`` (default 48)
data beats of the first burst run with no stalls on either side, and a monitor checks the
documented latency (``unit.latency`` cycles) and II = 1. Then the output is held off for
``2 * (latency + fifo_depth)`` cycles while the input streams: exactly ``fifo_depth`` beats
must be accepted (the unit's credit bound), and each of them must come out once afterwards.

Ordering between loads and data is attacked on purpose. The last beats of a burst all read one
"race" channel loaded with ``bits = 1`` (its single threshold sits in the last search stage), and
the next burst reloads that channel first, as soon as the data has been accepted, while those
beats are still in the pipeline: a load that did not wait for them would change their result.
Every other burst also offers its data together with its loads (no pauses on the load port), so
a data beat accepted while a load is pending would see stale thresholds.
"""

import itertools

import cocotb
from cocotb.triggers import ClockCycles, with_timeout
import numpy as np

from intdeploy.golden.threshold import bn_thresholds, threshold
from intdeploy.hw.threshold import ThresholdUnit
from intdeploy.sim.bench import Bench, Scoreboard, check_timing, handshakes, write_report

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
EXTREMES = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]
KINDS = ("bn", "bn", "bn", "raw_wide", "raw_narrow", "repeated", "all_equal", "extreme", "bn_zero")


def _bn_row(rng, bits, gamma_sign):
    """One channel's thresholds from random batch-norm parameters through golden."""
    gamma = gamma_sign * 10.0 ** rng.uniform(-2, 1)
    sigma = 10.0 ** rng.uniform(-2, 1)
    beta = rng.normal(0, 3)
    mu = rng.normal(0, 3)
    # A = gamma*eps_phi/(sigma*eps_y) spans ~1e-9..1e3: thresholds from dense small integers
    # (many equal neighbours) to values clamped at the int32 ends.
    eps_phi = 10.0 ** rng.uniform(-7, 0)
    eps_y = 10.0 ** rng.uniform(-3, 1)
    th, neg = bn_thresholds(np.array([gamma]), np.array([beta]), np.array([mu]),
                            np.array([sigma]), eps_phi, eps_y, bits)
    return th[0], bool(neg[0])


def make_channel(rng, bits, kind):
    """``(row int64 (2**bits - 1,), negate)`` of a threshold set of the given ``kind``."""
    t = (1 << bits) - 1
    if kind == "bn":
        return _bn_row(rng, bits, float(rng.choice([-1.0, 1.0])))
    if kind == "bn_zero":
        return _bn_row(rng, bits, 0.0)
    if kind == "raw_wide":
        row = rng.integers(INT32_MIN, INT32_MAX, t, endpoint=True)
    elif kind == "raw_narrow":
        c = int(rng.integers(-1000, 1000))
        row = rng.integers(c - 2 * t, c + 2 * t, t, endpoint=True)
    elif kind == "repeated":
        row = rng.choice(rng.integers(-5000, 5000, max(1, t // 4)), t)
    elif kind == "all_equal":
        row = np.full(t, int(rng.choice(EXTREMES + [int(rng.integers(-100, 100))])))
    elif kind == "extreme":
        row = rng.choice(np.array(EXTREMES + [int(rng.integers(INT32_MIN, INT32_MAX))]), t)
    else:
        raise ValueError(kind)
    return np.sort(row.astype(np.int64)), bool(rng.integers(2))


def pick_x(rng, row, negate):
    """A data value aimed at the interesting points of one channel's thresholds."""
    r = rng.random()
    if r < 0.45:
        t = int(rng.choice(row)) + int(rng.choice([-1, 0, 0, 1]))
        v = -t if negate else t
    elif r < 0.6:
        v = int(rng.choice(EXTREMES))
    elif r < 0.8:
        v = int(rng.integers(int(row.min()) - 3, int(row.max()) + 3, endpoint=True))
        v = -v if negate else v
    else:
        v = int(rng.integers(INT32_MIN, INT32_MAX, endpoint=True))
    return min(max(v, INT32_MIN), INT32_MAX)


@cocotb.test(timeout_time=50_000, timeout_unit="us")
async def run(dut):
    tb = Bench(dut)
    cfg = tb.cfg
    rng = tb.rng
    dut._log.info("seed %d", tb.seed)
    unit = ThresholdUnit(channels=cfg["channels"], max_bits=cfg["max_bits"], lanes=cfg["lanes"],
                         banked=bool(cfg.get("banked", False)))
    C, Q, L = unit.channels, unit.max_bits, unit.lanes
    load = tb.source("load", unit.load_layout)
    src = tb.source("i", unit.data_layout)
    snk = tb.sink("o", unit.out_layout)
    burst = cfg.get("stall_burst", 3)
    load.stall(tb.stalls(cfg.get("load_stall", 0.2), burst))
    await tb.reset()
    sb = Scoreboard("threshold", dut._log)
    bursts, n = cfg["bursts"], cfg["n"]

    full_rate = min(int(cfg.get("full_rate", 48)), n)
    # A handshake bug must fail fast rather than run into the test's overall timeout.
    budget = lambda beats: (beats * (4 + 2 * burst) + 1000) * 10      # ns; 10 ns clock

    async def receive(count):
        for _ in range(count):
            v = await with_timeout(snk.recv(), 20_000 * 10, "ns")
            sb.check(np.array([v.count[lane] for lane in range(L)], dtype=np.int64), tb.cycle)

    async def fill_window(cycles):
        """Input acceptances during the next ``cycles`` cycles."""
        accepted, presented = [], []
        monitor = cocotb.start_soon(handshakes(dut, accepted, presented))
        await ClockCycles(dut.clk, cycles)
        monitor.cancel()
        return len(accepted)

    def stalls_on():
        src.stall(tb.stalls(cfg.get("in_stall", 0.2), burst))
        snk.stall(tb.stalls(cfg.get("out_stall", 0.2), burst))

    receiver = filler = None
    if not full_rate:
        stalls_on()
        receiver = cocotb.start_soon(receive(bursts * n))
    rows, negs = [None] * C, [False] * C
    race = None
    for b in range(bursts):
        if b == 0:
            reload = list(range(C))
        else:
            reload = rng.choice(C, int(rng.integers(1, C + 1)), replace=False).tolist()
        if race is not None:                  # reload the race channel first
            reload = [race] + sorted(c for c in reload if c != race)
        next_race = int(rng.choice(reload)) if b + 1 < bursts else None
        first, beats = [], []
        for k, c in enumerate(reload):
            # The first channels of the first burst cover Q = 1 and Q = max_bits for sure.
            bits = [1, Q][k] if b == 0 and k < 2 else int(rng.integers(1, Q + 1))
            if c == next_race:
                bits = 1
            kind = KINDS[k % len(KINDS)] if b == 0 else str(rng.choice(KINDS))
            rows[c], negs[c] = make_channel(rng, bits, kind)
            chan = unit.load_beats(rows[c][None, :], np.array([negs[c]]), channels=[c])
            if c == race:
                first = chan
            else:
                beats += chan
        # Any order of loads is legal; the race channel's threshold 0 goes first.
        beats = first + [beats[j] for j in rng.permutation(len(beats))]
        # The previous burst's data is accepted but may still be in flight: the load must wait.
        await with_timeout(src.wait(), budget(n), "ns")
        concurrent = b % 2 == 1
        if concurrent:
            load.stall(tb.stalls(0))     # back-to-back loads: data must wait for all of them
        for beat in beats:
            await load.send(beat)
        if not concurrent:
            await with_timeout(load.wait(), budget(len(beats)), "ns")

        if unit.banked:
            # lane j reads only the channels c with c % L == j (channels >= lanes, so each lane
            # has at least one)
            assert C >= L, "banked bench: channels must be >= lanes"
            chans = np.stack([j + L * rng.integers(0, -(-(C - j) // L), n) for j in range(L)], axis=1)
            if cfg.get("stray"):
                # planted producer bug: lane 0 is given lane 1's channels
                chans[:, 0] = chans[:, 1]
        else:
            chans = rng.integers(0, C, (n, L))
        if next_race is not None:
            if unit.banked:
                chans[-min(n, 2 * (Q + 2)):, next_race % L] = next_race
            else:
                chans[-min(n, 2 * (Q + 2)):] = next_race
        xs = np.array([[pick_x(rng, rows[c], negs[c]) for c in line] for line in chans], dtype=np.int64)
        expected = np.empty_like(xs)
        for c in np.unique(chans):
            sel = chans == c
            th = rows[c] + 1 if cfg.get("bug") == "gt" else rows[c]
            expected[sel] = threshold(xs[sel][:, None], th[None, :], np.array([negs[c]]))[:, 0]
        for j in range(n):
            ctx = {"burst": b, "x": xs[j], "channel": chans[j],
                   "negate": [negs[c] for c in chans[j]],
                   "bits": [int(rows[c].size).bit_length() for c in chans[j]]}
            for lane, c in enumerate(chans[j]):
                ctx[f"thresholds (lane {lane})"] = rows[c]
            sb.expect(expected[j], ctx)
            await src.send({"x": [int(v) for v in xs[j]], "channel": [int(c) for c in chans[j]]})
            if b == 0 and j + 1 == full_rate:
                # No-stall phase: the beats so far were queued at once and go back to back.
                accepted, presented = [], []
                monitor = cocotb.start_soon(handshakes(dut, accepted, presented))
                await receive(full_rate)
                monitor.cancel()
                check_timing(accepted, presented, unit.latency)
                if n - full_rate > unit.fifo_depth:
                    # Fill phase: the output held off long enough to fill the empty unit while
                    # the input streams; exactly fifo_depth beats must be taken (the credit
                    # bound), and the scoreboard then sees each of them once.
                    hold = 2 * (unit.latency + unit.fifo_depth)
                    filler = cocotb.start_soon(fill_window(hold))
                    snk.stall(itertools.chain([True] * (hold + 4),
                                              tb.stalls(cfg.get("out_stall", 0.2), burst)))
                    src.stall(itertools.chain([False] * (hold + 4),
                                              tb.stalls(cfg.get("in_stall", 0.2), burst)))
                else:
                    stalls_on()
                receiver = cocotb.start_soon(receive(bursts * n - full_rate))
        if filler is not None:
            accepted = await filler
            filler = None
            if accepted != unit.fifo_depth:
                text = (f"FILL: {accepted} beats accepted while the output was held off, "
                        f"expected fifo_depth = {unit.fifo_depth}")
                write_report(text)
                raise AssertionError(text)
        if concurrent:
            await with_timeout(load.wait(), budget(len(beats)), "ns")
            load.stall(tb.stalls(cfg.get("load_stall", 0.2), burst))
        race = next_race
    await receiver
    sb.finish()
    dut._log.info("threshold: %d beats checked in %d cycles", sb.checked, tb.cycle)
