"""The accelerator core: everything in the core clock domain.

Command words in, response words out; between them the command processor, the buffers
(synchronous memories), the parameter cache, the layer sequencer, the MAC array, the epilogue
chain and the result packer. :class:`intdeploy.hw.top.Accelerator` puts the clock-domain crossings and the
AXI4-Stream ports around it.

::

    i (words) -> CommandProcessor --writes--> weights | acts | residual | params | thresholds
                        | run                     |        |        |         |
                        v                         v        v        |         v
                 LayerSequencer <-- w_zp -- ParamCache <------------+--- params
                        | steps (II = 1)                   | requantizer parameters
                        v                                  v
                    MacArray --acc--> SkidBuffer --> Epilogue (requantizer | thresholds, add, pool)
                                          |
                                          v
    o (words) <- CommandProcessor <- ResultPacker
"""

from amaranth import Module, Mux, Shape, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from intdeploy.hw.command import CommandProcessor
from intdeploy.hw.descriptor import param_entry_layout, run_layout
from intdeploy.hw.epilogue import Epilogue
from intdeploy.hw.mac_array import MacArray
from intdeploy.hw.packer import ResultPacker
from intdeploy.hw.param_cache import ParamCache
from intdeploy.hw.requantizer import param_layout
from intdeploy.hw.sequencer import LayerSequencer
from intdeploy.hw.skid import SkidBuffer
from intdeploy.hw.ram import Ram
from intdeploy.hw.words import WORD_IN, WORD_OUT

__all__ = ["Core"]


