"""A layer as the accelerator computes it, and the program that computes it.

:class:`GemmJob` is one GEMM (``M x K`` 8-bit rows times ``N x K`` weights, then the epilogue,
an optional add and pooling; :class:`Pool` and :class:`Strips` describe the last two's options);
:class:`LayerProgram` is its packets for a whole batch and how to read the results back. The
lowering (:mod:`intdeploy.host.lowering`) makes jobs, the tiling (:mod:`intdeploy.host.tiling`)
programs."""

from dataclasses import dataclass, field

import numpy as np

from intdeploy.golden.add import AddParams
from intdeploy.golden.requantizer import RequantParams
from intdeploy.host import protocol as P

__all__ = ["MAX_COUNT", "Refusal", "EngineError", "Pool", "Strips", "GemmJob", "Placement", "LayerProgram"]

MAX_COUNT = 0xFFFF                       # m_count, k_steps, n_tiles: 1..65535


@dataclass(frozen=True)
class Pool:
    """The pooling unit's part of a :class:`GemmJob`: ``mode`` (golden's pooling mode), ``taps``
    consecutive GEMM rows per window, ``d`` (``avg_nemo``), the clamp ``lo``/``hi`` (``avg_tflite``,
    int16)."""
    mode: str
    taps: int
    d: int = 0
    lo: int = -128
    hi: int = 127


@dataclass(frozen=True, eq=False)
class Strips:
    """A convolution whose GEMM rows share activation entries (docs/driver.md, "Convolution
    strips"): the activation buffer holds ``entries`` int64 ``(S, L, C)`` (S strips of L entries);
    each strip gives ``per_strip`` GEMM rows of which the first ``valid`` are outputs; ``w``
    replaces the job's weights (``N, k_steps * C``); ``row_step`` is the descriptor's."""
    entries: np.ndarray
    per_strip: int
    valid: int
    row_step: int
    w: np.ndarray


class Refusal(ValueError):
    """The accelerator cannot run a layer (or a group of layers as one program) as given: a
    buffer, a unit or a fusion rule does not allow it. One line naming the layer; the command
    line reports it as a user error, and :meth:`intdeploy.host.fusion.Fusion.dry_run` tells
    fusable groups from the others by it (any other error propagates)."""


class EngineError(RuntimeError):
    """An engine answered a packet of a valid program with an error, or with the wrong shape."""


@dataclass(eq=False)
class GemmJob:
    """One layer as the accelerator computes it: ``M x K`` 8-bit rows times ``N x K`` weights.

    Attributes
    ----------
    name : str
        Layer name (for messages).
    x : int64 ``(M, K)``
        GEMM rows, int8 (``x_signed``) or uint8 values. With ``pool`` the rows are ordered window
        by window (``pool.taps`` consecutive rows per output).
    w : int64 ``(N, K)``
        Weights, within ``weight_bits`` signed bits.
    x_signed, x_zero_point : bool, int
    w_zero_point : int64 ``(N,)``
    requant : RequantParams or None
        Per-tensor or ``N`` channels; exactly one of ``requant`` / ``thresholds``.
    thresholds, negate : int64 ``(N, T)``, bool ``(N,)`` or None
    add : AddParams or None (per-tensor requantizers); ``residual`` int64 ``(M, N)`` 8-bit values,
        ``residual_signed``.
    pool : Pool or None
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
    columns : int64 ``(M,)`` or None
        Row ``i``'s result is its column ``columns[i]`` (the others are discarded): a window-sum
        GEMM whose columns divide by different tap counts (edge windows of a padded average pool).
    strips : Strips or None
        A convolution whose GEMM rows share activation entries; ``x`` then only gives the rows'
        order and the range check.
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
    pool: Pool = None
    out_bytes: int = 1
    out_signed: bool = True
    x_range: tuple = None
    bias_in_check: bool = True
    useful_macs: int = 0
    strips: Strips = None
    columns: np.ndarray = None


@dataclass(eq=False)
class Placement:
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



@dataclass(eq=False)
class SplitProgram(LayerProgram):
    """A layer computed as independent programs over groups of its output channels, one after
    the other (a depthwise convolution: :meth:`intdeploy.host.fusion.Fusion.compile_group`):
    ``parts`` are the groups' :class:`LayerProgram` (each decoding to ``(batch, ..., group)``),
    ``packets`` theirs in order; :meth:`decode` joins their outputs along the channel axis."""
    parts: list = field(default_factory=list)

    def decode(self, responses):
        if len(responses) != len(self.packets):
            raise EngineError(f"layer {self.name!r}: {len(self.packets)} packets, {len(responses)} responses")
        outs, i = [], 0
        for part in self.parts:
            outs.append(part.decode(responses[i:i + len(part.packets)]))
            i += len(part.packets)
        return np.concatenate(outs, axis=-1)
