"""The requantizer: int32 accumulators -> output activations, five rounding modes chosen per beat.

Hardware image of :func:`intdeploy.golden.requantizer.requantize` (NEMO report sec. 3.2 Eq. 11-14, the
integer batch-norm of sec. 3.4 Eq. 21-22, TFLite's ``MultiplyByQuantizedMultiplier``, ONNX
Runtime / PyTorch round-half-to-even, LiteRT's reference FULLY_CONNECTED ties away from zero). :meth:`Requantizer.encode` turns golden's
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


class Rounding(enum.Enum, shape=wire.PARAM["rounding"].width):
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
    ``mult`` must be >= 0, which :meth:`encode` enforces), ``HALF_AWAY`` (one rounding, ties away
    from zero: LiteRT's reference FULLY_CONNECTED).

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

    With ``held = k`` the parameters are not in the beat: ``k`` sets on the ``params`` port, lane
    ``j`` using set ``j // (lanes // k)``, which must hold from the acceptance of the first beat
    that uses them until the last one leaves ``o`` (a run's parameters, e.g. the add unit's).
    Each value derived from a set (mode decode, shift decodes, ``lo - zero_point``, ...) is then
    registered once per set instead of once per lane and stage: the same results, a fraction of
    the flip-flops and of the decode logic.

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
    held : int or None
        None (default): parameters per lane in every beat. ``k`` (a divisor of ``lanes``): ``k``
        held parameter sets on ``params`` (see above).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout))
        Input beats: ``acc`` ``ArrayLayout(signed(32), lanes)``; ``params``
        ``ArrayLayout(param_layout(out_bits), lanes)`` with fields ``bias`` signed(32),
        ``mult`` signed(32), ``offset`` signed(48), ``shift`` unsigned(6), ``zero_point``
        signed(32), ``lo`` / ``hi`` signed(out_bits), ``rounding`` :class:`Rounding` (3 bits);
        ``user`` if given.
    o : Out(stream.Signature(StructLayout))
        Output beats: ``y`` ``ArrayLayout(signed(out_bits), lanes)``; ``user`` if given.
    params : In(ArrayLayout(param_layout(out_bits), held))
        With ``held`` only (and then ``i.payload`` has no ``params``), plain-shaped.

    Latency and throughput: :data:`LATENCY` = 9 cycles from acceptance to presentation,
    one beat per cycle (II = 1) with full backpressure. Pipeline (per lane, shared by the five
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

    def __init__(self, *, lanes=1, out_bits=32, user=None, held=None):
        self.lanes = check_int("lanes", lanes, 1, 1 << 16)
        self.out_bits = check_int("out_bits", out_bits, 2, 32)
        if held is not None:
            check_int("held", held, 1, self.lanes)
            if self.lanes % held:
                raise ValueError(f"held: {held} does not divide lanes={self.lanes}; allowed None or a divisor "
                                 f"of lanes")
        self.held = held
        if user is not None:
            try:
                Shape.cast(user)
            except TypeError:
                raise ValueError(f"user: {user!r} is not allowed; expected None or an Amaranth "
                                 f"shape-like (e.g. a data layout)") from None
        self.user = user
        self.param_layout = param_layout(self.out_bits)
        i_fields = {"acc": data.ArrayLayout(signed(32), self.lanes)}
        if held is None:
            i_fields["params"] = data.ArrayLayout(self.param_layout, self.lanes)
        o_fields = {"y": data.ArrayLayout(signed(self.out_bits), self.lanes)}
        if user is not None:
            i_fields["user"] = o_fields["user"] = user
        self.i_layout = data.StructLayout(i_fields)
        self.o_layout = data.StructLayout(o_fields)
        ports = {"i": In(stream.Signature(self.i_layout)), "o": Out(stream.Signature(self.o_layout))}
        if held is not None:
            # Plain-shaped, viewed inside (no alias wire per field in the Verilog).
            self.params_layout = data.ArrayLayout(self.param_layout, held)
            ports["params"] = In(Shape.cast(self.params_layout))
        super().__init__(ports)

    def __repr__(self):
        return (f"Requantizer(lanes={self.lanes}, out_bits={self.out_bits}, user={self.user!r}"
                + (f", held={self.held})" if self.held is not None else ")"))

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
        if self.held is None:
            lane_params = [self.i.payload.params[lane] for lane in range(self.lanes)]
            stages_of = [_carried_params(st, p, self.out_bits, f"l{lane}_") for lane, p in enumerate(lane_params)]
        else:
            sets = [self.params_layout(self.params)[k] for k in range(self.held)]
            per = self.lanes // self.held
            held = [_held_params(m, p, self.out_bits, f"set{k}_") for k, p in enumerate(sets)]
            lane_params = [sets[lane // per] for lane in range(self.lanes)]
            stages_of = [held[lane // per] for lane in range(self.lanes)]
        for lane in range(self.lanes):
            y = self._lane(st, self.i.payload.acc[lane], lane_params[lane].bias, stages_of[lane], f"l{lane}_")
            m.d.comb += out.y[lane].eq(y)
        if self.user is not None:
            user = self.i.payload.user
            for k in range(stages):
                user = st.reg(user, f"user{k + 1}", self.user)
            m.d.comb += out.user.eq(user)

        m.d.comb += [skid.i.valid.eq(valid[-1]), skid.i.payload.eq(out)]
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        return m

    def _lane(self, st, acc, bias, S, pfx):
        """One lane's datapath (9 register stages) on the parameter values ``S[k]`` of each stage
        k (:func:`_carried_params` or :func:`_held_params`); returns the stage-9 output register."""
        # Stage 1: x = wrap32(acc + bias).
        x1 = st.reg((acc + bias)[:32].as_signed(), pfx + "x1")

        # Stage 2: TFLite's x * (1 << left_shift), wrapping in int32 (non-TFLite: left = 0).
        x2 = st.reg((x1 << S[1]["lsh"])[:32].as_signed(), pfx + "x2", signed(32))

        # Stage 3: four 16x16 partial products (each maps onto one 18x18 DSP).
        mult2 = S[2]["mult"]
        xl, xh = x2[:16], x2[16:].as_signed()
        ml, mh = mult2[:16], mult2[16:].as_signed()
        ll = st.reg(xl * ml, pfx + "pp_ll", unsigned(32))
        lh = st.reg(xl * mh, pfx + "pp_lh", signed(32))
        hl = st.reg(xh * ml, pfx + "pp_hl", signed(32))
        hh = st.reg(xh * mh, pfx + "pp_hh", signed(32))

        # Stage 4: the outer partial products need no adder (hh * 2**32 + ll is a
        # concatenation); the offset joins them, the middle ones are summed.
        # |hh * 2**32 + ll + off| <= 2**62 + 2**47: exact in signed(64).
        base = st.reg(Cat(ll, hh).as_signed() + S[3]["off"], pfx + "base4", signed(64))
        mid = st.reg(lh + hl, pfx + "mid4", signed(33))

        # Stage 5: t = x * mult + offset, |t| <= 2**62 + 2**47.
        t = st.reg(base + (mid << 16), pfx + "t5", signed(64))

        # Stage 6: the rounding constant. half_up and half_even add 2**(S-1) (half_even fixes
        # exact ties after the shift). TFLite's RoundingDivideByPOT by 2**r (r = S - 31 > 0) on
        # high = floor(t / 2**31) adds 2**(r-1), minus 1 when high < 0 (ties away from zero);
        # lifted to t that is 2**(S-1) - 2**31 * (t < 0).
        add = Signal(signed(64), name=pfx + "add6")
        half = S[5]["half"]
        with st.m.Switch(S[5]["mode"]):
            with st.m.Case(Rounding.FLOOR):
                st.m.d.comb += add.eq(0)
            with st.m.Case(Rounding.HALF_UP, Rounding.HALF_EVEN):
                st.m.d.comb += add.eq(half)
            with st.m.Case(Rounding.TFLITE):
                st.m.d.comb += add.eq(Mux(S[5]["rdiv"], half - Mux(t[63], 1 << 31, 0), 0))
            with st.m.Case(Rounding.HALF_AWAY):
                # Ties away from zero: a negative t takes one less, so that an exact negative
                # tie t = q*2**S + 2**(S-1) stays at q (floor) instead of going up to q + 1.
                st.m.d.comb += add.eq(half - (t[63] & (S[5]["sh"] != 0)))
        # |u| <= 2**62 + 2**61 + 2**47 < 2**63.
        u = st.reg(t + add, pfx + "u6", signed(64))

        # Stage 7: divide (arithmetic shift = floor). An exact half_even tie is t = q*2**S +
        # 2**(S-1), i.e. u's low S bits all zero with S > 0; half-up gave q + 1 there, and the
        # even neighbour is (q + 1) with its LSB cleared. The clip bounds were moved in front of
        # the zero point (z < lo iff q < lo - zero_point, ``lo_zp`` and ``hi_zp``), so that
        # stage 8 compares q itself and no compare waits for the 65-bit z.
        tie = (S[6]["sh"] != 0) & ((u.as_unsigned() & S[6]["mask"]) == 0)
        q = st.reg(u >> S[6]["sh"], pfx + "q7", signed(64))
        even = st.reg((S[6]["mode"] == Rounding.HALF_EVEN) & tie, pfx + "even7")

        # Stage 8: the half-even fix, then the saturation flags and z narrowed to out_bits:
        # an unsaturated z lies in [lo, hi], so its low out_bits bits are all of it.
        qe = Cat(q[0] & ~even, q[1:]).as_signed()
        below, above = _outside(qe, S[7]["lo_zp"], S[7]["hi_zp"])
        below8 = st.reg(below, pfx + "below8")
        above8 = st.reg(above, pfx + "above8")
        z = st.reg(qe[:self.out_bits] + S[7]["zp"], pfx + "z8", unsigned(self.out_bits))

        # Stage 9: clip, a plain select (below and above exclude each other since lo <= hi).
        y = Mux(below8, S[8]["lo"], Mux(above8, S[8]["hi"], z.as_signed()))
        return st.reg(y, pfx + "y9", signed(self.out_bits))


def _param_sources(p):
    """The stage-0 values a lane derives from its parameters ``p``: mode decode and TFLite's
    exponent e = 31 - shift. e > 0 pre-shifts x left by e and divides the product by 2**31
    (S = 31); e <= 0 divides by 2**31 then by 2**-e, which (nested floors compose) is one division
    by 2**shift with an adjusted rounding constant. The TFLite nudge of
    SaturatingRoundingDoublingHighMul, (ab + (ab >= 0 ? 2**30 : 1 - 2**30)) truncated toward zero
    by 2**31, equals floor((ab + 2**30) / 2**31) for every ab, so it is just an offset of 2**30."""
    tfl = p.rounding == Rounding.TFLITE
    left = tfl & (p.shift < 31)
    return {"lsh": (Mux(left, 31 - p.shift, 0)[:5], unsigned(5)), "sh": (Mux(left, 31, p.shift), unsigned(6)),
            "mode": (p.rounding, Rounding), "rdiv": (tfl & (p.shift > 31), None),
            "off": (Mux(tfl, 1 << 30, p.offset), signed(48)), "mult": (p.mult, signed(32)),
            "zp": (p.zero_point, None), "lo": (p.lo, None), "hi": (p.hi, None)}


def _decodes(sh):
    """The shift's two decodes, 2**(S-1) (rounding constant) and 2**S - 1 (half-even tie mask),
    registered a stage ahead of their use: decoding the shift in the stage that uses it was the
    unit's critical path on ECP5 (docs/perf/targets.md). S <= 63, so both fit 63 bits."""
    return (Const(1, 1) << sh)[1:], ((Const(1, 1) << sh) - 1)[:63]


