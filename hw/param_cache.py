"""The parameter cache: the R channel parameter entries of a tile, double-buffered.

A RUN's tile ``n`` uses parameter channels ``channel_base + n*R .. + R - 1``: their weight zero
points enter the MAC array with every step of the tile, and their requantizer parameters enter
the requantizer with every accumulator beat of the tile. The parameter buffer has one read port
and one entry per channel, so the cache copies a tile's R entries (R + 1 cycles) while the
previous tile is still being computed, and holds them until the tile's last accumulator beat has
entered the epilogue.

The parameters stay where they are stored: the epilogue takes an accumulator beat in
``P = ceil(R / E)`` parts of ``E`` values, and lane ``r`` of part ``p`` is channel ``p*E + r`` of
the tile, so entry ``j`` of a tile is written into a small memory of lane ``j % E`` (LUT RAM, two
banks of ``P`` entries) and the epilogue reads each lane's entry for the current part directly;
only the weight zero points, which the MAC array needs for all R channels at once, are kept in
registers.
"""

from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from intdeploy.hw.ram import Ram

__all__ = ["ParamCache"]


class ParamCache(wiring.Component):
    """Two banks of ``lanes`` parameter entries, filled tile after tile from the parameter buffer.

    A bank goes *free* -> *loaded* (the loader copied its tile's entries) -> *free* (the
    epilogue signalled ``out_next`` after the tile's last beat). Tiles use banks 0, 1, 0, ...;
    the MAC side (``issue_*``) and the epilogue side (``out_*``) each follow their own tile
    pointer, so tile ``n + 1`` is loaded while tile ``n`` is issued and drained. The MAC array
    never waits for parameters when a tile lasts at least ``lanes + 2`` cycles plus the MAC
    array's latency (its predecessor must have drained before its bank can be refilled).

    Parameters
    ----------
    lanes : int
        R, entries per tile.
    entry_layout : data layout
        A parameter buffer entry; it must have a ``w_zp`` field.
    addr_width : int
        Address width of the parameter buffer.
    out_lanes : int or None
        E, the entries the epilogue reads at a time (default ``lanes``): entry ``j`` of a tile is
        read as lane ``j % E`` of part ``j // E``.

    Attributes
    ----------
    start : ``In(1)``
        Pulse: a RUN begins (its ``channel_base`` and ``n_tiles`` are then held constant).
    channel_base : ``In(addr_width)``; n_tiles : ``In(16)``
    mem : ``In(ReadPort.Signature(addr_width=addr_width, shape=entry_layout))``
        The parameter buffer's read port (driven by the cache).
    issue_ready : ``Out(1)``
        The MAC side's current tile is loaded.
    issue_next : ``In(1)``
        Pulse: the MAC side is done with its current tile.
    issue_wzp : ``Out(ArrayLayout(signed(8), lanes))``
        Weight zero points of the MAC side's tile.
    out_part : ``In(range(P))``
        The part ``p`` the epilogue is at.
    out_params : ``Out(ArrayLayout(entry_layout, E))``
        Entries ``p*E .. p*E + E - 1`` of the epilogue side's tile (valid while that tile is
        being drained; a lane past the tile's R entries reads an unspecified entry):
        combinational reads of the lanes' LUT RAMs at (bank, ``out_part``).
    out_next : ``In(1)``
        Pulse: the epilogue took the last beat of its current tile; frees its bank.
    """

    def __init__(self, *, lanes, entry_layout, addr_width, out_lanes=None):
        self.lanes = lanes
        self.out_lanes = lanes if out_lanes is None else out_lanes
        self.parts = -(-lanes // self.out_lanes)
        self.entry_layout = entry_layout
        super().__init__({
            "start": In(1),
            "channel_base": In(addr_width),
            "n_tiles": In(16),
            # Plain-shaped ports, viewed inside (no alias wire per field in the Verilog).
            "mem": In(ReadPort.Signature(addr_width=addr_width, shape=Shape.cast(entry_layout))),
            "issue_ready": Out(1),
            "issue_next": In(1),
            "issue_wzp": Out(Shape.cast(data.ArrayLayout(entry_layout.members["w_zp"], lanes))),
            "out_part": In(range(max(2, self.parts))),
            "out_params": Out(Shape.cast(data.ArrayLayout(entry_layout, self.out_lanes))),
            "out_next": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, E, P = self.lanes, self.out_lanes, self.parts
        wzp_shape = self.entry_layout.members["w_zp"]
        wzp = [[Signal(wzp_shape, name=f"wzp{b}_{k}", reset_less=True) for k in range(L)] for b in range(2)]
        # Lane r's entries: bank b, part p at address b*P + p (LUT RAM, asynchronous read).
        rams = []
        for r in range(E):
            ram = Ram(shape=Shape.cast(self.entry_layout), depth=2 * P)
            m.submodules[f"lane{r}"] = ram
            rams.append((ram.write_port(), ram.read_port(domain="comb")))
        loaded = Signal(2)
        issue_bank = Signal()
        out_bank = Signal()
        load_bank = Signal()
        load_tile = Signal(16)
        addr = Signal(len(self.mem.addr))
        r = Signal(range(L + 1))          # entry whose read is issued this cycle (L: none)
        loading = Signal()
        got = Signal()                    # the read issued last cycle lands now
        got_r = Signal(range(L))

        issue_wzp = data.ArrayLayout(wzp_shape, L)(self.issue_wzp)
        out_params = data.ArrayLayout(self.entry_layout, E)(self.out_params)
        m.d.comb += [
            self.issue_ready.eq(loaded.bit_select(issue_bank, 1)),
            self.mem.addr.eq(addr),
            self.mem.en.eq(1),
        ]
        for k in range(L):
            m.d.comb += issue_wzp[k].eq(Mux(issue_bank, wzp[1][k], wzp[0][k]))
        part = self.out_part if P > 1 else 0
        for lane, (w, rd) in enumerate(rams):
            m.d.comb += [rd.addr.eq(out_bank * P + part), out_params[lane].as_value().eq(rd.data),
                         w.data.eq(self.mem.data)]

        # Loader: one read per cycle, the data lands in the bank the next cycle.
        m.d.sync += got.eq(0)
        entry = self.entry_layout(self.mem.data)
        with m.If(got):
            with m.Switch(got_r):
                for k in range(L):
                    with m.Case(k):
                        m.d.comb += [rams[k % E][0].en.eq(1), rams[k % E][0].addr.eq(load_bank * P + k // E)]
                        for b in range(2):
                            with m.If(load_bank == b):
                                m.d.sync += wzp[b][k].eq(entry.w_zp)
            with m.If(got_r == L - 1):
                m.d.sync += [loaded.bit_select(load_bank, 1).eq(1), load_bank.eq(~load_bank),
                             load_tile.eq(load_tile + 1)]
        with m.If(loading):
            m.d.sync += [got.eq(1), got_r.eq(r), addr.eq(addr + 1), r.eq(r + 1)]
            with m.If(r == L - 1):
                m.d.sync += loading.eq(0)
        # Start the next tile's load once its bank is free and the previous load has landed.
        with m.Elif(~got & (load_tile < self.n_tiles) & ~loaded.bit_select(load_bank, 1)):
            m.d.sync += [loading.eq(1), r.eq(0)]

        with m.If(self.issue_next):
            m.d.sync += issue_bank.eq(~issue_bank)
        with m.If(self.out_next):
            m.d.sync += [out_bank.eq(~out_bank), loaded.bit_select(out_bank, 1).eq(0)]

        with m.If(self.start):
            m.d.sync += [loaded.eq(0), issue_bank.eq(0), out_bank.eq(0), load_bank.eq(0),
                         load_tile.eq(0), loading.eq(0), got.eq(0), addr.eq(self.channel_base)]
        return m
