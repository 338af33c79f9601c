# amaranth: UnusedElaboratable=no
"""Bench of :class:`intdeploy.hw.add.AddUnit` against :func:`intdeploy.golden.add.add`.

Configuration (``INTDEPLOY_TB``): ``seed``, ``lanes``, ``in_bits``, ``out_bits``, ``n``
(random lane items after the corner list), ``corners`` (``"quick"``, ``"thorough"`` or false),
``full_rate``, ``in_stall`` / ``out_stall`` / ``burst`` (the no-stall phase that checks latency
and II = 1, then random pauses: :func:`intdeploy.sim.bench.stream_check`), ``golden_rounding``
(optional: golden uses this rounding in all three requantizers, to show the check fails),
``golden_no_sum_shift`` (optional: golden ignores the sum shift, likewise), ``b_table_bits``
(optional: branch b as a table, :class:`AddUnit`; each item's b inputs are wrapped into a
``b_table_bits``-bit value, signed or unsigned at random (``b_signed``), and every parameter change
is announced by a ``start`` pulse, after which the unit refills its table before it takes the next
beat).

Every item ``(a, b, AddParams)`` is a run of beats with its parameters held on ``params``
(encoded by :meth:`AddUnit.encode`): ``(a, b)`` in one lane of its first beat, random inputs in
the other lanes and in up to ``run_beats - 1`` (default 3) more beats.
Items: NEMO ``PACT_IntegerAdd`` parameters (:meth:`AddParams.nemo`) from random quanta and
requantization factors, TFLite int8 Add parameters (:meth:`AddParams.tflite`) from random
scales and zero points, and generic parameter sets (random branch and output requantizers in
every rounding mode, zero points and left shifts up to the int32 ends, sum shifts 0..31); half
of the NEMO items carry the division as the sum shift and a random requantizer after it
(:meth:`AddParams.then`); the corners add exact ties in the branch and output requantizers,
wrapping ``(x - zp) << left_shift`` and ``v_0 + v_1`` (then shifted by 0, 1 or 31), inputs at the ``in_bits`` ends and output saturation at both ends.
"""

import dataclasses
from fractions import Fraction

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
import numpy as np

from intdeploy.golden.add import AddParams, add
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams
from intdeploy.hw.add import LATENCY, AddUnit
from intdeploy.sim.bench import Bench, Scoreboard, stream_check
from intdeploy.sim.tb_requantizer import MODES, Stimulus


