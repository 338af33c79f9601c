"""Tiling and program assembly: a :class:`~intdeploy.host.job.GemmJob` to the packets of a
:class:`~intdeploy.host.job.LayerProgram`, within the buffers INFO reports (docs/driver.md,
"Tiling" and "Overlap")."""


import numpy as np

from intdeploy.golden import mac_array
from intdeploy.golden.requantizer import RequantParams
from intdeploy.host import protocol as P
from intdeploy.host.job import MAX_COUNT, LayerProgram, Placement, Refusal
from intdeploy.host.timing import input_cycles, program_cycles

__all__ = ["Tiling"]

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


class Tiling:
    """The GEMM tiling of :class:`intdeploy.host.driver.Driver` (uses ``self.info``)."""


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
        w = np.asarray(job.w if strips is None else strips.w, dtype=np.int64)
        M, K = x.shape
        if strips is not None:
            ent = np.asarray(strips.entries, dtype=np.int64)
            per, valid, L = strips.per_strip, strips.valid, ent.shape[1]
            K = w.shape[1]
            if ent.shape[0] * valid != M or K % C or job.pool:
                raise ValueError(f"job {name!r}: strips {ent.shape} x {valid} do not give the {M} rows, or K = {K} "
                                 f"is not whole entries, or pooling is set")
        N = w.shape[0]
        if w.shape[1] != K or M == 0 or K == 0 or N == 0:
            raise ValueError(f"job {name!r}: x {x.shape} and w {w.shape} do not form a GEMM")
        k_steps = -(-K // C)
        if k_steps > min(i.weight_depth, i.act_depth, MAX_COUNT):
            raise Refusal(f"layer {name!r}: K = {K} needs {k_steps} steps of C = {C}; a weight bank holds "
                             f"{i.weight_depth} and the activation buffer {i.act_depth} entries "
                             f"(largest K = {C * min(i.weight_depth, i.act_depth, MAX_COUNT)})")
        taps = job.pool.taps if job.pool else 1
        n_tiles = -(-N // R)
        chan_cap = i.param_channels
        if job.thresholds is not None:
            chan_cap = min(chan_cap, i.threshold_channels)
        if chan_cap < R:
            raise Refusal(f"layer {name!r}: a tile of R = {R} channels needs {R} parameter/threshold "
                             f"channels, the accelerator has {chan_cap}")
        def caps(act_depth, residual_depth):
            # (tiles per RUN, GEMM rows per RUN, strips per RUN) for buffers of these depths
            tiles_cap = min(i.weight_depth // k_steps, chan_cap // R, MAX_COUNT)
            m_cap = _floor_to(min(act_depth // k_steps, MAX_COUNT), taps)
            u_cap = None
            if m_cap < taps:
                raise Refusal(f"layer {name!r}: a pooling window of {taps} rows x {k_steps} steps does not fit "
                                 f"the activation buffer ({act_depth} entries)")
            if strips is not None:
                # units of the activation chunks are strips: u strips give u*per - (per - valid) GEMM rows
                u_cap = min(act_depth // L, (MAX_COUNT + per - valid) // per)
                if job.add is not None:
                    u_cap = min(u_cap, (residual_depth + per - valid) // per)
                if u_cap < 1 or strips.row_step > MAX_COUNT:
                    raise Refusal(f"layer {name!r}: a strip of {L} activation entries ({valid} outputs) does "
                                     f"not fit the buffers")
                if job.add is not None:
                    tiles_cap = max(1, min(tiles_cap, residual_depth // (min(u_cap, ent.shape[0]) * per - per + valid)))
                    u_cap = min(u_cap, (residual_depth // tiles_cap + per - valid) // per)
            elif job.add is not None:
                if residual_depth < taps:
                    raise Refusal(f"layer {name!r}: the residual buffer ({residual_depth} entries) cannot hold "
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
            raise Refusal(f"layer {name!r}: weights span [{int(w.min())}, {int(w.max())}], the accelerator "
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
            unused = RequantParams(mult=0, shift=0)            # a threshold RUN reads only w_zero_point
            entries = [P.encode_requant(unused, w_zero_point=int(z)) for z in zp_p]
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
                mc, row_step, r0, r1 = (m1 - m0) * per - (per - valid), strips.row_step, m0 * valid, m1 * valid
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
                d.pool, d.pool_mode, d.pool_taps = True, pl.mode, taps
                d.pool_d, d.pool_lo, d.pool_hi = pl.d, pl.lo, pl.hi
            packets.append(P.run(d))
            if strips is None:
                runs.append(Placement(len(packets) - 1, m0 // taps, mc // taps, t0, t1 - t0))
            else:
                runs.append(Placement(len(packets) - 1, r0, r1 - r0, t0, t1 - t0, results=mc, keep=(per, valid)))
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

