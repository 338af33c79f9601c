"""The epilogue chain of a RUN: accumulators -> requantizer or thresholds -> add -> pool.

docs/protocol.md (RUN arithmetic, steps 2-4). The chain is built from the datapath units
(:class:`intdeploy.hw.requantizer.Requantizer`, :class:`intdeploy.hw.threshold.ThresholdUnit`,
:class:`intdeploy.hw.add.AddUnit`, :class:`intdeploy.hw.pool.PoolUnit`); this module routes the stream through
the ones a RUN selects, supplies each unit's per-beat parameters (channel parameters from the
parameter cache, threshold channel numbers, residual entries, pooling fields from the
descriptor) and marks the run's final result.
"""

from amaranth import Array, Cat, Const, Module, Mux, ResetInserter, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from intdeploy import wire
from intdeploy.hw.add import AddUnit
from intdeploy.hw.pool import PoolMode, PoolUnit
from intdeploy.hw.requantizer import Requantizer
from intdeploy.hw.threshold import ThresholdUnit

__all__ = ["Epilogue", "POOL_TAP_BITS"]

#: Width of the pooling unit's taps (:data:`intdeploy.wire.POOL_TAP_BITS`).
POOL_TAP_BITS = wire.POOL_TAP_BITS
RESIDUAL_PREFETCH = 4


def _values_stream(R, name):
    """A stream of R int32 values whose payload is a plain signal seen through a view (no alias
    wire per lane in the Verilog); returns ``(stream, payload view)``."""
    layout = data.ArrayLayout(signed(32), R)
    s = stream.Signature(Shape.cast(layout)).create(path=(name,))
    return s, layout(s.payload)


class _Chunks:
    """Which of the ``n`` chunks of a beat a stream stage is at (0..n-1), restarted by ``start``;
    with n = 1 it is a constant 0 and costs nothing."""

    def __init__(self, m, n, start, name):
        self.m, self.n, self.start = m, n, start
        if n == 1:
            self.value, self.last = Const(0, 1), Const(1, 1)
            return
        self.value = Signal(range(n), name=name, reset_less=True)   # set by ``start``
        self.last = self.value == n - 1

    def advance(self, cond):
        """Move to the next chunk (wrapping) in a cycle where ``cond`` holds (the chunk is taken);
        ``start`` wins. Call once."""
        if self.n > 1:
            with self.m.If(cond):
                self.m.d.sync += self.value.eq(Mux(self.last, 0, self.value + 1))
            with self.m.If(self.start):
                self.m.d.sync += self.value.eq(0)

    def pick(self, cands):
        """``cands[k]`` (values of one shape) for the current chunk ``k``."""
        return cands[0] if self.n == 1 else Array(cands)[self.value]

    def among(self, ks):
        """1 while the current chunk is one of ``ks``."""
        return Cat(*[self.value == k for k in ks]).any() if ks else Const(0, 1)


def _lane(values, index, width=32):
    """``values[index]``, or a 0 of ``width`` bits where ``index`` is None."""
    return Const(0, width) if index is None else Value.cast(values[index])


def _gather(m, narrow, narrow_y, spans, R, start, name):
    """A stream of chunks gathered into beats of ``R`` values: chunk ``k`` of ``narrow`` carries
    values ``off .. off + width - 1`` (``spans[k] = (off, width)``) in its lanes ``0..width-1``.
    Chunks ``0..n-2`` are held in registers, the last passes straight through, so the wide beat is
    valid with the last chunk. Returns ``(stream, view)``; with one chunk it is ``narrow``."""
    if len(spans) == 1:
        return narrow, narrow_y
    n = len(spans)
    wide, wide_y = _values_stream(R, name + "_wide")
    part = _Chunks(m, n, start, name + "_part")
    take = narrow.valid & narrow.ready
    part.advance(take)
    m.d.comb += [wide.valid.eq(narrow.valid & part.last), narrow.ready.eq(wide.ready | ~part.last)]
    for k, (off, width) in enumerate(spans):
        for r in range(width):
            if k == n - 1:
                m.d.comb += wide_y[off + r].eq(narrow_y[r])
                continue
            held = Signal(signed(32), name=f"{name}_held{off + r}", reset_less=True)
            m.d.comb += wide_y[off + r].eq(held)
            with m.If(take & (part.value == k)):
                m.d.sync += held.eq(narrow_y[r])
    return wide, wide_y


def _join_ready(m, sel, a, b, ready):
    """Route ``ready`` to stream ``a`` (sel = 0) or ``b`` (sel = 1)."""
    m.d.comb += [a.ready.eq(ready & ~sel), b.ready.eq(ready & sel)]


