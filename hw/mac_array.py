"""The MAC array: R output channels x C input lanes of integer multiply-accumulate.

Hardware image of :func:`intdeploy.golden.mac_array.linear` (NEMO report sec. 3.3, Eq. 16 with zero
points): for every output channel ``r`` of a weight tile,

    acc[r] = sum_k (w[r, k] - w_zp[r]) * (x[k] - x_zp)

computed ``C`` terms per cycle. The host-side :meth:`MacArray.encode` turns the same arguments
that :func:`intdeploy.golden.mac_array.linear` takes into the array's beats.
"""

from amaranth import C, Cat, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
import numpy as np

from intdeploy.golden.checks import check_int
from intdeploy.golden.mac_array import check_accumulator

__all__ = ["MacArray", "step_range"]

WEIGHT_BITS = (8, 4, 2)

# Field ranges of a beat; the datapath is exact for every value in them (see MacArray).
X_ZP_RANGE = (-256, 255)       # x_zp is signed(9)
W_ZP_RANGE = (-128, 127)       # w_zp is int8
X_EXT_RANGE = (-128, 255)      # an activation lane read as int8 or uint8
XD_RANGE = (X_EXT_RANGE[0] - X_ZP_RANGE[1], X_EXT_RANGE[1] - X_ZP_RANGE[0])   # x - x_zp

#: Longest adder (bits) into which _fused_add packs several sums: one carry chain of at most
#: 40 CCU2C, which the adder-tree stages fit within the multiplier stage's delay (ECP5, 8 x 8).
CHAIN_BITS = 80


def _signed_bits(lo, hi):
    """Smallest ``n`` with ``-2**(n-1) <= lo`` and ``hi < 2**(n-1)``."""
    return max((~lo).bit_length() + 1 if lo < 0 else 1, hi.bit_length() + 1 if hi > 0 else 1)


def _weight_range(weight_bits):
    """``(lo, hi)`` of a stored ``weight_bits`` weight (two's complement)."""
    return -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1


def _mul_range(a, b):
    """Exact ``(lo, hi)`` of ``x * y`` for ``x`` in ``a`` and ``y`` in ``b`` (both intervals)."""
    corners = [p * q for p in a for q in b]
    return min(corners), max(corners)


def step_range(cols, weight_bits):
    """Exact ``(lo, hi)`` of one step's sum over every value the beat's fields can carry.

    ``w - w_zp`` spans ``[wmin - 127, wmax + 128]`` and ``x - x_zp`` spans ``[-383, 511]`` (a lane
    read as int8 or uint8 minus a signed(9) zero point), so for 8-bit weights one step lies in
    ``±255 * 511 * cols``. ``acc_bits`` must hold it.
    """
    wlo, whi = _weight_range(weight_bits)
    lo, hi = _mul_range((wlo - W_ZP_RANGE[1], whi - W_ZP_RANGE[0]), XD_RANGE)   # (w - w_zp) * xd
    return cols * lo, cols * hi


def _field(value, width):
    """The two's complement pattern of the signed ``value`` modulo ``2**width`` (``width``
    bits: sign-extended, or truncated; truncation is exact where the caller's range fits)."""
    n = len(value)
    if n >= width:
        return value[:width]
    return Cat(value, value[-1].replicate(width - n))


def _fused_add(ops, limit):
    """``a + b`` modulo ``2**w`` for each ``(a, b, w)`` of ``ops``, several sums per carry chain.

    Consecutive sums share one adder of at most ``limit`` bits (a sum wider than ``limit`` gets
    its own): their ``w``-bit fields lie side by side, each one after the first preceded by a
    guard bit. The guard is the least significant bit ``g`` of the field's ``b``, in both
    operands, and the field adds ``b`` with that bit cleared: the guard position adds
    ``g + g + c`` (``c``, the carry out of the field below, is absorbed there) and carries
    exactly ``g`` into the field, which so computes ``a + (b - g) + g``. Every field is
    therefore ``(a + b) mod 2**w``, exact when the caller's ``w`` holds the sum's range.
    (A constant-0 guard would block the carry just as well, but Yosys' ``synth_ecp5`` sees the
    constant carry and splits the chain there.) On ECP5 each carry chain costs two CCU2C
    besides its bits (nextpnr's carry feed-in and feed-out), so a chain of several fields is
    smaller than several chains. Returns the signed ``w``-bit sums in the order of ``ops``."""
    groups, bits = [], 0
    for op in ops:
        if groups and bits + 1 + op[2] <= limit:
            groups[-1].append(op)
            bits += 1 + op[2]
        else:
            groups.append([op])
            bits = op[2]
    out = []
    for group in groups:
        pa, pb = [], []
        for j, (a, b, w) in enumerate(group):
            fa, fb = _field(a, w), _field(b, w)
            if j:
                pa.append(fb[0])
                pb.append(fb[0])
                fb = Cat(C(0, 1), fb[1:])
            pa.append(fa)
            pb.append(fb)
        total = Cat(*pa) + Cat(*pb)
        off = 0
        for _, _, w in group:
            out.append(total[off:off + w].as_signed())
            off += w + 1
    return out


