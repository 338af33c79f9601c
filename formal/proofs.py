"""The proofs: one harness per property set, each with its planted-bug companions.

Every entry of :data:`PROOFS` is a :class:`Proof`; ``build(mutant)`` returns the harness
around the real component from ``hw/`` (``mutant=None``) or around a copy with one planted
bug (a subclass defined in :mod:`formal.mutants`). docs/formal.md describes each proof.
"""

from dataclasses import dataclass, field
from typing import Callable

from amaranth import (ClockDomain, ClockSignal, Const, Elaboratable, Fragment, Module, Mux, Signal, Value, signed,
                      unsigned)
from amaranth.hdl import Assert, Assume, Cover

from formal.harness import AnyConst, AnySeq, bounded_stall, check_sink, counter, drive_source, internal, registers

__all__ = ["Proof", "PROOFS"]


@dataclass
class Proof:
    name: str
    mode: str                       # "prove" (k-induction) or "bmc"
    depth: int
    params: str                     # human-readable parameters / widths
    builder: Callable               # builder(mutant) -> Elaboratable
    mutants: list = field(default_factory=list)
    multiclock: bool = False
    fast: bool = False
    bug_depth: int = 0              # BMC depth of the planted-bug runs (default: depth)

    def build(self, mutant=None):
        if mutant is not None and mutant not in self.mutants:
            raise ValueError(f"mutant: {mutant!r} is not one of {', '.join(self.mutants)}")
        return self.builder(mutant)


class _Harness(Elaboratable):
    """A harness: ``body(m, rst)`` fills the module; the ``sync`` domain's reset is free."""

    def __init__(self, body, *, reset=True):
        self.body, self.reset = body, reset
        # The clock must be a port: an undriven clock makes every flip-flop a constant.
        self.cd = ClockDomain("sync")
        self.ports = [self.cd.clk]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = self.cd
        m.d.comb += cd.rst.eq(AnySeq(1) if self.reset else 0)
        self.body(m, cd.rst)
        return m


def _width_for(n):
    return max(1, n.bit_length()) + 1


def stream_proof(m, rst, dut, frag, *, occupancy, capacity, weight=None, tag=None,
                 stall=None):
    """The common stream properties of a one-input, one-output unit.

    ``occupancy``: expression, the beats inside ``dut`` (from its internal valid flags);
    ``capacity``: its bound; ``weight``: which input beats produce an output (default all);
    ``tag``: ``(in_tag_fn, out_tag_fn, bits)`` to check the order (needs ``stall``).
    """
    m.submodules.dut = frag
    payload = Signal(dut.i.payload.shape(), name="src_payload")
    m.d.comb += Value.cast(payload).eq(AnySeq(len(Value.cast(payload))))
    w = _width_for(capacity)
    fire_in = drive_source(m, dut.i, rst, payload=payload)
    fire_out = check_sink(m, dut.o, rst)
    inc = fire_in & (1 if weight is None else weight(dut.i.payload))
    pending = counter(m, "pending", w, inc, fire_out)
    m.d.comb += [
        Assert(pending == occupancy, "beats in - beats out != beats inside"),
        Assert(pending <= capacity, "more beats inside than the pipeline holds"),
        Assert(~dut.o.valid | (pending != 0), "output without input"),
    ]
    if tag is not None:
        in_tag, out_tag, bits = tag
        seq_in = counter(m, "seq_in", bits, inc)
        seq_out = counter(m, "seq_out", bits, fire_out)
        # Input beats carry their sequence number (only beats that produce an output count).
        m.d.comb += in_tag(payload, seq_in)
        m.d.comb += Assert((seq_in - seq_out)[:bits] == pending[:bits])
        with m.If(dut.o.valid & ~rst):
            m.d.comb += Assert(out_tag(dut.o.payload) == seq_out, "beat out of order")
        bounded_stall(m, dut.o, rst, stall)
    m.d.comb += Cover(fire_out & (pending == 0))
    return fire_in, fire_out


# --- requantizer -----------------------------------------------------------------------------

def _rq_cls(mutant):
    from formal import mutants as mu
    from intdeploy.hw.requantizer import Requantizer
    return Requantizer if mutant is None else mu.REQUANTIZER[mutant]


