"""Host driver: compiles IntegerDeployable layers into command packets and runs them on an engine.

The accelerator runs one GEMM per RUN (docs/protocol.md): ``M`` rows of ``K`` 8-bit activations
times ``N`` weight rows, then the requantizer or threshold epilogue, an optional add with a
residual operand and an optional pooling of consecutive rows. This module lowers every layer of
an :class:`intdeploy.golden.model_file.IntegerModel` to that form and tiles it to the buffers reported by
INFO (docs/driver.md explains each lowering):

* ``conv2d``: im2col on the host (:func:`intdeploy.golden.mac_array.im2col`, padded taps hold the input
  zero point), then a GEMM with OHWI weights flattened in ``(kh, kw, c)`` order, or, when that
  costs less, strips of the input whose GEMM rows share activation entries (the descriptor's
  ``row_step``; :func:`_conv_strips`); ``linear``: a GEMM on the last axis.
* ``add``: an identity GEMM carries the first operand through the epilogue unchanged and the add
  unit adds the second, loaded in the residual buffer (:func:`intdeploy.golden.add.add`).
* ``requant`` (element-wise): an identity GEMM whose epilogue is the layer's requantizer.
* ``maxpool2d``/``avgpool2d``: an identity GEMM whose rows are ordered window by window, and the
  pooling unit (any stride, no padding).
* ``flatten``: done on the host (a reshape, no arithmetic).

With ``fuse`` (:meth:`Driver.plan`) an ``add``, the ``requant`` layer after it and then a pooling
layer run in the epilogue of the layer before them, in the same RUNs, where the hardware can.

A tensor wider than 8 bits whose proven range has at most 65536 values (e.g. NEMO's int32 Add
sum, proven to fit ``[0, 368]``) enters an identity GEMM offset by its minimum and split into two
bytes ``a + 255*b`` (three, ``a + 128*b + 128*b``, for a range of more than 65280 values), exact,
so the element-wise layers after it still run on the accelerator.

Layers the accelerator cannot run exactly are refused with ``ValueError("layer 'name' (kind):
reason")`` before anything is sent: accumulator overflow (:func:`intdeploy.golden.mac_array.check_accumulator`
with the bias, which the requantizer adds in int32), ``K`` beyond a weight bank or the activation
buffer, threshold ``Q`` beyond ``max_q``, weights wider than ``weight_bits``, inputs that are not
8-bit, per-channel Add requantizers, padded pooling, a clamp the pooling unit cannot apply.

An *engine* executes packets: ``execute(list of packets) -> list of Response``, one response per
packet, in order. :class:`intdeploy.sim.accel_model.ModelEngine` wraps the executable model (the
"golden" engine); an RTL engine only has to send the packets to the top and parse the
responses. :func:`run_network` calls the engine once per layer with all packets of that layer
for the whole batch of images; :func:`run_layers` compiles every layer from reference (golden)
tensors and runs the whole network in one engine call (one simulator run on the RTL).
"""

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from intdeploy import wire
from intdeploy.golden import mac_array
from intdeploy.golden.add import AddParams
from intdeploy.golden.model_file import AddLayer, FlattenLayer, IntegerModel, MacLayer, PoolLayer, RequantLayer
from intdeploy.golden.requantizer import RequantParams, requantize, ties
from intdeploy.host import protocol as P
from intdeploy.host.timing import input_cycles, program_cycles

__all__ = [
    "EngineError", "GemmJob", "LayerProgram", "Driver", "LayerStats", "run_network",
    "run_layers", "network_stats",
    "Mismatch", "compare_outputs", "first_mismatch", "format_mismatch",
]

_MAX_COUNT = 0xFFFF                       # m_count, k_steps, n_tiles: 1..65535


class EngineError(RuntimeError):
    """An engine answered a packet of a valid program with an error, or with the wrong shape."""


# --- GEMM jobs and their tiling -----------------------------------------------------------------

@dataclass(eq=False)
class GemmJob:
    """One layer as the accelerator computes it: ``M x K`` 8-bit rows times ``N x K`` weights.

    Attributes
    ----------
    name : str
        Layer name (for messages).
    x : int64 ``(M, K)``
        GEMM rows, int8 (``x_signed``) or uint8 values. With ``pool`` the rows are ordered window
        by window (``pool["taps"]`` consecutive rows per output).
    w : int64 ``(N, K)``
        Weights, within ``weight_bits`` signed bits.
    x_signed, x_zero_point : bool, int
    w_zero_point : int64 ``(N,)``
    requant : RequantParams or None
        Per-tensor or ``N`` channels; exactly one of ``requant`` / ``thresholds``.
    thresholds, negate : int64 ``(N, T)``, bool ``(N,)`` or None
    add : AddParams or None (per-tensor requantizers); ``residual`` int64 ``(M, N)`` 8-bit values,
        ``residual_signed``.
    pool : dict or None
        ``mode``, ``taps``, ``d`` (avg_nemo), ``lo``/``hi`` (avg_tflite, int16).
    out_bytes, out_signed : int, bool
        Width of the results on the wire and how to read them back.
    x_range : (int, int) or None
        Proven range of the values in ``x`` (default: the whole int8 / uint8 range); the
        accumulator check (:func:`intdeploy.golden.mac_array.check_accumulator`) uses it.
    bias_in_check : bool
        Whether the requantizer's bias is part of the accumulator check (True for MAC layers,
        as the model file checks them; False for identity GEMMs, where ``wrap32(x + bias)`` is
        the element-wise layer's own arithmetic and the hardware wraps exactly as golden).
    useful_macs : int
        Multiply-accumulates the layer needs (0 for identity GEMMs), for utilisation.
    strips : dict or None
        A convolution whose GEMM rows share activation entries (``row_step``, docs/driver.md
        "Convolution strips"); then the activation buffer holds ``entries`` int64 ``(S, L, C)``
        (S strips of L entries), each strip gives ``per_strip`` GEMM rows of which the first
        ``valid`` are outputs (``M = S * valid``, in the order of ``x``), ``w`` replaces the
        weights (``N, k_steps * C``), ``row_step`` is the descriptor's. ``x`` then only gives the
        rows' order and the range check.
    """
    name: str
    x: np.ndarray
    w: np.ndarray
    x_signed: bool
    x_zero_point: int
    w_zero_point: np.ndarray
    requant: RequantParams = None
    thresholds: np.ndarray = None
    negate: np.ndarray = None
    add: AddParams = None
    residual: np.ndarray = None
    residual_signed: bool = False
    pool: dict = None
    out_bytes: int = 1
    out_signed: bool = True
    x_range: tuple = None
    bias_in_check: bool = True
    useful_macs: int = 0
    strips: dict = None


@dataclass(eq=False)
class _Placement:
    packet: int          # index of the RUN packet
    row: int             # first output row
    outputs: int
    tile: int            # first channel tile
    tiles: int
    results: int = None  # results per tile in the response (default outputs)
    keep: tuple = None   # (per_strip, valid): the first valid of every per_strip results are outputs


