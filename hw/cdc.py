"""Clock-domain crossing: 2-flop synchronizers, a reset synchronizer and an asynchronous FIFO.

These are the only structures of the accelerator through which a signal passes from one clock
domain to the other (docs/top.md lists every instance). They are written here rather than
taken from :mod:`amaranth.lib.cdc` / :mod:`amaranth.lib.fifo` for two reasons:

* **Reset.** Amaranth's ``AsyncFIFO`` resets only from its write domain, and its read side
  keeps following the write pointer for two read-clock cycles after that reset ends, dropping
  whatever is written in that window (amaranth#683, PR #591). :class:`AsyncFIFO` here resets
  both sides *asynchronously and together*: every pointer register and synchronizer flop of
  both sides is in an asynchronous-reset domain, and the top asserts both domains' resets at
  the same instant (from the OR of the two external resets, see :class:`ResetSynchronizer`).
  A reset therefore empties the FIFO at once on both sides, whatever the clock ratio; the two
  sides may leave reset in either order, because each side only ever sees the other's pointer
  at its reset value or counting up from it.
* **Constraints.** Every synchronizer flop is named ``cdc_<what>_s<k>`` and carries
  ``ASYNC_REG = "TRUE"``, every Gray pointer register is named ``cdc_<fifo>_<w|r>ptr_gray``, so
  :mod:`intdeploy.hw.generate` can write SDC/XDC constraints that find them by name (the first stage's
  input is the only asynchronous timing path of a synchronizer).
"""

from amaranth import ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["ASYNC_REG", "synchronize", "ResetSynchronizer", "AsyncFIFO", "gray_encode"]

#: Attributes of every synchronizer flop (Vivado keeps them together and out of SRL shifts).
ASYNC_REG = {"ASYNC_REG": "TRUE"}


def gray_encode(value):
    """Gray code of an unsigned value (same width)."""
    return value ^ value[1:]


def synchronize(m, value, domain, name, *, stages=2):
    """``value`` through ``stages`` flops in ``domain``; returns the last flop.

    The flops are named ``cdc_<name>_s0 .. s<stages-1>``, reset to 0 by ``domain``'s reset and
    marked ``ASYNC_REG``. Only a value that changes one bit at a time (a Gray pointer) or a
    level held for several destination cycles may be synchronized this way.
    """
    if stages < 2:
        raise ValueError(f"stages: {stages} is not allowed; at least 2")
    prev = value
    for k in range(stages):
        flop = Signal(value.shape(), name=f"cdc_{name}_s{k}", attrs=ASYNC_REG)
        m.d[domain] += flop.eq(prev)
        prev = flop
    return prev


