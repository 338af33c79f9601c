"""The add unit: element-wise integer Add of two branches (NEMO report sec. 3.5 Eq. 24, TFLite
int8 Add), built from :class:`intdeploy.hw.requantizer.Requantizer`.

Hardware image of :func:`intdeploy.golden.add.add`; :meth:`AddUnit.encode` turns golden's
:class:`~intdeploy.golden.add.AddParams` into the beat's parameter fields.
"""

from amaranth import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from intdeploy.golden.add import AddParams
from intdeploy.golden.checks import check_int
from intdeploy.hw.ram import Ram
from intdeploy.hw.requantizer import LATENCY as RQ_LATENCY
from intdeploy.hw.requantizer import Requantizer, _Stages, encode_channels, param_layout

__all__ = ["AddUnit", "LATENCY"]

#: Cycles from a beat's acceptance on ``i`` to its presentation on ``o`` (no stall): two input
#: stages, the branch requantizers, the sum, the sum shift, the output requantizer.
LATENCY = 2 + RQ_LATENCY + 2 + RQ_LATENCY


def add_param_layout(out_bits):
    """Per-lane parameters of an :class:`AddUnit` beat (see its docstring)."""
    return data.StructLayout({
        "in_zero_points": data.ArrayLayout(signed(32), 2),
        "left_shift": unsigned(5),
        "branches": data.ArrayLayout(param_layout(32), 2),
        "sum_shift": unsigned(5),
        "output": param_layout(out_bits),
    })


