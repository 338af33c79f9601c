"""The requantizer: int32 accumulators -> output activations, four rounding modes chosen per beat.

Hardware image of :func:`intdeploy.golden.requantizer.requantize` (NEMO report sec. 3.2 Eq. 11-14, the
integer batch-norm of sec. 3.4 Eq. 21-22, TFLite's ``MultiplyByQuantizedMultiplier``, ONNX
Runtime / PyTorch round-half-to-even). :meth:`Requantizer.encode` turns golden's
:class:`~intdeploy.golden.requantizer.RequantParams` into the beat's parameter fields, so one parameter
object drives both.
"""

from amaranth import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
import numpy as np

from intdeploy import wire
from intdeploy.golden.checks import check_int
from intdeploy.golden.requantizer import ROUNDING_MODES, RequantParams
from intdeploy.hw.skid import SkidBuffer

__all__ = ["Rounding", "Requantizer", "LATENCY", "param_layout", "encode_channels"]

#: Cycles from a beat's acceptance on ``i`` to its presentation on ``o`` (no stall).
LATENCY = 9


class Rounding(enum.Enum, shape=2):
    """The ``rounding`` field of a beat: the wire format's codes (:data:`intdeploy.wire.ROUNDING`,
    golden's :data:`~intdeploy.golden.requantizer.ROUNDING_MODES` in order), names upper-cased."""
    _ignore_ = ["_name", "_code"]
    for _name, _code in wire.ROUNDING.items():
        vars()[_name.upper()] = _code

    @classmethod
    def of(cls, name):
        """The member for golden's rounding name (``"floor"``, ``"half_up"``, ...)."""
        if name not in ROUNDING_MODES:
            raise ValueError(f"rounding: {name!r} is not one of {', '.join(ROUNDING_MODES)}")
        return cls[name.upper()]


def _shape_range(shape):
    shape = Shape.cast(shape)
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


class _Stages:
    """Data registers of a stall-all pipeline: every one loads when ``en`` (no reset: only the
    valid bits need one, and reset-less data saves routing)."""

    def __init__(self, m, en):
        self.m, self.en = m, en

    def reg(self, value, name, shape=None):
        shape = shape if shape is not None else value.shape()
        # A plain-shaped register behind a view: a layout-shaped Signal would also emit a named
        # alias wire per field, which costs simulator build and trace time and nothing else.
        sig = Signal(Shape.cast(shape), name=name, reset_less=True)
        with self.m.If(self.en):
            self.m.d.sync += sig.eq(value)
        return sig if isinstance(shape, Shape) else shape(sig)


def param_layout(out_bits):
    """Per-lane channel parameters of a :class:`Requantizer` beat (see its docstring)."""
    return data.StructLayout({
        "bias": signed(32),
        "mult": signed(32),
        "offset": signed(48),
        "shift": unsigned(6),
        "zero_point": signed(32),
        "lo": signed(out_bits),
        "hi": signed(out_bits),
        "rounding": Rounding,
    })