class Core(wiring.Component):
    """The accelerator's core-domain logic (domain ``sync``; the top renames it ``core``).

    Parameters
    ----------
    config : intdeploy.hw.config.AcceleratorConfig

    Attributes
    ----------
    i : ``In(stream.Signature(WORD_IN))``
        Command words (``end`` of beat, ``last`` of packet).
    o : ``Out(stream.Signature(WORD_OUT))``
        Response words (``last`` of packet).
    two : ``Out(1)``
        With the ``i`` handshake, ``i.payload.next`` is taken too (:class:`intdeploy.hw.words.BeatsToWords`).
    o_two : ``In(1)``
        The consumer of ``o`` takes a pair offered with ``has_next`` (:class:`intdeploy.hw.words.WordsToBeats`).
    """

    def __init__(self, *, config):
        c = self.config = config
        R = c.rows
        self.mac = MacArray(rows=R, cols=c.cols, weight_bits=c.weight_bits)
        self.packer = ResultPacker(lanes=R)
        # The epilogue owns the datapath units; their layouts define the buffers' entries.
        rq_layout = param_layout(32)
        self.entry_layout = param_entry_layout(rq_layout)
        self.run_layout = run_layout(
            act_bits=c.addr_bits(c.act_depth), bank_bits=max(1, (c.weight_banks - 1).bit_length()),
            weight_bits=c.addr_bits(c.weight_depth), channel_bits=c.addr_bits(c.param_channels),
            residual_bits=c.addr_bits(c.residual_depth), requant_layout=rq_layout)
        self.epilogue = Epilogue(config=c, entry_layout=self.entry_layout, run_layout=self.run_layout)
        self.command = CommandProcessor(config=c, entry_layout=self.entry_layout,
                                        load_layout=self.epilogue.threshold.load_layout,
                                        run_layout=self.run_layout)
        self.cache = ParamCache(lanes=R, entry_layout=self.entry_layout,
                                addr_width=c.addr_bits(c.param_channels), out_lanes=c.epilogue_lanes)
        self.weight_shape = unsigned(32 * c.weight_entry_words)
        self.act_shape = unsigned(32 * c.act_entry_words)
        self.sequencer = LayerSequencer(
            mac_layout=self.mac.in_layout, rows=R, cols=c.cols, weight_bits=c.weight_bits,
            act_shape=self.act_shape, weight_shape=self.weight_shape,
            act_addr_width=c.addr_bits(c.act_depth),
            weight_addr_width=c.addr_bits(c.weight_banks * c.weight_depth))
        super().__init__({"i": In(stream.Signature(WORD_IN)), "o": Out(stream.Signature(WORD_OUT)),
                          "two": Out(1), "o_two": In(1)})

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.command = cmd = self.command
        m.submodules.cache = cache = self.cache
        m.submodules.sequencer = seq = self.sequencer
        m.submodules.mac = mac = self.mac
        m.submodules.epilogue = epi = self.epilogue
        m.submodules.packer = packer = self.packer

        # Buffers: power-up contents 0 (docs/protocol.md); a reset keeps them.
        m.submodules.weights = weights = Ram(shape=self.weight_shape, depth=c.weight_banks * c.weight_depth)
        m.submodules.acts = acts = Ram(shape=self.act_shape, depth=c.act_depth)
        m.submodules.residual = residual = Ram(shape=unsigned(32 * c.residual_entry_words), depth=c.residual_depth)
        m.submodules.params = params = Ram(shape=Shape.cast(self.entry_layout), depth=c.param_channels)
        wiring.connect(m, cmd.weights, weights.write_port())
        wiring.connect(m, cmd.acts, acts.write_port())
        wiring.connect(m, cmd.residual, residual.write_port())
        wiring.connect(m, cmd.params, params.write_port())
        wiring.connect(m, seq.weights, weights.read_port())
        wiring.connect(m, seq.acts, acts.read_port())
        wiring.connect(m, cache.mem, params.read_port())
        wiring.connect(m, epi.residual, residual.read_port())

        wiring.connect(m, wiring.flipped(self.i), cmd.i)
        m.d.comb += self.two.eq(cmd.two)
        wiring.connect(m, cmd.o, wiring.flipped(self.o))
        wiring.connect(m, cmd.thresholds, epi.thresholds)

        # RUN: the descriptor stays on cmd.run.payload until the run's last result word.
        cfg = self.run_layout(cmd.run.payload)
        start = Signal()
        m.d.comb += [cmd.run.ready.eq(1), start.eq(cmd.run.valid)]
        sp = seq.start_layout(seq.start.payload)
        m.d.comb += [
            seq.start.valid.eq(start),
            sp.m_count.eq(cfg.m_count), sp.k_steps.eq(cfg.k_steps), sp.n_tiles.eq(cfg.n_tiles),
            sp.act_base.eq(cfg.act_base), sp.row_step.eq(Mux(cfg.row_step == 0, cfg.k_steps, cfg.row_step)),
            sp.weight_base.eq(cfg.bank * c.weight_depth + cfg.weight_base),
            sp.x_signed.eq(cfg.x_signed), sp.x_zp.eq(cfg.x_zp),
            cache.start.eq(start), cache.channel_base.eq(cfg.channel_base),
            cache.n_tiles.eq(cfg.n_tiles),
            seq.tile_ready.eq(cache.issue_ready), cache.issue_next.eq(seq.tile_next),
            seq.w_zp.eq(cache.issue_wzp),
            epi.start.eq(start), epi.cfg.eq(cfg), epi.params.eq(cache.out_params), cache.out_part.eq(epi.part),
            cache.out_next.eq(epi.tile_next),
            packer.out_bytes.eq(cfg.out_bytes),
            cmd.mac_step.eq(mac.i.valid & mac.i.ready),
        ]
        wiring.connect(m, seq.o, mac.i)
        # The MAC array's stall is the enable of its every pipeline register; the skid buffer
        # makes the ready it sees a flip-flop, so the epilogue's, the packer's and the response
        # path's ready logic ends there instead of fanning out into the whole array.
        m.submodules.acc_skid = skid = SkidBuffer(shape=epi.i.payload.shape())
        m.d.comb += [skid.i.valid.eq(mac.o.valid), mac.o.ready.eq(skid.i.ready),
                     skid.i.payload.acc.eq(mac.o.payload.acc)]
        wiring.connect(m, skid.o, epi.i)
        wiring.connect(m, epi.o, packer.i)
        wiring.connect(m, packer.o, cmd.results)
        m.d.comb += [packer.two.eq(cmd.results_two), cmd.o_two.eq(self.o_two)]
        return m
