# amaranth: UnusedElaboratable=no
"""Bench of :class:`intdeploy.hw.requantizer.Requantizer` against :func:`intdeploy.golden.requantizer.requantize`.

Configuration (``INTDEPLOY_TB``): ``seed``, ``lanes``, ``out_bits``, ``n`` (random lane items
after the corner list), ``corners`` (``"quick"``, ``"thorough"`` or false), ``full_rate`` (beats
of the no-stall phase that checks latency and II = 1), ``in_stall`` / ``out_stall`` (pause
probability per cycle afterwards), ``burst`` (longest pause), ``golden_rounding`` (optional:
golden uses this rounding for every item, to show the check fails).

Every lane of every beat is one *item*: an accumulator and a
:class:`~intdeploy.golden.requantizer.RequantParams` of one channel, encoded by
:meth:`Requantizer.encode`. Lanes of a beat carry unrelated items, so modes and parameters
differ across lanes. The corner list comes first (int32 extremes, shift 0 and 62, TFLite's
two shift regimes, exact ties of every mode with odd and even quotients of both signs, negative
multipliers, wrapping ``acc + bias``, offsets at the int48 ends, clipping at both ends, zero
points), shuffled with the random items.
"""

import dataclasses

import cocotb
import numpy as np

from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, ROUNDING_MODES, RequantParams, requantize
from intdeploy.hw.requantizer import LATENCY, Requantizer
from intdeploy.sim.bench import Bench, Scoreboard, stream_check

MODES = tuple(ROUNDING_MODES)
INT48_MIN, INT48_MAX = -(1 << 47), (1 << 47) - 1


