"""Pooling unit: max, NEMO average (report Eq. 25) and TFLite average pooling of streamed windows.

The hardware of :func:`intdeploy.golden.pool.pool_windows`. A window arrives tap by tap (one beat per tap,
``lanes`` channels per beat, ``last`` on its final tap); the unit keeps a running sum and a
running maximum per lane, counts the taps, and at the end of the window applies the mode's
epilogue:

* ``max``: the running maximum (NEMO report sec. 3.6: quantization preserves order).
* ``avg_nemo``: report Eq. 25, ``(mult * sum) >> d`` with ``mult = floor(2**d / (K1*K2))``
  given by the host (:meth:`PoolUnit.params`), arithmetic (floor) shift.
* ``avg_tflite``: TFLite reference int8 ``AveragePool``: ``sum / n`` over the ``n`` taps of the
  window, rounded half away from zero (``(sum +- n//2) / n`` in C), then clamped to [lo, hi].

The TFLite division by the run-time tap count ``n`` is a multiplication by a reciprocal from a
``max_taps``-entry table (exactness proved in :class:`PoolUnit`), so it costs no extra cycles:
windows of any size, down to one tap, stream at one tap per cycle.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2
import numpy as np

from intdeploy import wire
from intdeploy.golden.checks import check_int

__all__ = ["PoolMode", "PoolUnit", "reciprocal_table"]


class PoolMode(enum.Enum, shape=2):
    """Run-time pooling mode of a window: the wire format's codes (:data:`intdeploy.wire.POOL`,
    golden's :data:`~intdeploy.golden.pool.POOL_MODES` in order), names upper-cased."""
    _ignore_ = ["_name", "_code"]
    for _name, _code in wire.POOL.items():
        vars()[_name.upper()] = _code


_MODES = {name: PoolMode[name.upper()] for name in wire.POOL}


