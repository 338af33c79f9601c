"""Bench of :class:`intdeploy.hw.mac_array.MacArray`: GEMMs against ``intdeploy.golden.mac_array.linear``.

Configuration (``INTDEPLOY_TB``): ``rows``, ``cols``, ``weight_bits``, ``acc_bits`` (the
elaboration parameters), ``seed``; ``ii_steps`` (steps of the no-stall throughput phase, 0 to
skip); ``corners`` (bool: the fixed corner cases, and the raw-beat field extremes of
:meth:`MacBench.field_extremes`); ``limit`` (bool: accumulations up to the
accumulator refusal limit, ``ceil(K_max / C)`` steps each); ``gemms``, ``max_m``, ``max_k``
(the random GEMMs); ``stall_in``, ``stall_out``, ``burst`` (random valid/ready pauses);
``bug`` (name of a deliberate golden error, to show that the check can fail).

Every output beat (R accumulators) is compared element by element with golden by the
Scoreboard, in order. Inputs are encoded (except the field extremes, built beat by beat) by
the array's own host side (``MacArray.encode``,
which pads ``K`` to a multiple of ``C`` with ``x_zero_point`` activations and refuses layers
whose accumulator could overflow) from the very arguments golden receives.
"""

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
import numpy as np

from intdeploy.golden.mac_array import check_accumulator, linear
from intdeploy.hw.mac_array import MacArray
from intdeploy.sim.bench import Bench, Scoreboard, write_report

#: Deliberate golden errors: each returns the (wrong) arguments golden is called with.
BUGS = {
    # The weight zero point is forgotten.
    "ignore_w_zp": lambda x, w, zx, zw: (x, w, zx, 0),
    # The activation type is confused: int8 read as uint8.
    "x_as_uint8": lambda x, w, zx, zw: (x & 0xFF, w, zx, zw),
}


