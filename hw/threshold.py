"""Threshold unit: batch-norm merged with a Q-bit activation as per-channel integer thresholds.

The hardware of :mod:`intdeploy.golden.threshold`: NEMO report Section 3.4, Eq. 19-20 (BN + linear
quantization folded into ``2**Q - 1`` ascending integer thresholds per channel), which is also
QONNX's ``MultiThreshold`` (``out = sum_i (x >= T_i)``). The output is the number of thresholds
``T`` of the channel with ``T <= y``, where ``y = x``, or ``y = -x`` for a channel whose BN
``gamma`` is negative (golden's ``negate`` flag).

The unit stores the thresholds (255 x 32 bits per channel at Q = 8 is too much to travel with
each beat) and searches them with a pipelined binary search, one search level per stage:

    count = 0
    for k in Q-1 .. 0:                         # stage s = Qmax-1-k
        if k < q and T[count + 2**k - 1] <= y:
            count += 2**k

After stage ``s`` the ``s + 1`` high bits of ``count`` are final. Because the thresholds are
ascending, ``n -> T[n-1] <= y`` is monotone in ``n`` and the loop finds the largest ``n`` for
which it holds, which is exactly the number of thresholds ``<= y`` (0..2**q-1). Stage ``s`` only
ever reads the thresholds ``T[n-1]`` whose ``n`` has its lowest set bit at ``k`` (``2**s`` of
them per channel), so each stage owns a memory holding just those: the ``2**Q - 1`` thresholds
are split over ``Q`` memories without duplication and every stage reads its own memory each cycle
(II = 1). A stage's memory is split in two banks by the bit its predecessor decides, so the read
is issued before that bit is known, with both candidates arriving in time for a 2:1 mux; the
read address of a stage never waits on a comparison. Each read is issued two cycles before its
comparison (the block RAM's output is registered, so no comparison starts at a block RAM's
clock-to-output), which needs the bits of stages ``0..s-2`` two cycles ahead: stage ``s``
compares in register ``t[s] = max(t[s-1] + 1, t[s-2] + 3)``, ``t[0] = 2``, alternately one
and two cycles after its predecessor.
"""

from amaranth import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2
import numpy as np

from intdeploy.golden.checks import check_int
from intdeploy.hw.ram import Ram