def _carried_params(st, p, out_bits, pfx):
    """Per-beat parameters: each value travels down the pipeline with its beat, and is dropped
    after its last use. Returns ``S``, ``S[k]`` the values at stage ``k`` (1..8)."""
    src = _param_sources(p)
    S = [None, {n: st.reg(v, pfx + n + "1", shape) for n, (v, shape) in src.items()}]
    live = {2: ("sh", "mode", "rdiv", "off", "mult", "zp", "lo", "hi"),
            3: ("sh", "mode", "rdiv", "off", "zp", "lo", "hi"),
            4: ("sh", "mode", "rdiv", "zp", "lo", "hi"),
            5: ("sh", "mode", "rdiv", "zp", "lo", "hi"),
            6: ("sh", "mode", "zp", "lo", "hi"),
            7: ("lo", "hi"),
            8: ("lo", "hi")}
    for k in range(2, 9):
        S.append({n: st.reg(S[k - 1][n], pfx + n + str(k)) for n in live[k]})
        if k == 5:
            half, mask = _decodes(S[4]["sh"])
            S[5]["half"] = st.reg(half, pfx + "half5", unsigned(63))
            S[5]["mask"] = st.reg(mask, pfx + "mask5", unsigned(63))
        if k == 6:
            S[6]["mask"] = st.reg(S[5]["mask"], pfx + "mask6")
        if k == 7:
            S[7]["lo_zp"] = st.reg(S[6]["lo"] - S[6]["zp"], pfx + "lo_zp7", signed(33))
            S[7]["hi_zp"] = st.reg(S[6]["hi"] - S[6]["zp"], pfx + "hi_zp7", signed(33))
            S[7]["zp"] = st.reg(S[6]["zp"][:out_bits], pfx + "zp7", unsigned(out_bits))
    return S


def _held_params(m, p, out_bits, pfx):
    """Held parameters (one set for several lanes, constant while its beats are in flight): each
    derived value is registered once, at most ``k - 1`` registers deep where stage ``k`` uses it,
    so it is right for a beat accepted while ``p`` holds. Returns ``S`` as :func:`_carried_params`."""
    def reg(value, name, shape=None):
        shape = shape if shape is not None else value.shape()
        sig = Signal(Shape.cast(shape), name=pfx + name, reset_less=True)
        m.d.sync += sig.eq(value)
        return sig if isinstance(shape, Shape) else shape(sig)
    v = {n: reg(value, n, shape) for n, (value, shape) in _param_sources(p).items()}
    half, mask = _decodes(v["sh"])
    v["half"], v["mask"] = reg(half, "half", unsigned(63)), reg(mask, "mask", unsigned(63))
    v["lo_zp"] = reg(p.lo - p.zero_point, "lo_zp", signed(33))
    v["hi_zp"] = reg(p.hi - p.zero_point, "hi_zp", signed(33))
    v["zp"] = reg(p.zero_point[:out_bits], "zp", unsigned(out_bits))
    return [v] * 9


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