class AddUnit(wiring.Component):
    """Integer Add of two ``lanes``-wide input vectors with one held parameter set.

    For every lane, with the parameters on ``params`` (golden's
    :class:`~intdeploy.golden.add.AddParams`, one set for all lanes):

        v_i = requantize(wrap32((x_i - zp_i) << left_shift), branches[i])    i = 0 (a), 1 (b)
        s   = wrap32(v_0 + v_1) >> sum_shift                                (floor)
        y   = requantize(s, output)

    bit for bit as :func:`intdeploy.golden.add.add`, each ``requantize`` being
    :func:`intdeploy.golden.requantizer.requantize` in its own rounding mode, chosen at run time. This
    covers NEMO's ``PACT_IntegerAdd`` (Eq. 24, :meth:`AddParams.nemo`: exact per-branch
    multipliers, one floor division by ``2**d``, unclipped) and TFLite's int8 Add
    (:meth:`AddParams.tflite`: zero points, ``left_shift = 20``, three Q31 multipliers with
    gemmlowp double rounding, output zero point and clamp).

    Widths: inputs ``a``, ``b`` signed(``in_bits``) (default 9: int8 and uint8 activations both
    fit, so one unit serves TFLite's int8 and NEMO's unsigned PACT activations); zero points
    int32; ``left_shift`` 0..31; ``(x - zp) << left_shift`` and ``v_0 + v_1`` wrap modulo
    2**32 (as golden, and TFLite's C code); ``sum_shift`` 0..31, an arithmetic (floor) shift of
    the int32 sum; branch requantizers produce int32; the output is
    signed(``out_bits``) (default 32, which holds NEMO's unclipped sum; 8 for an int8-only
    network). Rounding and saturation are the requantizer's (see
    :class:`~intdeploy.hw.requantizer.Requantizer`): the only saturation is each requantizer's clip.

    The parameters are an Add layer's (per tensor): they are held on ``params`` from the
    acceptance of the first beat that uses them until the last one leaves ``o`` (the accelerator
    top holds a RUN's descriptor for the whole RUN), and nothing of them travels with the beats:
    the three requantizers take them as held sets
    (:class:`~intdeploy.hw.requantizer.Requantizer` ``held``), so each derived value is registered
    once for all lanes. Per-channel branch or output requantizers are refused by :meth:`encode`.

    Parameters
    ----------
    lanes : int
        Elements per beat (>= 1).
    in_bits : int
        Input width, 2..32 (default 9).
    out_bits : int
        Output width, 2..32 (default 32).
    b_table_bits : int or None
        None (default): branch b has its own requantizer lanes, like branch a. ``B`` (2..12):
        ``b`` is a B-bit value, signed or unsigned by the ``b_signed`` input (``b`` itself is
        signed(B + 1), which holds both), and branch b is a table of its ``2**B`` results indexed
        by b's low B bits, read per lane while branch a is requantized, refilled by a one-lane
        requantizer when a ``start`` pulse finds branch b's parameters (``in_zero_points[1]``,
        ``left_shift``, ``branches[1]``) or ``b_signed`` changed;
        the unit takes no beat from the cycle after ``start`` until the table is valid (nor
        after reset before the first fill). ``start`` must precede the first beat of new
        parameters by a cycle, and the parameters must hold while a fill runs (a ``start`` then is
        ignored). docs/units/add.md, "Branch b by table".

    Attributes
    ----------
    i : In(stream.Signature(StructLayout))
        ``a``, ``b``: ``ArrayLayout(signed(in_bits), lanes)``.
    params : In(add_param_layout(out_bits)) (plain-shaped, the same bits)
        ``in_zero_points`` ``ArrayLayout(signed(32), 2)``, ``left_shift`` unsigned(5),
        ``branches`` ``ArrayLayout(param_layout(32), 2)``, ``sum_shift`` unsigned(5) and
        ``output`` ``param_layout(out_bits)`` (the requantizer's parameter fields,
        :func:`intdeploy.hw.requantizer.param_layout`).
    o : Out(stream.Signature(StructLayout))
        ``y``: ``ArrayLayout(signed(out_bits), lanes)``.
    start : In(1)
        With ``b_table_bits`` only: the parameters may have changed (see above).
    b_signed : In(1)
        With ``b_table_bits`` only: ``b`` is signed(B) (1) or unsigned(B) (0); held like ``params``.

    Latency and throughput: :data:`LATENCY` = 22 cycles, II = 1, full backpressure.
    Micro-architecture: stage 1 ``x - zp`` (wrapped to 32 bits), stage 2 the wrapping left
    shift; then *one* :class:`~intdeploy.hw.requantizer.Requantizer` of ``2 * lanes`` lanes and two
    held sets holds both branches (lanes ``0..lanes-1`` branch a, ``lanes..2*lanes-1`` branch b);
    one stage adds the branches, one shifts the sum; a ``lanes``-lane Requantizer with one held
    set finishes. ``i.ready`` and the inner ready signals depend only on registers (the
    requantizers' skid buffers).
    """

    def __init__(self, *, lanes=1, in_bits=9, out_bits=32, b_table_bits=None):
        self.lanes = check_int("lanes", lanes, 1, 1 << 16)
        self.in_bits = check_int("in_bits", in_bits, 2, 32)
        self.out_bits = check_int("out_bits", out_bits, 2, 32)
        self.b_table_bits = None if b_table_bits is None else check_int("b_table_bits", b_table_bits, 2, 12)
        self.param_layout = add_param_layout(self.out_bits)
        b_bits = self.in_bits if self.b_table_bits is None else self.b_table_bits + 1
        self.i_layout = data.StructLayout({
            "a": data.ArrayLayout(signed(self.in_bits), self.lanes),
            "b": data.ArrayLayout(signed(b_bits), self.lanes),
        })
        self.o_layout = data.StructLayout({"y": data.ArrayLayout(signed(self.out_bits), self.lanes)})
        ports = {"i": In(stream.Signature(self.i_layout)), "params": In(Shape.cast(self.param_layout)),
                 "o": Out(stream.Signature(self.o_layout))}
        if self.b_table_bits is not None:
            ports["start"] = In(1)
            ports["b_signed"] = In(1)
        super().__init__(ports)

    def __repr__(self):
        table = "" if self.b_table_bits is None else f", b_table_bits={self.b_table_bits}"
        return f"AddUnit(lanes={self.lanes}, in_bits={self.in_bits}, out_bits={self.out_bits}{table})"

    def encode(self, params):
        """The ``params`` port's fields for golden's ``params`` (per-tensor requantizers only).

        Returns
        -------
        dict
            ``{"in_zero_points": [zp_a, zp_b], "left_shift", "branches": [fields_a, fields_b],
            "sum_shift", "output": fields}``.

        Raises
        ------
        ValueError
            ``params`` not an AddParams; a per-channel requantizer (``branches[1].channels``);
            a field the hardware cannot hold, named with its path (e.g. ``output.lo`` outside
            signed(``out_bits``)).
        """
        if not isinstance(params, AddParams):
            raise ValueError(f"params: expected intdeploy.golden.add.AddParams, got {type(params).__name__}")
        fields = {}
        for path, rq, bits in (("branches[0]", params.branches[0], 32),
                               ("branches[1]", params.branches[1], 32),
                               ("output", params.output, self.out_bits)):
            if rq.channels is not None:
                raise ValueError(f"{path}.channels: {rq.channels} per-channel parameters; the add unit holds one "
                                 f"set per tensor (allowed per-tensor RequantParams)")
            try:
                (fields[path],) = encode_channels(rq, 1, bits)
            except ValueError as e:
                raise ValueError(f"{path}.{e}") from None
        zps = [int(z) for z in params.in_zero_points]
        check_int("left_shift", params.left_shift, 0, 31)
        check_int("sum_shift", params.sum_shift, 0, 31)
        return {"in_zero_points": zps, "left_shift": params.left_shift,
                "branches": [fields["branches[0]"], fields["branches[1]"]], "sum_shift": params.sum_shift,
                "output": fields["output"]}

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        table = self.b_table_bits is not None
        prm = self.param_layout(self.params)
        if table:
            # branch a's requantizers only; branch b's results come from the table, beside each
            # beat in the requantizer's sideband
            m.submodules.branches = brq = Requantizer(lanes=n, out_bits=32, held=1,
                                                      user=data.ArrayLayout(signed(32), n))
            m.d.comb += brq.params.eq(prm.branches[0])
            accept, table_mem = self._table(m, prm)
        else:
            m.submodules.branches = brq = Requantizer(lanes=2 * n, out_bits=32, held=2)
            m.d.comb += brq.params.eq(prm.branches)
            accept = 1
        m.submodules.output = orq = Requantizer(lanes=n, out_bits=self.out_bits, held=1)
        m.d.comb += orq.params.eq(prm.output)

        # Stages 1-2 (stall-all): wrap32(x - zp), then wrap32(. << left_shift). Only the low 32
        # bits of x - zp survive the shift, so the subtraction is done on 32 bits.
        p_valid = [Signal(name="in_valid1"), Signal(name="in_valid2")]
        en = Signal()
        m.d.comb += [en.eq(brq.i.ready | ~p_valid[1]), self.i.ready.eq(en & accept)]
        with m.If(en):
            m.d.sync += [p_valid[0].eq(self.i.valid & accept), p_valid[1].eq(p_valid[0])]
        st = _Stages(m, en)
        pay = self.i.payload
        for lane in range(n):
            for br, x in enumerate((pay.a[lane], pay.b[lane])):
                if br and table:
                    # stage 1 is the table's read register (read when the stage loads), stage 2 a copy
                    rd = table_mem.read_port()
                    m.d.comb += [rd.addr.eq(x[:self.b_table_bits]), rd.en.eq(en)]
                    m.d.comb += brq.i.payload.user[lane].eq(st.reg(rd.data, f"l{lane}_v1_2", signed(32)))
                    continue
                d1 = st.reg((x - prm.in_zero_points[br])[:32], f"l{lane}_d{br}_1", unsigned(32))
                xs = st.reg((d1 << prm.left_shift)[:32].as_signed(), f"l{lane}_x{br}_2", signed(32))
                m.d.comb += brq.i.payload.acc[br * n + lane].eq(xs)
        m.d.comb += brq.i.valid.eq(p_valid[1])

        # Stages 3-4 (stall-all): s = wrap32(v_0 + v_1), then s >> sum_shift (arithmetic).
        s_valid = [Signal(name="sum_valid3"), Signal(name="sum_valid4")]
        s_en = Signal()
        m.d.comb += [s_en.eq(orq.i.ready | ~s_valid[1]), brq.o.ready.eq(s_en)]
        with m.If(s_en):
            m.d.sync += [s_valid[0].eq(brq.o.valid), s_valid[1].eq(s_valid[0])]
        st = _Stages(m, s_en)
        for lane in range(n):
            v0 = brq.o.payload.y[lane]
            v1 = brq.o.payload.user[lane] if table else brq.o.payload.y[n + lane]
            s = st.reg((v0 + v1)[:32].as_signed(), f"l{lane}_sum3", signed(32))
            m.d.comb += orq.i.payload.acc[lane].eq(st.reg(s >> prm.sum_shift, f"l{lane}_sum4", signed(32)))
        m.d.comb += orq.i.valid.eq(s_valid[1])

        wiring.connect(m, orq.o, wiring.flipped(self.o))
        return m

    def _table(self, m, prm):
        """Branch b as a table of ``2**b_table_bits`` results, one per B-bit input value, filled by a
        one-lane requantizer when ``start`` finds the parameters changed. Returns the condition
        under which the unit accepts a beat (registers: the table is valid for the parameters) and
        the table's memory (the datapath adds a read port per lane)."""
        bits = self.b_table_bits
        m.submodules.table = mem = Ram(shape=signed(32), depth=1 << bits)
        wp = mem.write_port()
        m.submodules.fill = fq = Requantizer(lanes=1, out_bits=32, held=1, user=unsigned(bits))
        m.d.comb += fq.params.eq(prm.branches[1])

        # What the table depends on: branch b's zero point, the left shift and its requantizer.
        cur = Cat(prm.in_zero_points[1], prm.left_shift, prm.branches[1], self.b_signed)
        key = Signal(len(cur), reset_less=True)      # the parameters the table was filled for
        filled = Signal()                            # the table holds key's results
        checking = Signal()                          # start seen: compare, then fill or not
        filling = Signal()
        same = Signal()
        m.d.sync += same.eq(cur == key)              # registered: decided a cycle after start
        with m.If(self.start & ~filling):
            m.d.sync += checking.eq(1)
        fv = Signal(bits + 1)                        # next table entry to compute
        with m.If(checking & ~self.start):
            m.d.sync += checking.eq(0)
            with m.If(~(filled & same)):
                m.d.sync += [filling.eq(1), filled.eq(0), fv.eq(0), key.eq(cur)]

        # The fill: entry i = branch b of the value v with low bits i (v = i sign-extended when
        # b_signed), in two register stages as the datapath's (wrap32(v - zp), then the wrapping
        # left shift), then the requantizer, which never stalls here (its output is always taken).
        issue = filling & ~fv[bits]
        f_valid = [Signal(name="fill_valid1"), Signal(name="fill_valid2")]
        f_idx = [Signal(bits, name="fill_idx1", reset_less=True), Signal(bits, name="fill_idx2", reset_less=True)]
        f_d = Signal(32, name="fill_d1", reset_less=True)
        f_x = Signal(signed(32), name="fill_x2", reset_less=True)
        m.d.sync += [f_valid[0].eq(issue), f_valid[1].eq(f_valid[0]), f_idx[0].eq(fv[:bits]), f_idx[1].eq(f_idx[0]),
                     f_d.eq((Mux(self.b_signed, fv[:bits].as_signed(), fv[:bits]) - prm.in_zero_points[1])[:32]),
                     f_x.eq((f_d << prm.left_shift)[:32].as_signed())]
        with m.If(issue):
            m.d.sync += fv.eq(fv + 1)
        m.d.comb += [fq.i.valid.eq(f_valid[1]), fq.i.payload.acc[0].eq(f_x), fq.i.payload.user.eq(f_idx[1]),
                     fq.o.ready.eq(1),
                     wp.en.eq(fq.o.valid), wp.addr.eq(fq.o.payload.user), wp.data.eq(fq.o.payload.y[0])]
        with m.If(fq.o.valid & (fq.o.payload.user == (1 << bits) - 1)):    # the last entry, in order
            m.d.sync += [filling.eq(0), filled.eq(1)]
        return filled & ~checking, mem
