"""The accelerator top: AXI4-Stream ports in the bus clock domain, the core in the core domain.

::

    bus domain                              | core domain
    s_axis --> AsyncFIFO (beats) -----------|--> BeatsToWords --> Core --> WordsToBeats --+
    m_axis <-- AsyncFIFO (beats) <----------|------------------------------------------------+
    bus_rst --+--> ResetSynchronizer (bus)  |
    core_rst -+--> ResetSynchronizer (core) |

docs/top.md describes the architecture, every clock-domain crossing, the reset behaviour,
latencies and buffer sizing; docs/protocol.md the command protocol.
"""

from amaranth import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from intdeploy.hw.cdc import AsyncFIFO, ResetSynchronizer
from intdeploy.hw.config import AcceleratorConfig
from intdeploy.hw.core import Core
from intdeploy.hw.words import BeatsToWords, WordsToBeats, beat_layout

__all__ = ["AXIStreamSignature", "Accelerator"]


class AXIStreamSignature(wiring.Signature):
    """AXI4-Stream without TKEEP/TSTRB/TID/TDEST/TUSER, from the transmitter's side:
    ``tdata`` (``data_width``), ``tvalid``, ``tlast`` out; ``tready`` in. In Verilog the ports
    are ``<name>__tdata`` ... (Amaranth joins member paths with ``__``)."""

    def __init__(self, data_width):
        self.data_width = data_width
        super().__init__({"tdata": Out(data_width), "tvalid": Out(1), "tlast": Out(1),
                          "tready": In(1)})


class Accelerator(wiring.Component):
    """The int8 accelerator: command packets in on ``s_axis``, responses out on ``m_axis``.

    Parameters (keyword-only): those of :class:`intdeploy.hw.config.AcceleratorConfig` (``rows``,
    ``cols``, ``bus_width=64``, ``weight_bits=8``, ``weight_depth``, ``weight_banks=2``,
    ``act_depth``, ``param_channels``, ``residual_depth``, ``threshold_channels``,
    ``max_q=8``, ``max_pool_taps=16``, ``max_pool_shift=16``, ``fifo_depth=16``, ``epilogue_lanes``
    (values the epilogue handles per cycle, default ``min(R, 4)``), ``add_lanes`` (values the add
    unit handles per cycle, default ``epilogue_lanes``)), validated
    on construction (``ValueError`` naming the parameter).

    Attributes
    ----------
    bus_clk, bus_rst : ``In(1)``
        Bus clock and its reset (active high, may be asynchronous).
    core_clk, core_rst : ``In(1)``
        Core clock and its reset (active high, may be asynchronous).
    s_axis : ``In(AXIStreamSignature(bus_width))``
        Command stream, bus domain.
    m_axis : ``Out(AXIStreamSignature(bus_width))``
        Response stream, bus domain.
    config : AcceleratorConfig

    Reset: either reset input resets both domains (the two are ORed, then each domain gets an
    asynchronous-assert, synchronous-release copy): both FIFOs empty at once, the core returns
    to its reset state, every packet in flight is lost. ``s_axis.tready`` and
    ``m_axis.tvalid`` are low while the bus domain is in reset. After the core leaves reset it
    disables the threshold channels (``threshold_channels`` core cycles) before reading the
    first command.
    """

    def __init__(self, **params):
        self.config = AcceleratorConfig(**params)
        bw = self.config.bus_width
        super().__init__({
            "bus_clk": In(1), "bus_rst": In(1), "core_clk": In(1), "core_rst": In(1),
            "s_axis": In(AXIStreamSignature(bw)),
            "m_axis": Out(AXIStreamSignature(bw)),
        })

    def __repr__(self):
        return f"Accelerator({self.config.key()})"

    def elaborate(self, platform):
        m, cmd_fifo, resp_fifo = self.crossings()
        c = self.config
        to_core = DomainRenamer("core")
        m.submodules.unpack = unpack = to_core(BeatsToWords(bus_width=c.bus_width))
        m.submodules.core = core = to_core(Core(config=c))
        m.submodules.pack = pack = to_core(WordsToBeats(bus_width=c.bus_width))
        wiring.connect(m, cmd_fifo.r, unpack.i)
        wiring.connect(m, unpack.o, core.i)
        m.d.comb += unpack.two.eq(core.two)
        wiring.connect(m, core.o, pack.i)
        m.d.comb += core.o_two.eq(pack.two)
        wiring.connect(m, pack.o, resp_fifo.w)
        return m

    def crossings(self):
        """The module with the top's clock domains, reset synchronizers, the two asynchronous
        FIFOs and the AXI4-Stream ports wired to them: everything that crosses between the clocks
        (the constraints of :mod:`intdeploy.hw.generate` are about these). Returns ``(module,
        cmd_fifo, resp_fifo)``; the command FIFO's read side and the response FIFO's write side
        are in the core domain, left to connect."""
        m = Module()
        c = self.config
        # Logic domains (synchronous reset) and the FIFOs' pointer domains (asynchronous reset),
        # two per clock, all reset by that clock's reset synchronizer.
        for name, clk in (("bus", self.bus_clk), ("core", self.core_clk)):
            m.domains += [ClockDomain(name, local=True),
                          ClockDomain(name + "_cdc", async_reset=True, local=True)]
            sync = m.submodules[f"{name}_reset"] = ResetSynchronizer(domain=name)
            m.d.comb += [
                ClockSignal(name).eq(clk), ClockSignal(name + "_cdc").eq(clk),
                sync.arst.eq(self.bus_rst | self.core_rst),
                ResetSignal(name).eq(sync.rst), ResetSignal(name + "_cdc").eq(sync.rst),
            ]

        beat = beat_layout(c.bus_width)
        m.submodules.cmd_fifo = cmd_fifo = AsyncFIFO(shape=beat, depth=c.fifo_depth,
                                                     w_domain="bus_cdc", r_domain="core_cdc",
                                                     name="cmd")
        m.submodules.resp_fifo = resp_fifo = AsyncFIFO(shape=beat, depth=c.fifo_depth,
                                                       w_domain="core_cdc", r_domain="bus_cdc",
                                                       name="resp")

        m.d.comb += [
            cmd_fifo.w.valid.eq(self.s_axis.tvalid),
            cmd_fifo.w.payload.data.eq(self.s_axis.tdata),
            cmd_fifo.w.payload.last.eq(self.s_axis.tlast),
            self.s_axis.tready.eq(cmd_fifo.w.ready),
            self.m_axis.tvalid.eq(resp_fifo.r.valid),
            self.m_axis.tdata.eq(resp_fifo.r.payload.data),
            self.m_axis.tlast.eq(resp_fifo.r.payload.last),
            resp_fifo.r.ready.eq(self.m_axis.tready),
        ]
        return m, cmd_fifo, resp_fifo