@dataclass(eq=False)
class LayerProgram:
    """Packets of one layer for a whole batch and how to read its results back.

    ``decode(responses)`` checks that every response is OK and returns the layer's output
    (``(batch,) + shape`` int64, or the GEMM's ``(outputs, N)`` for a bare :class:`GemmJob`).
    """
    name: str
    packets: list
    runs: list = field(default_factory=list)
    gemm_shape: tuple = (0, 0)                 # (outputs, N)
    out_bytes: int = 1
    out_signed: bool = True
    rows: int = 1                              # R
    finish: object = None                      # (outputs, N) array -> layer output
    mac_steps: int = 0
    useful_macs: int = 0
    host: bool = False
    weight_chunks: int = 0
    row_chunks: int = 0
    input_cycles: int = 0                      # core cycles to read the packets (accel_model.input_cycles)

    @property
    def words_sent(self):
        return sum(len(p) for p in self.packets)

    def decode(self, responses):
        if len(responses) != len(self.packets):
            raise EngineError(f"layer {self.name!r}: {len(self.packets)} packets, {len(responses)} responses")
        for i, (pk, r) in enumerate(zip(self.packets, responses)):
            if not r.ok or r.opcode != pk[0] & 0xFF:
                raise EngineError(f"layer {self.name!r}: packet {i} "
                                  f"({P.OPCODE_NAMES.get(pk[0] & 0xFF, pk[0] & 0xFF)}) answered {r}")
        out = np.zeros(self.gemm_shape, dtype=np.int64)
        R = self.rows
        for pl in self.runs:
            rows = pl.outputs if pl.results is None else pl.results
            count = pl.tiles * rows * R
            resp = responses[pl.packet]
            if len(resp.payload) != -(-count * self.out_bytes // 4):
                raise EngineError(f"layer {self.name!r}: RUN packet {pl.packet} returned {len(resp.payload)} "
                                  f"words, expected {-(-count * self.out_bytes // 4)}")
            v = P.unpack_elements(resp.payload, count, 8 * self.out_bytes, self.out_signed)
            v = v.reshape(pl.tiles, rows, R).transpose(1, 0, 2).reshape(rows, pl.tiles * R)
            if pl.keep is not None:
                per, valid = pl.keep
                v = np.concatenate([v, np.zeros((-rows % per, v.shape[1]), dtype=v.dtype)])
                v = v.reshape(-1, per, v.shape[1])[:, :valid].reshape(-1, v.shape[1])
            c0 = pl.tile * R
            c1 = min(c0 + pl.tiles * R, self.gemm_shape[1])
            out[pl.row:pl.row + pl.outputs, c0:c1] = v[:, :c1 - c0]
        return out if self.finish is None else self.finish(out)


def _ramp(total, cap, unit, ramp):
    """``[(start, end), ...]`` covering ``0 .. total`` in chunks of ``cap`` (a multiple of
    ``unit``), the last one shorter. With ``ramp`` and more than one chunk the first is a quarter
    of ``cap`` (at least ``unit``): the first RUN waits for its whole load, the later ones load
    behind the RUN before them (docs/protocol.md "Overlap"), so a short first load starts the
    array sooner, for one more RUN."""
    first = max(unit, _floor_to(cap // 4, unit)) if ramp and total > cap else cap
    if total <= first:
        return [(0, total)]
    return [(0, first)] + [(m, min(m + cap, total)) for m in range(first, total, cap)]


def _floor_to(v, step):
    return v // step * step


class Driver:
    """Compiles layers for the accelerator described by ``info`` (a :class:`intdeploy.host.protocol.Info`).

    ``conv_strips``: ``auto`` (default) feeds a convolution as strips of shared activation entries
    when that costs fewer MAC steps plus words than im2col rows, ``always`` whenever they fit,
    ``never`` not at all (docs/driver.md, "Convolution strips")."""

    def __init__(self, info, conv_strips="auto"):
        if not isinstance(info, P.Info):
            raise ValueError(f"info: expected intdeploy.host.protocol.Info, got {type(info).__name__}")
        if conv_strips not in ("auto", "always", "never"):
            raise ValueError(f"conv_strips: {conv_strips!r} is not one of auto, always, never")
        self.info = info
        self.conv_strips = conv_strips

    # --- GEMM tiling --------------------------------------------------------------------------

    def compile_gemm(self, job):
        """Packets computing ``job`` (a :class:`GemmJob`), tiled to the buffers.

        ``K`` is padded to a multiple of C (activations with ``x_zero_point``, weights with the
        row's zero point when representable: padded products are 0); ``N`` to a multiple of R
        (zero weights, all-zero parameter entries; those results are discarded). Rows are split
        in chunks that fit the activation buffer (and the residual buffer with ``add``; a multiple
        of the pooling window with ``pool``); tiles in chunks that fit a weight bank and the
        parameter (threshold) channels. If every weight chunk has its own bank the weights are
        loaded once; otherwise the loop order that sends fewer words is chosen.

        With more than one RUN, the operands of consecutive RUNs never share buffer entries, so
        that the accelerator loads the next RUN's while the current one computes (docs/protocol.md
        "Overlap"; docs/driver.md): row chunks alternate between the two halves of the
        activation buffer, each RUN's residual between the two halves of the residual buffer,
        and weight loads between the banks (load ``l`` to bank ``l mod banks``). The caps are
        then those of half buffers, unless a half cannot hold one chunk.

        The first row chunk is either as long as the others or a quarter of them (:func:`_ramp`:
        a shorter first load before the array starts, one more RUN): both are compiled and the
        program of fewer cycles by :func:`intdeploy.sim.accel_model.program_cycles` is kept.
        """
        prog = self._compile_gemm(job, ramp=False)
        alt = self._compile_gemm(job, ramp=True)
        if alt is not None and program_cycles(alt.packets, self.info) < program_cycles(prog.packets, self.info):
            return alt
        return prog

    def _compile_gemm(self, job, ramp):
        """:meth:`compile_gemm` with a short first row chunk (``ramp``) or without; with ``ramp``,
        None when the rows are one chunk (nothing to shorten)."""
        i = self.info
        R, C = i.rows, i.cols
        name = job.name
        strips = job.strips
        x = np.asarray(job.x, dtype=np.int64)
        w = np.asarray(job.w if strips is None else strips["w"], dtype=np.int64)
        M, K = x.shape
        if strips is not None:
            ent = np.asarray(strips["entries"], dtype=np.int64)
            per, valid, L = strips["per_strip"], strips["valid"], ent.shape[1]
            K = w.shape[1]
            if ent.shape[0] * valid != M or K % C or job.pool:
                raise ValueError(f"job {name!r}: strips {ent.shape} x {valid} do not give the {M} rows, or K = {K} "
                                 f"is not whole entries, or pooling is set")
        N = w.shape[0]
        if w.shape[1] != K or M == 0 or K == 0 or N == 0:
            raise ValueError(f"job {name!r}: x {x.shape} and w {w.shape} do not form a GEMM")
        k_steps = -(-K // C)
        if k_steps > min(i.weight_depth, i.act_depth, _MAX_COUNT):
            raise ValueError(f"layer {name!r}: K = {K} needs {k_steps} steps of C = {C}; a weight bank holds "
                             f"{i.weight_depth} and the activation buffer {i.act_depth} entries "
                             f"(largest K = {C * min(i.weight_depth, i.act_depth, _MAX_COUNT)})")
        taps = job.pool["taps"] if job.pool else 1
        n_tiles = -(-N // R)
        chan_cap = i.param_channels
        if job.thresholds is not None:
            chan_cap = min(chan_cap, i.threshold_channels)
        if chan_cap < R:
            raise ValueError(f"layer {name!r}: a tile of R = {R} channels needs {R} parameter/threshold "
                             f"channels, the accelerator has {chan_cap}")
        def caps(act_depth, residual_depth):
            # (tiles per RUN, GEMM rows per RUN, strips per RUN) for buffers of these depths
            tiles_cap = min(i.weight_depth // k_steps, chan_cap // R, _MAX_COUNT)
            m_cap = _floor_to(min(act_depth // k_steps, _MAX_COUNT), taps)
            u_cap = None
            if m_cap < taps:
                raise ValueError(f"layer {name!r}: a pooling window of {taps} rows x {k_steps} steps does not fit "
                                 f"the activation buffer ({act_depth} entries)")
            if strips is not None:
                # units of the activation chunks are strips: u strips give u*per - (per - valid) GEMM rows
                u_cap = min(act_depth // L, (_MAX_COUNT + per - valid) // per)
                if job.add is not None:
                    u_cap = min(u_cap, (residual_depth + per - valid) // per)
                if u_cap < 1 or strips["row_step"] > _MAX_COUNT:
                    raise ValueError(f"layer {name!r}: a strip of {L} activation entries ({valid} outputs) does "
                                     f"not fit the buffers")
                if job.add is not None:
                    tiles_cap = max(1, min(tiles_cap, residual_depth // (min(u_cap, ent.shape[0]) * per - per + valid)))
                    u_cap = min(u_cap, (residual_depth // tiles_cap + per - valid) // per)
            elif job.add is not None:
                if residual_depth < taps:
                    raise ValueError(f"layer {name!r}: the residual buffer ({residual_depth} entries) cannot hold "
                                     f"one pooling window of {taps} rows")
                # residual entries of one RUN: n_tiles * m_count <= residual_depth
                m_cap = min(m_cap, _floor_to(residual_depth, taps))
                tiles_cap = max(1, min(tiles_cap, residual_depth // min(m_cap, M)))
                m_cap = min(m_cap, _floor_to(residual_depth // tiles_cap, taps))
            wchunks = [(t, min(t + tiles_cap, n_tiles)) for t in range(0, n_tiles, tiles_cap)]
            if strips is None:
                mchunks = _ramp(M, m_cap, taps, ramp)
            else:
                mchunks = _ramp(ent.shape[0], u_cap, 1, ramp)
            return wchunks, mchunks

        wchunks, mchunks = caps(i.act_depth, i.residual_depth)
        # Halves: while a RUN computes, the accelerator takes the next RUN's activations and
        # residual if they do not meet the running RUN's entries (docs/protocol.md "Overlap"),
        # so with more than one RUN consecutive chunks go to alternate halves of the buffers.
        # A GEMM that fits the whole buffer in one RUN is split too when half the buffer cannot
        # hold it: a short first RUN (:func:`_ramp`) and the rest loaded behind it.
        act_half, res_half = 0, 0
        units = ent.shape[0] if strips is not None else M // taps
        if len(wchunks) * len(mchunks) > 1 or units > 1:
            split_act = units > 1                # (one unit is one chunk)
            split_res = job.add is not None
            try:
                halves = caps(i.act_depth // 2 if split_act else i.act_depth,
                              i.residual_depth // 2 if split_res else i.residual_depth)
                if len(halves[0]) * len(halves[1]) > 1:
                    wchunks, mchunks = halves
                    act_half = i.act_depth // 2 if split_act else 0
                    res_half = i.residual_depth // 2 if split_res else 0
            except ValueError:
                pass
        if ramp and len(mchunks) == 1:
            return None
        # zero point of the K padding: the row's weight zero point when representable
        wlo, whi = -(1 << (i.weight_bits - 1)), (1 << (i.weight_bits - 1)) - 1
        if w.min() < wlo or w.max() > whi:
            raise ValueError(f"layer {name!r}: weights span [{int(w.min())}, {int(w.max())}], the accelerator "
                             f"stores {i.weight_bits}-bit weights [{wlo}, {whi}]")
        w_zp = np.broadcast_to(np.asarray(job.w_zero_point, dtype=np.int64), (N,))
        x_lo, x_hi = job.x_range if job.x_range is not None else ((-128, 127) if job.x_signed else (0, 255))
        # the requantizer adds the bias to the int32 accumulator: both must fit (golden wraps the
        # sum exactly as the hardware does, but a wrap there is never what the layer meant)
        bias = job.requant.bias if job.requant is not None and job.bias_in_check else None
        mac_array.check_accumulator(w, x_lo, x_hi, job.x_zero_point, w_zp, bias, bits=32, name=f"layer {name!r}")
        kp = k_steps * C
        if strips is None:
            xp = np.full((M, kp), job.x_zero_point, dtype=np.int64)
            xp[:, :K] = x
        wp = np.zeros((n_tiles * R, kp), dtype=np.int64)
        wp[:N, K:] = np.where((w_zp >= wlo) & (w_zp <= whi), w_zp, 0)[:, None]
        wp[:N, :K] = w
        zp_p = np.zeros(n_tiles * R, dtype=np.int64)
        zp_p[:N] = w_zp
        # parameter entries of every (padded) channel
        if job.thresholds is not None:
            base = P.encode_requant(RequantParams(mult=0, shift=0))
            entries = [base[:3] + [base[3] | ((int(z) & 0xFF) << 24)] + base[4:] for z in zp_p]
        else:
            entries = [P.encode_requant(job.requant, c if job.requant.channels else None, int(zp_p[c]))
                       if c < N else [0] * P.PARAM_WORDS for c in range(n_tiles * R)]
        if job.residual is not None:
            res = np.zeros((M, n_tiles * R), dtype=np.int64)
            res[:, :N] = job.residual

        if strips is None:
            act_words = M * k_steps * i.act_entry_words
        else:
            act_words = ent.shape[0] * L * i.act_entry_words
        params_resident = n_tiles * R <= chan_cap
        banks = i.weight_banks
        resident = len(wchunks) <= banks
        ew = i.weight_entry_words
        weight_words = n_tiles * k_steps * ew
        m_outer = resident or act_words + len(mchunks) * weight_words <= weight_words + len(wchunks) * act_words

        packets, runs = [], []
        steps = 0
        # loads so far (they alternate halves and banks) and the current row chunk's first entry
        loads = {"acts": 0, "runs": 0, "weights": 0, "act_base": 0}

        def load_params(t0, t1):
            first = t0 * R if params_resident else 0          # channel of tile t0's first channel
            packets.append(P.write_param_entries(first, entries[t0 * R:t1 * R]))
            if job.thresholds is not None:
                for c in range(t0 * R, min(t1 * R, N)):
                    packets.append(P.write_thresholds(first + c - t0 * R, job.thresholds[c], bool(job.negate[c])))

        bank_of = {}                # weight chunk -> its bank

        def load_weights(j):
            t0, t1 = wchunks[j]
            tiles = wp[t0 * R:t1 * R].reshape(t1 - t0, R, k_steps, C).transpose(0, 2, 1, 3)
            bank_of[j] = loads["weights"] % banks           # never the bank of the RUN before
            loads["weights"] += 1
            packets.append(P.write_weights(bank_of[j], 0, tiles.reshape(-1, R, C), i.weight_bits))

        params_of = [None]          # the chunk whose parameters are in the buffer

        def ensure_params(j):
            if not params_resident and params_of[0] != j:
                load_params(*wchunks[j])
                params_of[0] = j

        def load_acts(m0, m1):
            loads["act_base"] = loads["acts"] % 2 * act_half
            loads["acts"] += 1
            if strips is None:
                packets.append(P.write_acts(loads["act_base"], xp[m0:m1].reshape((m1 - m0) * k_steps, C)))
            else:
                packets.append(P.write_acts(loads["act_base"], ent[m0:m1].reshape((m1 - m0) * L, C)))

        def run(j, m0, m1):
            nonlocal steps
            t0, t1 = wchunks[j]
            if strips is None:
                mc, row_step, r0, r1 = m1 - m0, 0, m0, m1
            else:
                mc, row_step, r0, r1 = (m1 - m0) * per - (per - valid), strips["row_step"], m0 * valid, m1 * valid
            ensure_params(j)
            res_base = loads["runs"] % 2 * res_half
            loads["runs"] += 1
            d = P.RunDescriptor(m_count=mc, k_steps=k_steps, n_tiles=t1 - t0, bank=bank_of[j], row_step=row_step,
                                act_base=loads["act_base"], residual_base=res_base,
                                channel_base=t0 * R if params_resident else 0, x_signed=job.x_signed,
                                x_zero_point=job.x_zero_point,
                                epilogue="threshold" if job.thresholds is not None else "requant",
                                out_bytes=job.out_bytes)
            if job.add is not None:
                rr = res[r0:r1, t0 * R:t1 * R]
                if strips is not None:            # the rows between a strip's outputs read zeros
                    rr = np.concatenate([rr.reshape(m1 - m0, valid, -1),
                                         np.zeros((m1 - m0, per - valid, rr.shape[1]), dtype=np.int64)], axis=1)
                    rr = rr.reshape((m1 - m0) * per, -1)[:mc]
                rs = rr.reshape(mc, t1 - t0, R).transpose(1, 0, 2).reshape(-1, R)
                packets.append(P.write_residual(res_base, rs))
                a = job.add
                d.add, d.residual_signed = True, job.residual_signed
                d.add_zero_points, d.add_left_shift = a.in_zero_points, a.left_shift
                d.add_sum_shift = a.sum_shift
                d.add_branches, d.add_output = a.branches, a.output
            if job.pool:
                pl = job.pool
                d.pool, d.pool_mode, d.pool_taps = True, pl["mode"], taps
                d.pool_d = pl.get("d") or 0
                d.pool_lo, d.pool_hi = pl.get("lo", -128), pl.get("hi", 127)
            packets.append(P.run(d))
            if strips is None:
                runs.append(_Placement(len(packets) - 1, m0 // taps, mc // taps, t0, t1 - t0))
            else:
                runs.append(_Placement(len(packets) - 1, r0, r1 - r0, t0, t1 - t0, results=mc, keep=(per, valid)))
            steps += mc * k_steps * (t1 - t0)

        if params_resident:
            load_params(0, n_tiles)
        if m_outer:
            if resident:
                for j in range(len(wchunks)):
                    load_weights(j)
            for m0, m1 in mchunks:
                load_acts(m0, m1)
                for j in range(len(wchunks)):
                    if not resident:
                        load_weights(j)
                    run(j, m0, m1)
        else:
            for j in range(len(wchunks)):
                load_weights(j)
                for m0, m1 in mchunks:
                    load_acts(m0, m1)
                    run(j, m0, m1)
        in_cycles = sum(input_cycles(pk, i) for pk in packets)
        return LayerProgram(name=name, packets=packets, runs=runs, gemm_shape=(M // taps, N), input_cycles=in_cycles,
                            out_bytes=job.out_bytes, out_signed=job.out_signed, rows=R, mac_steps=steps,
                            useful_macs=job.useful_macs, weight_chunks=len(wchunks), row_chunks=len(mchunks))

    # --- layers -----------------------------------------------------------------------------

    def check(self, model):
        """Refuse (ValueError) the first layer of ``model`` the accelerator cannot run; no packets."""
        if not isinstance(model, IntegerModel):
            raise ValueError(f"model: expected IntegerModel, got {type(model).__name__}")
        for layer in model.layers:
            dummy = {name: np.full((1,) + t.shape, t.lo, dtype=np.int64) for name, t in model.tensors.items()
                     if name in layer.inputs}
            self.compile(model, layer, dummy)

    def compile(self, model, layer, tensors):
        """:class:`LayerProgram` for ``layer`` of ``model`` on ``tensors`` (name -> ``(batch,) + shape``)."""
        return self.compile_group(model, (layer,), tensors)

    def compile_group(self, model, group, tensors):
        """:class:`LayerProgram` computing the layers ``group`` (a tuple from :meth:`plan`) as one GEMM.

        The first layer sets the GEMM (a MAC layer, or the identity GEMM of an element-wise layer);
        a following ``add`` becomes the add unit of the same RUNs (its other operand in the
        residual buffer) and a following pooling layer the pooling unit (rows reordered window by
        window). The program's output is the last layer's tensor; the layers before it are not
        read back.
        """
        head, last = group[0], group[-1]
        xs = [np.asarray(tensors[s], dtype=np.int64) for s in head.inputs]
        batch = xs[0].shape[0]
        out_shape = (batch,) + model.tensors[last.name].shape
        what = f"layer {last.name!r} ({last.kind})"
        name = "+".join(la.name for la in group)
        if isinstance(head, FlattenLayer):
            if len(group) > 1:
                raise ValueError(f"{what}: a flatten layer runs on the host and cannot be fused")
            return LayerProgram(name=head.name, packets=[], host=True, gemm_shape=(0, 0),
                                finish=lambda _, x=xs[0]: x.reshape(batch, -1))
        out = model.tensors[last.name]
        out_bytes, out_signed = _out_format(out.lo, out.hi, what)
        hwhat = f"layer {head.name!r} ({head.kind})"
        if isinstance(head, MacLayer):
            job = self._mac(model, head, xs[0], hwhat)
        elif isinstance(head, AddLayer):
            job = self._add(model, head, xs, hwhat)
        elif isinstance(head, RequantLayer):
            job = self._requant(model, head, xs[0], hwhat)
        elif isinstance(head, PoolLayer):
            job = self._pool(model, head, xs[0], hwhat)
        else:
            raise ValueError(f"{hwhat}: not a layer kind the driver knows")
        flowing = head.name
        for j, layer in enumerate(group[1:], 1):
            lwhat = f"layer {layer.name!r} ({layer.kind})"
            if isinstance(layer, AddLayer) and job.add is None and job.pool is None:
                if list(layer.inputs).count(flowing) != 1:
                    raise ValueError(f"{lwhat}: fused after {flowing!r}, which must be exactly one of its inputs")
                k = layer.inputs.index(flowing)
                self._attach_add(model, layer, job, k, np.asarray(tensors[layer.inputs[1 - k]], dtype=np.int64),
                                 lwhat)
            elif isinstance(layer, PoolLayer) and job.pool is None and layer.inputs[0] == flowing:
                self._attach_pool(model, layer, job, batch, lwhat)
            elif (isinstance(layer, RequantLayer) and job.add is not None and job.pool is None
                  and layer.inputs[0] == flowing and isinstance(group[j - 1], AddLayer)):
                if layer.requant.channels is not None:
                    raise ValueError(f"{lwhat}: per-channel; the add unit's output requantizer is per-tensor")
                fused = job.add.then(layer.requant)
                if fused is None:
                    raise ValueError(f"{lwhat}: the add before it ends in a requantizer that is not a plain floor "
                                     f"division by a power of two, so the sum shift cannot take it")
                job.add = fused
            else:
                raise ValueError(f"{lwhat}: cannot be fused after {flowing!r} (an add, the requant layer after it, "
                                 f"then a pooling layer, may follow a GEMM's epilogue, each once)")
            flowing = layer.name
        job.name = name
        job.out_bytes, job.out_signed = out_bytes, out_signed
        if job.strips is not None and not self._strips_fit(job):
            job.strips = None
        try:
            prog = self.compile_gemm(job)
            if job.strips is not None and self.conv_strips == "auto":
                rows = self.compile_gemm(dataclasses.replace(job, strips=None))
                if program_cycles(rows.packets, self.info) <= program_cycles(prog.packets, self.info):
                    prog = rows
        except ValueError as e:
            raise ValueError(str(e).replace(f"layer {name!r}:", f"{what}:", 1)) from None
        prog.finish = lambda y: y.reshape(out_shape)
        return prog

    def _strips_fit(self, job):
        """Whether ``job``'s convolution strips can run: no pooling (it needs the rows window by
        window) and a strip fits the buffers. With ``conv_strips="auto"`` :meth:`compile_group`
        then compiles both ways and keeps the one of fewer cycles by
        :func:`intdeploy.sim.accel_model.program_cycles` (MAC steps, words, and the words hidden behind
        RUNs: the dropped rows between a strip's outputs count as steps)."""
        i, st = self.info, job.strips
        if job.pool is not None:
            return False
        L = st["entries"].shape[1]
        k_strip = st["w"].shape[1] // i.cols
        if L > i.act_depth or k_strip > min(i.weight_depth, _MAX_COUNT) or st["row_step"] > _MAX_COUNT:
            return False
        return job.add is None or st["valid"] <= i.residual_depth

    def plan(self, model, fuse=False):
        """The programs of ``model``: a list of tuples of layers, in model order.

        Without ``fuse`` every layer is its own program. With ``fuse``, a program whose output
        feeds only the next layer (and is not a network output) takes that layer in when the
        epilogue can compute it after what the program already does: an ``add`` if the program has
        no add or pooling yet (the other operand a byte, per-tensor requantizers), a per-tensor
        ``requant`` right after that add when the add's output requantizer is a plain floor
        division by ``2**d`` (NEMO's Eq. 24: the add unit's sum shift takes the division and its
        output requantizer the requant layer, :meth:`intdeploy.golden.add.AddParams.then`), a pooling layer
        if it has no pooling yet, and the combined program fits the buffers (docs/driver.md,
        "Fusion"). Fusing changes neither arithmetic nor results; it saves the fused layer's
        identity GEMM, the words of its operand and the read-back of the tensor in between, which
        is then not observed.
        """
        layers = list(model.layers)
        if not fuse:
            return [(la,) for la in layers]
        users = {}
        for la in layers:
            for s in la.inputs:
                users.setdefault(s, []).append(la.name)
        dummy = {name: np.full((1,) + t.shape, t.lo, dtype=np.int64) for name, t in model.tensors.items()}
        groups, i = [], 0
        while i < len(layers):
            group = (layers[i],)
            while i + len(group) < len(layers) and not isinstance(group[0], FlattenLayer):
                nxt = layers[i + len(group)]
                last = group[-1]
                if users.get(last.name) != [nxt.name] or last.name in model.outputs:
                    break
                if not isinstance(nxt, (AddLayer, RequantLayer, PoolLayer)):
                    break
                try:
                    self.compile_group(model, group + (nxt,), dummy)
                except ValueError:
                    break
                group += (nxt,)
            groups.append(group)
            i += len(group)
        return groups

    def _input8(self, model, name, zero_point, what, values):
        """(x_signed) for an input tensor carried as 8-bit activations, else ValueError."""
        t = model.tensors[name]
        signed = _fits8(t.lo, t.hi, zero_point)
        if signed is None:
            raise ValueError(f"{what}: input {name!r} spans [{t.lo}, {t.hi}] with zero point {zero_point}; "
                             f"the activation buffer holds int8 or uint8 values")
        _check_values(values, t.lo, t.hi, name, what)
        return signed

    def _mac(self, model, layer, x, what):
        src = layer.inputs[0]
        zp = layer.input_zero_point
        x_signed = self._input8(model, src, zp, what, x)
        t = model.tensors[src]
        w = layer.weight.astype(np.int64)
        if layer.kind == "conv2d":
            cols = mac_array.im2col(x, w.shape[1:3], layer.stride, layer.padding, pad_value=zp)
            padded = layer.padding != ((0, 0), (0, 0))
            w = w.reshape(w.shape[0], -1)
        else:
            cols, padded = x, False
        rows = cols.reshape(-1, w.shape[1])
        # padded taps hold the zero point: part of the input range
        x_range = (min(t.lo, zp), max(t.hi, zp)) if padded else (t.lo, t.hi)
        n = w.shape[0]
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=x_signed, x_zero_point=zp,
                      w_zero_point=np.broadcast_to(np.asarray(layer.weight_zero_point, dtype=np.int64), (n,)),
                      x_range=x_range, useful_macs=rows.shape[0] * w.shape[1] * n)
        if layer.kind == "conv2d" and self.conv_strips != "never":
            job.strips = _conv_strips(x, layer, self.info)
            if job.strips is not None and x.shape[-1] % self.info.cols:       # channel padding holds zp
                job.x_range = (min(job.x_range[0], zp), max(job.x_range[1], zp))
        if layer.requant is not None:
            job.requant = layer.requant
        else:
            th = layer.threshold
            q = int(th.levels + 1).bit_length() - 1
            if q > self.info.max_q:
                raise ValueError(f"{what}: thresholds of Q = {q} bits ({th.levels} per channel); the threshold "
                                 f"unit holds Q <= {self.info.max_q}")
            job.thresholds, job.negate = th.thresholds, th.negate
        return job

    def _identity(self, model, name, values, what):
        """Rows, weights, zero points carrying tensor ``name`` through an identity GEMM.

        Returns ``(rows (M, K), w (C, K), w_zp (C,), x_signed, base)`` such that the accumulator
        of channel ``c`` is ``value - base`` exactly (the epilogue's bias adds ``base`` back). A byte
        tensor passes as it is (``K = C``, base 0). A wider one, of at most 65536 values, is offset
        by its proven minimum (``base = lo``, ``u = value - lo``) and split into bytes weighted by
        ``w - w_zp`` with ``w_zp = -128``: ``u = a + 255*b`` (``a = u mod 255``, weights ``-127, 127``
        give 1, 255; two bytes, ``K = 2C``) when ``u <= 255*255 + 254 = 65279``, else ``u = a +
        128*b + 128*b`` (``a = u mod 256``, weights ``-127, 0, 0`` give 1, 128, 128; three bytes,
        ``K = 3C``). Every other weight equals the zero point and contributes 0.
        """
        t = model.tensors[name]
        _check_values(values, t.lo, t.hi, name, what)
        v = values.reshape(-1, values.shape[-1])
        ch = v.shape[1]
        signed = _fits8(t.lo, t.hi, 0)
        if signed is not None:
            return v, np.eye(ch, dtype=np.int64), np.zeros(ch, dtype=np.int64), signed, 0
        if t.hi - t.lo > 0xFFFF:
            raise ValueError(f"{what}: input {name!r} spans [{t.lo}, {t.hi}], wider than 16 bits (more than 65536 "
                             f"values); the activation buffer holds bytes")
        if self.info.weight_bits != 8:
            raise ValueError(f"{what}: input {name!r} spans [{t.lo}, {t.hi}]; splitting it into bytes needs 8-bit "
                             f"weights, the accelerator has {self.info.weight_bits}-bit weights")
        base = t.lo
        u = v - base
        if t.hi - t.lo <= 255 * 255 + 254:
            parts, pattern = [u % 255, u // 255], (-127, 127)
        else:
            parts, pattern = [u & 0xFF, u >> 8, u >> 8], (-127, 0, 0)
        n = len(parts)
        rows = np.stack(parts, axis=2).reshape(v.shape[0], n * ch)
        w = np.full((ch, n * ch), -128, dtype=np.int64)
        for c in range(ch):
            w[c, n * c:n * c + n] = pattern
        return rows, w, np.full(ch, -128, dtype=np.int64), False, base

    def _add(self, model, layer, xs, what):
        """Identity GEMM of one operand (the one that is not a byte, else the first), the add unit
        adding the other from the residual buffer."""
        a, b = layer.inputs
        ta, tb = model.tensors[a], model.tensors[b]
        k = 0
        if _fits8(tb.lo, tb.hi, 0) is None:
            if _fits8(ta.lo, ta.hi, 0) is None:
                raise ValueError(f"{what}: neither input is 8-bit ({a!r} spans [{ta.lo}, {ta.hi}], {b!r} "
                                 f"[{tb.lo}, {tb.hi}]); the residual operand is a byte")
            k = 1
        rows, w, w_zp, signed, base = self._identity(model, layer.inputs[k], xs[k], what)
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=signed, x_zero_point=0, w_zero_point=w_zp,
                      requant=RequantParams(mult=1, shift=0, bias=base), bias_in_check=False)
        self._attach_add(model, layer, job, k, xs[1 - k], what)
        return job

    def _attach_add(self, model, layer, job, k, residual, what):
        """The add unit of ``job``'s RUNs computes ``layer``: the GEMM's epilogue output is its input
        ``k``, the other input (``residual``, a byte tensor) goes to the residual buffer. The sum
        ``wrap32(v0 + v1)`` is symmetric, so for ``k = 1`` the zero points and branch requantizers
        are swapped."""
        p = layer.params
        for j, rq in enumerate(p.branches + (p.output,)):
            if rq.channels is not None:
                part = f"branches[{j}]" if j < 2 else "requant"
                raise ValueError(f"{what}: {part} is per-channel; the add unit has one requantizer per branch")
        other = layer.inputs[1 - k]
        t = model.tensors[other]
        if _fits8(t.lo, t.hi, 0) is None:
            raise ValueError(f"{what}: input {other!r} spans [{t.lo}, {t.hi}]; the residual operand is a byte")
        _check_values(residual, t.lo, t.hi, other, what)
        if k == 1:
            p = dataclasses.replace(p, in_zero_points=p.in_zero_points[::-1], branches=p.branches[::-1])
        job.add = p
        job.residual = residual.reshape(-1, residual.shape[-1])
        job.residual_signed = bool(t.lo < 0)

    def _requant(self, model, layer, x, what):
        rows, w, w_zp, signed, base = self._identity(model, layer.inputs[0], x, what)
        rq = layer.requant
        if base:
            # wrap32(acc + bias') with acc = x - base and bias' = wrap32(bias + base) is wrap32(x + bias)
            f = {k: getattr(rq, k) for k in ("mult", "shift", "offset", "zero_point", "lo", "hi")}
            rq = RequantParams(bias=_wrap32(rq.bias + base), rounding=rq.rounding, **f)
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=signed, x_zero_point=0, w_zero_point=w_zp,
                      requant=rq, bias_in_check=False)
        return job

    def _pool(self, model, layer, x, what):
        """Identity GEMM of the pooling layer's input, then the pooling unit."""
        rows, w, w_zp, signed, base = self._identity(model, layer.inputs[0], x, what)
        job = GemmJob(name=layer.name, x=rows, w=w, x_signed=signed, x_zero_point=0, w_zero_point=w_zp,
                      requant=RequantParams(mult=1, shift=0, bias=base), bias_in_check=False)
        self._attach_pool(model, layer, job, x.shape[0], what)
        return job

    def _attach_pool(self, model, layer, job, batch, what):
        """The pooling unit of ``job``'s RUNs computes ``layer``: ``job``'s rows (one per element of
        the pooling input's ``(image, h, w)`` grid, with the residual rows if any) are reordered
        window by window, the ``T = KH*KW`` taps of each window consecutively (any stride;
        overlapping windows duplicate rows)."""
        i = self.info
        src = layer.inputs[0]
        t = model.tensors[src]
        if layer.padding != ((0, 0), (0, 0)):
            raise ValueError(f"{what}: padding {[list(p) for p in layer.padding]}; the pooling unit needs every "
                             f"window to have its {layer.kernel[0] * layer.kernel[1]} real taps (no padding)")
        taps = layer.kernel[0] * layer.kernel[1]
        if taps > i.max_pool_taps:
            raise ValueError(f"{what}: a {layer.kernel[0]}x{layer.kernel[1]} window has {taps} taps; the pooling "
                             f"unit takes at most {i.max_pool_taps}")
        tap_lo, tap_hi = -(1 << (wire.POOL_TAP_BITS - 1)), (1 << (wire.POOL_TAP_BITS - 1)) - 1
        if t.lo < tap_lo or t.hi > tap_hi:
            raise ValueError(f"{what}: input {src!r} spans [{t.lo}, {t.hi}]; pooling taps are {wire.POOL_TAP_BITS}-bit "
                             f"[{tap_lo}, {tap_hi}]")
        pool = {"mode": layer.mode, "taps": taps}
        if layer.mode == "avg_nemo":
            if layer.d > i.max_pool_shift:
                raise ValueError(f"{what}: d = {layer.d}; the pooling unit's largest d is {i.max_pool_shift}")
            pool["d"] = layer.d
            factor = (1 << layer.d) // taps
            pre = ((factor * taps * t.lo) >> layer.d, (factor * taps * t.hi) >> layer.d)
        else:
            pre = (t.lo, t.hi)                  # max and averages stay within the input range
        if layer.mode == "avg_tflite":
            lo, hi = max(layer.lo, -0x8000), min(layer.hi, 0x7FFF)
            if lo > 0x7FFF or hi < -0x8000:
                raise ValueError(f"{what}: clamp [{layer.lo}, {layer.hi}] does not fit the int16 clamp fields")
            pool["lo"], pool["hi"] = lo, hi
        elif (layer.lo is not None and layer.lo > pre[0]) or (layer.hi is not None and layer.hi < pre[1]):
            raise ValueError(f"{what}: clamp [{layer.lo}, {layer.hi}] can change values in [{pre[0]}, {pre[1]}]; "
                             f"the pooling unit clamps only in avg_tflite mode")
        h, w = t.shape[0], t.shape[1]

        def windows(rows):
            k = rows.shape[1]
            win = mac_array.im2col(rows.reshape(batch, h, w, k), layer.kernel, layer.stride, 0)
            return win.reshape(-1, k)                       # (B, OH, OW, T*k) -> T rows per window
        job.x = windows(job.x)
        if job.residual is not None:
            job.residual = windows(job.residual)
        job.pool = pool


def _conv_strips(x, layer, info):
    """The activation entries of a convolution as strips (docs/driver.md, "Convolution strips").

    Strip ``(image, oh)`` holds, for each column ``col`` of the padded input, the ``KH`` pixels
    ``(oh*sh + kh, col)``, each as ``P = ceil(Cin / C)`` entries (channels padded with the zero
    point): ``L = J * sw * KH * P`` entries, ``J = ceil(Wp / sw)`` columns groups. GEMM row ``j`` of
    the strip starts at entry ``j * row_step`` (``row_step = sw * KH * P``) and reads ``KW * KH * P``
    consecutive entries: columns ``j*sw .. j*sw + KW - 1``, i.e. output ``(oh, j)`` with the weights
    in ``(kw, kh, c)`` order. Rows ``j >= OW`` read into the next strip; their results are dropped.
    Returns the ``strips`` dict of :class:`GemmJob` (with the reordered weights; their padded
    channels hold the weight zero point when representable, else 0), or None for a 1-step kernel.
    """
    C = info.cols
    w = layer.weight.astype(np.int64)
    n, kh, kw, cin = w.shape
    if kh * kw == 1:
        return None
    sh, sw = layer.stride
    (pt, pb), (pl, pr) = layer.padding
    zp = layer.input_zero_point
    P_ = -(-cin // C)
    b, h, wd, _ = x.shape
    hp, wp = h + pt + pb, wd + pl + pr
    J = -(-wp // sw)
    xp = np.full((b, hp, J * sw, P_ * C), zp, dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + wd, :cin] = x
    oh_n = (hp - kh) // sh + 1
    ow_n = (wp - kw) // sw + 1
    rows = np.arange(oh_n)[:, None] * sh + np.arange(kh)[None, :]            # (OH, KH) input rows
    strips = xp[:, rows]                                                      # (B, OH, KH, cols, P*C)
    entries = strips.transpose(0, 1, 3, 2, 4).reshape(b * oh_n, J * sw * kh * P_, C)
    wlo, whi = -(1 << (info.weight_bits - 1)), (1 << (info.weight_bits - 1)) - 1
    w_zp = np.broadcast_to(np.asarray(layer.weight_zero_point, dtype=np.int64), (n,))
    fill = np.where((w_zp >= wlo) & (w_zp <= whi), w_zp, 0)
    ws = np.broadcast_to(fill[:, None, None, None], (n, kw, kh, P_ * C)).copy()
    ws[..., :cin] = w.transpose(0, 2, 1, 3)
    return {"entries": entries, "per_strip": J, "valid": ow_n, "row_step": sw * kh * P_,
            "w": ws.reshape(n, kw * kh * P_ * C)}


def _wrap32(v):
    return ((np.asarray(v, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _fits8(lo, hi, zero_point):
    """True (int8), False (uint8) or None: how values in [lo, hi] and the zero point fit a byte."""
    if 0 <= lo and hi <= 255 and 0 <= zero_point <= 255:
        return False
    if -128 <= lo and hi <= 127 and -128 <= zero_point <= 127:
        return True
    return None


def _out_format(lo, hi, what):
    for nbytes in (1, 2, 4):
        bits = 8 * nbytes
        if 0 <= lo and hi < (1 << bits):
            return nbytes, False
        if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
            return nbytes, True
    raise ValueError(f"{what}: output range [{lo}, {hi}] does not fit 32 bits")


def _check_values(values, lo, hi, name, what):
    v = np.asarray(values)
    if v.size and (int(v.min()) < lo or int(v.max()) > hi):
        raise EngineError(f"{what}: input {name!r} has values in [{int(v.min())}, {int(v.max())}], outside its "
                          f"proven range [{lo}, {hi}] (an engine produced wrong values upstream)")


# --- running a network ------------------------------------------------------------------------

@dataclass
class LayerStats:
    """What one layer cost: packets and words on the streams, MAC steps, STATUS counter deltas.

    For a fused program (:meth:`Driver.plan`) ``name`` and ``kind`` join its layers' with "+";
    ``output`` is always the tensor the program produces (the last layer's name)."""
    name: str
    kind: str
    output: str = ""
    host: bool = False
    packets: int = 0
    runs: int = 0
    words_sent: int = 0
    input_cycles: int = 0
    words_received: int = 0
    mac_steps: int = 0
    useful_macs: int = 0
    cycles: int = 0
    busy_cycles: int = 0
    mac_cycles: int = 0


def run_network(model, images, engine, driver=None, fuse=False):
    """Run ``model`` on the integer ``images`` layer by layer on ``engine``.

    Each layer's packets for the whole batch go to the engine in one ``execute`` call, between two
    STATUS packets whose counter differences give the layer's cycles (so an engine may start each
    call from reset: every layer's packets write all the buffer contents it reads). Flatten
    layers run on the host.

    Parameters
    ----------
    model : IntegerModel
    images : integer array ``(batch,) + model.input.shape`` within the input's ``[lo, hi]``
    engine : object with ``execute(packets) -> list of Response``
    driver : Driver, optional
        Defaults to one built from the engine's INFO response.
    fuse : bool
        Run an add or pooling layer in the epilogue of the layer before it where it can
        (:meth:`Driver.plan`): fewer cycles, and the tensors in between are not computed apart.

    Returns
    -------
    outputs : dict name -> int64 array, the input and every layer (as
        ``IntegerDeployable.run(x, trace=True)``), except, with ``fuse``, the layers that feed a
        layer fused after them
    stats : dict with ``layers`` (list of :class:`LayerStats`), ``info`` (Info), totals
        ``packets``, ``words_sent``, ``words_received``, ``mac_steps``, ``useful_macs``,
        ``cycles``, ``mac_cycles``, and ``utilisation`` = useful MACs / (R * C * cycles) (None if
        the engine reports no cycles).

    Raises
    ------
    ValueError : a layer the accelerator cannot run (before anything runs), bad images.
    EngineError : an engine answered a valid packet with an error or the wrong shape.
    """
    x = _check_images(model, images)
    first = engine.execute([P.info()])
    if len(first) != 1 or not first[0].ok:
        raise EngineError(f"engine: INFO answered {[str(r) for r in first]}")
    info = P.decode_info(first[0].payload)
    if driver is None:
        driver = Driver(info)
    elif driver.info != info:
        raise ValueError(f"driver: built for {driver.info}, the engine reports {info}")
    driver.check(model)
    tensors = {model.input.name: x}
    layers = []
    for group in driver.plan(model, fuse):
        prog = driver.compile_group(model, group, tensors)
        last = group[-1]
        if prog.host:
            tensors[last.name] = prog.finish(None)
            layers.append(LayerStats(name=last.name, kind=last.kind, output=last.name, host=True))
            continue
        responses = engine.execute([P.status()] + prog.packets + [P.status()])
        tensors[last.name], st = _layer_result(group, prog, responses)
        layers.append(st)
    return tensors, network_stats(layers, info)


def run_layers(model, reference, engine, driver=None, fuse=False):
    """Run every layer of ``model`` on ``engine`` in ONE ``execute`` call, each compiled from the
    ``reference`` tensors (e.g. golden's ``IntegerDeployable.run(x, trace=True)``).

    :func:`run_network` compiles layer ``k`` from the engine's own output of the layers before it,
    so it needs one engine call per layer. Here every layer's inputs come from ``reference``, so the
    whole program is known in advance and a batch engine (one simulator run) executes it at once,
    and each layer is checked in isolation: a wrong layer does not disturb the comparison of the
    layers after it. If every layer equals ``reference``, the engine's end-to-end result equals it
    too (by induction over the layers, starting from the same images).

    The call starts with INFO (its answer must equal ``engine.info``, from which the driver was
    built) and brackets each layer's packets with two STATUS packets, as :func:`run_network`.

    Parameters
    ----------
    model : IntegerModel
        The network the engine runs (its layers are compiled).
    reference : dict name -> array
        The input images under ``model.input.name`` and every layer's input tensor.
    engine : object with ``info`` (:class:`intdeploy.host.protocol.Info`) and ``execute(packets)``
    driver : Driver, optional
    fuse : bool
        As :func:`run_network`.

    Returns
    -------
    ``(outputs, stats)`` as :func:`run_network`.
    """
    x = _check_images(model, reference[model.input.name])
    info = engine.info
    driver = Driver(info) if driver is None else driver
    if driver.info != info:
        raise ValueError(f"driver: built for {driver.info}, the engine reports {info}")
    driver.check(model)
    ref = dict(reference)
    ref[model.input.name] = x
    progs = [(group, driver.compile_group(model, group, ref)) for group in driver.plan(model, fuse)]
    packets = [P.info()]
    for _, prog in progs:
        if not prog.host:
            packets += [P.status()] + prog.packets + [P.status()]
    responses = engine.execute(packets)
    if len(responses) != len(packets):
        raise EngineError(f"engine: {len(packets)} packets, {len(responses)} responses")
    if not responses[0].ok or P.decode_info(responses[0].payload) != info:
        raise EngineError(f"engine: INFO answered {responses[0]}, expected {info}")
    outputs = {model.input.name: x}
    layers = []
    at = 1
    for group, prog in progs:
        last = group[-1]
        if prog.host:
            outputs[last.name] = prog.finish(None)
            layers.append(LayerStats(name=last.name, kind=last.kind, output=last.name, host=True))
            continue
        n = len(prog.packets) + 2
        outputs[last.name], st = _layer_result(group, prog, responses[at:at + n])
        at += n
        layers.append(st)
    return outputs, network_stats(layers, info)


def network_stats(layers, info):
    """Totals over :class:`LayerStats` ``layers`` (the ``stats`` dict of :func:`run_network`)."""
    tot = {k: sum(getattr(s, k) for s in layers) for k in ("packets", "words_sent", "words_received",
                                                              "mac_steps", "useful_macs", "cycles", "mac_cycles")}
    tot["utilisation"] = tot["useful_macs"] / (info.rows * info.cols * tot["cycles"]) if tot["cycles"] else None
    return dict(layers=list(layers), info=info, **tot)


def _check_images(model, images):
    if not isinstance(model, IntegerModel):
        raise ValueError(f"model: expected IntegerModel, got {type(model).__name__}")
    spec = model.input
    x = np.asarray(images)
    if x.dtype.kind not in "iu":
        raise ValueError(f"images: expected an integer array, got dtype {x.dtype}")
    if x.ndim != len(spec.shape) + 1 or x.shape[1:] != spec.shape or x.shape[0] == 0:
        raise ValueError(f"images: expected shape (N, {', '.join(map(str, spec.shape))}) with N >= 1, got {x.shape}")
    if int(x.min()) < spec.lo or int(x.max()) > spec.hi:
        raise ValueError(f"images: values must be in the input range [{spec.lo}, {spec.hi}], "
                         f"got [{int(x.min())}, {int(x.max())}]")
    return x.astype(np.int64)


def _layer_result(group, prog, responses):
    """``(output, LayerStats)`` of one program (a tuple of layers, the last one's output) from its
    responses, bracketed by two STATUS answers."""
    name, kind = "+".join(la.name for la in group), "+".join(la.kind for la in group)
    if len(responses) != len(prog.packets) + 2 or not (responses[0].ok and responses[-1].ok):
        raise EngineError(f"layer {name!r}: {len(prog.packets) + 2} packets, {len(responses)} "
                          f"responses, STATUS {[str(r) for r in responses[:1] + responses[-1:]]}")
    out = prog.decode(responses[1:-1])
    start, end = (P.decode_status(r.payload) for r in (responses[0], responses[-1]))
    st = LayerStats(name=name, kind=kind, output=group[-1].name, packets=len(prog.packets), runs=len(prog.runs),
                    words_sent=prog.words_sent, input_cycles=prog.input_cycles, words_received=sum(2 + len(r.payload) for r in responses[1:-1]),
                    mac_steps=prog.mac_steps, useful_macs=prog.useful_macs,
                    **{k: end[k] - start[k] for k in ("cycles", "busy_cycles", "mac_cycles")})
    if st.mac_cycles != st.mac_steps:
        raise EngineError(f"layer {name!r}: STATUS reports {st.mac_cycles} MAC steps, the layer's "
                          f"RUNs have {st.mac_steps}")
    return out, st


# --- comparing an engine with golden --------------------------------------------------------------

@dataclass
class Mismatch:
    """The first element where an engine's layer output differs from golden's."""
    layer: str
    kind: str
    index: tuple           # (image, ..., channel)
    golden: int
    actual: int
    count: int             # differing elements in the layer
    elements: int
    cause: str             # "rounding tie" | "rounding mode" | "saturation" | "overflow/wrap" | "unknown"
    detail: str = ""

    @property
    def channel(self):
        return self.index[-1]


def compare_outputs(model, golden, actual):
    """Per-layer comparison: list of ``(name, elements, differing, max_abs_diff)`` in model order.

    ``golden`` and ``actual`` map tensor names to arrays (e.g. IntegerDeployable's trace and
    :func:`run_network`'s outputs); layers missing from ``actual`` are skipped.
    """
    out = []
    for layer in model.layers:
        if layer.name not in actual:
            continue
        g = np.asarray(golden[layer.name], dtype=np.int64)
        a = np.asarray(actual[layer.name], dtype=np.int64)
        if g.shape != a.shape:
            out.append((layer.name, g.size, g.size, None))
            continue
        diff = g != a
        out.append((layer.name, g.size, int(diff.sum()), int(np.abs(g - a).max()) if g.size else 0))
    return out


def first_mismatch(model, golden, actual):
    """The first differing element of the first differing layer (model order), or None.

    The cause is classified from golden's own computation of that element: ``rounding tie``
    (a requantizer input was exactly halfway for round-to-nearest, or at a rounding step of
    TFLite's double rounding), ``rounding mode`` (the engine's value is what another of the
    ``floor`` / ``half_up`` / ``half_even`` modes gives for that element), ``saturation`` (golden
    is at the clamp ``lo``/``hi``, or at 0 / the top level of a threshold layer), ``overflow/wrap``
    (the accumulator or ``acc + bias`` is within 2**30 of, or beyond, the int32 bounds), else
    ``unknown``.
    """
    for layer in model.layers:
        if layer.name not in actual:
            continue
        g = np.asarray(golden[layer.name], dtype=np.int64)
        a = np.asarray(actual[layer.name], dtype=np.int64)
        if g.shape != a.shape:
            return Mismatch(layer.name, layer.kind, (), 0, 0, g.size, g.size, "unknown",
                            f"shape {a.shape}, golden {g.shape}")
        diff = np.argwhere(g != a)
        if len(diff):
            idx = tuple(int(v) for v in diff[0])
            cause, detail = _classify(model, layer, golden, idx, int(a[idx]))
            return Mismatch(layer.name, layer.kind, idx, int(g[idx]), int(a[idx]), len(diff), g.size, cause, detail)
    return None


def format_mismatch(m):
    """One line for a :class:`Mismatch` (or "all layers match")."""
    if m is None:
        return "all layers match"
    return (f"layer {m.layer!r} ({m.kind}): {m.count} of {m.elements} elements differ; first at index {m.index} "
            f"(channel {m.channel if m.index else '-'}): golden {m.golden}, engine {m.actual}; likely cause: "
            f"{m.cause}{' (' + m.detail + ')' if m.detail else ''}")


def _rq_element(params, ch):
    f = {k: getattr(params, k) for k in ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi")}
    return {k: int(v if v.ndim == 0 else v[ch]) for k, v in f.items()}, params.rounding


def _tie(x, p, rounding):
    """Whether requantizing ``x`` (int32, after the bias) hits an exact halfway point
    (:func:`intdeploy.golden.requantizer.ties`)."""
    return bool(ties(np.array([x]), RequantParams(rounding=rounding, **dict(p, bias=0)))[0])


def _classify(model, layer, golden, idx, actual=None):
    """(cause, detail) for element ``idx`` of ``layer`` from golden tensors (and the engine's
    value ``actual``)."""
    ch = idx[-1]
    g = int(np.asarray(golden[layer.name])[idx])
    try:
        if isinstance(layer, MacLayer):
            x = np.asarray(golden[layer.inputs[0]], dtype=np.int64)[idx[0]:idx[0] + 1]
            if layer.kind == "conv2d":
                acc = mac_array.conv2d(x, layer.weight, layer.stride, layer.padding, layer.input_zero_point,
                                       layer.weight_zero_point)
            else:
                acc = mac_array.linear(x, layer.weight, layer.input_zero_point, layer.weight_zero_point)
            a = int(acc[(0,) + idx[1:]])
            if layer.requant is not None:
                p, rnd = _rq_element(layer.requant, ch)
                return _rq_cause(a, p, rnd, g, f"accumulator {a}", actual)
            if g in (0, layer.threshold.levels):
                return "saturation", f"threshold level {g} of 0..{layer.threshold.levels}"
            if abs(a) >= 1 << 30:
                return "overflow/wrap", f"accumulator {a}"
            return "unknown", f"accumulator {a}"
        if isinstance(layer, RequantLayer):
            a = int(np.asarray(golden[layer.inputs[0]])[idx])
            p, rnd = _rq_element(layer.requant, ch)
            return _rq_cause(a, p, rnd, g, f"input {a}", actual)
        if isinstance(layer, AddLayer):
            pr = layer.params
            vals = [int(np.asarray(golden[s])[idx]) for s in layer.inputs]
            vs = []
            for v, zp, br in zip(vals, pr.in_zero_points, pr.branches):
                s = int(_wrap32(((v - zp) & 0xFFFFFFFF) << pr.left_shift))
                p, rnd = _rq_element(br, ch)
                if _tie(int(_wrap32(s + p["bias"])), p, rnd):
                    return "rounding tie", f"branch input {s} is a tie for {rnd}"
                vs.append(int(requantize(np.array([s]), RequantParams(rounding=rnd, **p))[0]))
            total = int(_wrap32(vs[0] + vs[1])) >> pr.sum_shift
            p, rnd = _rq_element(pr.output, ch)
            what = f"sum {total}" + (f" (shifted right by {pr.sum_shift})" if pr.sum_shift else "")
            return _rq_cause(total, p, rnd, g, what, actual)
        if isinstance(layer, PoolLayer) and layer.lo is not None and g in (layer.lo, layer.hi):
            return "saturation", f"golden at the clamp [{layer.lo}, {layer.hi}]"
    except (ValueError, IndexError) as e:
        return "unknown", f"classifier: {e}"
    return "unknown", ""


def _rq_cause(a, p, rounding, g, what, actual=None):
    x = int(_wrap32(a + p["bias"]))
    if a + p["bias"] != x or abs(a) >= 1 << 30:
        return "overflow/wrap", f"{what}, + bias {p['bias']} -> {x}"
    if _tie(x, p, rounding):
        return "rounding tie", f"{what} is an exact tie for {rounding} (mult {p['mult']}, shift {p['shift']})"
    if actual is not None and rounding != "tflite":
        # floor / half_up / half_even share mult, shift and offset; tflite's fields mean other things
        for mode in ("floor", "half_up", "half_even"):
            if mode != rounding and int(requantize(np.array([a]), RequantParams(rounding=mode, **p))[0]) == actual:
                return "rounding mode", f"{what}: the engine's value is {mode} rounding, golden's is {rounding}"
    if g in (p["lo"], p["hi"]):
        return "saturation", f"golden at the clamp [{p['lo']}, {p['hi']}], {what}"
    return "unknown", what