class Epilogue(wiring.Component):
    """Turns the MAC array's accumulator beats into a RUN's result beats.

    Per accumulator beat of tile ``n``, GEMM row ``m`` (the component counts them itself, in
    the sequencer's order):

    1. requantizer with the tile's R parameter entries (``params``), or the threshold unit with
       channels ``channel_base + n*R + r``; int32 (thresholds: the count, zero-extended);
    2. with ``add``: the add unit with residual entry ``residual_base + n*m_count + m`` (read
       ahead from the residual buffer in order) and the descriptor's add parameters;
    3. with ``pool``: the pooling unit on the low 9 bits of each value, ``taps`` consecutive
       rows per window; its result sign-extended to 32 bits;
    4. ``o`` carries the R values and ``last`` on the run's final result.

    Throughput: one beat per cycle through every stage (each unit has II = 1); the units not
    selected are bypassed. Latency: requantizer 9 or threshold unit ``max_q + 4 + (max_q - 1) // 2`` cycles, add
    unit and pooling unit their own latencies (see their docstrings).

    Parameters
    ----------
    config : intdeploy.hw.config.AcceleratorConfig
    entry_layout : data layout
        A parameter buffer entry (``rq`` and ``w_zp``).
    run_layout : data layout
        The decoded descriptor (:func:`intdeploy.hw.descriptor.run_layout`).

    Attributes
    ----------
    start : ``In(1)``
        Pulse at the beginning of a RUN; ``cfg`` is then held constant until its end.
    cfg : ``In(run_layout)`` (plain-shaped; the same bits)
    i : ``In(stream.Signature(StructLayout({"acc": ArrayLayout(signed(32), R)})))``
    params : ``In(ArrayLayout(entry_layout, E))``
        The current tile's parameter entries ``part*E .. part*E + E - 1`` (from
        :class:`intdeploy.hw.param_cache.ParamCache`, which reads them where they are stored).
    part : ``Out(range(P))``
        The part of the accumulator beat entering the requantizer (``P = ceil(R / E)``).
    tile_next : ``Out(1)``
        Pulse: the current tile's last accumulator beat entered the chain.
    thresholds : ``In(stream.Signature(ThresholdUnit.load_layout))``
        The threshold unit's load port.
    residual : ``In(ReadPort.Signature(...))``
        The residual buffer's read port (driven by this component).
    o : ``Out(stream.Signature(StructLayout({"y": ArrayLayout(signed(32), R), "last": 1})))``
    """

    def __init__(self, *, config, entry_layout, run_layout):
        c = self.config = config
        R, E = c.rows, c.epilogue_lanes
        self.entry_layout = entry_layout
        self.run_layout = run_layout
        self.requantizer = Requantizer(lanes=E, out_bits=32)
        # Each threshold channel stored once, in the lane that reads it, when every tile starts at
        # a multiple of E: the command processor refuses a threshold RUN whose channel_base is not
        # a multiple of wire.threshold_alignment(R), so E must divide that (E a power of two
        # dividing R).
        self.threshold = ThresholdUnit(channels=c.threshold_channels, max_bits=c.max_q, lanes=E,
                                       banked=wire.threshold_alignment(R) % E == 0)
        # Branch b (the residual, int8 or uint8) by table: 256 results per Add layer, filled when
        # a RUN with an add starts with new parameters or residual signedness.
        self.add = AddUnit(lanes=c.add_lanes, in_bits=32, out_bits=32, b_table_bits=8)
        self.pool = PoolUnit(lanes=R, in_bits=POOL_TAP_BITS, max_taps=c.max_pool_taps,
                             max_shift=c.max_pool_shift)
        values = data.ArrayLayout(signed(32), R)
        self.in_layout = data.StructLayout({"acc": values})
        self.out_layout = data.StructLayout({"y": values, "last": unsigned(1)})
        super().__init__({
            "start": In(1),
            # Plain-shaped ports, viewed inside (no alias wire per field in the Verilog).
            "cfg": In(Shape.cast(run_layout)),
            "i": In(stream.Signature(self.in_layout)),
            "params": In(Shape.cast(data.ArrayLayout(entry_layout, E))),
            "part": Out(range(max(2, -(-R // E)))),
            "tile_next": Out(1),
            "thresholds": In(stream.Signature(self.threshold.load_layout)),
            "residual": In(ReadPort.Signature(addr_width=c.addr_bits(c.residual_depth),
                                              shape=unsigned(32 * c.residual_entry_words))),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        R = c.rows
        cfg = self.run_layout(self.cfg)
        params = data.ArrayLayout(self.entry_layout, c.epilogue_lanes)(self.params)
        m.submodules.requantizer = rq = self.requantizer
        m.submodules.threshold = th = self.threshold
        m.submodules.add = au = self.add
        m.submodules.pool = pu = self.pool
        wiring.connect(m, wiring.flipped(self.thresholds), th.load)

        # --- 1. epilogue: tile/row counters, requantizer or thresholds ----------------------
        # An accumulator beat enters in P parts of E lanes (lane j = part * E + r); it is taken
        # from ``i`` with its last part.
        E = c.epilogue_lanes
        P = -(-R // E)
        # The run's counters and addresses (row, tile_ch, res_addr, tap, out_o, out_t, the part
        # counters) have no reset: ``start`` loads each of them before the run's first beat,
        # and no beat enters outside a run (a reset net reaching every data bit is the
        # design's longest wire). The residual prefetch, which may read ahead on stale
        # descriptor fields between runs, is flushed by ``start`` too.
        row = Signal(16, reset_less=True)
        tile_ch = Signal(16, reset_less=True)
        sel = cfg.threshold
        part_in = _Chunks(m, P, self.start, "part_in")
        unit_ready = Mux(sel, th.i.ready, rq.i.ready)
        take = self.i.valid & self.i.ready
        with m.If(take):
            m.d.sync += row.eq(row + 1)
            with m.If(row == cfg.m_count - 1):
                m.d.comb += self.tile_next.eq(1)
                m.d.sync += [row.eq(0), tile_ch.eq(tile_ch + R)]
        with m.If(self.start):
            m.d.sync += [row.eq(0), tile_ch.eq(cfg.channel_base)]

        part_in.advance(self.i.valid & unit_ready)
        m.d.comb += [
            rq.i.valid.eq(self.i.valid & ~sel),
            th.i.valid.eq(self.i.valid & sel),
            self.i.ready.eq(unit_ready & part_in.last),
        ]
        acc = [Value.cast(v) for v in self.i.payload.acc]
        if P > 1:
            m.d.comb += self.part.eq(part_in.value)
        at = lambda p, r: p * E + r if p * E + r < R else None   # noqa: E731 - value j of part p's lane r
        for r in range(E):
            acc_r = part_in.pick([_lane(acc, at(p, r)) for p in range(P)])
            m.d.comb += [
                rq.i.payload.acc[r].eq(acc_r),
                rq.i.payload.params[r].eq(params[r].rq),
                th.i.payload.x[r].eq(acc_r),
                th.i.payload.channel[r].eq(tile_ch + part_in.value * E + r),
            ]
        epi, epi_y = _values_stream(E, "epi")
        m.d.comb += [
            epi.valid.eq(Mux(sel, th.o.valid, rq.o.valid)),
            epi.payload.eq(rq.o.payload.y),
        ]
        with m.If(sel):
            m.d.comb += [epi_y[r].eq(th.o.payload.count[r]) for r in range(E)]
        _join_ready(m, sel, rq.o, th.o, epi.ready)

        # --- 2. add: residual entries read ahead in order ---------------------------------
        m.submodules.res_fifo = res_fifo = ResetInserter(self.start)(
            SyncFIFO(width=8 * R, depth=RESIDUAL_PREFETCH))
        res_addr = Signal(len(self.residual.addr), reset_less=True)
        pending = Signal()
        issue = Signal()
        m.d.comb += [
            issue.eq(cfg.add & (res_fifo.level + pending < RESIDUAL_PREFETCH)),
            self.residual.addr.eq(res_addr),
            self.residual.en.eq(1),
            res_fifo.w_data.eq(self.residual.data[:8 * R]),
            res_fifo.w_en.eq(pending),
        ]
        m.d.sync += pending.eq(issue)
        with m.If(issue):
            m.d.sync += res_addr.eq(res_addr + 1)
        with m.If(self.start):
            m.d.sync += [pending.eq(0), res_addr.eq(cfg.residual_base)]

        # Each part of E values passes the add unit (A lanes) in chunks of A: chunk k is part
        # p's values q*A .. q*A + width - 1 (the beat's off .. off + width - 1); with A = E the
        # chunks are the parts.
        A = c.add_lanes
        chunks = []                                        # (p, q, off, width)
        for p in range(P):
            size = min(E, R - p * E)
            chunks += [(p, q, p * E + q * A, min(A, size - q * A)) for q in range(-(-size // A))]
        ends_part = [k for k, (p, q, off, w) in enumerate(chunks)
                     if k == len(chunks) - 1 or chunks[k + 1][0] != p]
        chunk = _Chunks(m, len(chunks), self.start, "chunk_add")
        ap = au.i.payload
        res_b = [res_fifo.r_data.word_select(j, 8) for j in range(R)]
        for r in range(A):
            a_r = chunk.pick([_lane(epi_y, q * A + r if r < w else None) for p, q, off, w in chunks])
            b_r = chunk.pick([_lane(res_b, off + r if r < w else None, 8) for p, q, off, w in chunks])
            m.d.comb += [ap.a[r].eq(a_r), ap.b[r].eq(Mux(cfg.residual_signed, b_r.as_signed(), b_r))]
        # The add parameters are the RUN's: held with the descriptor for the whole RUN.
        lp = au.param_layout(au.params)
        m.d.comb += [
            lp.in_zero_points[0].eq(cfg.add_zp_a), lp.in_zero_points[1].eq(cfg.add_zp_b),
            lp.left_shift.eq(cfg.add_left_shift), lp.sum_shift.eq(cfg.add_sum_shift),
            lp.branches[0].eq(cfg.add_a), lp.branches[1].eq(cfg.add_b),
            lp.output.eq(cfg.add_out),
            au.start.eq(self.start & cfg.add), au.b_signed.eq(cfg.residual_signed),
            au.i.valid.eq(cfg.add & epi.valid & res_fifo.r_rdy),
            res_fifo.r_en.eq(au.i.valid & au.i.ready & chunk.last),
        ]
        chunk.advance(au.i.valid & au.i.ready)
        added, added_y = _values_stream(A, "added")
        m.d.comb += [added.valid.eq(au.o.valid), added.payload.eq(au.o.payload.y), au.o.ready.eq(added.ready)]

        # --- 2b. parts (no add) or chunks (add) gathered back into beats of R values -----------
        bypass, bypass_y = _values_stream(E, "bypass")
        m.d.comb += [bypass.valid.eq(epi.valid & ~cfg.add), bypass.payload.eq(epi.payload)]
        wide, _ = _gather(m, bypass, bypass_y, [(p * E, min(E, R - p * E)) for p in range(P)], R, self.start,
                          "parts")
        summed, _ = _gather(m, added, added_y, [(off, w) for p, q, off, w in chunks], R, self.start, "chunks")
        after_add, after_add_y = _values_stream(R, "after_add")
        with m.If(cfg.add):
            m.d.comb += [epi.ready.eq(au.i.ready & res_fifo.r_rdy & chunk.among(ends_part)),
                         after_add.valid.eq(summed.valid), after_add.payload.eq(summed.payload),
                         summed.ready.eq(after_add.ready)]
        with m.Else():
            m.d.comb += [epi.ready.eq(bypass.ready),
                         after_add.valid.eq(wide.valid), after_add.payload.eq(wide.payload),
                         wide.ready.eq(after_add.ready)]

        # --- 3. pool -----------------------------------------------------------------------
        pooled, pooled_y = _values_stream(R, "pooled")
        tap = Signal(8, reset_less=True)
        pp = pu.i.payload
        rmin, rmax = -(1 << (pu.sum_bits - 1)), (1 << (pu.sum_bits - 1)) - 1
        clamp = lambda v: Mux(v < rmin, rmin, Mux(v > rmax, rmax, v))
        tfl = cfg.pool_mode == PoolMode.AVG_TFLITE.value
        m.d.comb += [
            pp.last.eq(tap == cfg.pool_taps - 1),
            pp.mode.as_value().eq(cfg.pool_mode),
            pp.mult.eq(cfg.pool_mult),
            pp.shift.eq(cfg.pool_d),
            pp.lo.eq(Mux(tfl, clamp(cfg.pool_lo), rmin)),
            pp.hi.eq(Mux(tfl, clamp(cfg.pool_hi), rmax)),
        ]
        for r in range(R):
            m.d.comb += pp.x[r].eq(after_add_y[r][:POOL_TAP_BITS])
        with m.If(cfg.pool):
            m.d.comb += [pu.i.valid.eq(after_add.valid), after_add.ready.eq(pu.i.ready),
                         pooled.valid.eq(pu.o.valid), pu.o.ready.eq(pooled.ready)]
            m.d.comb += [pooled_y[r].eq(pu.o.payload.y[r]) for r in range(R)]
        with m.Else():
            m.d.comb += [pooled.valid.eq(after_add.valid), pooled.payload.eq(after_add.payload),
                         after_add.ready.eq(pooled.ready)]
        with m.If(pu.i.valid & pu.i.ready):
            m.d.sync += tap.eq(Mux(pp.last, 0, tap + 1))
        with m.If(self.start):
            m.d.sync += tap.eq(0)

        # --- 4. results, the run's final one marked -----------------------------------------
        out_o = Signal(16, reset_less=True)
        out_t = Signal(16, reset_less=True)
        end_o = out_o == cfg.outputs - 1
        end_t = out_t == cfg.n_tiles - 1
        m.d.comb += [
            self.o.valid.eq(pooled.valid),
            self.o.payload.y.eq(pooled.payload),
            self.o.payload.last.eq(end_o & end_t),
            pooled.ready.eq(self.o.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out_o.eq(out_o + 1)
            with m.If(end_o):
                m.d.sync += [out_o.eq(0), out_t.eq(out_t + 1)]
        with m.If(self.start):
            m.d.sync += [out_o.eq(0), out_t.eq(0)]
        return m
