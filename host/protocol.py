"""Encoding and decoding of the accelerator's command protocol (docs/protocol.md).

Pure Python/numpy over lists of 32-bit words; shared by the host driver (:mod:`intdeploy.host.driver`), the
executable model of the accelerator (:mod:`intdeploy.sim.accel_model`) and the cocotb bench of the top.
Encoders validate what they are given and raise ``ValueError`` naming the field, so that the
host refuses what the hardware cannot represent before anything is sent. Decoders never
validate beyond field widths (the accelerator model does the protocol's checks).
"""

from dataclasses import dataclass, fields

import numpy as np

from intdeploy import wire
from intdeploy.golden.checks import check_int
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams

__all__ = [
    "OPCODES", "OPCODE_NAMES", "STATUS", "STATUS_NAMES", "ROUNDING_CODES", "POOL_MODES",
    "OUT_BYTES_CODES", "PARAM_WORDS", "RUN_WORDS", "INFO_WORDS", "STATUS_WORDS", "FIXED_LENGTHS",
    "MIN_LENGTHS", "MASK32",
    "Info", "Response", "RunDescriptor",
    "command", "response", "to_beats", "from_beats", "split_packets", "parse_response",
    "info", "status", "write_weights", "write_params", "write_param_entries", "write_thresholds",
    "write_acts", "write_residual", "writes", "run", "encode_requant", "decode_requant", "decode_info",
    "decode_status", "pack_elements", "unpack_elements", "pack_entries", "unpack_entries",
    "entry_words", "sext",
]

# The code tables and block sizes of the wire format (one definition: intdeploy.wire).
OPCODES, OPCODE_NAMES, STATUS, STATUS_NAMES = wire.OPCODES, wire.OPCODE_NAMES, wire.STATUS, wire.STATUS_NAMES
ROUNDING_CODES, ROUNDING_NAMES, POOL_MODES, OUT_BYTES_CODES = wire.ROUNDING, wire.ROUNDING_NAMES, wire.POOL, wire.OUT_BYTES
PARAM_WORDS, RUN_WORDS, INFO_WORDS, STATUS_WORDS = (b.words for b in (wire.PARAM, wire.RUN, wire.INFO,
                                                                       wire.STATUS_PAYLOAD))
MASK32 = wire.MASK32
#: ``length`` of the fixed-size commands (docs/protocol.md, "Which error", rule 2).
FIXED_LENGTHS = {OPCODES["INFO"]: 0, OPCODES["STATUS"]: 0, OPCODES["RUN"]: RUN_WORDS}
#: Smallest ``length`` of the variable-size commands: their fixed fields.
MIN_LENGTHS = {OPCODES["WRITE_WEIGHTS"]: 3, OPCODES["WRITE_PARAMS"]: 2, OPCODES["WRITE_THRESHOLDS"]: 2,
               OPCODES["WRITE_ACTS"]: 2, OPCODES["WRITE_RESIDUAL"]: 2}


def _u32(value, name, lo=INT32_MIN, hi=MASK32):
    value = check_int(name, value)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is out of range; allowed [{lo}, {hi}]")
    return value & MASK32


def _signed32(value, name):
    """``value``, checked to be an int32 (ValueError naming ``name``)."""
    return _s32(_u32(value, name, INT32_MIN, INT32_MAX))


def _s32(word):
    word &= MASK32
    return word - (1 << 32) if word >> 31 else word


def _field(value, name, bits, signed=False, lo=None):
    value = check_int(name, value)
    flo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    lo = flo if lo is None else lo
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is out of range; allowed [{lo}, {hi}]")
    return value & ((1 << bits) - 1)


def sext(value, bits):
    """Two's complement value of the low ``bits`` bits of ``value`` (int or int64 array)."""
    if isinstance(value, np.ndarray):
        value = value.astype(np.int64) & ((1 << bits) - 1)
        return np.where(value >> (bits - 1) != 0, value - (1 << bits), value)
    value = int(value) & ((1 << bits) - 1)
    return value - (1 << bits) if value >> (bits - 1) else value