def wrap32(v):
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class Stimulus:
    """Random and corner (acc, RequantParams) items for a signed(``out_bits``) output."""

    def __init__(self, rng, out_bits):
        self.rng = rng
        self.omin, self.omax = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
        self.out_bits = out_bits

    def int(self, lo, hi):
        return int(self.rng.integers(lo, hi, endpoint=True))

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def int32(self):
        return self.int(INT32_MIN, INT32_MAX)

    def acc(self):
        return self.pick([self.int32(), self.int32(), self.int(-4096, 4096), INT32_MIN, INT32_MAX,
                          self.int(-(1 << 20), 1 << 20)])

    def mult(self, mode):
        if mode == "tflite":
            # QuantizeMultiplier yields [2**30, 2**31); also 0, 1 and the top.
            return self.pick([self.int(1 << 30, INT32_MAX), self.int(0, INT32_MAX), 0, 1, INT32_MAX])
        return self.pick([self.int32(), self.int(1, 1 << 16), -self.int(1, 1 << 16), INT32_MIN,
                          INT32_MAX, self.int(1 << 30, INT32_MAX), -1, 1])

    def clip(self):
        """(zero_point, lo, hi): mostly the full output range, sometimes narrow or a point."""
        zp = self.pick([0, 0, self.int(self.omin, self.omax), self.int(-128, 127), self.int32(),
                        INT32_MIN, INT32_MAX])
        lo, hi = self.omin, self.omax
        r = self.int(0, 5)
        if r == 1:
            lo, hi = sorted((self.int(self.omin, self.omax), self.int(self.omin, self.omax)))
        elif r == 2:
            lo = hi = self.int(self.omin, self.omax)
        return zp, lo, hi

    def shift_for(self, magnitude, mode):
        """A shift that lands ``magnitude`` near the output range (else everything saturates)."""
        lo_shift = 1 if mode == "tflite" else 0
        if self.int(0, 2) == 0:
            return self.int(lo_shift, 62)
        s = max(int(magnitude).bit_length() - self.int(0, self.out_bits + 2), lo_shift)
        if mode == "tflite":
            s += 31 - self.int(0, 31)      # the product is divided by 2**31 at least
        return min(s, 62)

    def random(self, mode=None):
        mode = mode or self.pick(MODES)
        acc, mult = self.acc(), self.mult(mode)
        bias = self.pick([0, self.int32(), self.int(-1000, 1000)])
        offset = 0 if mode == "tflite" else self.pick([0, self.int(INT48_MIN, INT48_MAX),
                                                      INT48_MIN, INT48_MAX, self.int(-1 << 20, 1 << 20)])
        shift = self.shift_for(abs(wrap32(acc + bias) * mult + offset), mode)
        zp, lo, hi = self.clip()
        return acc, RequantParams(mult=mult, shift=shift, bias=bias, offset=offset, zero_point=zp,
                                  lo=lo, hi=hi, rounding=mode)

    def tie(self, mode, s, k):
        """An item whose scaled value is exactly (2k+1) * 2**(s-1) before the final rounding.

        The quotient ``floor`` gives is ``k``; ``x * mult = odd * 2**(s-1)`` is built from the
        2-adic valuations of ``x`` and ``mult``, then an offset that is a multiple of 2**s
        (kept when it fits int48) and a random bias (``acc = x - bias``) leave it a tie.
        """
        if mode == "tflite":
            return self._tflite_tie(s, k)
        odd = 2 * k + 1
        if s == 62:                           # only x = -2**31, mult = -+2**30 reach 2**61
            x, mult = INT32_MIN, (-1 if odd > 0 else 1) << 30
        else:
            # x = xo * 2**b, mult = mo * 2**c, b + c = s - 1, xo * mo = odd.
            b = self.int(max(0, s - 1 - 30), min(30, s - 1))
            c = s - 1 - b
            xo, mo = odd, 1
            if abs(xo) << b > INT32_MAX or self.int(0, 1):
                xo, mo = 1 if odd > 0 else -1, abs(odd)
            x, mult = xo << b, mo << c
            if not (INT32_MIN <= x <= INT32_MAX and INT32_MIN <= mult <= INT32_MAX):
                return self.tie(mode, s, self.int(-4, 3))
            if self.int(0, 1):
                x, mult = -x, -mult
        offset = 0
        j = self.int(-4, 4)
        if abs(j) << s <= INT48_MAX and abs(x * mult + (j << s)) < (1 << 62):
            offset = j << s                   # shifts the quotient by j, keeps the tie
        bias = self.pick([0, self.int32()])
        zp, lo, hi = self.clip() if self.int(0, 3) == 0 else (0, self.omin, self.omax)
        return wrap32(x - bias), RequantParams(mult=mult, shift=s, bias=bias, offset=offset,
                                              zero_point=zp, lo=lo, hi=hi, rounding=mode)

    def _tflite_tie(self, s, k):
        """Ties of TFLite's two roundings. s < 31 (exponent > 0, x pre-shifted) or s == 31: a
        SaturatingRoundingDoublingHighMul tie, xl * mult = odd * 2**30. s > 31: a
        RoundingDivideByPOT tie, high = (2k+1) * 2**(r-1), r = s - 31, with mult = 2**30 (high =
        floor((x + 1) / 2)); r = 31 only via x = INT32_MAX or INT32_MIN."""
        if s <= 31:
            # xl = wrap32(x << left) keeps x's 2-adic valuation (the wrap drops high bits only),
            # so any odd x, wrapping or not, with mult = odd * 2**(30 - left) ties.
            left = 31 - s
            x = 2 * self.int(INT32_MIN // 2, INT32_MAX // 2) + 1
            mult = (2 * self.int(0, (1 << left) - 1) + 1) << (30 - left)
        else:
            r = s - 31
            if r == 31:                       # high = +-2**30
                x, mult = self.pick([INT32_MAX, INT32_MIN]), 1 << 30
            else:
                h = (2 * k + 1) << (r - 1)
                while not INT32_MIN <= 2 * h - 1 <= 2 * h <= INT32_MAX:
                    k //= 2
                    h = (2 * k + 1) << (r - 1)
                x, mult = 2 * h - self.int(0, 1), 1 << 30
        bias = self.pick([0, self.int32()])
        zp, lo, hi = self.clip() if self.int(0, 3) == 0 else (0, self.omin, self.omax)
        return wrap32(x - bias), RequantParams(mult=mult, shift=s, bias=bias, zero_point=zp, lo=lo,
                                              hi=hi, rounding="tflite")

    def corners(self, thorough=False):
        """The corner items; ``thorough`` multiplies the tie quotients and the extreme
        combinations (the quick tier keeps one item of each kind per mode and shift)."""
        items = []
        full = dict(zero_point=0, lo=self.omin, hi=self.omax)
        ks = (0, 1, -1, -2, 2, 5, -6, self.int(-1000, 1000)) if thorough else (0, 1, -1, -2)
        accs = (INT32_MIN, INT32_MAX, 0, -1, 1) if thorough else (INT32_MIN, INT32_MAX, -1)
        for mode in MODES:
            tfl = mode == "tflite"
            shifts = (1, 2, 30, 31, 32, 33, 61, 62) if tfl else (0, 1, 31, 32, 61, 62)
            mults = (0, 1, INT32_MAX, 1 << 30) if tfl else (INT32_MIN, INT32_MAX, -1, 1, 0, -(1 << 30))
            for acc in accs:
                for shift in shifts:
                    for mult in mults:
                        items.append((acc, RequantParams(mult=mult, shift=shift, rounding=mode, **full)))
            if tfl:
                # TFLite's int32 pre-shift x << (31 - shift) wraps: x = small + j * 2**(32 - left)
                # lands on small * 2**left, with a multiplier small enough to stay unclipped.
                for shift in (1, 2, 16, 29, 30):
                    left = 31 - shift
                    for j in (1, -1, 3):
                        small = self.int(-8, 8)
                        x = small + j * (1 << (32 - left))
                        if INT32_MIN <= x <= INT32_MAX:
                            mult = self.int(1, min(1 << (shift + 4), INT32_MAX))   # |y| <= 16 * 8
                            items.append((x, RequantParams(mult=mult, shift=shift, rounding=mode, **full)))
            # acc + bias wraps both ways.
            for acc, bias in ((INT32_MAX, 1), (INT32_MAX, INT32_MAX), (INT32_MIN, -1),
                              (INT32_MIN, INT32_MIN), (-5, INT32_MIN)):
                items.append((acc, RequantParams(mult=1 if tfl else 3, shift=31 if tfl else 2,
                                                 bias=bias, rounding=mode, **full)))
            if not tfl:
                for offset in (INT48_MIN, INT48_MAX):
                    for shift in (0, 16, 47, 62):
                        for acc, mult in ((INT32_MIN, INT32_MIN), (INT32_MAX, INT32_MAX), (7, -3)):
                            items.append((acc, RequantParams(mult=mult, shift=shift, offset=offset,
                                                             rounding=mode, **full)))
            # Exact ties at every shift; the quotient k is even and odd, positive and negative.
            for s in range(1, 63):
                for k in ks:
                    items.append(self.tie(mode, s, k))
            # Clip at both ends, zero points at the int32 ends.
            zps = (0, INT32_MIN, INT32_MAX, -7, 7) if thorough else (0, INT32_MIN, INT32_MAX)
            clips = ((self.omin, self.omax), (max(-3, self.omin), min(3, self.omax)),
                     (self.omax, self.omax), (self.omin, self.omin), (0, 0))
            for zp in zps:
                for lo, hi in clips if thorough else clips[:3]:
                    for acc in (INT32_MIN, INT32_MAX, 100, -100) if thorough else (INT32_MIN, 100):
                        items.append((acc, RequantParams(mult=1 << 30 if tfl else 1, shift=31 if tfl else 0,
                                                         zero_point=zp, lo=lo, hi=hi, rounding=mode)))
        return items


def golden_params(params, rounding):
    """``params``, or a copy with every rounding replaced (a deliberately wrong golden)."""
    return params if rounding is None else dataclasses.replace(params, rounding=rounding)


@cocotb.test(timeout_time=500_000, timeout_unit="us")
async def run(dut):
    tb = Bench(dut)
    cfg = tb.cfg
    lanes, out_bits = int(cfg["lanes"]), int(cfg.get("out_bits", 32))
    rq = Requantizer(lanes=lanes, out_bits=out_bits)
    dut._log.info("seed %d, lanes %d, out_bits %d", tb.seed, lanes, out_bits)
    src = tb.source("i", rq.i_layout)
    snk = tb.sink("o", rq.o_layout)
    await tb.reset()

    stim = Stimulus(tb.rng, out_bits)
    corners = cfg.get("corners", "quick")
    items = stim.corners(thorough=corners == "thorough") if corners else []
    items += [stim.random() for _ in range(int(cfg["n"]))]
    order = tb.rng.permutation(len(items))      # mix corners across lanes and beats
    items = [items[i] for i in order]
    while len(items) % lanes:
        items.append(stim.random())
    wrong = cfg.get("golden_rounding")

    sb = Scoreboard("requantizer", dut._log)
    beats = []
    for b in range(0, len(items), lanes):
        lane_items = items[b:b + lanes]
        accs = [a for a, _ in lane_items]
        params = [p for _, p in lane_items]
        golden = [int(requantize(a, golden_params(p, wrong))) for a, p in lane_items]
        sb.expect(np.array(golden, dtype=np.int64), {
            "acc": accs, **{f: [int(getattr(p, f)) for p in params]
                            for f in ("bias", "mult", "offset", "shift", "zero_point", "lo", "hi")},
            "rounding": [p.rounding for p in params]})
        beats.append({"acc": accs, "params": [rq.encode(p, 1)[0] for p in params]})
    dut._log.info("%d items in %d beats", len(items), len(beats))
    await stream_check(tb, src, snk, beats, sb, lambda v: [v.y[j] for j in range(lanes)], LATENCY)
