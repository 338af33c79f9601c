"""Encoding and decoding of the accelerator's command protocol (docs/protocol.md).

Pure Python over lists of 32-bit words; shared by the host driver (:mod:`sim.driver`), the
executable model of the accelerator (:mod:`sim.accel_model`) and the cocotb bench of the top.
Encoders validate what they are given and raise ``ValueError`` naming the field, so that the
host refuses what the hardware cannot represent before anything is sent.
"""

from dataclasses import dataclass

import numpy as np

from golden.requantizer import RequantParams, INT32_MIN, INT32_MAX

__all__ = [
    "OPCODES", "STATUS", "ROUNDING_CODES", "PARAM_WORDS", "RUN_WORDS", "INFO_WORDS", "STATUS_WORDS",
    "Info", "Response", "RunDescriptor",
    "command", "to_beats", "from_beats", "split_packets", "parse_response",
    "info", "status", "write_weights", "write_params", "write_thresholds", "write_acts",
    "write_residual", "run", "encode_requant", "decode_requant", "decode_info", "decode_status",
    "pack_elements", "unpack_elements", "entry_words",
]

OPCODES = {
    "INFO": 0x01, "WRITE_WEIGHTS": 0x02, "WRITE_PARAMS": 0x03, "WRITE_THRESHOLDS": 0x04,
    "WRITE_ACTS": 0x05, "WRITE_RESIDUAL": 0x06, "RUN": 0x07, "STATUS": 0x08,
}
OPCODE_NAMES = {v: k for k, v in OPCODES.items()}
STATUS = {
    "OK": 0, "UNKNOWN_OPCODE": 1, "TRUNCATED": 2, "BAD_LENGTH": 3, "OUT_OF_RANGE": 4,
    "BAD_PARAM": 5, "BAD_HEADER": 6,
}
STATUS_NAMES = {v: k for k, v in STATUS.items()}
ROUNDING_CODES = {"floor": 0, "half_up": 1, "half_even": 2, "tflite": 3}
ROUNDING_NAMES = {v: k for k, v in ROUNDING_CODES.items()}
POOL_MODES = {"max": 0, "avg_nemo": 1, "avg_tflite": 2}
OUT_BYTES_CODES = {1: 0, 2: 1, 4: 2}

PARAM_WORDS = 8
RUN_WORDS = 40
INFO_WORDS = 12
STATUS_WORDS = 9
MASK32 = 0xFFFFFFFF


def _u32(value, name, lo=INT32_MIN, hi=MASK32):
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is out of range; allowed [{lo}, {hi}]")
    return value & MASK32


def _s32(word):
    word &= MASK32
    return word - (1 << 32) if word >> 31 else word


def _field(value, name, bits, signed=False):
    value = int(value)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is out of range; allowed [{lo}, {hi}]")
    return value & ((1 << bits) - 1)


