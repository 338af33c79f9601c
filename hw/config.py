"""Elaboration parameters of the accelerator, validated once, with the widths derived from them.

One :class:`AcceleratorConfig` flows from :class:`intdeploy.hw.top.Accelerator` (and the ``verilog``
command line) to every part of the core, and to the host side through :meth:`info_words`
(the INFO response, docs/protocol.md) and :meth:`as_info`.
"""

from dataclasses import dataclass, fields

from amaranth.utils import ceil_log2

from intdeploy import wire
from intdeploy.golden.checks import check_int

__all__ = ["AcceleratorConfig", "VERSION", "QUICK"]

#: Protocol version reported by INFO (:data:`intdeploy.wire.PROTOCOL_VERSION`).
VERSION = wire.PROTOCOL_VERSION

_WEIGHT_BITS = (8, 4, 2)


#: The reference configuration's INFO values: the defaults below.
_D = wire.DEFAULT_INFO


@dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """Elaboration parameters (keyword-only); construction validates each one.

    Parameters
    ----------
    rows, cols : int
        R (output channels per tile, 1..16: the threshold unit's lane limit) and C (input
        lanes, 1..64) of the MAC array.
    bus_width : int
        AXI4-Stream TDATA width, a multiple of 32 in 32..1024 (default 64: two command words
        per beat, the rate at which the command processor fills the buffers).
    weight_bits : int
        Stored weight width: 8, 4 or 2.
    weight_depth, weight_banks : int
        Entries per weight bank (1..65536) and banks (1..16).
    act_depth : int
        Activation entries (1..2**20).
    param_channels : int
        Parameter channels (R..65536: a run needs at least one tile of R).
    residual_depth : int
        Residual entries (1..2**20).
    threshold_channels : int
        Threshold channels (R..65535).
    max_q : int
        Largest threshold output precision (1..8).
    max_pool_taps : int
        Largest pooling window T (1..255).
    max_pool_shift : int
        Largest NEMO average-pool shift ``d`` (0..32).
    fifo_depth : int
        Beats in each clock-crossing FIFO, a power of 2 in 8..4096.
    epilogue_lanes : int or None
        E, the values the epilogue (requantizer or threshold unit, then add unit) handles per
        cycle, 1..R; an accumulator beat of R values passes in ``ceil(R / E)`` cycles, and the
        add unit's results are gathered back to R values before pooling. Default (None):
        ``min(R, 4)``, the result packer's peak (one 32-bit word of four 1-byte results per
        cycle), so only runs with pooling and one MAC step per GEMM row are slowed by it.
        The epilogue's area (its DSPs, logic and threshold memories) scales with E, not R.
    add_lanes : int or None
        A, the values the add unit handles per cycle, 1..R: with an Add in a RUN, each beat of
        R values passes the add unit in ``ceil(R / A)`` cycles. Each lane is two int32
        requantizers and a read port of the branch-b table (8 MULT18X18D, a block RAM and about
        2,700 ECP5 logic cells; the table's fill lane is shared), so A below E trades the
        throughput of Add RUNs whose GEMM rows take fewer than ``ceil(R / A)`` MAC steps for
        area. Default (None): E.

    Raises
    ------
    ValueError
        Naming the parameter and its allowed values; also when the largest RUN response would
        not fit the 32-bit ``length`` field.
    """
    rows: int
    cols: int
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
    fifo_depth: int = 16
    epilogue_lanes: int | None = None
    add_lanes: int | None = None

    def __post_init__(self):
        check_int("rows", self.rows, 1, 16)
        check_int("cols", self.cols, 1, 64)
        check_int("bus_width", self.bus_width, 32, 1024)
        if self.bus_width % 32:
            raise ValueError(f"bus_width: {self.bus_width} is not allowed; a multiple of 32 in [32, 1024]")
        if self.weight_bits not in _WEIGHT_BITS or isinstance(self.weight_bits, bool):
            raise ValueError(f"weight_bits: {self.weight_bits!r} is not allowed; one of 8, 4, 2")
        check_int("weight_depth", self.weight_depth, 1, 1 << 16)
        check_int("weight_banks", self.weight_banks, 1, 16)
        check_int("act_depth", self.act_depth, 1, 1 << 20)
        check_int("param_channels", self.param_channels, self.rows, 1 << 16)
        check_int("residual_depth", self.residual_depth, 1, 1 << 20)
        check_int("threshold_channels", self.threshold_channels, self.rows, (1 << 16) - 1)
        check_int("max_q", self.max_q, 1, 8)
        check_int("max_pool_taps", self.max_pool_taps, 1, 255)
        check_int("max_pool_shift", self.max_pool_shift, 0, 32)
        check_int("fifo_depth", self.fifo_depth, 8, 4096)
        if self.fifo_depth & (self.fifo_depth - 1):
            raise ValueError(f"fifo_depth: {self.fifo_depth} is not allowed; a power of 2 in [8, 4096]")
        if self.epilogue_lanes is None:
            object.__setattr__(self, "epilogue_lanes", min(self.rows, 4))
        check_int("epilogue_lanes", self.epilogue_lanes, 1, self.rows)
        if self.add_lanes is None:
            object.__setattr__(self, "add_lanes", self.epilogue_lanes)
        check_int("add_lanes", self.add_lanes, 1, self.rows)
        # Runs are bounded by the buffers: m_count <= act_depth, n_tiles <= weight_depth.
        if self.max_result_words >= 1 << 32:
            raise ValueError(f"act_depth, weight_depth: a run could return {self.max_result_words} "
                             f"words, beyond the 32-bit length field; make the buffers smaller")

    # --- derived sizes -----------------------------------------------------------------------

    @property
    def weight_entry_bits(self):
        return self.rows * self.cols * self.weight_bits

    @property
    def weight_entry_words(self):
        return -(-self.weight_entry_bits // 32)

    @property
    def act_entry_words(self):
        return -(-self.cols // 4)

    @property
    def residual_entry_words(self):
        return -(-self.rows // 4)

    @property
    def max_result_words(self):
        return -(-min(self.act_depth, 65535) * min(self.weight_depth, 65535) * self.rows * 4 // 4)

    @property
    def words_per_beat(self):
        return self.bus_width // 32

    def addr_bits(self, depth):
        return max(1, ceil_log2(depth))

    def info_words(self):
        """The 12-word INFO response payload (docs/protocol.md, INFO)."""
        return wire.INFO.encode(version=VERSION, **{f.name: getattr(self, f.name) for f in wire.INFO
                                                     if f.name != "version"})

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def key(self):
        """A string that determines the elaborated hardware (for build caches)."""
        return ",".join(f"{k}={v}" for k, v in self.as_dict().items())


#: The quick tier's top (tests, the cross-check's and the soak's RTL runs: one simulator build):
#: 4x4 array, 64-bit bus (two words per beat: padding rules matter), small buffers, 8 threshold
#: channels of up to 3 bits, an epilogue of 3 lanes (each beat in two parts, the second partial) and
#: an add unit of 2 (each beat in two other parts).
QUICK = dict(rows=4, cols=4, bus_width=64, weight_depth=64, weight_banks=2, act_depth=1024, param_channels=16,
             residual_depth=256, threshold_channels=8, max_q=3, max_pool_taps=9, max_pool_shift=16, fifo_depth=8,
             epilogue_lanes=3, add_lanes=2)
