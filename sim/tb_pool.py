# amaranth: UnusedElaboratable=no
"""Bench of intdeploy.hw.pool.PoolUnit against intdeploy.golden.pool.

Configuration (``INTDEPLOY_TB``): ``lanes``, ``in_bits``, ``max_taps``, ``max_shift`` (the
hardware), ``seed``, ``windows`` (random windows), ``images`` (2-D pooling layers), ``in_stall``,
``out_stall`` (pause probabilities), ``stall_burst`` (longest pause), and ``bug``: ``"floor"`` or
``"half_even"`` makes the expected TFLite average use that rounding instead of half away from
zero, to show that the scoreboard catches a wrong golden.

First ``full_rate`` (default 48) one-tap windows of random modes run with no stalls on either
side, and a monitor checks the documented latency (5 cycles) and one window per cycle. Then
two kinds of work share one stream of windows, under random stalls:

* random windows, each checked with ``intdeploy.golden.pool.pool_windows``: every mode; sizes 1..max_taps
  including 4, 9, 16 (2x2, 3x3, 4x4) and the 2, 3, 6 of windows cut by a padded border; taps
  int8, uint8, the full ``in_bits`` range, all equal, extremes (-128, 127, 255, the range ends);
  TFLite sums built to end in an exact .5 of both signs; NEMO with several ``d`` and divisors;
  clamps;
* whole pooling layers on small NHWC images (channels = lanes), checked with
  ``intdeploy.golden.pool.max_pool2d`` / ``avg_pool2d_tflite`` (with padding: border windows stream only
  their valid taps) / ``avg_pool2d_nemo``.
"""

import cocotb
from cocotb.triggers import with_timeout
import numpy as np

from intdeploy.golden.pool import avg_pool2d_nemo, avg_pool2d_tflite, max_pool2d, pool_windows
from intdeploy.hw.pool import PoolUnit
from intdeploy.sim.bench import Bench, Scoreboard, check_timing, handshakes

SIZES = (1, 2, 3, 4, 6, 9, 16)
VALUE_KINDS = ("int8", "uint8", "full", "equal", "extreme", "narrow")


def _values(rng, kind, shape, in_bits):
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    ranges = {"int8": (-128, 127), "uint8": (0, 255), "full": (lo, hi), "narrow": (-3, 3)}
    if kind in ranges:
        a, b = ranges[kind]
        return rng.integers(max(a, lo), min(b, hi), shape, endpoint=True)
    pool = np.array([v for v in (-128, 127, 255, lo, hi, 0, -1) if lo <= v <= hi])
    if kind == "equal":
        return np.full(shape, int(rng.choice(pool)))
    return rng.choice(pool, shape)