__all__ = ["ThresholdUnit"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
MAX_CHANNELS = 1 << 16
MAX_LANES = 16


class ThresholdUnit(wiring.Component):
    """Per-channel multi-threshold activation (NEMO Eq. 19-20, QONNX MultiThreshold), II = 1.

    For every lane of a data beat, ``count = #{i < 2**q - 1 : T[c, i] <= y}`` with
    ``y = -x if negate[c] else x`` computed in 33 bits (so ``x = INT32_MIN`` negates exactly to
    ``2**31``, above every int32 threshold), ``c`` the beat's channel, and ``q``, ``negate``,
    ``T[c, :]`` the values last loaded for that channel. Bit-exact with
    ``intdeploy.golden.threshold.threshold(x, T, negate)`` for non-decreasing thresholds; equal neighbours
    are allowed. Nothing saturates or rounds: the comparison is exact.

    Parameters
    ----------
    channels : int
        Number of channels whose thresholds the unit stores, 1..65536.
    max_bits : int
        Largest output precision ``Q_max``, 1..8: up to ``2**Q_max - 1`` thresholds per channel.
        Each channel has its own run-time ``bits`` ``q`` in 1..``Q_max``.
    lanes : int
        Values per data beat, 1..16; each lane has its own channel and its own read port on
        every threshold memory (the memories are replicated per read port by synthesis).
    banked : bool
        False (default): every lane may read every channel, as above. True (``lanes`` a power of
        two): lane ``j`` only ever reads channels ``c`` with ``c % lanes == j`` (the producer
        guarantees it; another channel reads an unspecified row), so channel ``c`` is stored once,
        in lane ``c % lanes``'s own memories at row ``c // lanes``: one copy of the thresholds
        instead of ``lanes`` (the accelerator's epilogue, whose lane ``j`` sees the channels
        ``channel_base + part*E + j``, uses it when ``E`` divides ``R``, and the command processor
        refuses a threshold RUN whose ``channel_base`` is not a multiple of ``E``).

    Attributes
    ----------
    latency : int
        ``compare_at[-1] + 3`` = ``max_bits + 4 + (max_bits - 1) // 2`` (15 at Q_max = 8):
        cycles from a data beat's acceptance to its result being offered.
    compare_at : list of int
        The pipeline register in which each search stage compares (2, 3, 5, 6, 8, 9, 11, 12:
        ``t[s] = max(t[s-1] + 1, t[s-2] + 3)``, see the module docstring).
    fifo_depth : int
        ``latency + 1``: entries of the output FIFO (the beats in flight
        plus one for the cycle of the credit return, see below).
    load : ``In(stream.Signature(load_layout))``
        One threshold per beat; fields:
        ``channel`` unsigned(ceil_log2(channels)) (at least 1 bit),
        ``index`` unsigned(max_bits), 0..2**bits-2, the threshold's position in ascending order,
        ``value`` signed(32), the threshold,
        ``bits`` unsigned(bit_length(max_bits)), the channel's run-time ``q`` (1..Q_max),
        ``negate`` 1 bit, the channel's negate flag.
        Every beat also (re)writes the channel's ``bits`` and ``negate``. A channel is loaded
        with its ``2**q - 1`` beats (any order); thresholds left over from an earlier, larger
        ``q`` are never read (the search is gated by ``k < q``), so no padding is needed and
        a channel never loaded since reset has ``q = 0`` and counts 0. Use :meth:`load_beats`.
    i : ``In(stream.Signature(data_layout))``
        ``x`` array of ``lanes`` signed(32) values, ``channel`` array of ``lanes``
        unsigned(ceil_log2(channels)) channel numbers (a channel >= ``channels`` reads an
        unspecified row).
    o : ``Out(stream.Signature(out_layout))``
        ``count`` array of ``lanes`` unsigned(max_bits) values, one beat per data beat, in order.

    Ordering: a load beat waits until every data beat accepted before it has finished reading
    the memories (``load.ready`` is low while any pipeline stage holds a beat: a load is
    accepted ``compare_at[-1] + 2`` cycles after the last data beat at the earliest), and while a
    load beat is offered no data beat is accepted (``i.ready`` is low), so each data beat sees
    exactly the loads accepted before it. Thresholds can be reloaded between data bursts at one
    threshold per cycle. The producer must not send data for a channel while that channel is
    half reloaded (a mix of old and new thresholds is in general not ascending); other channels
    may be used meanwhile.

    Latency and throughput: a data beat accepted in cycle ``t`` is offered on ``o`` in cycle
    ``t + latency`` at the earliest (one stage reads the channel's ``negate``/``q``, one
    negates, then the search stages, each comparing a registered block-RAM output, then the
    result register writes the output FIFO, which offers the beat the next cycle); one beat
    per cycle in steady state, with no bubbles while ``o.ready`` stays high. A switch from data
    to loading costs the drain of the pipeline (``compare_at[-1] + 1`` cycles). Free-running
    pipeline: every register and memory read port is enabled in every cycle, whatever
    ``o.ready`` says; results wait in the output FIFO of ``fifo_depth``
    entries. A data beat is accepted only against a credit, a free FIFO entry not yet promised
    to a beat in flight; a credit returns the cycle after its beat leaves on ``o``. So nothing
    is lost or duplicated under any backpressure, and ``i.ready`` (credits left and no load
    offered) depends on registers and ``load.valid`` only, never on ``o.ready``. At most
    ``fifo_depth`` beats are inside the unit (pipeline and FIFO) at any time.

    Storage: ``channels * (2**max_bits - 1)`` x 32 bits of thresholds in ``max_bits`` memories
    (stage ``s`` holds ``channels * 2**s`` words, split in two banks for ``s >= 1``), plus
    ``channels`` x (bit_length(max_bits) + 1) bits of per-channel ``q``/``negate``; each memory
    has one write port and ``lanes`` synchronous read ports (``banked``: ``lanes`` groups of
    such memories, each of ``ceil(channels / lanes)`` channels with one read port). The output FIFO holds
    ``fifo_depth`` x ``lanes * max_bits`` bits (an asynchronous-read memory: distributed RAM).

    Raises
    ------
    ValueError
        If ``channels``, ``max_bits`` or ``lanes`` is out of range.
    """

    def __init__(self, *, channels, max_bits, lanes=1, banked=False):
        self.channels = check_int("channels", channels, 1, MAX_CHANNELS)
        self.max_bits = check_int("max_bits", max_bits, 1, 8)
        self.lanes = check_int("lanes", lanes, 1, MAX_LANES)
        if not isinstance(banked, bool):
            raise ValueError(f"banked: {banked!r} is not allowed; True or False")
        if banked and self.lanes & (self.lanes - 1):
            raise ValueError(f"banked: lanes={self.lanes} is not a power of two; banked needs lanes in 1, 2, 4, 8, 16")
        self.banked = banked
        self.channel_bits = max(1, ceil_log2(self.channels))
        self.q_bits = self.max_bits.bit_length()
        # Register in which each search stage compares (see elaborate): stage s needs the
        # bits of stages 0..s-2 two cycles earlier (read address, then the block RAM's output
        # and its register) and the bit of stage s-1 (bank select) in the same register.
        t = []
        for s in range(self.max_bits):
            t.append(max(2 if s == 0 else t[-1] + 1, t[-2] + 3 if s >= 2 else 0))
        self.compare_at = t
        self.latency = t[-1] + 3
        self.fifo_depth = self.latency + 1
        self.load_layout = data.StructLayout({
            "value": signed(32),
            "index": unsigned(self.max_bits),
            "channel": unsigned(self.channel_bits),
            "bits": unsigned(self.q_bits),
            "negate": unsigned(1),
        })
        self.data_layout = data.StructLayout({
            "x": data.ArrayLayout(signed(32), self.lanes),
            "channel": data.ArrayLayout(unsigned(self.channel_bits), self.lanes),
        })
        self.out_layout = data.StructLayout({
            "count": data.ArrayLayout(unsigned(self.max_bits), self.lanes),
        })
        super().__init__({
            "load": In(stream.Signature(self.load_layout)),
            "i": In(stream.Signature(self.data_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    # --- host side -----------------------------------------------------------------------

    def load_beats(self, thresholds, negate=None, *, channels=None):
        """Load-port beats (dicts of ``load_layout`` fields) for golden's thresholds.

        Parameters
        ----------
        thresholds : array_like of int, shape (C, 2**q - 1)
            Ascending (non-decreasing) int32 thresholds per channel, as returned by
            ``intdeploy.golden.threshold.bn_thresholds``; ``q`` (1..max_bits) follows from the shape.
        negate : array_like of bool, shape (C,), optional
            golden's negate flags (``gamma < 0``); default all False.
        channels : sequence of int, optional
            The unit's channel slots receiving rows 0..C-1 (default ``range(C)``); channels with
            a different ``q`` are loaded by separate calls.

        Raises
        ------
        ValueError
            For a shape that is not (C, 2**q - 1) with 1 <= q <= max_bits, a value outside
            int32, a decreasing pair (the message names channel and index), a bad ``negate``
            shape, or a channel slot outside 0..channels-1.
        """
        t = np.asarray(thresholds)
        if t.dtype == object or t.dtype.kind not in "iub":
            raise ValueError(f"thresholds: expected integers, got dtype {t.dtype}")
        if t.ndim != 2 or t.shape[0] < 1:
            raise ValueError(f"thresholds: expected shape (C, 2**q - 1), got {t.shape}")
        q = (t.shape[1] + 1).bit_length() - 1
        if t.shape[1] < 1 or (1 << q) - 1 != t.shape[1] or q > self.max_bits:
            raise ValueError(f"thresholds: row length must be 2**q - 1 with 1 <= q <= max_bits="
                             f"{self.max_bits}, got {t.shape[1]}")
        rows = [[int(v) for v in row] for row in t]
        for c, row in enumerate(rows):
            for j, v in enumerate(row):
                if not INT32_MIN <= v <= INT32_MAX:
                    raise ValueError(f"thresholds[{c}, {j}]: {v} is outside int32 "
                                     f"[{INT32_MIN}, {INT32_MAX}]")
                if j and v < row[j - 1]:
                    raise ValueError(f"thresholds[{c}, {j}]: {v} < thresholds[{c}, {j - 1}] = "
                                     f"{row[j - 1]}; thresholds must be non-decreasing")
        if negate is None:
            neg = [False] * len(rows)
        else:
            n = np.asarray(negate)
            if n.shape != (len(rows),) or n.dtype.kind not in "biu" or np.any((n != 0) & (n != 1)):
                raise ValueError(f"negate: expected {len(rows)} booleans (shape ({len(rows)},)), "
                                 f"got {n.dtype} shape {n.shape}")
            neg = [bool(v) for v in n]
        slots = list(range(len(rows))) if channels is None else [int(c) for c in channels]
        if len(slots) != len(rows):
            raise ValueError(f"channels: expected {len(rows)} channel slots, got {len(slots)}")
        for c in slots:
            check_int("channels", c, 0, self.channels - 1)
        return [{"channel": slot, "index": j, "value": v, "bits": q, "negate": int(neg[r])}
                for r, slot in enumerate(slots) for j, v in enumerate(rows[r])]

    # --- hardware ------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        Q, L, CB, D = self.max_bits, self.lanes, self.channel_bits, self.fifo_depth

        # R[r] (r = 0..F) are the pipeline registers. They advance every cycle: valid[r]
        # marks a beat in R[r], and the beat in R[F] goes into the output FIFO (a register
        # between the last comparison and the FIFO's distributed RAM, whose write port is one
        # place for all lanes). Nothing in the pipeline waits for o.ready, so no enable net
        # reaches every register and memory read port.
        F = self.compare_at[-1] + 1
        valid = [Signal(name=f"valid{r}") for r in range(F + 1)]
        busy = Signal()
        # Free FIFO entries not yet promised to a beat: D minus the beats in R[0..F] and in
        # the FIFO. A beat is accepted only against a credit, so the FIFO never overflows,
        # and i.ready depends on registers alone (no path from o.ready). A credit returns the
        # cycle after its beat leaves the FIFO, hence D = latency + 1 for one beat per cycle.
        credits = Signal(range(D + 1), init=D)
        accept = Signal()
        m.submodules.fifo = fifo = SyncFIFO(width=Shape.cast(self.out_layout).width, depth=D)
        # busy: a beat in R[0..F-1] (R[F] reads no memory: a load may overwrite what its beat has
        # read). A register, computed a cycle early from the flags' next values (valid[0] <=
        # accept, valid[r+1] <= valid[r]), so load.ready leaves the unit from a flip-flop (it
        # crosses the device to the command processor) with the same value in every cycle.
        m.d.sync += busy.eq(accept | Cat(valid[:F - 1]).any())
        m.d.comb += [
            # A pending load blocks new data so that it lands between two data beats.
            self.i.ready.eq((credits != 0) & ~self.load.valid),
            accept.eq(self.i.valid & self.i.ready),
            self.load.ready.eq(~busy),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
            fifo.w_en.eq(valid[F]),
        ]
        m.d.sync += valid[0].eq(accept)
        m.d.sync += [valid[r + 1].eq(valid[r]) for r in range(F)]
        m.d.sync += credits.eq(credits - accept + (self.o.valid & self.o.ready))

        ld = self.load.payload
        load_en = self.load.valid & self.load.ready
        n = Signal(Q)
        m.d.comb += n.eq(ld.index + 1)

        # Per-channel run-time q and negate.
        cfg_layout = data.StructLayout({"bits": unsigned(self.q_bits), "negate": unsigned(1)})
        m.submodules.cfg = cfg = Ram(shape=cfg_layout, depth=self.channels)
        cfg_w = cfg.write_port()
        m.d.comb += [cfg_w.addr.eq(ld.channel), cfg_w.data.bits.eq(ld.bits),
                     cfg_w.data.negate.eq(ld.negate), cfg_w.en.eq(load_en)]

        # Stage s decides bit k = Q-1-s of the count and reads T[n-1] for the n whose lowest
        # set bit is k; its row is (channel, n >> (k+1)), the low bit of which (the previous
        # stage's decision) selects the bank. Banked: channel c lives in group c % L at row
        # c // L; otherwise there is one group, read by every lane.
        G = L if self.banked else 1
        gb = G.bit_length() - 1                      # channel bits that name the group
        rows = -(-self.channels // G)                # channels per group

        def row(channel):
            return channel[gb:] if gb else channel

        groups = []                                  # groups[g][s][b]: a memory
        for g in range(G):
            banks = []
            for s in range(Q):
                k = Q - 1 - s
                hit = load_en & n[k] & ((n[:k] == 0) if k else 1)
                if gb:
                    hit = hit & (ld.channel[:gb] == g)
                p = n[k + 1:Q] if s else None           # s bits
                stage = []
                for b in range(1 if s == 0 else 2):
                    mem = Ram(shape=signed(32), depth=rows << max(s - 1, 0))
                    m.submodules[f"t{s}_{b}" if G == 1 else f"g{g}_t{s}_{b}"] = mem
                    w = mem.write_port()
                    addr = row(ld.channel) if s <= 1 else Cat(p[1:], row(ld.channel))
                    m.d.comb += [w.addr.eq(addr), w.data.eq(ld.value),
                                 w.en.eq(hit & ((p[0] == b) if s else 1))]
                    stage.append(mem)
                banks.append(stage)
            groups.append(banks)

        result = Signal(self.out_layout)
        m.d.comb += fifo.w_data.eq(result)
        t = self.compare_at

        # Data registers have no reset: each is loaded every cycle and only matters while its
        # stage's valid flag is set, and a reset clears those flags (a reset net reaching every
        # data bit is the design's longest wire).
        def regs(name, shape, first, last, lane):
            """One register per pipeline register R[first..last] of ``lane``, by number."""
            return {r: Signal(shape, name=f"{name}{r}_{lane}", reset_less=True)
                    for r in range(first, last + 1)}

        for lane in range(L):
            x0 = Signal(signed(32), name=f"x0_{lane}", reset_less=True)
            c = regs("c", CB, 0, t[-1] - 2, lane)             # the channel, up to the last read
            y = regs("y", signed(33), 1, t[-1], lane)         # up to the last comparison
            q = regs("q", self.q_bits, 1, t[-1], lane)
            # cnt[r]: the count bits decided before R[r] (stage s decides bit Q-1-s in R[t[s]]
            # and holds it from R[t[s] + 1] on); the others are 0.
            cnt = regs("cnt", Q, 1, F, lane)

            m.d.sync += [x0.eq(self.i.payload.x[lane]), c[0].eq(self.i.payload.channel[lane])]
            m.d.sync += [c[r + 1].eq(c[r]) for r in range(t[-1] - 2)]
            m.d.sync += [y[r + 1].eq(y[r]) for r in range(1, t[-1])]
            m.d.sync += [q[r + 1].eq(q[r]) for r in range(1, t[-1])]
            m.d.sync += cnt[1].eq(0)

            cfg_r = cfg.read_port()
            m.d.comb += cfg_r.addr.eq(self.i.payload.channel[lane])
            # 33 bits: -INT32_MIN = 2**31 is above every int32 threshold, as in golden.
            m.d.sync += [y[1].eq(Mux(cfg_r.data.negate, -x0, x0)), q[1].eq(cfg_r.data.bits)]

            decided = {}
            for s in range(Q):
                k = Q - 1 - s
                # Read issued while the beat is in R[t[s] - 2] (its address needs the bits of
                # stages 0..s-2), data in the block RAM's output in R[t[s] - 1], then in a
                # register in R[t[s]], where the bit of stage s-1 selects the bank.
                r0 = t[s] - 2
                reads = []
                for b, mem in enumerate(groups[lane if self.banked else 0][s]):
                    rd = mem.read_port()
                    m.d.comb += rd.addr.eq(row(c[r0]) if s <= 1 else Cat(cnt[r0][Q - s + 1:], row(c[r0])))
                    held = Signal(signed(32), name=f"t{s}_{b}_{lane}", reset_less=True)
                    m.d.sync += held.eq(rd.data)
                    reads.append(held)
                r = t[s]
                th = reads[0] if s == 0 else Mux(cnt[r][Q - s], reads[1], reads[0])
                decided[r] = (k, (y[r] >= th) & (q[r] > k))
            for r in range(1, F):
                nxt = cnt[r]
                if r in decided:
                    k, bit = decided[r]
                    nxt = Cat(cnt[r][:k], bit, cnt[r][k + 1:])
                m.d.sync += cnt[r + 1].eq(nxt)
            m.d.comb += result.count[lane].eq(cnt[F])
        return m