class MacBench:
    def __init__(self, dut):
        self.tb = Bench(dut)
        cfg = self.tb.cfg
        self.rng = self.tb.rng
        self.array = MacArray(rows=cfg["rows"], cols=cfg["cols"],
                              weight_bits=cfg.get("weight_bits", 8), acc_bits=cfg.get("acc_bits", 32))
        self.R, self.C = self.array.rows, self.array.cols
        self.bug = BUGS[cfg["bug"]] if cfg.get("bug") else None
        self.src = self.tb.source("i", self.array.in_layout)
        self.snk = self.tb.sink("o", self.array.out_layout)
        self.sb = Scoreboard("mac_array", dut._log)
        self.expected_outputs = 0
        self.steps = 0
        self._packed = {}
        self.transfers = []
        self.recording = False

    # Stimulus --------------------------------------------------------------------------------

    def gemm(self, x, w, *, x_signed, x_zero_point=0, w_zero_point=0, context=None, chain=False):
        """Queue the beats of one GEMM and golden's results for them.

        ``chain`` drops ``first`` on the first step of every GEMM row but the first, so the
        rows accumulate into one running total that is emitted after each row (``last`` without
        a following ``first``): golden is then the linear layer over the concatenated rows.
        """
        beats = self.array.encode(x, w, x_signed=x_signed, x_zero_point=x_zero_point,
                                  w_zero_point=w_zero_point)
        x = np.atleast_2d(np.asarray(x, dtype=np.int64))
        w = np.asarray(w, dtype=np.int64)
        n, k = w.shape
        # Rows of the tile beyond N carry zero weights with zero point 0 (MacArray.encode).
        w_full = np.zeros((self.R, k), dtype=np.int64)
        w_full[:n] = w
        zw_full = np.zeros(self.R, dtype=np.int64)
        zw_full[:n] = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64), (n,))
        if chain:
            steps = len(beats) // x.shape[0]
            for b in beats[steps::steps]:
                b["first"] = 0
            rows = [x[:j + 1].reshape(1, -1) for j in range(x.shape[0])]
            ws = [np.tile(w_full, j + 1) for j in range(x.shape[0])]
        else:
            rows = list(x[:, None, :])
            ws = [w_full] * x.shape[0]
        for xr, wr in zip(rows, ws):
            args = (xr, wr, int(x_zero_point), zw_full)
            if self.bug is not None:
                args = self.bug(*args)
            expected = linear(*args)[0]
            ctx = dict(context or {"x": xr[0], "w": wr})
            ctx.update(x_signed=int(bool(x_signed)), x_zero_point=int(x_zero_point),
                       w_zero_point=zw_full, K=xr.shape[1])
            self.sb.expect(expected, ctx)
            self.expected_outputs += 1
        return beats

    async def send(self, beats):
        for b in beats:
            key = repr(b) if len(self._packed) < 4096 else None
            word = self._packed.get(key) if key else None
            if word is None:
                word = self.src.pack(b)
                if key:
                    self._packed[key] = word
            await self.src.send(word)
        self.steps += len(beats)

    def random_values(self, lo, hi, shape, extremes=0.0):
        v = self.rng.integers(lo, hi + 1, shape)
        if extremes:
            pick = self.rng.random(shape) < extremes
            v = np.where(pick, np.where(self.rng.random(shape) < 0.5, lo, hi), v)
        return v

    def random_gemm(self, max_m, max_k):
        rng = self.rng
        wb = self.array.weight_bits
        x_signed = bool(rng.integers(2))
        x_lo, x_hi = (-128, 127) if x_signed else (0, 255)
        m = int(rng.integers(1, max_m + 1))
        # K: often within one step, often not a multiple of C.
        k = int(rng.integers(1, self.C + 1)) if rng.random() < 0.25 else int(rng.integers(1, max_k + 1))
        n = self.R if rng.random() < 0.8 else int(rng.integers(1, self.R + 1))
        extremes = float(rng.choice([0.0, 0.2, 0.9]))
        x = self.random_values(x_lo, x_hi, (m, k), extremes)
        w = self.random_values(-(1 << (wb - 1)), (1 << (wb - 1)) - 1, (n, k), extremes)
        zx = 0 if rng.random() < 0.3 else int(self.random_values(x_lo, x_hi, (), extremes))
        mode = rng.integers(3)
        zw = 0 if mode == 0 else (int(self.random_values(-128, 127, (), extremes)) if mode == 1
                                  else self.random_values(-128, 127, (n,), extremes))
        return dict(x=x, w=w, x_signed=x_signed, x_zero_point=zx, w_zero_point=zw)

    def corners(self):
        """Fixed corner GEMMs (small K): extremes with and without zero points, single steps."""
        R, C, wb = self.R, self.C, self.array.weight_bits
        wmin, wmax = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
        k = 3 * C + 1
        out = []
        full = lambda v, shape: np.full(shape, v, dtype=np.int64)
        # int8 -128 x -128 (largest product magnitude without zero points).
        out.append(dict(x=full(-128, (2, k)), w=full(wmin, (R, k)), x_signed=True))
        # uint8 255 with zero point 0 against the extreme weights of both signs.
        out.append(dict(x=full(255, (1, k)), w=full(wmax, (R, k)), x_signed=False))
        out.append(dict(x=full(255, (1, k)), w=full(wmin, (R, k)), x_signed=False))
        # Zero points at the ends of their ranges: |w - w_zp| and |x - x_zp| at their maxima.
        out.append(dict(x=full(0, (1, k)), w=full(wmax, (R, k)), x_signed=False,
                        x_zero_point=255, w_zero_point=-128))
        out.append(dict(x=full(255, (1, k)), w=full(wmin, (R, k)), x_signed=False,
                        x_zero_point=0, w_zero_point=127))
        out.append(dict(x=full(-128, (1, k)), w=full(wmin, (R, k)), x_signed=True,
                        x_zero_point=127, w_zero_point=127))
        out.append(dict(x=full(127, (1, k)), w=full(wmax, (R, k)), x_signed=True,
                        x_zero_point=-128, w_zero_point=-128))
        # int8 with zero points; per-row weight zero points spanning int8.
        zw = np.linspace(-128, 127, R).astype(np.int64)
        out.append(dict(x=self.random_values(-128, 127, (3, k)), w=self.random_values(wmin, wmax, (R, k)),
                        x_signed=True, x_zero_point=-37, w_zero_point=zw))
        # NEMO-style asymmetric weights: integer image q in [-109, 146] (256 levels) stored as
        # int8 w = q + w_zp with w_zp = -19, so that w - w_zp = q.
        if wb == 8:
            q = self.random_values(-109, 146, (R, k), 0.3)
            out.append(dict(x=self.random_values(0, 255, (3, k)), w=q - 19, x_signed=False,
                            w_zero_point=-19))
        # Single-step accumulations (first and last on one beat), back to back.
        for kk in sorted({1, C}):
            out.append(dict(x=self.random_values(0, 255, (8, kk), 0.3),
                            w=self.random_values(wmin, wmax, (R, kk), 0.3), x_signed=False,
                            x_zero_point=int(self.rng.integers(256)),
                            w_zero_point=self.random_values(-128, 127, (R,))))
        return out

    def field_extremes(self):
        """Beats that :meth:`MacArray.encode` never makes, built field by field: ``x_zp`` outside
        the activation type (the field is signed(9)), so ``x - x_zp`` reaches the ends of its
        range, -383 (int8 -128, ``x_zp`` 255) and 511 (uint8 255, ``x_zp`` -256), against the
        extreme weights and both ends of ``w_zp``; then random beats over every field value.
        Each product ``w * (x - x_zp)``, row tree sum, correction ``w_zp * S`` and step sum
        reaches the end of its range, which sizes the RTL's intermediate widths (MacArray's
        docstring), so a width one bit short fails here. Queues golden (``linear`` on the
        activations as the beat's ``x_signed`` reads them) and returns the beats of each
        accumulation (two steps each)."""
        R, C, wb = self.R, self.C, self.array.weight_bits
        wmin, wmax = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
        cases = []
        for x_signed, xv, zx in ((False, 255, -256), (True, -128, 255), (False, 0, 255),
                                 (True, 127, -256)):
            for wv in (wmin, wmax):
                for zw in (-128, 0, 127):
                    cases.append((x_signed, np.full(2 * C, xv), zx, np.full((R, 2 * C), wv),
                                  np.full(R, zw)))
            # Weights 0: the step sum is the correction alone, -w_zp * S, at both ends.
            cases.append((x_signed, np.full(2 * C, xv), zx, np.zeros((R, 2 * C), dtype=np.int64),
                          np.linspace(-128, 127, R).astype(np.int64)))
        rng = self.rng
        for _ in range(16):
            x_signed = bool(rng.integers(2))
            x_lo, x_hi = (-128, 127) if x_signed else (0, 255)
            cases.append((x_signed, self.random_values(x_lo, x_hi, (2 * C,), 0.5),
                          int(self.random_values(-256, 255, (), 0.5)),
                          self.random_values(wmin, wmax, (R, 2 * C), 0.5),
                          self.random_values(-128, 127, (R,), 0.5)))
        out = []
        for x_signed, x, zx, w, zw in cases:
            expected = linear(x[None], w, zx, zw)[0]
            self.sb.expect(expected, {"x": x, "x_signed": int(x_signed), "x_zp (raw field)": zx,
                                      "w": w, "w_zp": zw})
            self.expected_outputs += 1
            out.append([{"x": [int(v) & 0xFF for v in x[s * C:(s + 1) * C]],
                         "x_signed": int(x_signed), "x_zp": int(zx),
                         "w": w[:, s * C:(s + 1) * C].tolist(), "w_zp": [int(v) for v in zw],
                         "first": int(s == 0), "last": int(s == 1)} for s in range(2)])
        return out

    def limit_corners(self):
        """Accumulations at the largest K that check_accumulator accepts for int32.

        K_max comes from golden's own refusal: accepted at K_max, refused at K_max + 1. The
        sums land within one step's magnitude of the int32 extremes, exactly representable.
        """
        R, wb, bits = self.R, self.array.weight_bits, self.array.acc_bits
        wmin = -(1 << (wb - 1))
        cases = [
            # int8 -128 x -128: each term 128 * 2**(wb-1), toward +2**31.
            ("int8 -128 x wmin", True, -128, 0, wmin, 0),
            # uint8 255, zero point 0, w - w_zp = 255 (or the sub-8-bit maximum): toward +2**31.
            ("uint8 255 x (wmax - (-128))", False, 255, 0, (1 << (wb - 1)) - 1, -128),
            # w - w_zp = wmin - 127 < 0 with uint8 255: toward -2**31.
            ("uint8 255 x (wmin - 127)", False, 255, 0, wmin, 127),
        ]
        out = []
        max_steps = int(self.tb.cfg.get("limit_max_steps", 40_000))
        for label, x_signed, xv, zx, wv, zw in cases:
            x_lo, x_hi = (-128, 127) if x_signed else (0, 255)
            terms = ((wv - zw) * (x_lo - zx), (wv - zw) * (x_hi - zx))
            hi_room, lo_room = (1 << (bits - 1)) - 1, 1 << (bits - 1)
            k_max = min(hi_room // max(terms) if max(terms) > 0 else 1 << 62,
                        lo_room // -min(terms) if min(terms) < 0 else 1 << 62)
            if -(-k_max // self.C) > max_steps:
                self.tb.dut._log.info("limit corner %s skipped: K_max = %d is %d steps (> %d)",
                                      label, k_max, -(-k_max // self.C), max_steps)
                continue
            w = np.full((R, k_max), wv, dtype=np.int64)
            check_accumulator(w, x_lo, x_hi, zx, zw, bits=bits, name=label)
            try:
                check_accumulator(np.full((R, k_max + 1), wv), x_lo, x_hi, zx, zw, bits=bits, name=label)
            except ValueError:
                pass
            else:
                raise AssertionError(f"{label}: check_accumulator accepts K = {k_max + 1}; K_max is wrong")
            x = np.full((1, k_max), xv, dtype=np.int64)
            out.append(dict(x=x, w=w, x_signed=x_signed, x_zero_point=zx, w_zero_point=zw,
                            context={"case": label + f", K = K_max = {k_max}"}))
        return out

    # Checking ------------------------------------------------------------------------------

    async def consume(self):
        while self.sb.checked < self.expected_outputs:
            v = await self.snk.recv()
            self.sb.check(np.array([v.acc[r] for r in range(self.R)], dtype=np.int64), self.tb.cycle)

    async def monitor(self, idle_limit):
        """Watch both ports every cycle (sampled before the edge): record transfers in
        ``self.transfers`` (cycle, port) while ``self.recording``, and fail when outputs are
        pending but neither port has moved for ``idle_limit`` cycles (a lost beat or a
        handshake deadlock), instead of waiting for the test timeout."""
        dut, cycle, last_move = self.tb.dut, 0, 0
        while True:
            await RisingEdge(self.tb.clk)
            await ReadOnly()
            cycle += 1
            moved = False
            if dut.i__valid.value == 1 and dut.i__ready.value == 1:
                moved = True
                if self.recording:
                    self.transfers.append((cycle, "i"))
            if dut.o__valid.value == 1 and dut.o__ready.value == 1:
                moved = True
                if self.recording:
                    self.transfers.append((cycle, "o"))
            if moved or self.sb.checked >= self.expected_outputs:
                last_move = cycle
            elif cycle - last_move > idle_limit:
                fail(f"mac_array: no transfer on i or o for {idle_limit} cycles with "
                     f"{self.expected_outputs - self.sb.checked} output(s) still expected "
                     f"(checked {self.sb.checked}): a result was lost or the handshake deadlocked")


def fail(text):
    write_report(text)
    raise AssertionError(text)


@cocotb.test(timeout_time=50_000, timeout_unit="us")
async def run(dut):
    b = MacBench(dut)
    cfg = b.tb.cfg
    dut._log.info("seed %d, %r, latency %d", b.tb.seed, b.array, b.array.latency)
    await b.tb.reset()
    cocotb.start_soon(b.monitor(int(cfg.get("idle_limit", 2000))))

    # Throughput: back-to-back accumulations (including single-step ones), no pauses. All
    # beats are queued before the first leaves, so the source never starves the array.
    ii_steps = int(cfg.get("ii_steps", 0))
    if ii_steps:
        beats = []
        while len(beats) < ii_steps:
            g = b.random_gemm(max_m=4, max_k=4 * b.C)
            beats += b.gemm(**g)
        b.recording = True
        await RisingEdge(b.tb.clk)                  # the monitor is watching before the first beat
        await b.send(beats)
        await b.consume()
        b.recording = False
        t_in = [c for c, p in b.transfers if p == "i"]
        t_out = [c for c, p in b.transfers if p == "o"]
        if len(t_in) != len(beats):
            fail(f"mac_array: {len(t_in)} input transfers seen for {len(beats)} steps")
        cycles = t_out[-1] - t_in[0] + 1
        bound = len(beats) + b.array.latency
        dut._log.info("II phase: %d steps, %d accumulations in %d cycles (first step in to last "
                      "result out); bound steps + latency = %d", len(beats), len(t_out), cycles, bound)
        if cycles > bound:
            fail(f"mac_array: II > 1: {len(beats)} steps took {cycles} cycles, more than "
                 f"steps + latency = {bound}")

    b.src.stall(b.tb.stalls(cfg.get("stall_in", 0.3), cfg.get("burst", 3)))
    b.snk.stall(b.tb.stalls(cfg.get("stall_out", 0.3), cfg.get("burst", 3)))
    gemms = []
    if cfg.get("corners", True):
        gemms += b.corners()
        # A running total read out after every row: `last` without a following `first`.
        g = b.random_gemm(max_m=3, max_k=3 * b.C)
        gemms.append(dict(g, chain=True))
    if cfg.get("limit", False):
        gemms += b.limit_corners()
    for _ in range(int(cfg.get("gemms", 20))):
        gemms.append(b.random_gemm(int(cfg.get("max_m", 6)), int(cfg.get("max_k", 6 * b.C))))
    # Queues every golden result first, in the order the beats are sent.
    beats = b.field_extremes() if cfg.get("corners", True) else []
    beats += [b.gemm(**g) for g in gemms]
    consumer = cocotb.start_soon(b.consume())
    for bs in beats:
        await b.send(bs)
    await consumer
    b.sb.finish()
    dut._log.info("checked %d outputs (%d x %d accumulators) from %d steps", b.sb.checked,
                  b.sb.checked, b.R, b.steps)