def _tie(rng, n, lanes, in_bits):
    """Taps whose sum is ``k*n + n/2`` (``n`` even) per lane: an exact .5 average, sign random."""
    w = rng.integers(-100, 101, (n, lanes)) + int(rng.choice([-20, 20]))
    for lane in range(lanes):
        need = (n // 2 - int(w[:, lane].sum())) % n      # 0..n-1 taps get +1
        w[rng.choice(n, need, replace=False), lane] += 1
    return w


def _division_edge(rng, n, lanes, in_bits):
    """Taps near the range ends whose TFLite dividend ``A = |S| + n//2`` leaves remainder
    ``n - 1``: the case where an under-sized reciprocal first rounds the quotient up."""
    m = 1 << (in_bits - 1)
    target = (n - 1 - n // 2) % n                     # |S| mod n
    w = np.empty((n, lanes), dtype=np.int64)
    for lane in range(lanes):
        if rng.random() < 0.5:
            col = (m - 1) - rng.integers(1, 9, n)
            need = (int(col.sum()) - target) % n       # taps to lower by one
            col[rng.choice(n, need, replace=False)] -= 1
        else:
            col = -m + rng.integers(1, 9, n)
            need = (-target - int(col.sum())) % n      # taps to raise by one (S = -|S|)
            col[rng.choice(n, need, replace=False)] += 1
        w[:, lane] = col
    return w


def reciprocal_edges(unit, limit=16):
    """Windows ``(n, lanes)`` whose TFLite quotient a one-bit-shorter reciprocal gets wrong.

    The unit divides by ``n`` as ``(A * ceil(2**s / n)) >> s`` (``intdeploy.hw.pool.reciprocal_table``);
    these are the ``(n, A)`` where ``s - 1`` would fail, so they prove the RTL uses the full
    ``s`` and a wide enough multiplier. Each lane's sum is ``+-(A - n//2)``.
    """
    m = 1 << (unit.in_bits - 1)
    s = unit.recip_shift
    out = []
    for n in range(1, unit.max_taps + 1):
        if s == 0:
            break
        a = np.arange(n * m + n // 2 + 1, dtype=np.int64)
        bad = a[(a * -(-(1 << (s - 1)) // n)) >> (s - 1) != a // n]
        for a_bad in bad[:2]:
            mag = int(a_bad) - n // 2
            sign = -1 if mag > n * (m - 1) else 1
            q, r = divmod(mag, n)
            col = sign * np.array([q + 1] * r + [q] * (n - r), dtype=np.int64)
            out.append(np.repeat(col[:, None], unit.lanes, axis=1))
        if len(out) >= limit:
            break
    return out


def random_window(rng, unit, n=None):
    """``(window (n, lanes), mode, golden keyword arguments)`` of one random window."""
    if n is None:
        n = int(rng.choice([s for s in SIZES if s <= unit.max_taps] + [unit.max_taps] * 2
                           + [int(rng.integers(1, unit.max_taps + 1))] * 3))
    mode = str(rng.choice(["max", "avg_nemo", "avg_tflite", "avg_tflite"]))
    kw = {}
    if mode == "avg_tflite" and n > 1 and rng.random() < 0.15:
        n = int(rng.integers(max(1, unit.max_taps // 2), unit.max_taps + 1))
        half = 1 << (unit.in_bits - 1)
        return _division_edge(rng, n, unit.lanes, unit.in_bits), mode, {"lo": -half, "hi": half - 1}
    if mode == "avg_tflite" and n % 2 == 0 and rng.random() < 0.4 and unit.in_bits >= 9:
        window = _tie(rng, n, unit.lanes, unit.in_bits)
    else:
        window = _values(rng, str(rng.choice(VALUE_KINDS)), (n, unit.lanes), unit.in_bits)
    if mode == "avg_nemo":
        # The divisor is K1*K2 (= n, golden's default) or, in golden's general form, any count
        # up to n; d at or above the smallest legal value, up to the unit's max_shift.
        if rng.random() < 0.3:
            kw["count"] = int(rng.integers(1, n + 1))
        dmin = (kw.get("count", n) - 1).bit_length()
        if dmin > unit.max_shift:
            kw.pop("count", None)
            return window, "max", kw
        kw["d"] = int(rng.integers(dmin, unit.max_shift + 1))
    r = rng.random()
    # Clamps inside the unit's result range (params() refuses one wholly outside it).
    edge = 1 << (unit.sum_bits - 1)
    if mode == "avg_tflite":
        if r < 0.3 and edge > 255:
            kw["lo"], kw["hi"] = 0, 255                 # uint8 activation range
        elif r < 0.5:
            a, b = sorted(int(v) for v in rng.integers(max(-130, -edge), min(130, edge), 2))
            kw["lo"], kw["hi"] = a, b
    elif r < 0.2:
        a, b = sorted(int(v) for v in rng.integers(max(-300, -edge), min(300, edge), 2))
        kw["lo"], kw["hi"] = a, b
    return window, mode, kw


def _layer_windows(x, kernel, stride, padding):
    """The valid taps of each output of a padded 2-D pooling, ``(oh, ow) -> (n, C)``, host side."""
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = kernel, stride, padding
    _, h, w, _ = x.shape
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    out = {}
    for i in range(oh):
        for j in range(ow):
            rows = [r for r in range(i * sh - pt, i * sh - pt + kh) if 0 <= r < h]
            cols = [c for c in range(j * sw - pl, j * sw - pl + kw) if 0 <= c < w]
            out[i, j] = np.array([x[0, r, c] for r in rows for c in cols])
    return oh, ow, out


LAYERS = (
    # kernel, stride, padding ((top, bottom), (left, right)), mode
    ((2, 2), (2, 2), ((0, 0), (0, 0)), "max"),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), "max"),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), "avg_tflite"),
    ((3, 3), (1, 1), ((1, 1), (1, 1)), "avg_tflite"),
    ((2, 3), (1, 2), ((0, 1), (1, 1)), "avg_tflite"),
    ((2, 2), (2, 2), ((0, 0), (0, 0)), "avg_nemo"),
    ((3, 3), (3, 3), ((0, 0), (0, 0)), "avg_nemo"),
    ((4, 4), (4, 4), ((0, 0), (0, 0)), "avg_tflite"),
)


def _wrong_tflite(window, rounding, lo, hi):
    """Deliberately wrong TFLite average (bench self-test): floor or half-to-even rounding."""
    s, n = window.sum(axis=0), window.shape[0]
    q = s // n
    if rounding == "half_even":
        r = s - q * n
        q = q + ((2 * r > n) | ((2 * r == n) & (q % 2 == 1)))
    return np.clip(q, -128 if lo is None else lo, 127 if hi is None else hi)


@cocotb.test(timeout_time=50_000, timeout_unit="us")
async def run(dut):
    tb = Bench(dut)
    cfg = tb.cfg
    rng = tb.rng
    dut._log.info("seed %d", tb.seed)
    unit = PoolUnit(lanes=cfg["lanes"], in_bits=cfg["in_bits"], max_taps=cfg["max_taps"],
                    max_shift=cfg["max_shift"])
    L = unit.lanes
    src = tb.source("i", unit.in_layout)
    snk = tb.sink("o", unit.out_layout)
    burst = cfg.get("stall_burst", 3)
    await tb.reset()
    sb = Scoreboard("pool", dut._log)
    work = []                   # (window, mode, golden kwargs, expected, context)
    full_rate = int(cfg.get("full_rate", 48))

    for k in range(full_rate + cfg["windows"]):
        window, mode, kw = random_window(rng, unit, 1 if k < full_rate else None)
        if mode == "avg_tflite" and cfg.get("bug"):
            expected = _wrong_tflite(window, cfg["bug"], kw.get("lo"), kw.get("hi"))
        else:
            expected = pool_windows(window, mode, **kw)
        work.append((window, mode, kw, expected, {}))

    half = 1 << (unit.in_bits - 1)
    for window in reciprocal_edges(unit):
        kw = {"lo": -half, "hi": half - 1}
        work.append((window, "avg_tflite", kw, pool_windows(window, "avg_tflite", **kw),
                     {"case": "reciprocal edge"}))

    for k in range(cfg.get("images", 0)):
        kernel, stride, padding, mode = LAYERS[k % len(LAYERS)]
        if kernel[0] * kernel[1] > unit.max_taps:
            continue
        h, w = int(rng.integers(kernel[0], 9)), int(rng.integers(kernel[1], 9))
        kind = "uint8" if rng.random() < 0.3 else "int8"
        x = _values(rng, kind, (1, h, w, L), unit.in_bits)
        kw = {}
        if mode == "max":
            golden = max_pool2d(x, kernel, stride, padding)
        elif mode == "avg_tflite":
            if kind == "uint8":
                kw = {"lo": 0, "hi": 255}
            golden = avg_pool2d_tflite(x, kernel, stride, padding, **kw)
        else:
            d = int(rng.integers((kernel[0] * kernel[1] - 1).bit_length(), unit.max_shift + 1))
            golden = avg_pool2d_nemo(x, kernel, stride, d=d)
            kw = {"d": d, "count": kernel[0] * kernel[1]}
        oh, ow, windows = _layer_windows(x, kernel, stride, padding)
        assert golden.shape == (1, oh, ow, L), (golden.shape, oh, ow)
        layer = f"kernel {kernel} stride {stride} padding {padding}"
        for (i, j), win in windows.items():
            work.append((win, mode, kw, golden[0, i, j], {"layer": layer, "output": (i, j)}))

    async def receive(count):
        for _ in range(count):
            v = await with_timeout(snk.recv(), 20_000 * 10, "ns")
            sb.check(np.array([v.y[lane] for lane in range(L)], dtype=np.int64), tb.cycle)

    async def send(items):
        for window, mode, kw, expected, ctx in items:
            enc = dict(kw)
            if mode == "avg_nemo":
                enc.setdefault("count", window.shape[0])      # golden's default divisor is T
            sb.expect(expected, {"mode": mode, **kw, "taps": window.shape[0], **ctx, "window": window})
            for beat in unit.window_beats(window, unit.params(mode, **enc)):
                await src.send(beat)

    if full_rate:
        # Queued at once, so the source drives them back to back.
        await send(work[:full_rate])
        accepted, presented = [], []
        monitor = cocotb.start_soon(handshakes(dut, accepted, presented))
        await receive(full_rate)
        monitor.cancel()
        check_timing(accepted, presented, unit.latency)
    src.stall(tb.stalls(cfg.get("in_stall", 0.2), burst))
    snk.stall(tb.stalls(cfg.get("out_stall", 0.2), burst))
    receiver = cocotb.start_soon(receive(len(work) - full_rate))
    await send(work[full_rate:])
    await receiver
    sb.finish()
    dut._log.info("pool: %d windows checked in %d cycles", sb.checked, tb.cycle)