def _rq_occupancy(frag):
    valid = internal(frag, r"valid\d+")
    skid = internal(frag, r"skid_valid", expect=1)
    return sum(valid) + skid[0], len(valid) + 1


def _requantizer_stream(mutant, *, order=False):
    def body(m, rst):
        tag_bits = 5
        dut = _rq_cls(mutant)(lanes=1, out_bits=2, user=unsigned(tag_bits) if order else None)
        frag = Fragment.get(dut, None)
        occ, cap = _rq_occupancy(frag)
        assert cap < 1 << (tag_bits - 1)
        tag = None
        if order:
            tag = (lambda p, seq: p.user.eq(seq), lambda p: p.user, tag_bits)
        stream_proof(m, rst, dut, frag, occupancy=occ, capacity=cap, tag=tag, stall=1)
    return _Harness(body)


def requantize_reference(p, acc, out_bits):
    """intdeploy.golden.requantizer.requantize for one lane, as an Amaranth expression.

    Transcribes golden's formulation (not the unit's): wrap32(acc + bias), then for floor /
    half_up / half_even / half_away golden's ``round_shift`` on ``x * mult + offset`` (half_away
    on the magnitude, the unit with a corrected rounding constant); for tflite gemmlowp's
    two roundings (the nudged high multiply truncated toward zero, then RoundingDivideByPOT);
    ``+ zero_point``; clip.
    """
    from intdeploy.hw.requantizer import Rounding
    x = (acc + p.bias)[:32].as_signed()
    shift = p.shift
    t = x * p.mult + p.offset                               # signed(65), exact
    q_floor = t >> shift
    half = Mux(shift > 0, Const(1, 1) << (shift - 1)[:6], 0)
    q_half_up = (t + half) >> shift
    rem = t - (q_floor << shift)
    up = (rem > half) | ((rem == half) & (half > 0) & q_floor[0])
    q_half_even = q_floor + up
    # tflite
    left = Mux(shift < 31, 31 - shift, 0)[:5]
    right = Mux(shift > 31, shift - 31, 0)[:6]
    xl = (x << left)[:32].as_signed()
    ab = xl * p.mult
    v = ab + Mux(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = Mux(v >= 0, v >> 31, -((-v) >> 31))
    mask = ((Const(1, 1) << right) - 1)[:32]
    remainder = high.as_unsigned()[:32] & mask
    threshold = (mask >> 1) + (high < 0)
    q_tflite = (high >> right) + (remainder > threshold)
    magnitude = (Mux(t < 0, -t, t) + half) >> shift          # half_away: sign(t) * ((|t| + half) >> s)
    q_half_away = Mux(t < 0, -magnitude, magnitude)
    q = Mux(p.rounding == Rounding.FLOOR, q_floor,
            Mux(p.rounding == Rounding.HALF_UP, q_half_up,
                Mux(p.rounding == Rounding.HALF_EVEN, q_half_even,
                    Mux(p.rounding == Rounding.HALF_AWAY, q_half_away, q_tflite))))
    z = q + p.zero_point
    return Mux(z < p.lo, p.lo, Mux(z > p.hi, p.hi, z))


def _requantizer_equiv(mutant, *, rounding, widths):
    """One symbolic beat through the empty pipeline; its result must equal the reference.

    ``widths``: ``{field: bits}``, every field free within signed(bits) (``shift`` within
    0 .. 2**bits - 1); the unit keeps its full 32/48-bit datapath, only the inputs are reduced.
    """
    from intdeploy.hw.requantizer import LATENCY, Rounding
    out_bits = widths["out"]

    def body(m, rst):
        dut = _rq_cls(mutant)(lanes=1, out_bits=out_bits)
        m.submodules.dut = dut
        beat = Signal(dut.i_layout, name="beat")
        p = beat.params[0]
        # Each field is a free value of its reduced width, sign-extended structurally (not by
        # an Assume on the full-width value), so the solver only searches the narrow bits.
        m.d.comb += [
            beat.acc[0].eq(AnyConst(signed(widths["acc"]))),
            p.bias.eq(AnyConst(signed(widths["acc"]))),
            p.mult.eq(AnyConst(signed(widths["mult"]))),
            p.offset.eq(AnyConst(signed(widths["offset"]))),
            p.zero_point.eq(AnyConst(signed(widths["zero_point"]))),
            p.shift.eq(AnyConst(widths["shift"])),
            p.lo.eq(AnyConst(signed(out_bits))),
            p.hi.eq(AnyConst(signed(out_bits))),
            p.rounding.eq(Rounding.of(rounding)),
            Assume(p.lo <= p.hi),
        ]
        if rounding == "tflite":
            # golden's contract for tflite: mult >= 0, offset 0, shift >= 1 (encode enforces it)
            m.d.comb += [Assume(p.mult >= 0), Assume(p.shift >= 1), Assume(p.offset == 0)]
        cycle = Signal(range(64), name="cycle")
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += [dut.i.valid.eq(cycle == 0), dut.i.payload.eq(beat), dut.o.ready.eq(1)]
        ref = Signal(signed(out_bits), name="reference")
        m.d.comb += ref.eq(requantize_reference(p, beat.acc[0], out_bits))
        with m.If(dut.o.valid):
            m.d.comb += Assert(dut.o.payload.y[0] == ref, "result differs from golden")
        # Not vacuous: the beat does come out (after the documented latency).
        with m.If(cycle == LATENCY):
            m.d.comb += Assert(dut.o.valid, "no result after LATENCY cycles")
    return _Harness(body, reset=False)


# --- the other stream units -----------------------------------------------------------------

def _unit_cls(mutant, module, cls, table):
    import importlib

    from formal import mutants as mu
    return getattr(importlib.import_module(module), cls) if mutant is None else getattr(mu, table)[mutant]


def _one(frag, name):
    """The unique one-bit register called ``name`` in ``frag``'s hierarchy."""
    return internal(frag, name, expect=1)[0]


def _threshold_stream(mutant):
    """ThresholdUnit with a free load stream next to the data stream (loads may arrive at
    any time; the unit serialises them between data beats). Occupancy = the stage flags plus
    the output FIFO's level; the credit count and the FIFO's pointers are tied to it (the
    invariants that make the induction step hold)."""
    def body(m, rst):
        dut = _unit_cls(mutant, "intdeploy.hw.threshold", "ThresholdUnit", "THRESHOLD")(
            channels=2, max_bits=2, lanes=1)
        frag = Fragment.get(dut, None)
        valid = internal(frag, r"valid\d+", expect=dut.compare_at[-1] + 2)
        regs = registers(frag)
        credits, level, produce, consume = (_unique(regs, n) for n in
                                            ("credits", "level", "produce", "consume"))
        D = dut.fifo_depth
        drive_source(m, dut.load, rst)
        occ = sum(valid) + level
        stream_proof(m, rst, dut, frag, occupancy=occ, capacity=D)
        with m.If(~rst):
            m.d.comb += [
                Assert(credits + occ == D, "credits + beats inside != FIFO depth"),
                Assert((produce < D) & (consume < D)),
                Assert(Mux(produce == consume, (level == 0) | (level == D),
                           level == Mux(produce > consume, 0, D) + produce - consume),
                       "FIFO level does not match its pointers"),
            ]
    return _Harness(body)


def _unique(regs, name):
    """The only register called ``name`` (see :func:`formal.harness.registers`)."""
    found = regs.get(name, [])
    if len(found) != 1:
        raise LookupError(f"{name!r}: found {len(found)} registers, expected 1")
    return found[0]


def _add_stream(mutant):
    """AddUnit: two input stages, the branch requantizer, the sum and shift stages, the output requantizer
    (occupancy from all their stage flags and both skid buffers)."""
    def body(m, rst):
        dut = _unit_cls(mutant, "intdeploy.hw.add", "AddUnit", "ADD")(lanes=1, in_bits=2, out_bits=2)
        frag = Fragment.get(dut, None)
        flags = (internal(frag, r"in_valid\d", expect=2) + internal(frag, r"sum_valid\d", expect=2)
                 + internal(frag, r"valid\d+") + internal(frag, r"skid_valid", expect=2))
        stream_proof(m, rst, dut, frag, occupancy=sum(flags), capacity=len(flags))
    return _Harness(body)


def _add_table_stream(mutant):
    """AddUnit with branch b by table (b_table_bits=2): the same contract with free ``start``
    pulses, so that fills (and the beats they hold back) come at any time. The occupancy counts
    the datapath's flags only: the fill requantizer's beats are not stream beats."""
    def body(m, rst):
        dut = _unit_cls(mutant, "intdeploy.hw.add", "AddUnit", "ADD")(lanes=1, in_bits=2, out_bits=2,
                                                                      b_table_bits=2)
        frag = Fragment.get(dut, None)
        subs = {name: sub for sub, name, *_ in frag.subfragments}
        flags = internal(frag, r"in_valid\d", expect=2) + internal(frag, r"sum_valid\d", expect=2)
        for unit in ("branches", "output"):
            flags += internal(subs[unit], r"valid\d+") + internal(subs[unit], r"skid_valid", expect=1)
        m.d.comb += dut.start.eq(AnySeq(1))
        stream_proof(m, rst, dut, frag, occupancy=sum(flags), capacity=len(flags))
    return _Harness(body)


def _mac_stream(mutant):
    """MacArray: a step stream in, one result per ``last`` step out (conservation counts the
    ``last`` steps); occupancy = ``last`` steps in the pipeline + the held result."""
    def body(m, rst):
        dut = _unit_cls(mutant, "intdeploy.hw.mac_array", "MacArray", "MAC_ARRAY")(rows=1, cols=2)
        frag = Fragment.get(dut, None)
        n = 3 + dut.depth
        occ = sum(_one(frag, f"valid{k}") & _one(frag, f"last{k}") for k in range(1, n + 1))
        stream_proof(m, rst, dut, frag, occupancy=occ + dut.o.valid, capacity=n + 1,
                     weight=lambda p: p.last)
    return _Harness(body)


def _pool_stream(mutant):
    """PoolUnit: a tap stream in, one result per window (``last`` tap) out; occupancy = the
    window stage flags W, E1, E2, E3, O."""
    def body(m, rst):
        dut = _unit_cls(mutant, "intdeploy.hw.pool", "PoolUnit", "POOL")(lanes=1, in_bits=3, max_taps=4,
                                                                max_shift=2)
        frag = Fragment.get(dut, None)
        flags = [_one(frag, f"valid_{s}") for s in ("w", "e1", "e2", "e3", "o")]
        stream_proof(m, rst, dut, frag, occupancy=sum(flags), capacity=len(flags),
                     weight=lambda p: p.last)
    return _Harness(body)


def _packer_stream(mutant):
    """ResultPacker (BMC): the output keeps the stream contract under a free consumer (free
    ``ready`` and ``two``), and results are conserved: final words (``last``, or ``next_last``
    of a pair taken) out never outrun final beats in, nor lag them by more than the one result
    in flight; no pair is offered after a final word; ``out_bytes`` is free but constant."""
    def body(m, rst):
        dut = _unit_cls(mutant, "intdeploy.hw.packer", "ResultPacker", "PACKER")(lanes=2)
        m.submodules.dut = dut
        ob = Signal(2, name="out_bytes")
        m.d.comb += [ob.eq(AnyConst(2)), Assume(ob != 3), dut.out_bytes.eq(ob)]
        fire_in = drive_source(m, dut.i, rst)
        fire_out = check_sink(m, dut.o, rst)
        o = dut.o.payload
        m.d.comb += dut.two.eq(AnySeq(1))       # the consumer takes an offered pair or not
        final = Mux(dut.two & o.has_next, o.next_last, o.last)
        results = counter(m, "results_inside", 4, fire_in & dut.i.payload.last, fire_out & final)
        with m.If(dut.o.valid & ~rst):
            m.d.comb += Assert(~(o.has_next & o.last), "a pair offered after the final word")
        m.d.comb += Assert(results.as_signed() >= 0, "a final word without a final beat")
        m.d.comb += Assert(results.as_signed() <= 2, "a result lost")
    return _Harness(body)


def _silence_unused(obj, depth=3):
    """Mark ``obj`` and the elaboratables it holds as deliberately unused (Amaranth otherwise
    warns about each one at garbage collection)."""
    if isinstance(obj, Elaboratable):
        obj._MustUse__silence = True
        if depth:
            for v in vars(obj).values():
                _silence_unused(v, depth - 1)


def _command_stream(mutant):
    """CommandProcessor (BMC): free command words in (any garbage, keeping the input contract),
    free ``ready`` on every output stream, free ``results`` and ``mac_step``: the response stream,
    the threshold-load stream and the run stream keep the output contract. Built as in the
    core, for a small configuration."""
    def body(m, rst):
        from intdeploy.hw.config import AcceleratorConfig
        from intdeploy.hw.core import Core
        cfg = AcceleratorConfig(rows=2, cols=2, weight_depth=16, act_depth=16, param_channels=4,
                                residual_depth=16, threshold_channels=2, max_q=2, max_pool_taps=4)
        core = Core(config=cfg)        # built for its layouts; only its command processor is used
        _silence_unused(core)
        cmd = core.command
        if mutant is not None:
            from formal import mutants as mu
            cmd = mu.COMMAND[mutant](config=cfg, entry_layout=core.entry_layout,
                                     load_layout=core.epilogue.threshold.load_layout,
                                     run_layout=core.run_layout)
        m.submodules.dut = cmd
        drive_source(m, cmd.i, rst)
        drive_source(m, cmd.results, rst)
        m.d.comb += [cmd.mac_step.eq(AnySeq(1)), cmd.o_two.eq(AnySeq(1))]
        for s_ in (cmd.o, cmd.thresholds, cmd.run):
            check_sink(m, s_, rst)
    return _Harness(body)


# --- the list -------------------------------------------------------------------------------

PROOFS = [
    Proof("requantizer_stream", "prove", 4, "lanes=1 out_bits=2", _requantizer_stream,
          mutants=["skid_ignored", "no_backpressure"], fast=True, bug_depth=14),
    Proof("requantizer_order", "bmc", 24, "lanes=1 out_bits=2 tag=5b stall<=1",
          lambda mu: _requantizer_stream(mu, order=True), mutants=["skid_ignored"]),
]
EQUIV_WIDTHS = {"acc": 6, "mult": 4, "offset": 6, "zero_point": 3, "shift": 3, "out": 4}
for _mode, _mutants in (("floor", []), ("half_up", ["half_up_as_floor"]),
                        ("half_even", ["no_even_fix"]), ("tflite", ["no_tflite_nudge"]),
                        ("half_away", ["half_away_as_half_up"])):
    PROOFS.append(Proof(
        f"requantizer_equiv_{_mode}", "bmc", 11,
        f"{_mode}; acc,bias int6, mult int4, offset int6, zp int3, shift<8, y int4",
        (lambda r: lambda mu: _requantizer_equiv(mu, rounding=r, widths=EQUIV_WIDTHS))(_mode),
        mutants=_mutants))


# --- clock-domain crossing ------------------------------------------------------------------

def _cdc_cls(mutant):
    from formal import mutants as mu
    from intdeploy.hw.cdc import AsyncFIFO
    return AsyncFIFO if mutant is None else mu.ASYNC_FIFO[mutant]


class _CdcHarness(Elaboratable):
    """intdeploy.hw.cdc.AsyncFIFO between two free clocks (``multiclock on``: every clock edge pattern,
    hence every frequency ratio and phase, is explored) with asynchronous resets.

    Reset, per the unit's contract: one free source ``arst`` asserts both sides' resets at
    once; each side then releases its reset whenever it likes (any order, any delay), the way
    the top's two ResetSynchronizers do. The writer offers its sequence number (modulo
    2**``bits``) and keeps the stream contract; the reader, with a free ``ready``, must see
    exactly 0, 1, 2, ... since the last reset: no loss, no duplication, order kept.
    """

    def __init__(self, mutant, *, depth, bits):
        self.mutant, self.depth, self.bits = mutant, depth, bits
        self.ports = []

    def elaborate(self, platform):
        m = Module()
        m.domains.w = cw = ClockDomain("w", async_reset=True)
        m.domains.r = cr = ClockDomain("r", async_reset=True)
        arst = Signal(name="arst")
        w_hold, r_hold = Signal(name="w_rst_hold"), Signal(name="r_rst_hold")
        m.d.comb += [cw.clk.eq(AnySeq(1)), cr.clk.eq(AnySeq(1)), arst.eq(AnySeq(1)),
                     w_hold.eq(AnySeq(1)), r_hold.eq(AnySeq(1))]
        # A side's reset, once asserted, stays asserted until the side chooses to release it
        # (sampled by the side's own clock, like a reset synchronizer's last flop).
        w_prev, r_prev = Signal(init=1, name="w_rst_prev"), Signal(init=1, name="r_rst_prev")
        m.domains.w_hold = ClockDomain("w_hold", reset_less=True)
        m.domains.r_hold = ClockDomain("r_hold", reset_less=True)
        m.d.comb += [ClockSignal("w_hold").eq(cw.clk), ClockSignal("r_hold").eq(cr.clk),
                     cw.rst.eq(arst | (w_prev & w_hold)), cr.rst.eq(arst | (r_prev & r_hold))]
        m.d.w_hold += w_prev.eq(cw.rst)
        m.d.r_hold += r_prev.eq(cr.rst)

        dut = _cdc_cls(self.mutant)(shape=self.bits, depth=self.depth, w_domain="w",
                                   r_domain="r")
        m.submodules.dut = dut
        w_seq = Signal(self.bits, name="w_seq")
        r_seq = Signal(self.bits, name="r_seq")
        # Writer: offers w_seq; once valid, stays valid until taken (same payload: w_seq only
        # moves on a transfer).
        w_waiting = Signal(name="w_waiting")
        m.d.comb += [dut.w.payload.eq(w_seq), dut.w.valid.eq(AnySeq(1) | w_waiting)]
        with m.If(dut.w.valid & dut.w.ready):
            m.d.w += w_seq.eq(w_seq + 1)
        m.d.w += w_waiting.eq(dut.w.valid & ~dut.w.ready)
        m.d.comb += dut.r.ready.eq(AnySeq(1))
        with m.If(dut.r.valid & dut.r.ready):
            m.d.r += r_seq.eq(r_seq + 1)
        with m.If(dut.r.valid):
            m.d.comb += Assert(dut.r.payload == r_seq, "word lost, duplicated or out of order")
        with m.If(cw.rst):
            m.d.comb += Assert(~dut.w.ready, "write side ready during reset")
        with m.If(cr.rst):
            m.d.comb += Assert(~dut.r.valid, "read side valid during reset")
        # The read side's contract: an offered word stays offered until taken (outside reset).
        r_waiting = Signal(name="r_waiting")
        r_held = Signal(self.bits, name="r_held")
        m.d.r += [r_waiting.eq(dut.r.valid & ~dut.r.ready), r_held.eq(dut.r.payload)]
        with m.If(r_waiting & ~cr.rst):
            m.d.comb += Assert(dut.r.valid & (dut.r.payload == r_held), "read side retracted")
        # Not vacuous: the FIFO fills up, and words pass after a reset.
        m.d.comb += Cover(~dut.w.ready & ~cw.rst & (r_seq == 1))
        return m


PROOFS.append(Proof("cdc_fifo", "bmc", 20, "depth=4, 4-bit words, free clocks, async resets",
                    lambda mu: _CdcHarness(mu, depth=4, bits=4), multiclock=True,
                    mutants=["no_full", "unsynchronized_wptr"]))

PROOFS += [
    Proof("threshold_stream", "prove", 6, "channels=2 max_bits=2 lanes=1, free loads",
          _threshold_stream, mutants=["no_credit_check"], fast=True, bug_depth=12),
    Proof("add_stream", "prove", 6, "lanes=1 in_bits=2 out_bits=2", _add_stream,
          mutants=["sum_ignores_stall"], fast=True, bug_depth=26),
    Proof("add_table_stream", "prove", 6, "lanes=1 in_bits=2 out_bits=2 b_table_bits=2, free start",
          _add_table_stream, mutants=["ready_ignores_table"], fast=True, bug_depth=20),
    Proof("pool_stream", "prove", 6, "lanes=1 in_bits=3 max_taps=4 max_shift=2", _pool_stream,
          mutants=["no_stall"], fast=True, bug_depth=8),
    Proof("packer_stream", "bmc", 30, "lanes=2, out_bytes 1/2/4 (free, constant)",
          _packer_stream, mutants=["no_backpressure"], fast=True),
    Proof("command_stream", "bmc", 20, "rows=cols=2, small buffers, garbage words",
          _command_stream, mutants=["response_retracted"], fast=True),
    Proof("mac_array_stream", "prove", 8, "rows=1 cols=2 int8, acc 32b", _mac_stream,
          mutants=["result_overwritten"], fast=True, bug_depth=10),
]
