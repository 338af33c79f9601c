"""The layer sequencer: a RUN's steps, read from the buffers and fed to the MAC array.

docs/protocol.md (RUN): for each channel tile ``n``, for each GEMM row ``m``, ``k_steps`` steps;
step ``k`` multiplies activation entry ``act_base + m*row_step + k`` with weight entry
``weight_base + n*k_steps + k``. Within a row both addresses count up; the activation address
of the next row is the row's first entry plus ``row_step`` (``k_steps`` for rows back to back;
less lets consecutive rows share entries), the weight address restarts at the tile's first
entry. No multiplier is needed.
"""

from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from intdeploy.hw.descriptor import layout_signal

__all__ = ["LayerSequencer"]


class LayerSequencer(wiring.Component):
    """Issues one MAC step per cycle (II = 1) while the MAC array accepts them.

    A step's two buffer reads are issued in cycle ``t`` and its beat is offered to the MAC array
    from cycle ``t + 1`` (one register stage: the synchronous read ports), with ``first`` on
    ``k = 0`` and ``last`` on ``k = k_steps - 1``. Reads are enabled only when that stage
    advances, so the stage holds its beat under backpressure with nothing lost or repeated.
    There is no bubble between steps, rows or tiles, as long as the parameter cache has the
    tile's entries (``tile_ready``).

    Parameters
    ----------
    mac_layout : data layout
        The MAC array's input beat (:attr:`intdeploy.hw.mac_array.MacArray.in_layout`).
    rows, cols, weight_bits : int
        Array shape and weight width (the buffers' entry contents).
    act_shape, weight_shape : shape
        Buffer entry shapes (unsigned, whole 32-bit words).
    act_addr_width, weight_addr_width : int

    Attributes
    ----------
    start : ``In(stream.Signature(start_layout))``
        One beat starts a run: ``m_count``, ``k_steps``, ``n_tiles`` (16 bits, >= 1),
        ``act_base``, ``row_step`` (>= 1; ``k_steps`` for rows back to back), ``weight_base``
        (already including ``bank * weight_depth``), ``x_signed``, ``x_zp``. Accepted only
        when idle.
    acts, weights : ``In(ReadPort.Signature(...))``
        The buffers' read ports (driven by the sequencer).
    tile_ready : ``In(1)``
        The current tile's weight zero points are available (``w_zp``).
    tile_next : ``Out(1)``
        Pulse: the last step of the current tile was issued.
    w_zp : ``In(ArrayLayout(signed(8), rows))``
    o : ``Out(stream.Signature(mac_layout))``
    busy : ``Out(1)``
        Steps remain to be issued.
    """

    def __init__(self, *, mac_layout, rows, cols, weight_bits, act_shape, weight_shape,
                 act_addr_width, weight_addr_width):
        self.rows, self.cols, self.weight_bits = rows, cols, weight_bits
        self.start_layout = data.StructLayout({
            "m_count": unsigned(16), "k_steps": unsigned(16), "n_tiles": unsigned(16),
            "act_base": unsigned(act_addr_width), "row_step": unsigned(16),
            "weight_base": unsigned(weight_addr_width),
            "x_signed": unsigned(1), "x_zp": signed(9),
        })
        super().__init__({
            "start": In(stream.Signature(Shape.cast(self.start_layout))),
            "acts": In(ReadPort.Signature(addr_width=act_addr_width, shape=act_shape)),
            "weights": In(ReadPort.Signature(addr_width=weight_addr_width, shape=weight_shape)),
            "tile_ready": In(1),
            "tile_next": Out(1),
            "w_zp": In(Shape.cast(data.ArrayLayout(signed(8), rows))),
            "o": Out(stream.Signature(mac_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        R, C, wb = self.rows, self.cols, self.weight_bits
        # Only ``running`` and ``o.valid`` have a reset: the run's fields, counters and
        # addresses are all loaded by ``start`` and read only while ``running`` (a reset net
        # reaching every data bit is the design's longest wire).
        cfg = layout_signal(self.start_layout, name="cfg", reset_less=True)
        running = Signal()
        k = Signal(16, reset_less=True)
        mm = Signal(16, reset_less=True)
        n = Signal(16, reset_less=True)
        a_addr = Signal(len(self.acts.addr), reset_less=True)
        a_row = Signal(len(self.acts.addr), reset_less=True)  # first activation entry of the row
        w_addr = Signal(len(self.weights.addr), reset_less=True)
        w_tile = Signal(len(self.weights.addr), reset_less=True)  # first weight entry of the tile

        advance = Signal()
        issue = Signal()
        m.d.comb += [
            self.start.ready.eq(~running),
            self.busy.eq(running),
            advance.eq(~self.o.valid | self.o.ready),
            issue.eq(running & self.tile_ready & advance),
            self.acts.addr.eq(a_addr), self.acts.en.eq(advance),
            self.weights.addr.eq(w_addr), self.weights.en.eq(advance),
        ]

        # The register stage beside the read ports.
        first = Signal(reset_less=True)
        last = Signal(reset_less=True)
        w_zp = layout_signal(data.ArrayLayout(signed(8), R), name="w_zp", reset_less=True)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(issue), first.eq(k == 0),
                         last.eq(k == cfg.k_steps - 1), w_zp.eq(self.w_zp)]
        p = self.o.payload
        m.d.comb += [
            p.x.eq(self.acts.data[:8 * C]),
            p.x_signed.eq(cfg.x_signed),
            p.x_zp.eq(cfg.x_zp),
            p.w.eq(self.weights.data[:R * C * wb]),
            p.w_zp.eq(w_zp),
            p.first.eq(first),
            p.last.eq(last),
        ]

        end_k = k == cfg.k_steps - 1
        end_m = mm == cfg.m_count - 1
        end_n = n == cfg.n_tiles - 1
        with m.If(issue):
            m.d.sync += [k.eq(k + 1), a_addr.eq(a_addr + 1), w_addr.eq(w_addr + 1)]
            with m.If(end_k):
                m.d.sync += [k.eq(0), mm.eq(mm + 1), w_addr.eq(w_tile),
                             a_row.eq(a_row + cfg.row_step), a_addr.eq(a_row + cfg.row_step)]
                with m.If(end_m):
                    m.d.comb += self.tile_next.eq(1)
                    m.d.sync += [mm.eq(0), n.eq(n + 1), a_addr.eq(cfg.act_base), a_row.eq(cfg.act_base),
                                 w_tile.eq(w_tile + cfg.k_steps), w_addr.eq(w_tile + cfg.k_steps)]
                    with m.If(end_n):
                        m.d.sync += running.eq(0)
        with m.If(self.start.valid & self.start.ready):
            s = self.start_layout(self.start.payload)
            m.d.sync += [cfg.eq(s), running.eq(1), k.eq(0), mm.eq(0), n.eq(0),
                         a_addr.eq(s.act_base), a_row.eq(s.act_base), w_addr.eq(s.weight_base),
                         w_tile.eq(s.weight_base)]
        return m