def _sext(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# --- framing -----------------------------------------------------------------------------

def command(opcode, payload=(), tag=0):
    """Header + payload words of one command packet."""
    opcode = OPCODES[opcode] if isinstance(opcode, str) else _field(opcode, "opcode", 8)
    payload = [int(w) & MASK32 for w in payload]
    return [opcode | (_field(tag, "tag", 8) << 8), len(payload)] + payload


def to_beats(words, bus_width=32):
    """Words of one packet -> (beat, last) pairs for a ``bus_width``-bit stream, zero-padded."""
    if bus_width % 32 or bus_width <= 0:
        raise ValueError(f"bus_width: {bus_width} is not a positive multiple of 32")
    per = bus_width // 32
    words = list(words) + [0] * (-len(words) % per)
    beats = []
    for i in range(0, len(words), per):
        beat = 0
        for j, w in enumerate(words[i:i + per]):
            beat |= (int(w) & MASK32) << (32 * j)
        beats.append((beat, i + per >= len(words)))
    return beats


def from_beats(beats, bus_width=32):
    """Beat integers -> words (padding included)."""
    per = bus_width // 32
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
        raise ValueError("stream ended inside a packet (no TLAST)")
    return packets


@dataclass
class Response:
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

    def __str__(self):
        name = OPCODE_NAMES.get(self.opcode, f"0x{self.opcode:02x}")
        return f"{name} tag {self.tag}: {self.status_name}, {len(self.payload)} payload words"


def parse_response(words):
    """One response packet's words (padding allowed) -> :class:`Response`."""
    if len(words) < 2:
        raise ValueError(f"response: {len(words)} words, a header needs 2")
    h, length = words[0], words[1]
    if len(words) < 2 + length:
        raise ValueError(f"response: header says {length} payload words, packet has {len(words) - 2}")
    return Response(h & 0xFF, (h >> 8) & 0xFF, (h >> 16) & 0xFF, list(words[2:2 + length]))


# --- element packing ---------------------------------------------------------------------

def entry_words(elements, bits):
    """Words one buffer entry of ``elements`` values of ``bits`` bits occupies."""
    return -(-elements * bits // 32)


def pack_elements(values, bits):
    """Pack integers (two's complement, ``bits`` each, little-endian) into words."""
    values = np.asarray(values, dtype=np.int64).ravel()
    acc, words = 0, []
    for i, v in enumerate(values.tolist()):
        acc |= (v & ((1 << bits) - 1)) << (i * bits)
    n = entry_words(len(values), bits)
    for i in range(n):
        words.append((acc >> (32 * i)) & MASK32)
    return words


def unpack_elements(words, count, bits, signed=True):
    acc = 0
    for i, w in enumerate(words):
        acc |= (int(w) & MASK32) << (32 * i)
    out = [(acc >> (i * bits)) & ((1 << bits) - 1) for i in range(count)]
    if signed:
        out = [_sext(v, bits) for v in out]
    return np.array(out, dtype=np.int64)


# --- requantizer parameter words ----------------------------------------------------------

def encode_requant(params, channel=None, w_zero_point=0):
    """8 words for one channel of ``params`` (a RequantParams; per-tensor fields broadcast)."""
    if not isinstance(params, RequantParams):
        raise ValueError(f"params: expected RequantParams, got {type(params).__name__}")

    def pick(arr):
        arr = np.asarray(arr)
        return int(arr if arr.ndim == 0 else arr[channel])

    offset = pick(params.offset)
    w3 = ((offset >> 32) & 0xFFFF) | (pick(params.shift) << 16) \
        | (ROUNDING_CODES[params.rounding] << 22) | (_field(w_zero_point, "w_zero_point", 8, True) << 24)
    return [pick(params.mult) & MASK32, pick(params.bias) & MASK32, offset & MASK32, w3,
            pick(params.zero_point) & MASK32, pick(params.lo) & MASK32, pick(params.hi) & MASK32, 0]


def decode_requant(words):
    """8 words -> (RequantParams for one channel, w_zero_point); ValueError for invalid fields."""
    w = [int(x) & MASK32 for x in words]
    if w[7] != 0:
        raise ValueError("reserved: word 7 must be 0")
    offset = _sext(((w[3] & 0xFFFF) << 32) | w[2], 48)
    params = RequantParams(mult=_s32(w[0]), bias=_s32(w[1]), offset=offset,
                           shift=(w[3] >> 16) & 0x3F, rounding=ROUNDING_NAMES[(w[3] >> 22) & 3],
                           zero_point=_s32(w[4]), lo=_s32(w[5]), hi=_s32(w[6]))
    return params, _sext(w[3] >> 24, 8)


# --- commands ------------------------------------------------------------------------------

def info(tag=0):
    return command("INFO", (), tag)


def status(tag=0):
    return command("STATUS", (), tag)


def write_weights(bank, address, tiles, weight_bits=8, tag=0):
    """``tiles``: (count, R, C) weights; each tile is one weight-buffer entry."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 3:
        raise ValueError(f"tiles: expected shape (count, R, C), got {tiles.shape}")
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    if tiles.size and (tiles.min() < lo or tiles.max() > hi):
        raise ValueError(f"tiles: weights must be in [{lo}, {hi}] for weight_bits={weight_bits}")
    payload = [bank, address, len(tiles)]
    for t in tiles:
        payload += pack_elements(t, weight_bits)
    return command("WRITE_WEIGHTS", payload, tag)


def _write_entries(opcode, address, entries, tag):
    entries = np.asarray(entries)
    if entries.ndim != 2:
        raise ValueError(f"entries: expected shape (count, width), got {entries.shape}")
    if entries.size and (entries.min() < -128 or entries.max() > 255):
        raise ValueError("entries: values must be int8 or uint8")
    payload = [address, len(entries)]
    for e in entries:
        payload += pack_elements(e, 8)
    return command(opcode, payload, tag)


def write_acts(address, entries, tag=0):
    """``entries``: (count, C) int8/uint8 activation vectors."""
    return _write_entries("WRITE_ACTS", address, entries, tag)


def write_residual(address, entries, tag=0):
    """``entries``: (count, R) int8/uint8 residual vectors."""
    return _write_entries("WRITE_RESIDUAL", address, entries, tag)


def write_params(first_channel, params, count, w_zero_point=0, tag=0):
    """``count`` channels of ``params`` (RequantParams) starting at ``first_channel``."""
    wz = np.broadcast_to(np.asarray(w_zero_point), (count,))
    payload = [first_channel, count]
    for c in range(count):
        payload += encode_requant(params, c, int(wz[c]))
    return command("WRITE_PARAMS", payload, tag)


def write_thresholds(channel, thresholds, negate=False, tag=0):
    thresholds = np.asarray(thresholds, dtype=np.int64).ravel()
    q = (len(thresholds) + 1).bit_length() - 1
    if len(thresholds) != (1 << q) - 1 or not 1 <= q <= 8:
        raise ValueError(f"thresholds: {len(thresholds)} values; must be 2**q - 1 for q in 1..8")
    if np.any(np.diff(thresholds) < 0):
        raise ValueError(f"thresholds: channel {channel} is not non-decreasing")
    payload = [channel, q | (int(bool(negate)) << 8)] + [_u32(t, "thresholds", INT32_MIN, INT32_MAX)
                                                         for t in thresholds]
    return command("WRITE_THRESHOLDS", payload, tag)


@dataclass
class RunDescriptor:
    """The RUN command's layer descriptor (docs/protocol.md); defaults are a plain GEMM."""
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
    add_branches: tuple = None         # (RequantParams, RequantParams), per-tensor
    add_output: RequantParams = None
    pool_mode: str = "max"
    pool_taps: int = 1
    pool_d: int = 0
    pool_mult: int = 0
    pool_lo: int = -128
    pool_hi: int = 127

    def encode(self):
        w = [0] * RUN_WORDS
        w[0] = _field(self.m_count, "m_count", 32)
        w[1] = _field(self.k_steps, "k_steps", 32)
        w[2] = _field(self.n_tiles, "n_tiles", 32)
        w[3] = _field(self.act_base, "act_base", 32)
        w[4] = _field(self.bank, "bank", 32)
        w[5] = _field(self.weight_base, "weight_base", 32)
        w[6] = _field(self.channel_base, "channel_base", 32)
        zp = _field(self.x_zero_point, "x_zero_point", 8, signed=bool(self.x_signed))
        w[7] = int(bool(self.x_signed)) | (zp << 8)
        if self.epilogue not in ("requant", "threshold"):
            raise ValueError(f"epilogue: {self.epilogue!r} is not one of requant, threshold")
        if self.out_bytes not in OUT_BYTES_CODES:
            raise ValueError(f"out_bytes: {self.out_bytes} is not one of 1, 2, 4")
        w[8] = (0 if self.epilogue == "requant" else 1) | (int(bool(self.add)) << 4) \
            | (int(bool(self.pool)) << 5) | (OUT_BYTES_CODES[self.out_bytes] << 8)
        w[9] = _field(self.residual_base, "residual_base", 31) | (int(bool(self.residual_signed)) << 31)
        if self.add:
            if self.add_branches is None or self.add_output is None:
                raise ValueError("add_branches, add_output: required when add is set")
            w[10] = _u32(self.add_zero_points[0], "add_zero_points[0]", INT32_MIN, INT32_MAX)
            w[11] = _u32(self.add_zero_points[1], "add_zero_points[1]", INT32_MIN, INT32_MAX)
            w[12] = _field(self.add_left_shift, "add_left_shift", 5)
            w[13:21] = encode_requant(self.add_branches[0], 0)
            w[21:29] = encode_requant(self.add_branches[1], 0)
            w[29:37] = encode_requant(self.add_output, 0)
        if self.pool:
            if self.pool_mode not in POOL_MODES:
                raise ValueError(f"pool_mode: {self.pool_mode!r} is not one of {', '.join(POOL_MODES)}")
            w[37] = POOL_MODES[self.pool_mode] | (_field(self.pool_taps, "pool_taps", 8) << 8) \
                | (_field(self.pool_d, "pool_d", 6) << 16)
            w[38] = _field(self.pool_mult, "pool_mult", 32)
            w[39] = _field(self.pool_lo, "pool_lo", 16, True) | (_field(self.pool_hi, "pool_hi", 16, True) << 16)
        return w

    @classmethod
    def decode(cls, words):
        """Inverse of :meth:`encode` (no range checks beyond field widths: the model checks)."""
        w = [int(x) & MASK32 for x in words]
        x_signed = bool(w[7] & 1)
        zp = (w[7] >> 8) & 0xFF
        d = cls(m_count=w[0], k_steps=w[1], n_tiles=w[2], act_base=w[3], bank=w[4],
                weight_base=w[5], channel_base=w[6], x_signed=x_signed,
                x_zero_point=_sext(zp, 8) if x_signed else zp,
                epilogue={0: "requant", 1: "threshold"}.get(w[8] & 3, f"code {w[8] & 3}"),
                add=bool(w[8] >> 4 & 1), pool=bool(w[8] >> 5 & 1),
                out_bytes={0: 1, 1: 2, 2: 4}.get((w[8] >> 8) & 3, 0),
                residual_base=w[9] & 0x7FFFFFFF, residual_signed=bool(w[9] >> 31))
        return d, w


def run(descriptor, tag=0):
    return command("RUN", descriptor.encode(), tag)


# --- response payloads ----------------------------------------------------------------------

INFO_FIELDS = ("version", "rows", "cols", "bus_width", "weight_bits", "weight_depth",
               "weight_banks", "act_depth", "param_channels", "residual_depth",
               "threshold_channels", "max_q", "max_pool_taps")


@dataclass
class Info:
    """The accelerator's elaboration parameters, as INFO reports them."""
    version: int = 1
    rows: int = 8
    cols: int = 8
    bus_width: int = 32
    weight_bits: int = 8
    weight_depth: int = 256
    weight_banks: int = 2
    act_depth: int = 1024
    param_channels: int = 256
    residual_depth: int = 256
    threshold_channels: int = 64
    max_q: int = 8
    max_pool_taps: int = 16

    def encode(self):
        return [self.version, self.rows, self.cols, self.bus_width, self.weight_bits,
                self.weight_depth, self.weight_banks, self.act_depth, self.param_channels,
                self.residual_depth, self.threshold_channels | (self.max_q << 16),
                self.max_pool_taps]


def decode_info(payload):
    if len(payload) != INFO_WORDS:
        raise ValueError(f"INFO payload: {len(payload)} words, expected {INFO_WORDS}")
    p = list(payload)
    return Info(*p[:10], p[10] & 0xFFFF, p[10] >> 16, p[11])


def decode_status(payload):
    if len(payload) != STATUS_WORDS:
        raise ValueError(f"STATUS payload: {len(payload)} words, expected {STATUS_WORDS}")
    p = list(payload)
    return {"commands": p[0], "errors": p[1], "last_error": p[2],
            "cycles": p[3] | (p[4] << 32), "busy_cycles": p[5] | (p[6] << 32),
            "mac_cycles": p[7] | (p[8] << 32)}