# --- framing -----------------------------------------------------------------------------

def command(opcode, payload=(), tag=0):
    """Header + payload words of one command packet (payload words are taken modulo 2**32)."""
    payload = [int(w) & MASK32 for w in payload]
    return wire.COMMAND_HEADER.encode(opcode=opcode, tag=tag, length=len(payload)) + payload


def response(opcode, tag, status, payload=()):
    """Header + payload words of one response packet (docs/protocol.md, "Response header")."""
    payload = [int(w) & MASK32 for w in payload]
    return wire.RESPONSE_HEADER.encode(opcode=opcode & 0xFF, tag=tag & 0xFF, status=status & 0xFF,
                                       length=len(payload)) + payload


def _per_beat(bus_width):
    if isinstance(bus_width, bool) or not isinstance(bus_width, (int, np.integer)) \
            or bus_width <= 0 or bus_width % 32:
        raise ValueError(f"bus_width: {bus_width!r} is not a positive multiple of 32")
    return int(bus_width) // 32


def to_beats(words, bus_width=32):
    """Words of one packet -> (beat, last) pairs for a ``bus_width``-bit stream, zero-padded."""
    per = _per_beat(bus_width)
    words = [int(w) & MASK32 for w in words]
    words += [0] * (-len(words) % per)
    if not words:
        raise ValueError("words: a packet has at least one word")
    beats = []
    for i in range(0, len(words), per):
        beat = 0
        for j, w in enumerate(words[i:i + per]):
            beat |= w << (32 * j)
        beats.append((beat, i + per >= len(words)))
    return beats


def from_beats(beats, bus_width=32):
    """Beat integers -> words (padding included); word 0 of a beat is TDATA[31:0]."""
    per = _per_beat(bus_width)
    return [(int(b) >> (32 * j)) & MASK32 for b in beats for j in range(per)]


def split_packets(beats, bus_width=32):
    """(beat, last) pairs -> list of packets, each a list of words (padding included)."""
    packets, current = [], []
    for beat, last in beats:
        current.append(beat)
        if last:
            packets.append(from_beats(current, bus_width))
            current = []
    if current:
        raise ValueError("beats: the stream ends inside a packet (no TLAST)")
    return packets


@dataclass
class Response:
    """One response packet: header fields and payload words (padding removed)."""
    opcode: int
    tag: int
    status: int
    payload: list

    @property
    def ok(self):
        return self.status == 0

    @property
    def status_name(self):
        return STATUS_NAMES.get(self.status, f"status {self.status}")

    def words(self):
        """The packet's words (header + payload, no padding)."""
        return response(self.opcode, self.tag, self.status, self.payload)

    def __str__(self):
        name = OPCODE_NAMES.get(self.opcode, f"0x{self.opcode:02x}")
        return f"{name} tag {self.tag}: {self.status_name}, {len(self.payload)} payload words"


def parse_response(words):
    """One response packet's words (padding allowed) -> :class:`Response`."""
    if len(words) < 2:
        raise ValueError(f"response: {len(words)} words, a header needs 2")
    h = wire.RESPONSE_HEADER.decode(words[:2])
    length = h["length"]
    if len(words) < 2 + length:
        raise ValueError(f"response: header says {length} payload words, packet has {len(words) - 2}")
    return Response(h["opcode"], h["tag"], h["status"], [int(w) for w in words[2:2 + length]])


# --- element packing ---------------------------------------------------------------------

