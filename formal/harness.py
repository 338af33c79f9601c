"""Building blocks of the formal harnesses: free stream sources and sinks with the valid/ready
contract, beat counters, and look-up of a component's internal registers by name.

A harness is an ordinary :class:`amaranth.hdl.Elaboratable` that instantiates the component
unchanged and drives every input from a free value (``AnySeq``: a new unconstrained value
each cycle, ``AnyConst``: one unconstrained value for the whole trace), constrained only by
``Assume`` statements that state the environment's side of the stream contract. ``Assert``
statements state the component's side.

The stream contract (Amaranth ``lib.stream``, AXI-Stream): a transfer happens in a cycle
with ``valid & ready``; once ``valid`` is high it stays high, with the same payload, until the
transfer; ``valid`` never waits for ``ready``. Reset (``rst`` of the ``sync`` domain, a free
input here) empties both sides, so the contract and the counters restart after it.
"""

import re

from amaranth import Signal, Value
from amaranth.hdl import Assert, Assume
from amaranth.hdl._ast import AnyConst, AnySeq  # not re-exported by amaranth.hdl in 0.5

__all__ = ["AnyConst", "AnySeq", "registers", "internal", "drive_source", "check_sink",
           "bounded_stall", "counter"]


def registers(fragment):
    """Every signal assigned by a statement anywhere in ``fragment``'s hierarchy, by name.

    Returns ``{name: [Signal, ...]}`` (names are not unique across submodules).
    """
    found = {}
    stack = [fragment]
    while stack:
        frag = stack.pop()
        for stmts in frag.statements.values():
            for stmt in stmts:
                for sig in stmt._lhs_signals():
                    found.setdefault(sig.name, [])
                    if not any(sig is s for s in found[sig.name]):
                        found[sig.name].append(sig)
        stack.extend(sub for sub, *_ in frag.subfragments)
    return found


def internal(fragment, pattern, *, expect=None):
    """The 1-bit registers of ``fragment`` whose names fully match the regex ``pattern``.

    The white-box part of a proof: an occupancy invariant needs the component's stage valid
    flags. Raises LookupError if none match (or not ``expect`` of them), so a renamed or
    re-pipelined component makes the harness fail loudly instead of proving something weaker.
    """
    rx = re.compile(pattern)
    sigs = [s for name, ss in sorted(registers(fragment).items()) if rx.fullmatch(name)
            for s in ss if len(s) == 1]
    if not sigs or (expect is not None and len(sigs) != expect):
        raise LookupError(f"{pattern!r}: found {len(sigs)} one-bit registers"
                          + (f", expected {expect}" if expect is not None else ""))
    return sigs


def drive_source(m, stream, rst, *, payload=None, valid=None):
    """Drive ``stream`` (a component's input) as a free producer that keeps the contract.

    ``payload`` / ``valid`` default to ``AnySeq``; pass an expression to constrain them.
    Returns the transfer strobe ``valid & ready``.
    """
    width = len(Value.cast(stream.payload))
    m.d.comb += [
        stream.valid.eq(AnySeq(1) if valid is None else valid),
        Value.cast(stream.payload).eq(AnySeq(width) if payload is None else payload),
    ]
    waiting = Signal(name=f"{_name(stream)}_src_waiting")
    held = Signal(width, name=f"{_name(stream)}_src_held")
    m.d.sync += [waiting.eq(stream.valid & ~stream.ready), held.eq(stream.payload)]
    with m.If(waiting & ~rst):
        m.d.comb += Assume(stream.valid & (Value.cast(stream.payload) == held))
    fire = Signal(name=f"{_name(stream)}_fire")
    m.d.comb += fire.eq(stream.valid & stream.ready & ~rst)
    return fire


def check_sink(m, stream, rst, *, ready=None):
    """Consume ``stream`` (a component's output) with a free ``ready`` and assert the
    producer's side of the contract: once offered, a beat stays offered, unchanged, until taken.

    Returns the transfer strobe.
    """
    width = len(Value.cast(stream.payload))
    m.d.comb += stream.ready.eq(AnySeq(1) if ready is None else ready)
    waiting = Signal(name=f"{_name(stream)}_snk_waiting")
    held = Signal(width, name=f"{_name(stream)}_snk_held")
    m.d.sync += [waiting.eq(stream.valid & ~stream.ready), held.eq(stream.payload)]
    with m.If(waiting & ~rst):
        m.d.comb += [Assert(stream.valid, "valid dropped before the transfer"),
                     Assert(Value.cast(stream.payload) == held, "payload changed while stalled")]
    fire = Signal(name=f"{_name(stream)}_fire")
    m.d.comb += fire.eq(stream.valid & stream.ready & ~rst)
    return fire


def bounded_stall(m, stream, rst, cycles):
    """Assume the consumer of ``stream`` never keeps ``ready`` low for more than ``cycles``
    consecutive cycles while a beat is offered (used only by the order proofs, see docs)."""
    run = Signal(range(cycles + 2), name=f"{_name(stream)}_stall")
    with m.If(stream.valid & ~stream.ready):
        m.d.sync += run.eq(run + 1)
    with m.Else():
        m.d.sync += run.eq(0)
    with m.If(~rst):
        m.d.comb += Assume(run <= cycles)


def counter(m, name, width, inc=0, dec=0):
    """A modular up/down counter in ``sync`` (reset by rst): ``+inc - dec`` each cycle."""
    c = Signal(width, name=name)
    m.d.sync += c.eq(c + inc - dec)
    return c


def _name(stream):
    try:
        return stream.valid.name.rsplit("__", 1)[0] or "s"
    except AttributeError:
        return "s"