class Requantizer(wiring.Component):
    """Per-lane integer requantizer, ``lanes`` channels per beat, rounding mode chosen per lane.

    For every lane, with that lane's channel parameters (all carried in the beat):

        x = wrap32(acc + bias)
        y = clip(round((x * mult + offset) / 2**shift) + zero_point, lo, hi)

    bit for bit as :func:`intdeploy.golden.requantizer.requantize` with the same
    :class:`~intdeploy.golden.requantizer.RequantParams` (encoded by :meth:`encode`). ``round`` is the
    lane's ``rounding`` field: ``FLOOR`` (NEMO, Eq. 13: arithmetic shift), ``HALF_UP`` (ties to
    +inf, TFLite single rounding), ``HALF_EVEN`` (ONNX Runtime, PyTorch), ``TFLITE`` (gemmlowp
    ``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT`` with exponent
    ``31 - shift``: for ``shift < 31`` the int32 ``x`` is first shifted left by ``31 - shift``
    *wrapping in int32* as TFLite's C code does; ``offset`` is ignored (golden requires 0) and
    ``mult`` must be >= 0, which :meth:`encode` enforces).

    Widths: ``acc``, ``bias``, ``mult``, ``zero_point`` int32; ``offset`` int48; ``shift``
    0..62 unsigned; ``lo``/``hi`` and the output ``y`` signed(``out_bits``). ``acc + bias``
    wraps modulo 2**32; everything after it is exact (64-bit product, offset and rounding
    constant within +-2**63; the clip decides on the exact ``q + zero_point`` by comparing the
    64-bit quotient ``q`` with ``lo - zero_point`` and ``hi - zero_point``, 33 bits each, so
    only the low ``out_bits`` bits of the sum are ever formed); the only saturation is the clip
    to ``[lo, hi]`` (``y = lo`` if below, else ``hi`` if above, so ``lo <= hi`` is required,
    which golden and :meth:`encode` guarantee).

    The parameters travel in the beat, next to the accumulators: the accelerator top's
    parameter buffer reads the R channel parameter sets of the current output channels each
    cycle and feeds them with the MAC array's R accumulators. The unit itself stores nothing
    between beats, so per-channel, per-tensor and per-lane-mixed rounding cost the same.

    Parameters
    ----------
    lanes : int
        Accumulators per beat (>= 1), each with its own channel parameters.
    out_bits : int
        Output width, 2..32 (default 32); ``lo`` / ``hi`` have this width, so the clip makes
        every result representable.
    user : shape-like or None
        Optional sideband shape carried unchanged from ``i.payload.user`` to ``o.payload.user``
        (aligned with its beat), e.g. parameters of a later stage. Absent if None.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout))
        Input beats: ``acc`` ``ArrayLayout(signed(32), lanes)``; ``params``
        ``ArrayLayout(param_layout(out_bits), lanes)`` with fields ``bias`` signed(32),
        ``mult`` signed(32), ``offset`` signed(48), ``shift`` unsigned(6), ``zero_point``
        signed(32), ``lo`` / ``hi`` signed(out_bits), ``rounding`` :class:`Rounding` (2 bits);
        ``user`` if given.
    o : Out(stream.Signature(StructLayout))
        Output beats: ``y`` ``ArrayLayout(signed(out_bits), lanes)``; ``user`` if given.

    Latency and throughput: :data:`LATENCY` = 9 cycles from acceptance to presentation,
    one beat per cycle (II = 1) with full backpressure. Pipeline (per lane, shared by the four
    modes): 1 ``acc + bias``, mode decode; 2 TFLite's wrapping pre-shift; 3-5 the 32x32 product
    as four 16x16 partial products (one DSP each) summed over two stages, the offset (or the
    TFLite nudge ``2**30``) added on the way; 6 the rounding constant; 7 arithmetic shift,
    half-even tie detection, ``lo - zero_point`` and ``hi - zero_point``; 8 the half-even fix,
    the two saturation flags (``q`` against those bounds: three 32-bit reductions of ``q``'s
    upper half and two 32-bit compares of its lower half) and ``+ zero_point`` on ``out_bits``
    bits; 9 clip (a select by the flags). A one-entry skid buffer after stage 9
    makes ``i.ready`` a register (no combinational ready path through the unit): it is low only
    while the skid buffer holds a beat.
    """

    def __init__(self, *, lanes=1, out_bits=32, user=None):
        self.lanes = check_int("lanes", lanes, 1, 1 << 16)
        self.out_bits = check_int("out_bits", out_bits, 2, 32)
        if user is not None:
            try:
                Shape.cast(user)
            except TypeError:
                raise ValueError(f"user: {user!r} is not allowed; expected None or an Amaranth "
                                 f"shape-like (e.g. a data layout)") from None
        self.user = user
        self.param_layout = param_layout(self.out_bits)
        i_fields = {"acc": data.ArrayLayout(signed(32), self.lanes),
                    "params": data.ArrayLayout(self.param_layout, self.lanes)}
        o_fields = {"y": data.ArrayLayout(signed(self.out_bits), self.lanes)}
        if user is not None:
            i_fields["user"] = o_fields["user"] = user
        self.i_layout = data.StructLayout(i_fields)
        self.o_layout = data.StructLayout(o_fields)
        super().__init__({"i": In(stream.Signature(self.i_layout)),
                          "o": Out(stream.Signature(self.o_layout))})

    def __repr__(self):
        return f"Requantizer(lanes={self.lanes}, out_bits={self.out_bits}, user={self.user!r})"

    # --- host side ------------------------------------------------------------------------

    def encode(self, params, channels):
        """Beat parameter fields for ``channels`` of ``params``; one dict per channel.

        Parameters
        ----------
        params : intdeploy.golden.requantizer.RequantParams
            Per-tensor or per-channel parameters.
        channels : int or sequence of int
            ``C`` (all channels ``0..C-1``; must equal ``params.channels`` if per-channel) or
            explicit channel indices.

        Returns
        -------
        list of dict
            ``{"bias", "mult", "offset", "shift", "zero_point", "lo", "hi", "rounding"}`` per
            channel, ready for the ``params`` array of a beat (``rounding`` a :class:`Rounding`).

        Raises
        ------
        ValueError
            ``params`` not a RequantParams; bad ``channels``; ``lo`` / ``hi`` outside
            signed(``out_bits``); any field outside its hardware width (golden's ranges already
            equal the widths, so this only guards against drift).
        """
        return encode_channels(params, channels, self.out_bits)

    # --- hardware ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        stages = LATENCY

        # Output skid buffer: the pipeline advances (en) whenever it is empty, so en and
        # i.ready are registers; when the consumer stalls, the beat the pipeline pushes out lands
        # there and freezes the pipeline until it drains.
        m.submodules.skid = skid = SkidBuffer(shape=self.o_layout)
        en = skid.i.ready
        m.d.comb += self.i.ready.eq(en)
        st = _Stages(m, en)

        valid = [Signal(name=f"valid{k + 1}") for k in range(stages)]
        with m.If(en):
            m.d.sync += valid[0].eq(self.i.valid)
            m.d.sync += [valid[k].eq(valid[k - 1]) for k in range(1, stages)]

        out = self.o_layout(Signal(Shape.cast(self.o_layout), name="out"))
        for lane in range(self.lanes):
            y = self._lane(st, self.i.payload.acc[lane], self.i.payload.params[lane], f"l{lane}_")
            m.d.comb += out.y[lane].eq(y)
        if self.user is not None:
            user = self.i.payload.user
            for k in range(stages):
                user = st.reg(user, f"user{k + 1}", self.user)
            m.d.comb += out.user.eq(user)

        m.d.comb += [skid.i.valid.eq(valid[-1]), skid.i.payload.eq(out)]
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        return m

    def _lane(self, st, acc, p, pfx):
        """One lane's datapath (9 register stages); returns the stage-9 output register."""
        # Stage 1: x = wrap32(acc + bias); decode the mode into the shared datapath's controls.
        # TFLite with exponent e = 31 - shift: e > 0 pre-shifts x left by e and divides the
        # product by 2**31 (S = 31); e <= 0 divides by 2**31 then by 2**-e, which (nested
        # floors compose) is one division by 2**shift with an adjusted rounding constant.
        tfl = p.rounding == Rounding.TFLITE
        left = tfl & (p.shift < 31)
        x1 = st.reg((acc + p.bias)[:32].as_signed(), pfx + "x1")
        lsh1 = st.reg(Mux(left, 31 - p.shift, 0)[:5], pfx + "lsh1", unsigned(5))
        sh1 = st.reg(Mux(left, 31, p.shift), pfx + "sh1", unsigned(6))
        mode1 = st.reg(p.rounding, pfx + "mode1", Rounding)
        rdiv1 = st.reg(tfl & (p.shift > 31), pfx + "rdiv1")
        # The TFLite nudge of SaturatingRoundingDoublingHighMul: (ab + (ab >= 0 ? 2**30 :
        # 1 - 2**30)) truncated toward zero by 2**31 equals floor((ab + 2**30) / 2**31) for every
        # ab, so it is just an offset of 2**30 here.
        off1 = st.reg(Mux(tfl, 1 << 30, p.offset), pfx + "off1", signed(48))
        mult1 = st.reg(p.mult, pfx + "mult1", signed(32))
        zp1, lo1, hi1 = (st.reg(getattr(p, f), pfx + f + "1") for f in ("zero_point", "lo", "hi"))

        # Stage 2: TFLite's x * (1 << left_shift), wrapping in int32 (non-TFLite: left = 0).
        x2 = st.reg((x1 << lsh1)[:32].as_signed(), pfx + "x2", signed(32))
        sh2, mode2, rdiv2, off2, mult2, zp2, lo2, hi2 = (
            st.reg(v, pfx + n + "2") for v, n in
            ((sh1, "sh"), (mode1, "mode"), (rdiv1, "rdiv"), (off1, "off"), (mult1, "mult"),
             (zp1, "zp"), (lo1, "lo"), (hi1, "hi")))

        # Stage 3: four 16x16 partial products (each maps onto one 18x18 DSP).
        xl, xh = x2[:16], x2[16:].as_signed()
        ml, mh = mult2[:16], mult2[16:].as_signed()
        ll = st.reg(xl * ml, pfx + "pp_ll", unsigned(32))
        lh = st.reg(xl * mh, pfx + "pp_lh", signed(32))
        hl = st.reg(xh * ml, pfx + "pp_hl", signed(32))
        hh = st.reg(xh * mh, pfx + "pp_hh", signed(32))
        sh3, mode3, rdiv3, off3, zp3, lo3, hi3 = (
            st.reg(v, pfx + n + "3") for v, n in
            ((sh2, "sh"), (mode2, "mode"), (rdiv2, "rdiv"), (off2, "off"), (zp2, "zp"),
             (lo2, "lo"), (hi2, "hi")))

        # Stage 4: the outer partial products need no adder (hh * 2**32 + ll is a
        # concatenation); the offset joins them, the middle ones are summed.
        # |hh * 2**32 + ll + off| <= 2**62 + 2**47: exact in signed(64).
        base = st.reg(Cat(ll, hh).as_signed() + off3, pfx + "base4", signed(64))
        mid = st.reg(lh + hl, pfx + "mid4", signed(33))
        sh4, mode4, rdiv4, zp4, lo4, hi4 = (
            st.reg(v, pfx + n + "4") for v, n in
            ((sh3, "sh"), (mode3, "mode"), (rdiv3, "rdiv"), (zp3, "zp"), (lo3, "lo"), (hi3, "hi")))

        # Stage 5: t = x * mult + offset, |t| <= 2**62 + 2**47.
        t = st.reg(base + (mid << 16), pfx + "t5", signed(64))
        # The shift's two decodes, 2**(S-1) (rounding constant) and 2**S - 1 (half-even tie
        # mask), are registered here, a stage ahead of their use: decoding the shift in the
        # stage that uses it was the unit's critical path on ECP5 (docs/perf/targets.md).
        # S <= 63, so both fit 63 bits (a 64th bit would be a constant-0 flip-flop).
        half = st.reg((Const(1, 1) << sh4)[1:], pfx + "half5", unsigned(63))
        mask5 = st.reg(((Const(1, 1) << sh4) - 1)[:63], pfx + "mask5", unsigned(63))
        sh5, mode5, rdiv5, zp5, lo5, hi5 = (
            st.reg(v, pfx + n + "5") for v, n in
            ((sh4, "sh"), (mode4, "mode"), (rdiv4, "rdiv"), (zp4, "zp"), (lo4, "lo"), (hi4, "hi")))

        # Stage 6: the rounding constant. half_up and half_even add 2**(S-1) (half_even fixes
        # exact ties after the shift). TFLite's RoundingDivideByPOT by 2**r (r = S - 31 > 0) on
        # high = floor(t / 2**31) adds 2**(r-1), minus 1 when high < 0 (ties away from zero);
        # lifted to t that is 2**(S-1) - 2**31 * (t < 0).
        add = Signal(signed(64), name=pfx + "add6")
        with st.m.Switch(mode5):
            with st.m.Case(Rounding.FLOOR):
                st.m.d.comb += add.eq(0)
            with st.m.Case(Rounding.HALF_UP, Rounding.HALF_EVEN):
                st.m.d.comb += add.eq(half)
            with st.m.Case(Rounding.TFLITE):
                st.m.d.comb += add.eq(Mux(rdiv5, half - Mux(t[63], 1 << 31, 0), 0))
        # |u| <= 2**62 + 2**61 + 2**47 < 2**63.
        u = st.reg(t + add, pfx + "u6", signed(64))
        mask = st.reg(mask5, pfx + "mask6")
        sh6, mode6, zp6, lo6, hi6 = (
            st.reg(v, pfx + n + "6") for v, n in
            ((sh5, "sh"), (mode5, "mode"), (zp5, "zp"), (lo5, "lo"), (hi5, "hi")))

        # Stage 7: divide (arithmetic shift = floor). An exact half_even tie is t = q*2**S +
        # 2**(S-1), i.e. u's low S bits all zero with S > 0; half-up gave q + 1 there, and the
        # even neighbour is (q + 1) with its LSB cleared. Beside it, the clip bounds moved in
        # front of the zero point (z < lo iff q < lo - zero_point), so that stage 8 compares q
        # itself and no compare waits for the 65-bit z.
        tie = (sh6 != 0) & ((u.as_unsigned() & mask) == 0)
        q = st.reg(u >> sh6, pfx + "q7", signed(64))
        even = st.reg((mode6 == Rounding.HALF_EVEN) & tie, pfx + "even7")
        lo_zp = st.reg(lo6 - zp6, pfx + "lo_zp7", signed(33))
        hi_zp = st.reg(hi6 - zp6, pfx + "hi_zp7", signed(33))
        zp7 = st.reg(zp6[:self.out_bits], pfx + "zp7", unsigned(self.out_bits))
        lo7, hi7 = (st.reg(v, pfx + n + "7") for v, n in ((lo6, "lo"), (hi6, "hi")))

        # Stage 8: the half-even fix, then the saturation flags and z narrowed to out_bits:
        # an unsaturated z lies in [lo, hi], so its low out_bits bits are all of it.
        qe = Cat(q[0] & ~even, q[1:]).as_signed()
        below, above = _outside(qe, lo_zp, hi_zp)
        below8 = st.reg(below, pfx + "below8")
        above8 = st.reg(above, pfx + "above8")
        z = st.reg(qe[:self.out_bits] + zp7, pfx + "z8", unsigned(self.out_bits))
        lo8, hi8 = st.reg(lo7, pfx + "lo8"), st.reg(hi7, pfx + "hi8")

        # Stage 9: clip, a plain select (below and above exclude each other since lo <= hi).
        y = Mux(below8, lo8, Mux(above8, hi8, z.as_signed()))
        return st.reg(y, pfx + "y9", signed(self.out_bits))