class MacArray(wiring.Component):
    """R x C integer multiply-accumulate array (weights streamed in the beat), int32 accumulators.

    Each accepted beat is one *step*: a C-vector of activations ``x`` and, for each of the R rows,
    a C-vector of weights ``w[r]``. Row ``r`` adds ``sum_c (w[r][c] - w_zp[r]) * (x[c] - x_zp)``
    to its accumulator. A GEMM row of length ``K`` is ``K / C`` steps (the host pads ``K`` to a
    multiple of ``C``, see :meth:`encode`); ``first`` clears, ``last`` emits. The weights arrive
    in the beat, one R x C tile per step: the weight buffer lives in the accelerator top, which
    reads one tile per cycle and feeds it alongside the activations; the array itself stores no
    weights, so a step costs no load cycles.

    Arithmetic (``intdeploy.golden.mac_array.linear``, NEMO report Eq. 16 with zero points):

    * ``x[c]``: 8 bits, read as int8 (``x_signed = 1``) or uint8 (``x_signed = 0``), chosen per
      beat at run time; ``x_zp``: signed(9), so both a uint8 zero point (0..255) and an int8 one
      (-128..127) fit. ``x - x_zp`` is formed exactly on 10 bits (9 bits suffice for zero points
      inside the activation type's range, as TFLite/ONNX/NEMO use; the tenth bit makes every
      value the field can carry exact, at the cost of one adder bit per lane).
    * ``w[r][c]``: two's complement on ``weight_bits`` (8, 4 or 2) bits, sign-extended inside;
      ``w_zp[r]``: int8 per row, so NEMO's asymmetric 8-bit weights stored as int8 (integer
      image e.g. ``[-109, 146]`` stored as ``w = q + w_zp`` with ``w_zp = -19``) are exact: ``w - w_zp`` spans
      9 bits signed.
    * Every product and partial sum is exact; the only wrap is the accumulator: ``acc_bits``
      (default 32) two's complement, wrapping modulo ``2**acc_bits`` and never saturating. The
      host driver refuses layers whose worst case does not fit
      (:func:`intdeploy.golden.mac_array.check_accumulator`, called by :meth:`encode`), so in use the
      results are exact.
    * Intermediate widths are the exact ranges over every value the fields can carry (``x``
      int8 or uint8, ``x_zp`` any signed(9), ``w`` any ``weight_bits`` value, ``w_zp`` any
      int8), not the operand widths: ``xd = x - x_zp`` spans [-383, 511] (10 bits); for 8-bit
      weights a product ``w * xd`` spans [-128 * 511, 127 * 511] = [-65408, 64897], 17 bits
      (not the 18 of an 8 x 10 product); a sum of ``2**l`` products 17 + l bits; ``S``
      [-383 C, 511 C]; the correction ``w_zp * S`` [-128 * 511 C, 127 * 511 C] (20 bits for C = 8);
      the step sum ``e`` the bits of :func:`step_range` (21 for C = 8), formed modulo
      ``2**21``, which is exact because ``e`` lies in that range. Each register and adder has
      exactly those bits. The ends of the ranges need a zero point outside the activation type
      (``x_zp = -256`` with uint8 255, ``x_zp = 255`` with int8 -128), which ``encode`` never
      sends; the bench drives them as raw beats.

    Zero points are folded, not subtracted per MAC. The input zero point is subtracted once per
    lane (C adders shared by all R rows); the weight zero point uses

        sum_c (w - w_zp) * xd = sum_c w * xd - w_zp * S,   S = sum_c xd,  xd = x - x_zp

    so each MAC is one multiplier (8 x 10 bits: one ECP5 MULT18X18D) feeding the adder tree
    directly, and the zero point costs, per row, one correction product ``w_zp * S`` and one
    subtraction; ``S`` comes from one C-input adder tree shared by all rows. Subtracting
    ``w_zp`` before each multiplier would cost a 9-bit adder per MAC instead.

    Carry chains: all the adds of one pipeline stage (the row trees' and the ``S`` tree's) are
    packed side by side into adders of at most :data:`CHAIN_BITS` bits, one guard bit between
    neighbouring sums (:func:`_fused_add`). On ECP5 every carry chain costs two CCU2C beyond
    its own bits (nextpnr's carry feed-in and feed-out), so fewer, longer chains are smaller:
    at 8 x 8 the array has 38 chains instead of 87.

    Pipeline (stall-all: every register stage advances together), ``D = ceil(log2(C))``:

    ====================  =======================================================
    stage                 registers
    ====================  =======================================================
    1                     ``xd[c] = x - x_zp`` (10 b), weights, ``w_zp``, flags
    2                     products ``w * xd`` (signed 8 x 10, one per MAC, kept on
                          the 17 bits of their range); level 1 of the ``S`` tree
    3 .. 2 + D            per-row binary adder tree of the C products, one level
                          per stage (``S`` finishes one stage earlier)
    2 + D                 correction ``w_zp[r] * S`` (parallel to the last level)
    3 + D                 step sum ``e[r] = tree[r] - correction[r]``
    4 + D                 accumulator ``acc[r] + e[r]`` and result register
                          ``o.payload``
    ====================  =======================================================

    Latency: a ``last`` step transferred in cycle ``t`` (``i.valid & i.ready``) has its result on
    ``o`` (``o.valid``) from cycle ``t + 4 + D`` (``latency`` attribute: 4 for C = 1, 7 for
    C = 5..8, 8 for C = 9..16). Throughput: one step per cycle (II = 1) while ``i.valid`` and
    ``o`` drains, so S back-to-back steps take ``S + latency`` cycles from the first step in to
    the last result out.

    Clearing and draining: each step sees the accumulator as 0 if it has ``first``, else as the
    sums after the previous step. The clear happens one stage early: when a ``first`` step
    enters the step-sum stage, the accumulators load 0 (the step ahead of it, if any, retires in
    the same edge with the old sums), so the accumulate is a plain ``acc + e`` and the clear is
    the flip-flops' synchronous reset, not a mask per bit. The accumulator stage writes
    ``acc + e`` to the accumulator and, for a ``last`` step, also to the result register, which
    holds the finished sums on ``o`` while the next accumulation proceeds. So back-to-back
    accumulations (a ``last`` step followed by the next ``first`` step, or single-step
    accumulations with both flags set) run without a bubble. A step without ``first`` continues
    the current sums, also after a ``last`` (so ``last`` alone reads out a running total). The
    pipeline stalls only when a ``last`` step reaches the accumulator stage while the previous
    result is still on ``o`` and not taken in that cycle; ``i.ready`` is then low. Nothing is
    lost or duplicated whatever ``o.ready`` does. ``i.ready`` depends combinationally on
    ``o.ready`` (allowed by the stream contract); the accumulators reset to 0.

    Parameters
    ----------
    rows : int, 1..4096
        R, output channels computed in parallel.
    cols : int, 1..4096
        C, input lanes (terms of K per step).
    weight_bits : 8, 4 or 2
        Stored weight width; a row's C weights are packed in ``C * weight_bits`` bits.
    acc_bits : int
        Accumulator and result width (default 32); at least the bits of one step's worst case
        over all field values (:func:`step_range`), at most 64.

    Attributes
    ----------
    i : ``In(stream.Signature(StructLayout))``, payload fields:
        ``x``: ``ArrayLayout(unsigned(8), C)`` raw activation bytes; ``x_signed``: 1 bit;
        ``x_zp``: ``signed(9)``; ``w``: ``ArrayLayout(ArrayLayout(signed(weight_bits), C), R)``
        (element ``(r, c)`` at bits ``[(r*C + c)*weight_bits, +weight_bits)``);
        ``w_zp``: ``ArrayLayout(signed(8), R)``; ``first``: 1 bit; ``last``: 1 bit.
    o : ``Out(stream.Signature(StructLayout))``, payload field ``acc``:
        ``ArrayLayout(signed(acc_bits), R)``, the R sums of an accumulation ending in ``last``.
    latency : int
        ``4 + ceil(log2(cols))`` cycles from accepting a ``last`` step to its result on ``o``.

    Raises
    ------
    ValueError
        ``rows``/``cols`` not an integer >= 1, ``weight_bits`` not 8, 4 or 2, ``acc_bits`` below
        one step's worst case or above 64.
    """

    def __init__(self, *, rows, cols, weight_bits=8, acc_bits=32):
        self.rows = check_int("rows", rows, 1, 4096)
        self.cols = check_int("cols", cols, 1, 4096)
        if weight_bits not in WEIGHT_BITS or isinstance(weight_bits, bool):
            raise ValueError(f"weight_bits: {weight_bits!r} is not one of 8, 4, 2")
        self.weight_bits = int(weight_bits)
        need = _signed_bits(*step_range(self.cols, self.weight_bits))
        self.acc_bits = check_int("acc_bits", acc_bits, need, 64)
        self.depth = (self.cols - 1).bit_length()          # ceil(log2(cols)) tree levels
        self.latency = 4 + self.depth
        self.in_layout = data.StructLayout({
            "x": data.ArrayLayout(unsigned(8), self.cols),
            "x_signed": unsigned(1),
            "x_zp": signed(9),
            "w": data.ArrayLayout(data.ArrayLayout(signed(self.weight_bits), self.cols), self.rows),
            "w_zp": data.ArrayLayout(signed(8), self.rows),
            "first": unsigned(1),
            "last": unsigned(1),
        })
        self.out_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(self.acc_bits), self.rows),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def __repr__(self):
        return (f"MacArray(rows={self.rows}, cols={self.cols}, weight_bits={self.weight_bits}, "
                f"acc_bits={self.acc_bits})")

    def elaborate(self, platform):
        m = Module()
        R, C, D = self.rows, self.cols, self.depth
        advance = Signal()
        staged = []                       # pipeline register updates, all enabled by `advance`

        def reg(value, width, name):
            s = Signal(signed(width), name=name, reset_less=True)
            staged.append(s.eq(_field(value, width)))
            return s

        def delay(value, n, name):
            for j in range(n):
                value = reg(value, len(value), f"{name}_d{j + 1}")
            return value

        def level(trees, lv):
            """Level ``lv`` of several balanced adder trees, registered, in fused carry chains.

            ``trees`` maps a name to its leaves ``[(value, (lo, hi))]``; each pair of leaves
            becomes one sum on the bits of its exact range, an odd last leaf passes through a
            register. Returns the trees one level up."""
            pairs = [(key, j, leaves[j], leaves[j + 1]) for key, leaves in trees.items()
                     for j in range(0, len(leaves) - 1, 2)]
            rngs = [(ra[0] + rb[0], ra[1] + rb[1]) for _, _, (_, ra), (_, rb) in pairs]
            sums = _fused_add([(a, b, _signed_bits(*rng))
                               for (_, _, (a, _), (b, _)), rng in zip(pairs, rngs)], CHAIN_BITS)
            up = {key: [] for key in trees}
            for (key, j, _, _), rng, v in zip(pairs, rngs, sums):
                up[key].append((reg(v, _signed_bits(*rng), f"{key}_l{lv}_{j // 2}"), rng))
            for key, leaves in trees.items():
                if len(leaves) % 2:
                    v, rng = leaves[-1]
                    up[key].append((reg(v, len(v), f"{key}_l{lv}_{len(leaves) // 2}"), rng))
            return up

        p = self.i.payload
        wb = self.weight_bits
        p_rng = _mul_range(_weight_range(wb), XD_RANGE)
        # Stage 1: input zero point (once per lane) and the operands.
        x_ext = [Mux(p.x_signed, p.x[c].as_signed(), p.x[c]) for c in range(C)]
        xd_w = _signed_bits(*XD_RANGE)
        xd = [reg(x_ext[c] - p.x_zp, xd_w, f"xd{c}") for c in range(C)]
        w1 = [[reg(p.w[r][c], wb, f"w{r}_{c}") for c in range(C)] for r in range(R)]
        wzp1 = [reg(p.w_zp[r], 8, f"wzp{r}") for r in range(R)]
        # Stage 2: one product per MAC (one MULT18X18D each), registered at its exact width.
        p_w = _signed_bits(*p_rng)
        prod = [[reg(w1[r][c] * xd[c], p_w, f"p{r}_{c}") for c in range(C)] for r in range(R)]
        # Stages 2 .. 2 + D: the shared S tree (levels at stages 2 .. 1 + D) and the row trees
        # (levels at stages 3 .. 2 + D); the adds of one stage share fused carry chains.
        trees = {"s": [(v, XD_RANGE) for v in xd]}
        for st in range(2, 3 + D):
            if st == 3:
                trees.update({f"t{r}": [(v, p_rng) for v in prod[r]] for r in range(R)})
            trees.update(level({k: v for k, v in trees.items() if len(v) > 1}, st - 1))
        (s_sum, s_rng), = trees.pop("s")
        rows = [trees.pop(f"t{r}")[0] if C > 1 else (prod[r][0], p_rng) for r in range(R)]
        # Stage 2 + D: the weight zero point's correction w_zp * S (one MULT18X18D per row).
        c_rng = _mul_range(W_ZP_RANGE, s_rng)
        corr = [reg(delay(wzp1[r], D, f"wzp{r}") * s_sum, _signed_bits(*c_rng), f"corr{r}")
                for r in range(R)]
        # Stage 3 + D: the exact step sum of each row, on the bits of step_range (which holds
        # it exactly, so the subtraction modulo 2**e_w is exact).
        e_w = _signed_bits(*step_range(C, wb))
        step = [reg(rows[r][0] - corr[r], e_w, f"e{r}") for r in range(R)]

        # Control: valid/last travel with the data through stages 1 .. 3 + D, first through
        # stages 1 .. 2 + D (it acts one stage early, see below).
        n_ctl = 3 + self.depth
        valid = [Signal(name=f"valid{k + 1}") for k in range(n_ctl)]
        last = [Signal(name=f"last{k + 1}", reset_less=True) for k in range(n_ctl)]
        first = [Signal(name=f"first{k + 1}", reset_less=True) for k in range(n_ctl - 1)]
        staged += [valid[0].eq(self.i.valid), last[0].eq(p.last), first[0].eq(p.first)]
        for k in range(1, n_ctl):
            staged += [valid[k].eq(valid[k - 1]), last[k].eq(last[k - 1])]
        for k in range(1, n_ctl - 1):
            staged.append(first[k].eq(first[k - 1]))
        e_valid, e_last = valid[-1], last[-1]
        p_valid, p_first = valid[-2], first[-1]     # the step entering the step-sum stage next

        # Accumulator stage. A `first` step clears the accumulators as it moves into the
        # step-sum stage, in the same edge that retires the step ahead of it (which still reads
        # the old sums); the accumulate is then a plain add, and the clear is the flip-flops'
        # synchronous reset rather than a mask in front of the adder. A finished sum goes to the
        # result register (o.payload), so the accumulators are free for the next step at once;
        # only a `last` step that finds the previous result untaken must wait.
        # The reset is part of the clear (not a separate domain reset) so that both share the
        # flip-flops' one synchronous set/reset input.
        acc = [Signal(signed(self.acc_bits), name=f"acc{r}", reset_less=True) for r in range(R)]
        total = [Signal(signed(self.acc_bits), name=f"total{r}") for r in range(R)]
        # The result register has no reset: it is read only while o.valid is set, which a
        # reset clears (a reset net reaching every data bit is the design's longest wire).
        result = [Signal(signed(self.acc_bits), name=f"result{r}", reset_less=True)
                  for r in range(R)]
        m.d.comb += [self.o.payload.acc[r].eq(result[r]) for r in range(R)]
        # Truncation to acc_bits is the documented two's-complement wrap.
        sums = _fused_add([(acc[r], step[r], self.acc_bits) for r in range(R)], CHAIN_BITS)
        m.d.comb += [total[r].eq(sums[r]) for r in range(R)]
        m.d.comb += [
            advance.eq(~(e_valid & e_last & self.o.valid & ~self.o.ready)),
            self.i.ready.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += staged
        with m.If(ResetSignal("sync") | (advance & p_valid & p_first)):
            m.d.sync += [acc[r].eq(0) for r in range(R)]
        with m.Elif(advance & e_valid):
            m.d.sync += [acc[r].eq(total[r]) for r in range(R)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance & e_valid & e_last):
            m.d.sync += self.o.valid.eq(1)
            m.d.sync += [result[r].eq(total[r]) for r in range(R)]
        return m

    # Host side ---------------------------------------------------------------------------

    def encode(self, x, w, *, x_signed, x_zero_point=0, w_zero_point=0, name="layer"):
        """Beats computing ``intdeploy.golden.mac_array.linear(x, w, x_zero_point, w_zero_point)``.

        Each of the ``M`` GEMM rows of ``x`` becomes ``ceil(K / C)`` steps (``first`` on the first,
        ``last`` on the last), giving one output beat of R sums. ``K`` is padded to a multiple of
        ``C`` with activations equal to ``x_zero_point`` and weights 0, so each padded term is
        ``(0 - w_zp) * (x_zp - x_zp) = 0`` exactly (the same real zero as a padded convolution tap,
        which is why ``x_zero_point`` must be an activation value). Weight rows beyond ``N`` (when
        ``N < R``) are 0 with zero point 0 and sum to 0.

        Parameters
        ----------
        x : integer array ``(M, K)`` or ``(K,)``
            Activations, uint8 (``x_signed=False``) or int8 (``x_signed=True``) values.
        w : integer array ``(N, K)``, ``N <= rows``
            Weights, two's complement values of ``weight_bits`` bits.
        x_signed : bool
            Activation type, as the beat's ``x_signed`` field.
        x_zero_point : int
            In the activation type's range (uint8 0..255, int8 -128..127).
        w_zero_point : int or integer array ``(N,)``
            int8 per tensor or per row.
        name : str
            Names the layer in the accumulator refusal.

        Returns
        -------
        list of dict
            Beat payloads for ``self.in_layout`` (``M * ceil(K / C)`` of them, in order).

        Raises
        ------
        ValueError
            A value outside its field or type, a shape mismatch, or a layer whose worst-case
            accumulation over the activation type's whole range does not fit ``acc_bits``
            (:func:`intdeploy.golden.mac_array.check_accumulator`).
        """
        R, C = self.rows, self.cols
        if not isinstance(x_signed, (bool, np.bool_, int)) or x_signed not in (0, 1):
            raise ValueError(f"x_signed: {x_signed!r} is not one of True, False")
        x_lo, x_hi = (-128, 127) if x_signed else (0, 255)
        x = _int_array("x", x)
        if x.ndim == 1:
            x = x[None]
        w = _int_array("w", w)
        if w.ndim != 2 or not 1 <= w.shape[0] <= R or w.shape[1] == 0:
            raise ValueError(f"w: expected shape (N, K) with 1 <= N <= {R} and K >= 1, got {w.shape}")
        n, k = w.shape
        if x.ndim != 2 or x.shape[1] != k:
            raise ValueError(f"x: expected shape (M, {k}) or ({k},), got {x.shape}")
        _in_range("x", x, x_lo, x_hi, "int8" if x_signed else "uint8")
        wb = self.weight_bits
        _in_range("w", w, -(1 << (wb - 1)), (1 << (wb - 1)) - 1, f"int{wb}")
        zpx = _int_array("x_zero_point", x_zero_point)
        if zpx.ndim != 0:
            raise ValueError(f"x_zero_point: expected a scalar, got shape {zpx.shape}")
        _in_range("x_zero_point", zpx, x_lo, x_hi, "int8" if x_signed else "uint8")
        zpw = _int_array("w_zero_point", w_zero_point)
        if zpw.ndim > 1 or (zpw.ndim == 1 and zpw.shape[0] != n):
            raise ValueError(f"w_zero_point: expected a scalar or shape ({n},), got {zpw.shape}")
        _in_range("w_zero_point", zpw, *W_ZP_RANGE, "int8")
        check_accumulator(w, x_lo, x_hi, int(zpx), zpw, bits=self.acc_bits, name=name)

        steps = -(-k // C)
        kp = steps * C
        xp = np.full((x.shape[0], kp), int(zpx), dtype=np.int64)
        xp[:, :k] = x
        wp = np.zeros((R, kp), dtype=np.int64)
        wp[:n, :k] = w
        zp_rows = np.zeros(R, dtype=np.int64)
        zp_rows[:n] = np.broadcast_to(zpw, (n,))
        w_zp = zp_rows.tolist()
        w_tiles = [wp[:, s * C:(s + 1) * C].tolist() for s in range(steps)]
        beats = []
        for row in xp:
            for s in range(steps):
                beats.append({
                    "x": [v & 0xFF for v in row[s * C:(s + 1) * C].tolist()],
                    "x_signed": int(bool(x_signed)),
                    "x_zp": int(zpx),
                    "w": w_tiles[s],
                    "w_zp": w_zp,
                    "first": int(s == 0),
                    "last": int(s == steps - 1),
                })
        return beats


def _int_array(name, value):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub" or arr.dtype == np.bool_:
        raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _in_range(name, arr, lo, hi, what):
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        bad = int(arr.min()) if int(arr.min()) < lo else int(arr.max())
        raise ValueError(f"{name}: {bad} is out of range; allowed {what} [{lo}, {hi}]")