class AddStimulus:
    """Random and corner ``(a, b, AddParams)`` items."""

    def __init__(self, rng, in_bits, out_bits):
        self.rng = rng
        self.xmin, self.xmax = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
        self.omin, self.omax = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
        self.rq32 = Stimulus(rng, 32)             # branch requantizers produce int32
        self.rq = Stimulus(rng, out_bits)
        self.int, self.pick = self.rq.int, self.rq.pick

    def x(self, lo=None, hi=None):
        lo = self.xmin if lo is None else max(lo, self.xmin)
        hi = self.xmax if hi is None else min(hi, self.xmax)
        return self.pick([self.int(lo, hi), self.int(lo, hi), lo, hi, 0])

    def scale(self):
        return float(np.exp(self.rng.uniform(np.log(1e-4), np.log(1.0))))

    def nemo(self):
        """NEMO's D = 2**ceil(log2(rf * eps_out / min(eps_in))), mult_i = round(D * eps_i / eps_out),
        over unsigned 8-bit PACT activations (int8 ones when the input is narrower)."""
        while True:
            eps = [self.scale(), self.scale()]
            eps_out = max(eps) * self.rng.uniform(1.0, 2.5)
            rf = self.pick([16, 256, 256, 1024])
            ratio = Fraction(rf) * Fraction(eps_out) / Fraction(min(eps))
            d = 0
            while Fraction(1 << d) < ratio:
                d += 1
            mults = [round(Fraction(1 << d) * Fraction(e) / Fraction(eps_out)) for e in eps]
            clip = self.omax < INT32_MAX or self.int(0, 3) == 0
            lo, hi = (self.pick([0, self.omin]), self.omax) if clip else (None, None)
            try:
                params = AddParams.nemo(mults[0], mults[1], d, lo=lo, hi=hi)
            except ValueError:
                continue
            if self.int(0, 1):        # the division as the sum shift, an activation requantizer after it
                params = params.then(self.rq.random()[1]) or params
            xlo = 0 if self.xmax >= 255 else None
            return self.x(xlo, 255), self.x(xlo, 255), params

    def tflite(self):
        """TFLite int8 Add from random float32 scales and zero points (ratios within TFLite's
        limits: scale_out >= max(scale_a, scale_b) / 2**19 or so, both input ratios < 1)."""
        while True:
            sa, sb = self.scale(), self.scale()
            so = max(sa, sb) * float(np.exp(self.rng.uniform(np.log(0.05), np.log(4.0))))
            zps = [self.int(-128, 127) for _ in range(3)]
            lo, hi = self.pick([(-128, 127), (zps[2], 127), (max(-128, zps[2] - 50), min(127, zps[2] + 50))])
            lo, hi = max(lo, self.omin), min(hi, self.omax)
            try:
                params = AddParams.tflite(sa, zps[0], sb, zps[1], so, zps[2], lo=lo, hi=hi)
            except ValueError:
                continue
            return self.x(-128, 127), self.x(-128, 127), params

    def generic(self):
        """Any parameter set the hardware holds: random branches and output in every mode,
        zero points and left shifts anywhere in their ranges."""
        zps = tuple(self.pick([self.int(-300, 300), self.rq.int32(), INT32_MIN, INT32_MAX, 0])
                    for _ in range(2))
        ls = self.pick([0, 20, self.int(0, 31), 31])
        branches = tuple(self.rq32.random()[1] for _ in range(2))
        output = self.rq.random()[1]
        ss = self.pick([0, 0, self.int(0, 31), 31])
        return self.x(), self.x(), AddParams(in_zero_points=zps, left_shift=ls, branches=branches,
                                             output=output, sum_shift=ss)

    def random(self):
        return self.pick([self.nemo, self.tflite, self.generic])()

    def tie(self, mode, where):
        """An exact tie of ``mode`` in a branch (``where`` 0 or 1) or the output (2).

        Branches: ``(x - zp) << ls`` is ``odd * 2**ls``, scaled by an odd multiplier and divided
        by ``2**(ls + c + 1)`` where the multiplier is ``odd * 2**c``. Output: identity branches
        make ``s = ((a - zp_a) + (b - zp_b)) << ls`` and ``zp_b`` is chosen so that ``s`` is
        ``(2k + 1) * 2**(shift - 1)``.
        """
        a, b = self.x(), self.x()
        ident = RequantParams(mult=1, shift=0)
        if where < 2:
            ls = self.int(0, 20)
            x = (a, b)[where]
            odd = 2 * self.int(-200, 200) + 1
            zp = x - odd if INT32_MIN <= x - odd <= INT32_MAX else x + odd      # x - zp odd
            c = self.int(0, 10)
            if mode == "tflite":          # SRDHM tie: (x - zp) * 2**ls * 2**(30 - ls) = odd * 2**30
                tie_rq = RequantParams(mult=1 << (30 - ls), shift=31, rounding="tflite")
            else:
                tie_rq = RequantParams(mult=(2 * self.int(-1000, 1000) + 1) << c, shift=ls + c + 1,
                                       rounding=mode)
            zps = [self.int(-100, 100), self.int(-100, 100)]
            zps[where] = zp
            br = [self.rq32.random()[1], self.rq32.random()[1]]
            br[where] = tie_rq
            out = self.pick([ident, self.rq.random()[1]])
            if self.omax < INT32_MAX and out is ident:
                out = RequantParams(mult=1, shift=0, lo=self.omin, hi=self.omax)
            return a, b, AddParams(in_zero_points=tuple(zps), left_shift=ls, branches=tuple(br),
                                   output=out)
        zp_a = self.int(-100, 100)
        if mode == "tflite":
            # RoundingDivideByPOT tie: with mult = 2**30, high = floor((s + 1) / 2), so s = 2h or
            # 2h - 1 with h = (2k+1) * 2**(shift-1), |s| < 2**31 (shift = 31 + r in TFLite terms).
            shift = self.int(1, 30)
            k = self.int(-(1 << (30 - shift)), (1 << (30 - shift)) - 1)
            ls, target = 0, ((2 * k + 1) << shift) - self.int(0, 1)
            out = RequantParams(mult=1 << 30, shift=31 + shift, rounding="tflite", lo=self.omin, hi=self.omax)
        else:
            # s = (2k+1) * 2**(shift-1), possibly wrapped (a multiple of 2**32 keeps the tie).
            shift = self.int(1, 31)
            ls = self.int(0, min(shift - 1, 8))
            k = self.int(-(1 << 12), 1 << 12)
            target = (2 * k + 1) << (shift - 1 - ls)          # (a - zp_a) + (b - zp_b)
            out = RequantParams(mult=1, shift=shift, rounding=mode, lo=self.omin, hi=self.omax,
                                zero_point=self.pick([0, self.int(-5, 5)]))
        zp_b = a - zp_a + b - target
        if not INT32_MIN <= zp_b <= INT32_MAX:
            return self.tie(mode, where)
        return a, b, AddParams(in_zero_points=(zp_a, zp_b), left_shift=ls,
                               branches=(ident, ident), output=out)

    def corners(self, thorough=False):
        items = []
        reps = 8 if thorough else 2
        for mode in MODES:
            for where in (0, 1, 2):
                items += [self.tie(mode, where) for _ in range(reps * 4)]
        ident = RequantParams(mult=1, shift=0)
        full = dict(lo=self.omin, hi=self.omax)
        for _ in range(reps):
            for x in (self.xmin, self.xmax):
                # (x - zp) wraps int32, then the shift wraps again.
                for zp in (INT32_MIN, INT32_MAX, -INT32_MAX // 3):
                    for ls in (0, 1, 20, 31):
                        items.append((x, self.x(), AddParams(in_zero_points=(zp, 0), left_shift=ls,
                                                             branches=(ident, ident),
                                                             output=RequantParams(mult=1, shift=0, **full))))
            # v_0 + v_1 wraps int32 (branches at the int32 ends, output unclipped or saturating).
            for m0, m1 in ((INT32_MAX, INT32_MAX), (INT32_MIN, INT32_MIN), (INT32_MAX, INT32_MIN)):
                for out in (RequantParams(mult=1, shift=0, **full),
                            RequantParams(mult=3, shift=1, rounding="half_even", **full)):
                    br = (RequantParams(mult=m0, shift=0), RequantParams(mult=m1, shift=0))
                    for a, b in ((self.xmax, self.xmin), (self.xmin, self.xmax)):
                        items.append((a, b, AddParams(branches=br, output=out, sum_shift=self.pick([0, 1, 31]))))
            # Saturation at both output ends, and zero points at the int32 ends.
            for mode in MODES:
                for zp_out in (0, INT32_MIN, INT32_MAX):
                    out = (RequantParams(mult=INT32_MAX, shift=31, zero_point=zp_out, rounding="tflite", **full)
                           if mode == "tflite" else
                           RequantParams(mult=INT32_MAX, shift=3, zero_point=zp_out, rounding=mode, **full))
                    br = (RequantParams(mult=1 << 20, shift=0), RequantParams(mult=-(1 << 20), shift=0))
                    for a, b in ((self.xmax, self.xmin), (self.xmin, self.xmax), (0, 0)):
                        items.append((a, b, AddParams(branches=br, output=out)))
        for _ in range(reps * 10):
            items.append(self.nemo())
            items.append(self.tflite())
        return items


def golden_params(params, rounding, no_sum_shift=False):
    """``params``, or a copy whose three requantizers all use ``rounding``, or without the sum
    shift (a wrong golden)."""
    if no_sum_shift:
        params = dataclasses.replace(params, sum_shift=0)
    if rounding is None:
        return params
    swap = lambda p: dataclasses.replace(p, rounding=rounding)
    return dataclasses.replace(params, branches=tuple(map(swap, params.branches)),
                               output=swap(params.output))


@cocotb.test(timeout_time=500_000, timeout_unit="us")
async def run(dut):
    tb = Bench(dut)
    cfg = tb.cfg
    lanes = int(cfg["lanes"])
    in_bits, out_bits = int(cfg.get("in_bits", 9)), int(cfg.get("out_bits", 32))
    table = cfg.get("b_table_bits")
    unit = AddUnit(lanes=lanes, in_bits=in_bits, out_bits=out_bits, b_table_bits=table)
    dut._log.info("seed %d, %r", tb.seed, unit)
    src = tb.source("i", unit.i_layout)
    snk = tb.sink("o", unit.o_layout)
    await tb.reset()

    stim = AddStimulus(tb.rng, in_bits, out_bits)
    corners = cfg.get("corners", "quick")
    items = stim.corners(thorough=corners == "thorough") if corners else []
    items += [stim.random() for _ in range(int(cfg["n"]))]
    items = [items[i] for i in tb.rng.permutation(len(items))]
    wrong, no_ss = cfg.get("golden_rounding"), bool(cfg.get("golden_no_sum_shift"))

    # The parameters are held for a run of beats (an Add layer's), so every item is a run: its
    # (a, b) in a random lane of the first beat, random inputs in the other lanes and in
    # ``run_beats - 1`` more beats. The first run is longer (its first ``full_rate`` beats, no
    # stalls, check the latency and II = 1); the parameters change only when the unit is empty.
    full_rate = int(cfg.get("full_rate", 48))
    sb = Scoreboard("add", dut._log)
    for index, (a0, b0, p) in enumerate(items):
        n_beats = full_rate + 8 if index == 0 else int(tb.rng.integers(1, int(cfg.get("run_beats", 3)) + 1))
        xs = [[(stim.x(), stim.x()) for _ in range(lanes)] for _ in range(n_beats)]
        xs[0][int(tb.rng.integers(lanes))] = (a0, b0)
        if table:
            # b is a table-bits value, signed or unsigned by the item: the inputs wrapped into it
            b_signed = bool(tb.rng.integers(2))
            span, off = 1 << table, (1 << (table - 1)) if b_signed else 0
            xs = [[(a, ((b + off) % span) - off) for a, b in beat] for beat in xs]
        gp = golden_params(p, wrong, no_ss)
        beats = []
        for beat in xs:
            sb.expect(np.array([int(add(a, b, gp)) for a, b in beat], dtype=np.int64),
                      {"a": [a for a, _ in beat], "b": [b for _, b in beat], "params": repr_params(p)})
            beats.append({"a": [a for a, _ in beat], "b": [b for _, b in beat]})
        dut.params.value = int(unit.param_layout.const(unit.encode(p)).as_bits())
        if table:
            # new parameters: a start pulse a cycle before the beats (the table is refilled if
            # they differ from the ones it holds; the beats wait for it)
            dut.b_signed.value = int(b_signed)
            dut.start.value = 1
            await RisingEdge(dut.clk)
            dut.start.value = 0
            await RisingEdge(dut.clk)
            await ReadOnly()
            while not dut.i__ready.value:
                await RisingEdge(dut.clk)
                await ReadOnly()
            await RisingEdge(dut.clk)
        await stream_check(tb, src, snk, beats, sb, lambda v: [v.y[j] for j in range(lanes)], LATENCY,
                           full_rate=full_rate if index == 0 else 0)
    dut._log.info("%d parameter sets, %d beats checked, %d cycles", len(items), sb.checked, tb.cycle)


def repr_params(p):
    """One line per item for the mismatch report."""
    rq = lambda r: (f"{r.rounding}(mult={int(r.mult)}, shift={int(r.shift)}, bias={int(r.bias)}, "
                    f"offset={int(r.offset)}, zp={int(r.zero_point)}, lo={int(r.lo)}, hi={int(r.hi)})")
    return (f"zps={p.in_zero_points} ls={p.left_shift} a:{rq(p.branches[0])} "
            f"b:{rq(p.branches[1])} ss={p.sum_shift} out:{rq(p.output)}")