def reciprocal_table(max_taps, a_max):
    """``(s, R)``: ``floor(A * R[n] / 2**s) == floor(A / n)`` for 0 <= A <= a_max, 1 <= n <= max_taps.

    ``R[n] = ceil(2**s / n)`` (``R[0] = 0`` is unused) and ``s`` is the smallest shift with
    ``2**s > a_max * (max_taps - 1)``. Proof: write ``R*n = 2**s + e`` with ``0 <= e <= n - 1``
    and ``A = q*n + r`` with ``0 <= r <= n - 1``. Then
    ``A*R / 2**s = A/n + A*e/(n * 2**s) = q + (r + A*e/2**s) / n``, and
    ``A*e <= a_max*(max_taps - 1) < 2**s`` gives ``0 <= r + A*e/2**s < n``, so the floor is ``q``.
    """
    s = (a_max * (max_taps - 1)).bit_length()
    return s, [0] + [-(-(1 << s) // n) for n in range(1, max_taps + 1)]


class PoolUnit(wiring.Component):
    """Window reduction for max / average pooling, II = 1 tap per cycle, one output per window.

    Arithmetic per lane, over the ``n`` taps ``x_1..x_n`` of a window (``S = sum x_j``, exact):

    * ``MAX``: ``max x_j``;
    * ``AVG_NEMO``: ``floor(mult * S / 2**shift)`` (report Eq. 25 with ``mult = floor(2**d /
      (K1*K2))``, ``shift = d``);
    * ``AVG_TFLITE``: ``sign(S) * floor((|S| + n//2) / n)``, i.e. ``S / n`` rounded half away from
      zero, which is TFLite's ``(S > 0 ? S + n/2 : S - n/2) / n`` in C integer division;

    then every mode clamps to ``[lo, hi]``. Bit-exact with ``intdeploy.golden.pool.pool_windows`` when
    the host streams the window's taps (for ``avg_tflite`` only its valid taps: the unit divides
    by the number of taps it received) and uses :meth:`params`.

    TFLite division: ``floor(A / n)`` with ``A = |S| + n//2`` is computed as
    ``(A * R[n]) >> s`` with ``R[n] = ceil(2**s / n)`` from a table; ``|S| <= max_taps *
    2**(in_bits-1)`` bounds ``A <= a_max = max_taps * 2**(in_bits-1) + max_taps // 2`` and the
    shift ``s`` is the smallest with ``2**s > a_max * (max_taps - 1)``, which makes the result
    exact (proof in :func:`reciprocal_table`; tested exhaustively). Defaults: ``s = 20``,
    ``R`` 21 bits. ``AVG_NEMO`` and ``AVG_TFLITE`` share one multiplier per lane.

    Parameters
    ----------
    lanes : int
        Channels per beat, 1..64.
    in_bits : int
        Width of a tap, signed, 2..24; default 9, which holds int8 [-128, 127] and uint8
        [0, 255] activations alike.
    max_taps : int
        Largest window ``n`` (1..4096), e.g. 64 for 8x8; bounds the sum width and the table.
        A window with more taps is a protocol error: its sum wraps (:meth:`window_beats`
        refuses to build one).
    max_shift : int
        Largest NEMO ``d`` (0..32), default 16 (golden's default ``d``); ``mult`` is
        ``max_shift + 1`` bits.

    Attributes
    ----------
    latency : int
        5: cycles from the acceptance of a window's last tap to its result being offered.
    sum_bits : int
        ``in_bits + ceil_log2(max_taps)``, the exact width of ``S`` and of the results: with
        ``K1*K2`` smaller than the tap count an Eq. 25 result can reach ``S``.
    i : ``In(stream.Signature(in_layout))``
        One tap per beat: ``x`` array of ``lanes`` signed(in_bits) values, ``last`` (1 on the
        final tap of the window), ``mode`` (:class:`PoolMode`), ``mult`` unsigned(max_shift+1),
        ``shift`` unsigned(bit_length(max_shift)), ``lo``/``hi`` signed(sum_bits). The unit
        keeps sums and maxima of all modes; ``mode``, ``mult``, ``shift``, ``lo``, ``hi`` are
        read from the ``last`` beat only.
    o : ``Out(stream.Signature(out_layout))``
        ``y`` array of ``lanes`` signed(sum_bits) results, one beat per window, in order.

    Latency and throughput: the result of a window whose last tap is accepted in cycle ``t``
    is offered in cycle ``t + 5`` (window register, operand select, multiply, shift/negate,
    clamp). One tap per cycle in steady state whatever the window sizes (one-tap windows give
    one output per cycle). Stall-all pipeline: every register advances when
    ``o.ready | ~o.valid`` and ``i.ready`` is that same condition, so nothing is lost or
    duplicated under any backpressure.

    Raises
    ------
    ValueError
        If ``lanes``, ``in_bits``, ``max_taps`` or ``max_shift`` is out of range.
    """

    def __init__(self, *, lanes=1, in_bits=9, max_taps=64, max_shift=16):
        self.lanes = check_int("lanes", lanes, 1, 64)
        self.in_bits = check_int("in_bits", in_bits, 2, 24)
        self.max_taps = check_int("max_taps", max_taps, 1, 4096)
        self.max_shift = check_int("max_shift", max_shift, 0, 32)
        self.sum_bits = self.in_bits + ceil_log2(self.max_taps)
        self.latency = 5
        self.a_max = self.max_taps * (1 << (self.in_bits - 1)) + self.max_taps // 2
        self.recip_shift, self.recip = reciprocal_table(self.max_taps, self.a_max)
        self.in_layout = data.StructLayout({
            "x": data.ArrayLayout(signed(self.in_bits), self.lanes),
            "last": unsigned(1),
            "mode": PoolMode,
            "mult": unsigned(self.max_shift + 1),
            "shift": unsigned(max(1, self.max_shift.bit_length())),
            "lo": signed(self.sum_bits),
            "hi": signed(self.sum_bits),
        })
        self.out_layout = data.StructLayout({
            "y": data.ArrayLayout(signed(self.sum_bits), self.lanes),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    # --- host side -----------------------------------------------------------------------

    def params(self, mode, *, count=None, d=None, lo=None, hi=None):
        """Beat fields ``mode, mult, shift, lo, hi`` for golden's ``pool_windows(..., mode,
        count, d, lo, hi)`` arguments, with golden's defaults.

        ``avg_nemo`` needs ``count`` (``K1*K2``) and ``d`` (0..max_shift, ``2**d >= count``);
        ``avg_tflite`` takes no ``count`` (the unit counts the taps it receives: stream the
        valid taps only) and clamps to [-128, 127] unless ``lo``/``hi`` say otherwise; ``max``
        takes neither. ``lo``/``hi`` beyond the result range [-2**(sum_bits-1),
        2**(sum_bits-1) - 1] are brought to its edge (exact: results never leave it); a clamp
        lying wholly outside it is refused.

        Raises
        ------
        ValueError
            Naming the argument: unknown mode, a parameter the mode does not use, ``count``,
            ``d`` out of range, ``lo > hi``, or a clamp the unit cannot represent.
        """
        if mode not in _MODES:
            raise ValueError(f"mode: {mode!r} is not one of {', '.join(_MODES)}")
        mult = shift = 0
        if mode == "avg_nemo":
            if count is None or d is None:
                raise ValueError("count, d: avg_nemo needs both (count = K1*K2, D = 2**d)")
            count = check_int("count", count, 1, self.max_taps)
            d = check_int("d", d, 0, self.max_shift)
            if (1 << d) < count:
                raise ValueError(f"d: 2**{d} < count {count}: the factor floor(2**d/count) would be 0")
            mult, shift = (1 << d) // count, d
        elif count is not None or d is not None:
            raise ValueError(f"count, d: not used by {mode}" +
                             (" (the unit counts the taps: stream only the valid ones)"
                              if mode == "avg_tflite" else ""))
        if mode == "avg_tflite":
            lo = -128 if lo is None else lo
            hi = 127 if hi is None else hi
        rmin, rmax = -(1 << (self.sum_bits - 1)), (1 << (self.sum_bits - 1)) - 1
        lo = rmin if lo is None else check_int("lo", lo, -(1 << 63), (1 << 63) - 1)
        hi = rmax if hi is None else check_int("hi", hi, -(1 << 63), (1 << 63) - 1)
        if lo > hi:
            raise ValueError(f"lo, hi: lo must be <= hi, got {lo} > {hi}")
        if lo > rmax or hi < rmin:
            raise ValueError(f"lo, hi: clamp [{lo}, {hi}] lies outside the results' range "
                             f"[{rmin}, {rmax}] (sum_bits={self.sum_bits})")
        return {"mode": _MODES[mode], "mult": mult, "shift": shift,
                "lo": max(lo, rmin), "hi": min(hi, rmax)}

    def window_beats(self, window, params):
        """Beats (dicts of ``in_layout`` fields) streaming one window ``(n, lanes)`` of taps.

        ``params`` is a :meth:`params` dict. Raises ValueError if ``window`` is not integer,
        not ``(n, lanes)`` with 1 <= n <= max_taps, or has a value outside signed(in_bits).
        """
        w = np.asarray(window)
        if w.dtype == object or w.dtype.kind not in "iub":
            raise ValueError(f"window: expected integers, got dtype {w.dtype}")
        if w.ndim != 2 or w.shape[1] != self.lanes or not 1 <= w.shape[0] <= self.max_taps:
            raise ValueError(f"window: expected shape (n, {self.lanes}) with 1 <= n <= "
                             f"max_taps={self.max_taps}, got {w.shape}")
        lo, hi = -(1 << (self.in_bits - 1)), (1 << (self.in_bits - 1)) - 1
        if int(w.min()) < lo or int(w.max()) > hi:
            bad = int(w.min()) if int(w.min()) < lo else int(w.max())
            raise ValueError(f"window: {bad} is outside signed({self.in_bits}) [{lo}, {hi}]")
        n = w.shape[0]
        return [{"x": [int(v) for v in row], "last": int(j == n - 1), **params}
                for j, row in enumerate(w)]

    # --- hardware ------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        L, SB = self.lanes, self.sum_bits
        n_bits = self.max_taps.bit_length()
        a_bits = self.a_max.bit_length()
        op_a = signed(max(SB, a_bits + 1))
        op_b = unsigned(max(self.max_shift + 1, self.recip_shift + 1))
        sh_bits = max(self.max_shift, self.recip_shift).bit_length() or 1
        p = self.i.payload

        advance = Signal()
        m.d.comb += [advance.eq(self.o.ready | ~self.o.valid), self.i.ready.eq(advance)]
        take = self.i.valid & advance

        # Stage valids: W (window done), E1 (operands), E2 (product), E3 (scaled), O (output).
        v_w, v_e1, v_e2, v_e3, v_o = (Signal(name=f"valid_{s}") for s in ("w", "e1", "e2", "e3", "o"))
        m.d.comb += self.o.valid.eq(v_o)
        with m.If(advance):
            m.d.sync += [v_w.eq(take & p.last), v_e1.eq(v_w), v_e2.eq(v_e1), v_e3.eq(v_e2),
                         v_o.eq(v_e3)]

        # Shared per-window state: tap count and the last beat's parameters, staged along.
        # Only the valid flags and ``first`` (a reset starts a new window) have a reset: the
        # running count, sums and maxima are read only after a tap with ``first`` low has
        # loaded them, and every stage register only matters while its stage's flag is set
        # (a reset net reaching every data bit is the design's longest wire).
        first = Signal(init=1)
        cnt = Signal(n_bits, reset_less=True)
        new_n = Mux(first, 1, cnt + 1)
        w_n = Signal(n_bits, reset_less=True)
        stage_layout = data.StructLayout({"mode": PoolMode, "lo": signed(SB), "hi": signed(SB)})
        ctl = [Signal(stage_layout, name=f"ctl_{s}", reset_less=True) for s in ("w", "e1", "e2", "e3")]
        w_mult = Signal(self.max_shift + 1, reset_less=True)
        w_shift = Signal(self.max_shift.bit_length() or 1, reset_less=True)
        shamt = [Signal(sh_bits, name=f"shamt_{s}", reset_less=True) for s in ("e1", "e2")]
        with m.If(take):
            m.d.sync += [cnt.eq(new_n), first.eq(p.last)]
        with m.If(advance):
            m.d.sync += [w_n.eq(new_n), w_mult.eq(p.mult), w_shift.eq(p.shift),
                         ctl[0].mode.eq(p.mode), ctl[0].lo.eq(p.lo), ctl[0].hi.eq(p.hi)]
            m.d.sync += [ctl[s + 1].eq(ctl[s]) for s in range(3)]
            m.d.sync += shamt[1].eq(shamt[0])
        tfl_w = ctl[0].mode == PoolMode.AVG_TFLITE
        with m.If(advance):
            m.d.sync += shamt[0].eq(Mux(tfl_w, self.recip_shift, w_shift))

        # Reciprocal of the tap count, read as the window closes so it is ready with W.
        m.submodules.recip = recip = Memory(shape=unsigned(self.recip_shift + 1),
                                            depth=self.max_taps + 1, init=self.recip)
        rd = recip.read_port()
        m.d.comb += [rd.addr.eq(new_n), rd.en.eq(advance)]

        for lane in range(L):
            x = p.x[lane]
            acc_sum = Signal(signed(SB), name=f"acc_sum_{lane}", reset_less=True)
            acc_max = Signal(signed(self.in_bits), name=f"acc_max_{lane}", reset_less=True)
            new_sum = Mux(first, x, acc_sum + x)
            new_max = Mux(first | (x > acc_max), x, acc_max)
            w_sum = Signal(signed(SB), name=f"w_sum_{lane}", reset_less=True)
            w_max = Signal(signed(self.in_bits), name=f"w_max_{lane}", reset_less=True)
            with m.If(take):
                m.d.sync += [acc_sum.eq(new_sum), acc_max.eq(new_max)]
            with m.If(advance):
                m.d.sync += [w_sum.eq(new_sum), w_max.eq(new_max)]

            # E1: operands. TFLite divides A = |S| + n//2 >= 0 by n; NEMO multiplies S by mult.
            sign = [Signal(name=f"sign_{s}_{lane}", reset_less=True) for s in ("e1", "e2")]
            mx = [Signal(signed(self.in_bits), name=f"max_{s}_{lane}", reset_less=True)
                  for s in ("e1", "e2", "e3")]
            a = Signal(op_a, name=f"op_a_{lane}", reset_less=True)
            b = Signal(op_b, name=f"op_b_{lane}", reset_less=True)
            half = w_n >> 1
            a_val = Mux(w_sum < 0, half - w_sum, w_sum + half)
            with m.If(advance):
                m.d.sync += [sign[0].eq(w_sum < 0), mx[0].eq(w_max),
                             a.eq(Mux(tfl_w, a_val, w_sum)), b.eq(Mux(tfl_w, rd.data, w_mult))]

            # E2: one multiplier per lane for both averages.
            prod = Signal(signed(op_a.width + op_b.width), name=f"prod_{lane}", reset_less=True)
            with m.If(advance):
                m.d.sync += [prod.eq(a * b), sign[1].eq(sign[0]), mx[1].eq(mx[0])]

            # E3: floor shift; the magnitude is within the sum's range (|result| <= |S| for
            # NEMO as mult <= 2**d, floor(A/n) <= |S| + n//2 for TFLite), so the slice is exact.
            scaled = (prod >> shamt[1])[:SB + 1].as_signed()
            tfl_e2 = ctl[2].mode == PoolMode.AVG_TFLITE
            res = Signal(signed(SB + 1), name=f"res_{lane}", reset_less=True)
            with m.If(advance):
                m.d.sync += [res.eq(Mux(tfl_e2 & sign[1], -scaled, scaled)), mx[2].eq(mx[1])]

            # O: select the mode's result and clamp.
            lo, hi = ctl[3].lo, ctl[3].hi
            val = Mux(ctl[3].mode == PoolMode.MAX, mx[2], res)
            y = Signal(signed(SB), name=f"y_{lane}", reset_less=True)
            with m.If(advance):
                m.d.sync += y.eq(Mux(val < lo, lo, Mux(val > hi, hi, val)))
            m.d.comb += self.o.payload.y[lane].eq(y)
        return m