class ResetSynchronizer(wiring.Component):
    """Asynchronous-assert, synchronous-release reset for the clock of ``domain``.

    ``rst`` goes high as soon as ``arst`` goes high (no clock edge needed) and stays high
    until ``stages`` rising edges of ``domain``'s clock have seen ``arst`` low. The flops are
    named ``cdc_rst_s<k>`` (``ASYNC_REG``); only their first stage has an asynchronous input.
    Use ``rst`` as the reset of every domain on that clock (asynchronous-reset domains see it at
    once, synchronous-reset domains at their next edge).

    Parameters
    ----------
    domain : str
        The domain whose clock the flops use; it must run.
    stages : int, >= 2
        Release delay in clock cycles.

    Attributes
    ----------
    arst : ``In(1)``
        Asynchronous reset request, active high.
    rst : ``Out(1)``
        The synchronized reset, active high.
    """

    def __init__(self, *, domain, stages=2):
        if not isinstance(stages, int) or stages < 2:
            raise ValueError(f"stages: {stages!r} is not allowed; an integer >= 2")
        self._domain = domain
        self._stages = stages
        super().__init__({"arst": In(1), "rst": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # A private domain on the same clock whose asynchronous reset is `arst`: its flops are
        # set at once by `arst` and shift zeros out after it falls.
        m.domains.rst_sync = cd = ClockDomain("rst_sync", async_reset=True, local=True)
        m.d.comb += [cd.clk.eq(ClockSignal(self._domain)), cd.rst.eq(self.arst)]
        prev = 0
        for k in range(self._stages):
            flop = Signal(name=f"cdc_rst_s{k}", init=1, attrs=ASYNC_REG)
            m.d.rst_sync += flop.eq(prev)
            prev = flop
        m.d.comb += self.rst.eq(prev)
        return m


class AsyncFIFO(wiring.Component):
    """First-in first-out queue between two clock domains, with stream interfaces.

    Cummings' "style #2" asynchronous FIFO (SNUG 2002): binary and Gray pointers of
    ``ceil_log2(depth) + 1`` bits on each side, each side's Gray pointer synchronized into the
    other through two ``ASYNC_REG`` flops (``cdc_<name>_wptr_s*``, ``cdc_<name>_rptr_s*``), data
    in a dual-clock memory written by the write domain and read by the read domain. The memory
    contents never cross untimed: a word is read only after its write pointer increment has
    passed the synchronizer, two or more read-clock edges after it was written.

    Reset contract: ``w_domain`` and ``r_domain`` must be *asynchronous-reset* domains
    (``ClockDomain(async_reset=True)``) whose resets are asserted together from one source
    (the top drives both from the OR of the two external resets through
    :class:`ResetSynchronizer`). Reset empties the queue on both sides at once; the sides may
    leave reset in any order. Data in flight is lost.

    Latency: a word written at a write-clock edge is offered on ``r`` after 3 read-clock edges
    at most (pointer register, two synchronizer stages) plus the phase offset. Throughput: one
    word per cycle on each side while neither full nor empty.

    Parameters
    ----------
    shape : shape-castable
        Payload shape of both streams.
    depth : int, power of 2, >= 4
        Capacity in words. To sustain one word per cycle across the crossing the depth must
        cover the round trip of the pointers (about 3 cycles of each clock plus the phase).
    w_domain, r_domain : str
        Write and read clock domains (distinct).
    name : str
        Prefix of the synchronizer flop names (``cdc_<name>_wptr_s0`` ...).

    Attributes
    ----------
    w : ``In(stream.Signature(shape))``
        Write side, in ``w_domain``; ``w.ready`` is low while full and during reset.
    r : ``Out(stream.Signature(shape))``
        Read side, in ``r_domain``; ``r.valid`` is low while empty and during reset.
    """

    def __init__(self, *, shape, depth, w_domain, r_domain, name="fifo"):
        if not isinstance(depth, int) or depth < 4 or depth & (depth - 1):
            raise ValueError(f"depth: {depth!r} is not allowed; a power of 2, >= 4")
        if w_domain == r_domain:
            raise ValueError(f"r_domain: {r_domain!r} must differ from w_domain")
        self.shape = shape
        self.depth = depth
        self._w_domain = w_domain
        self._r_domain = r_domain
        self._name = name
        super().__init__({"w": In(stream.Signature(shape)), "r": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        bits = ceil_log2(self.depth) + 1
        wd, rd = self._w_domain, self._r_domain

        # Write side.
        # The Gray registers are what the other side samples: named for the constraints.
        w_bin = Signal(bits)
        w_gray = Signal(bits, name=f"cdc_{self._name}_wptr_gray")
        r_bin = Signal(bits)
        r_gray = Signal(bits, name=f"cdc_{self._name}_rptr_gray")
        r_gray_w = synchronize(m, r_gray, wd, f"{self._name}_rptr")
        full = Signal()
        w_do = Signal()
        w_rst = ResetSignal(wd)
        m.d.comb += [
            full.eq((w_gray[-1] != r_gray_w[-1]) & (w_gray[-2] != r_gray_w[-2]) &
                    (w_gray[:-2] == r_gray_w[:-2])),
            self.w.ready.eq(~full & ~w_rst),
            w_do.eq(self.w.valid & self.w.ready),
        ]
        w_next = Signal(bits)
        m.d.comb += w_next.eq(w_bin + w_do)
        m.d[wd] += [w_bin.eq(w_next), w_gray.eq(gray_encode(w_next))]

        # Read side.
        w_gray_r = synchronize(m, w_gray, rd, f"{self._name}_wptr")
        empty = Signal()
        r_do = Signal()
        r_rst = ResetSignal(rd)
        m.d.comb += [
            empty.eq(r_gray == w_gray_r),
            self.r.valid.eq(~empty & ~r_rst),
            r_do.eq(self.r.valid & self.r.ready),
        ]
        r_next = Signal(bits)
        m.d.comb += r_next.eq(r_bin + r_do)
        m.d[rd] += [r_bin.eq(r_next), r_gray.eq(gray_encode(r_next))]

        m.submodules.storage = mem = Memory(shape=self.shape, depth=self.depth, init=[])
        wp = mem.write_port(domain=wd)
        rp = mem.read_port(domain=rd)
        m.d.comb += [
            wp.addr.eq(w_bin[:-1]), wp.data.eq(self.w.payload), wp.en.eq(w_do),
            # Reading the next address every cycle keeps the output word current: a word is
            # visible only once its pointer increment has crossed, by which time it has been
            # re-read after its write.
            rp.addr.eq(r_next[:-1]), rp.en.eq(1),
            self.r.payload.eq(rp.data),
        ]
        return m