def entry_words(elements, bits):
    """Words one buffer entry of ``elements`` values of ``bits`` bits occupies."""
    return -(-elements * bits // 32)


def pack_entries(values, bits):
    """Pack ``(count, elements)`` integers into ``(count, entry_words)`` uint32 words.

    Element ``i`` of an entry is bits ``[i*bits, (i+1)*bits)`` of the entry (two's complement,
    little-endian over the words); bits above the last element are 0.
    """
    v = np.asarray(values, dtype=np.int64)
    if v.ndim != 2:
        raise ValueError(f"values: expected shape (count, elements), got {v.shape}")
    count, n = v.shape
    nw = entry_words(n, bits)
    if count == 0 or nw == 0:
        return np.zeros((count, nw), dtype=np.uint32)
    if bits in (8, 16, 32):
        dt = {8: "<u1", 16: "<u2", 32: "<u4"}[bits]
        raw = (v & ((1 << bits) - 1)).astype(dt)
        pad = np.zeros((count, nw * 32 // bits - n), dtype=dt)
        return np.ascontiguousarray(np.concatenate([raw, pad], axis=1)).view("<u4").astype(np.uint32)
    bit = (v[:, :, None] >> np.arange(bits)) & 1                       # (count, n, bits)
    bit = bit.reshape(count, n * bits).astype(np.uint8)
    bit = np.concatenate([bit, np.zeros((count, nw * 32 - n * bits), dtype=np.uint8)], axis=1)
    return np.packbits(bit, axis=1, bitorder="little").view("<u4").astype(np.uint32)


def unpack_entries(words, elements, bits, signed=True):
    """Inverse of :func:`pack_entries`: ``(count, words)`` -> ``(count, elements)`` int64."""
    w = np.asarray(words, dtype=np.int64)
    if w.ndim != 2:
        raise ValueError(f"words: expected shape (count, words), got {w.shape}")
    count = w.shape[0]
    if w.shape[1] * 32 < elements * bits:
        raise ValueError(f"words: {w.shape[1]} words per entry cannot hold {elements} x {bits} bits")
    if count == 0 or elements == 0:
        return np.zeros((count, elements), dtype=np.int64)
    raw = np.ascontiguousarray((w & MASK32).astype("<u4")).view(np.uint8)            # (count, 4*words)
    if bits in (8, 16, 32):
        out = raw.view({8: "<u1", 16: "<u2", 32: "<u4"}[bits])[:, :elements].astype(np.int64)
    else:
        bit = np.unpackbits(raw, axis=1, bitorder="little")[:, :elements * bits]
        out = (bit.reshape(count, elements, bits).astype(np.int64) << np.arange(bits)).sum(axis=2)
    return sext(out, bits) if signed else out


def pack_elements(values, bits):
    """Pack integers (two's complement, ``bits`` each, little-endian) into a list of words."""
    v = np.asarray(values, dtype=np.int64).ravel()
    return [int(x) for x in pack_entries(v[None, :], bits)[0]]


def unpack_elements(words, count, bits, signed=True):
    """Inverse of :func:`pack_elements`: the first ``count`` values of ``bits`` bits (int64)."""
    return unpack_entries(np.asarray(list(words), dtype=np.int64)[None, :], count, bits, signed)[0]


# --- requantizer parameter words ----------------------------------------------------------

def encode_requant(params, channel=None, w_zero_point=0):
    """8 words for one channel of ``params`` (a RequantParams; per-tensor fields broadcast)."""
    if not isinstance(params, RequantParams):
        raise ValueError(f"params: expected RequantParams, got {type(params).__name__}")

    def pick(arr):
        arr = np.asarray(arr)
        if arr.ndim == 0:
            return int(arr)
        if channel is None or not 0 <= channel < arr.shape[0]:
            raise ValueError(f"channel: {channel!r} does not select one of the {arr.shape[0]} channels of params")
        return int(arr[channel])

    return wire.PARAM.encode(mult=pick(params.mult), bias=pick(params.bias), offset=pick(params.offset),
                             shift=pick(params.shift), rounding=params.rounding, w_zero_point=w_zero_point,
                             zero_point=pick(params.zero_point), lo=pick(params.lo), hi=pick(params.hi))


def decode_requant(words, reserved=True):
    """8 words -> (RequantParams for one channel, w_zero_point).

    Raises ValueError exactly when the accelerator answers ``BAD_PARAM`` for the entry
    (docs/protocol.md, WRITE_PARAMS): a reserved bit set (checked with ``reserved``, as
    WRITE_PARAMS does; a RUN descriptor's add parameters ignore them), a ``rounding`` code without
    a mode, ``shift`` 63, ``tflite`` with a negative ``mult``, ``shift`` 0 or a non-zero
    ``offset``, or ``lo > hi``.
    """
    w = [int(x) & MASK32 for x in words]
    if len(w) != PARAM_WORDS:
        raise ValueError(f"words: a parameter entry is {PARAM_WORDS} words, got {len(w)}")
    if reserved:
        for k, mask in enumerate(wire.PARAM.reserved_masks()):
            if w[k] & mask:
                raise ValueError(f"reserved: word {k} bits {w[k] & mask:#010x} must be 0")
    f = wire.PARAM.decode(w)
    if f["rounding"] not in ROUNDING_NAMES:
        raise ValueError(f"rounding: code {f['rounding']} is not one of "
                         + ", ".join(f"{c} ({n})" for c, n in ROUNDING_NAMES.items()))
    wzp = f.pop("w_zero_point")
    params = RequantParams(rounding=ROUNDING_NAMES[f.pop("rounding")], **f)
    return params, wzp


# --- commands ------------------------------------------------------------------------------

def info(tag=0):
    return command("INFO", (), tag)


def status(tag=0):
    return command("STATUS", (), tag)


def write_weights(bank, address, tiles, weight_bits=8, tag=0):
    """``tiles``: (count, R, C) weights; each tile is one weight-buffer entry."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 3 or tiles.shape[0] == 0 or tiles.dtype.kind not in "iu":
        raise ValueError(f"tiles: expected integers of shape (count >= 1, R, C), got {tiles.dtype} {tiles.shape}")
    weight_bits = _field(weight_bits, "weight_bits", 4, lo=1)
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    if tiles.min() < lo or tiles.max() > hi:
        raise ValueError(f"tiles: weights must be in [{lo}, {hi}] for weight_bits={weight_bits}")
    words = pack_entries(tiles.reshape(tiles.shape[0], -1), weight_bits)
    payload = [_u32(bank, "bank", 0), _u32(address, "address", 0), len(tiles)] + words.ravel().tolist()
    return command("WRITE_WEIGHTS", payload, tag)


def _write_entries(opcode, address, entries, tag):
    entries = np.asarray(entries)
    if entries.ndim != 2 or entries.shape[0] == 0 or entries.dtype.kind not in "iu":
        raise ValueError(f"entries: expected integers of shape (count >= 1, width), got {entries.dtype} {entries.shape}")
    if entries.min() < -128 or entries.max() > 255:
        raise ValueError("entries: values must be int8 or uint8 (in [-128, 255])")
    payload = [_u32(address, "address", 0), len(entries)] + pack_entries(entries, 8).ravel().tolist()
    return command(opcode, payload, tag)


def write_acts(address, entries, tag=0):
    """``entries``: (count, C) int8/uint8 activation vectors."""
    return _write_entries("WRITE_ACTS", address, entries, tag)


def write_residual(address, entries, tag=0):
    """``entries``: (count, R) int8/uint8 residual vectors."""
    return _write_entries("WRITE_RESIDUAL", address, entries, tag)


def write_param_entries(first_channel, entries, tag=0):
    """WRITE_PARAMS of raw 8-word entries (e.g. from :func:`encode_requant`), one per channel."""
    entries = [list(e) for e in entries]
    if not entries or any(len(e) != PARAM_WORDS for e in entries):
        raise ValueError(f"entries: expected one or more entries of {PARAM_WORDS} words")
    payload = [_u32(first_channel, "first_channel", 0), len(entries)]
    for e in entries:
        payload += e
    return command("WRITE_PARAMS", payload, tag)


def write_params(first_channel, params, count, w_zero_point=0, tag=0):
    """``count`` channels of ``params`` (RequantParams) starting at ``first_channel``."""
    count = check_int("count", count)
    if count < 1 or params.channels not in (None, count):
        raise ValueError(f"count: {count} does not match the {params.channels} channels of params")
    wz = np.broadcast_to(np.asarray(w_zero_point), (count,))
    return write_param_entries(first_channel, [encode_requant(params, c, int(wz[c])) for c in range(count)], tag)


def write_thresholds(channel, thresholds, negate=False, tag=0):
    """One channel's ``2**q - 1`` non-decreasing int32 ``thresholds`` (q in 1..8) and negate bit."""
    thresholds = np.asarray(thresholds)
    if thresholds.dtype.kind not in "iu":
        raise ValueError(f"thresholds: expected integers, got dtype {thresholds.dtype}")
    thresholds = thresholds.astype(np.int64).ravel()
    q = (len(thresholds) + 1).bit_length() - 1
    if len(thresholds) != (1 << q) - 1 or not 1 <= q <= 8:
        raise ValueError(f"thresholds: {len(thresholds)} values; must be 2**q - 1 for q in 1..8")
    if np.any(np.diff(thresholds) < 0):
        raise ValueError(f"thresholds: channel {channel} is not non-decreasing")
    payload = [_u32(channel, "channel", 0), q | (int(bool(negate)) << 8)] + \
        [_u32(t, "thresholds", INT32_MIN, INT32_MAX) for t in thresholds.tolist()]
    return command("WRITE_THRESHOLDS", payload, tag)


@dataclass
class RunDescriptor:
    """The RUN command's layer descriptor (docs/protocol.md); defaults are a plain GEMM.

    ``add_branches`` (two RequantParams) and ``add_output`` are per-tensor requantizers;
    ``pool_mult`` defaults (None) to ``floor(2**pool_d / pool_taps)``. ``row_step``: activation
    entries from one GEMM row's first step to the next row's (0: ``k_steps``, rows back to back).
    """
    m_count: int
    k_steps: int
    n_tiles: int = 1
    act_base: int = 0
    bank: int = 0
    weight_base: int = 0
    channel_base: int = 0
    x_signed: bool = True
    x_zero_point: int = 0
    epilogue: str = "requant"          # "requant" | "threshold"
    add: bool = False
    pool: bool = False
    out_bytes: int = 1
    residual_base: int = 0
    residual_signed: bool = True
    add_zero_points: tuple = (0, 0)
    add_left_shift: int = 0
    add_sum_shift: int = 0
    add_branches: tuple = None         # (RequantParams, RequantParams), per-tensor
    add_output: RequantParams = None
    pool_mode: str = "max"
    pool_taps: int = 1
    pool_d: int = 0
    pool_mult: int = None
    pool_lo: int = -128
    pool_hi: int = 127
    row_step: int = 0

    def encode(self):
        """The 40 descriptor words; ValueError naming the field for a value that does not fit."""
        zp = _field(self.x_zero_point, "x_zero_point", 8, signed=bool(self.x_signed))
        if self.out_bytes not in OUT_BYTES_CODES:
            raise ValueError(f"out_bytes: {self.out_bytes!r} is not one of 1, 2, 4")
        f = dict(m_count=self.m_count, k_steps=self.k_steps, n_tiles=self.n_tiles, act_base=self.act_base,
                 bank=self.bank, weight_base=self.weight_base, channel_base=self.channel_base,
                 x_signed=bool(self.x_signed), x_zero_point=zp, row_step=self.row_step, epilogue=self.epilogue,
                 add=bool(self.add), pool=bool(self.pool), out_bytes=OUT_BYTES_CODES[self.out_bytes],
                 residual_base=self.residual_base, residual_signed=bool(self.residual_signed))
        if self.add:
            if self.add_branches is None or self.add_output is None or len(self.add_branches) != 2:
                raise ValueError("add_branches, add_output: required when add is set")
            for name, rq in (("add_branches[0]", self.add_branches[0]), ("add_branches[1]", self.add_branches[1]),
                             ("add_output", self.add_output)):
                if not isinstance(rq, RequantParams) or rq.channels is not None:
                    raise ValueError(f"{name}: expected a per-tensor RequantParams")
            f.update(add_zero_point_a=_signed32(self.add_zero_points[0], "add_zero_points[0]"),
                     add_zero_point_b=_signed32(self.add_zero_points[1], "add_zero_points[1]"),
                     add_left_shift=self.add_left_shift, add_sum_shift=self.add_sum_shift,
                     add_a=encode_requant(self.add_branches[0]), add_b=encode_requant(self.add_branches[1]),
                     add_out=encode_requant(self.add_output))
        if self.pool:
            taps = _field(self.pool_taps, "pool_taps", 8, lo=1)
            d = _field(self.pool_d, "pool_d", 6)
            f.update(pool_mode=self.pool_mode, pool_taps=taps, pool_d=d,
                     pool_mult=(1 << d) // taps if self.pool_mult is None else self.pool_mult,
                     pool_lo=self.pool_lo, pool_hi=self.pool_hi)
        return wire.RUN.encode(**f)

    def reads(self):
        """The buffer entries this RUN reads, as the accelerator bounds them: ``{buffer: (bank,
        first, end)}`` (end exclusive, bank 0 but for ``"weights"``) for ``"acts"``
        (``act_base .. act_base + (m_count-1)*row_step + k_steps``), ``"weights"`` (``weight_base
        .. weight_base + n_tiles*k_steps`` of ``bank``) and, with ``add``, ``"residual"``
        (``residual_base .. residual_base + n_tiles*m_count``). A write meeting one of them waits
        for the RUN's end (docs/protocol.md "Overlap")."""
        span = (self.m_count - 1) * (self.row_step or self.k_steps) + self.k_steps
        r = {"acts": (0, self.act_base, self.act_base + span),
             "weights": (self.bank, self.weight_base, self.weight_base + self.n_tiles * self.k_steps)}
        if self.add:
            r["residual"] = (0, self.residual_base, self.residual_base + self.n_tiles * self.m_count)
        return r

    @classmethod
    def decode(cls, words):
        """``(RunDescriptor, words)`` from 40 words: every field by width, no range checks.

        Codes outside the tables decode as strings ``"code N"`` (epilogue, pool mode) or 0
        (``out_bytes``); the add requantizers decode to None where their words are invalid.
        """
        w = [int(x) & MASK32 for x in words]
        if len(w) != RUN_WORDS:
            raise ValueError(f"words: a descriptor is {RUN_WORDS} words, got {len(w)}")
        f = wire.RUN.decode(w)

        def rq(words):
            try:
                return decode_requant(words, reserved=False)[0]      # a RUN ignores the reserved bits
            except ValueError:
                return None

        x_signed = bool(f["x_signed"])
        zp = f["x_zero_point"]
        d = cls(m_count=f["m_count"], k_steps=f["k_steps"], n_tiles=f["n_tiles"], act_base=f["act_base"],
                bank=f["bank"], weight_base=f["weight_base"], channel_base=f["channel_base"], x_signed=x_signed,
                x_zero_point=sext(zp, 8) if x_signed else zp,
                epilogue={v: k for k, v in wire.EPILOGUES.items()}.get(f["epilogue"], f"code {f['epilogue']}"),
                add=bool(f["add"]), pool=bool(f["pool"]),
                out_bytes={v: k for k, v in OUT_BYTES_CODES.items()}.get(f["out_bytes"], 0),
                residual_base=f["residual_base"], residual_signed=bool(f["residual_signed"]),
                add_zero_points=(f["add_zero_point_a"], f["add_zero_point_b"]), add_left_shift=f["add_left_shift"],
                add_sum_shift=f["add_sum_shift"],
                add_branches=(rq(w[13:21]), rq(w[21:29])), add_output=rq(w[29:37]),
                pool_mode=wire.POOL_NAMES.get(f["pool_mode"], f"code {f['pool_mode']}"),
                pool_taps=f["pool_taps"], pool_d=f["pool_d"], pool_mult=f["pool_mult"],
                pool_lo=f["pool_lo"], pool_hi=f["pool_hi"], row_step=f["row_step"])
        return d, w


def writes(packet):
    """``(buffer, (bank, first, end))`` for a WRITE_WEIGHTS / WRITE_ACTS / WRITE_RESIDUAL packet
    (as :meth:`RunDescriptor.reads`), else None. The packet's fields are read, not checked."""
    op = packet[0] & 0xFF
    if op == OPCODES["WRITE_WEIGHTS"]:
        bank, first, count = packet[2:5]
        return "weights", (bank, first, first + count)
    if op in (OPCODES["WRITE_ACTS"], OPCODES["WRITE_RESIDUAL"]):
        first, count = packet[2:4]
        return ("acts" if op == OPCODES["WRITE_ACTS"] else "residual"), (0, first, first + count)
    return None


def run(descriptor, tag=0):
    return command("RUN", descriptor.encode(), tag)


# --- response payloads ----------------------------------------------------------------------

#: The reference configuration's INFO values: the defaults below.
_D = wire.DEFAULT_INFO


@dataclass
class Info:
    """The accelerator's elaboration parameters, as INFO reports them (docs/protocol.md, INFO).

    Constructing one validates every field (ValueError naming it).
    """
    version: int = _D["version"]
    rows: int = _D["rows"]
    cols: int = _D["cols"]
    bus_width: int = _D["bus_width"]
    weight_bits: int = _D["weight_bits"]
    weight_depth: int = _D["weight_depth"]
    weight_banks: int = _D["weight_banks"]
    act_depth: int = _D["act_depth"]
    param_channels: int = _D["param_channels"]
    residual_depth: int = _D["residual_depth"]
    threshold_channels: int = _D["threshold_channels"]
    max_q: int = _D["max_q"]
    max_pool_taps: int = _D["max_pool_taps"]
    max_pool_shift: int = _D["max_pool_shift"]

    #: inclusive ranges of the fields (``threshold_channels``/``max_q`` 0: no threshold unit)
    RANGES = {
        "version": (0, MASK32), "rows": (1, 1024), "cols": (1, 1024), "bus_width": (32, 4096),
        "weight_bits": (1, 8), "weight_depth": (1, MASK32), "weight_banks": (1, MASK32),
        "act_depth": (1, MASK32), "param_channels": (1, MASK32), "residual_depth": (0, MASK32),
        "threshold_channels": (0, 0xFFFF), "max_q": (0, 8), "max_pool_taps": (1, 255),
        "max_pool_shift": (0, 32),
    }

    def __post_init__(self):
        for f in fields(self):
            lo, hi = self.RANGES[f.name]
            v = getattr(self, f.name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"{f.name}: {v!r} is out of range; allowed integers in [{lo}, {hi}]")
            setattr(self, f.name, int(v))
        _per_beat(self.bus_width)

    @classmethod
    def of(cls, params):
        """The INFO of an accelerator given by its elaboration parameters: a dict, or an object
        holding them as attributes (``intdeploy.hw.config.AcceleratorConfig``); fields INFO does
        not report are ignored, missing ones take their defaults."""
        get = params.get if isinstance(params, dict) else lambda k, d=None: getattr(params, k, d)
        return cls(**{f.name: get(f.name) for f in fields(cls) if get(f.name) is not None})

    @property
    def weight_entry_words(self):
        return entry_words(self.rows * self.cols, self.weight_bits)

    @property
    def act_entry_words(self):
        return entry_words(self.cols, 8)

    @property
    def residual_entry_words(self):
        return entry_words(self.rows, 8)

    def encode(self):
        return wire.INFO.encode(**{f.name: getattr(self, f.name) for f in fields(self)})


def decode_info(payload):
    """INFO response payload -> :class:`Info` (ValueError if a field is out of range)."""
    if len(payload) != INFO_WORDS:
        raise ValueError(f"INFO payload: {len(payload)} words, expected {INFO_WORDS}")
    return Info(**wire.INFO.decode(payload))


def decode_status(payload):
    """STATUS response payload -> dict of the counters (64-bit ones combined)."""
    if len(payload) != STATUS_WORDS:
        raise ValueError(f"STATUS payload: {len(payload)} words, expected {STATUS_WORDS}")
    return wire.STATUS_PAYLOAD.decode(payload)