def _outside(v, lo, hi):
    """``(v < lo, v > hi)`` for a signed(64) ``v`` and signed(33) bounds, without a 64-bit
    compare: ``v``'s upper 32 bits can only equal a bound's (0 or -1, its sign), so they reduce
    to three flags shared by both tests, and only the lower 32 bits are compared (one 32-bit
    carry chain each instead of 65)."""
    v_lo, v_hi = v[:32], v[32:]
    neg, ones, zeros = v[63], v_hi.all(), ~v_hi.any()
    # lo < 0: v < lo iff v_hi < -1, or v_hi == -1 and v_lo < lo's lower bits; lo >= 0 likewise
    # with v_hi < 0 and v_hi == 0.
    below = Mux(lo[32], (neg & ~ones) | (ones & (v_lo < lo[:32])),
                neg | (zeros & (v_lo < lo[:32])))
    above = Mux(hi[32], ~neg | (ones & (v_lo > hi[:32])),
                (~neg & ~zeros) | (zeros & (v_lo > hi[:32])))
    return below, above


_PARAM_FIELDS = ("bias", "mult", "offset", "shift", "zero_point", "lo", "hi")


def encode_channels(params, channels, out_bits=32):
    """:meth:`Requantizer.encode` for an ``out_bits`` output (usable without an instance)."""
    if not isinstance(params, RequantParams):
        raise ValueError(f"params: expected intdeploy.golden.requantizer.RequantParams, got {type(params).__name__}")
    count = params.channels
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        if channels < 1 or (count is not None and channels != count):
            allowed = f"{count} (the channels of params)" if count is not None else "an integer >= 1"
            raise ValueError(f"channels: {channels!r} is not allowed; expected {allowed} or a list of indices")
        indices = range(int(channels))
    else:
        try:
            indices = [int(c) for c in channels]
        except (TypeError, ValueError):
            raise ValueError(f"channels: expected a count or a sequence of channel indices, got {channels!r}") from None
        if count is not None and any(not 0 <= c < count for c in indices):
            raise ValueError(f"channels: indices must be in [0, {count - 1}], got {indices}")
    layout = param_layout(out_bits)
    out = []
    for c in indices:
        fields = {}
        for name in _PARAM_FIELDS:
            arr = getattr(params, name)
            value = int(arr[c] if arr.ndim else arr)
            lo, hi = _shape_range(layout.members[name])
            if not lo <= value <= hi:
                raise ValueError(f"{name}: {value} does not fit the hardware field {layout.members[name]} "
                                 f"(allowed [{lo}, {hi}]" + (f", out_bits={out_bits})" if name in ("lo", "hi") else ")"))
            fields[name] = value
        fields["rounding"] = Rounding.of(params.rounding)
        out.append(fields)
    return out
