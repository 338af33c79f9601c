"""Hardware decoding of the protocol's parameter words and of the RUN descriptor.

The positions of every field come from the wire format (:mod:`intdeploy.wire`: the 8-word
parameter entry :data:`~intdeploy.wire.PARAM`, also three times in the RUN descriptor for the add
unit, and the 40-word descriptor :data:`~intdeploy.wire.RUN`); this module turns those words into
the fields the datapath uses, and states which values are invalid (``BAD_PARAM``), so that the
command processor and the tests share one decoding.
"""

from amaranth import Cat, Shape, Signal, signed, unsigned
from amaranth.lib import data

from intdeploy import wire
from intdeploy.golden.requantizer import MAX_SHIFT

__all__ = ["PARAM_WORDS", "RUN_WORDS", "field_bits", "param_entry_layout", "decode_param", "assign_param",
           "run_layout", "layout_signal"]

PARAM_WORDS = wire.PARAM.words
RUN_WORDS = wire.RUN.words


def layout_signal(layout, **kwargs):
    """A plain-shaped Signal seen through ``layout``'s view.

    Unlike ``Signal(layout)``, it emits no alias wire per field in the Verilog, which matters for
    simulator build time (cocotb's Verilator build makes every signal public and traced)."""
    return layout(Signal(Shape.cast(layout), **kwargs))


def field_bits(words, field):
    """The raw bits of the wire :class:`~intdeploy.wire.Field` ``field`` from ``words`` (32-bit
    Amaranth values, word 0 of the field's block first): a whole word itself, else slices of the
    words it occupies, low first."""
    parts = [words[w] if (lo, hi) == (0, 32) else words[w][lo:hi] for w, lo, hi in field.segments()]
    return parts[0] if len(parts) == 1 else Cat(*parts)


def param_entry_layout(requant_layout):
    """A parameter buffer entry: the requantizer's per-lane fields and the weight zero point
    (the wire field ``w_zero_point``)."""
    return data.StructLayout({"rq": requant_layout, "w_zp": signed(8)})


def decode_param(words):
    """Fields of an 8-word parameter block and its validity.

    Parameters
    ----------
    words : list of 8 Amaranth values, 32 bits each

    Returns
    -------
    fields : dict
        Every field of :data:`intdeploy.wire.PARAM` by its name (``mult``, ``bias``, ``offset``
        48 bits, ``shift`` 6, ``rounding`` 3, ``w_zero_point`` 8, ``zero_point``, ``lo``,
        ``hi``) as raw bit values (signedness is the layout's business).
    fields_ok : Value
        1 iff every field is in the range docs/protocol.md allows: ``rounding`` a mode's code;
        ``shift <= 62``; for ``tflite`` rounding ``mult >= 0``, ``offset == 0`` and
        ``shift >= 1``; ``lo <= hi`` (signed).
    reserved_ok : Value
        1 iff every reserved bit (the bits no field covers) is zero (checked by WRITE_PARAMS,
        ignored in RUN).
    """
    f = {field.name: field_bits(words, field) for field in wire.PARAM}
    tfl = f["rounding"] == wire.ROUNDING["tflite"]
    shift = f["shift"]
    fields_ok = ((f["rounding"] <= max(wire.ROUNDING.values())) & (shift <= MAX_SHIFT) &
                 (f["lo"].as_signed() <= f["hi"].as_signed()) &
                 (~tfl | (~f["mult"][31] & (f["offset"] == 0) & (shift != 0))))
    reserved_ok = Cat(*[(words[k] & mask) == 0 for k, mask in enumerate(wire.PARAM.reserved_masks()) if mask]).all()
    return f, fields_ok, reserved_ok


def assign_param(entry, fields):
    """Statements assigning :func:`decode_param` fields to a ``param_entry_layout`` view."""
    rq = entry.rq
    return [
        rq.mult.eq(fields["mult"]), rq.bias.eq(fields["bias"]), rq.offset.eq(fields["offset"]),
        rq.shift.eq(fields["shift"]), rq.rounding.as_value().eq(fields["rounding"]),
        rq.zero_point.eq(fields["zero_point"]), rq.lo.eq(fields["lo"]), rq.hi.eq(fields["hi"]),
        entry.w_zp.eq(fields["w_zero_point"]),
    ]


def run_layout(*, act_bits, bank_bits, weight_bits, channel_bits, residual_bits, requant_layout):
    """The decoded RUN descriptor that the command processor hands to the datapath.

    Counts are 16 bits (the descriptor checks limit them to 1..65535); addresses have their
    buffer's width. ``row_step`` is the descriptor's field (0 stands for ``k_steps``). ``outputs`` is ``m_count / taps`` with pooling, else ``m_count``.
    """
    return data.StructLayout({
        "m_count": unsigned(16),
        "k_steps": unsigned(16),
        "n_tiles": unsigned(16),
        "outputs": unsigned(16),
        "act_base": unsigned(act_bits),
        "bank": unsigned(bank_bits),
        "weight_base": unsigned(weight_bits),
        "channel_base": unsigned(channel_bits),
        "x_signed": unsigned(1),
        "x_zp": signed(9),
        "row_step": unsigned(16),
        "threshold": unsigned(1),
        "add": unsigned(1),
        "pool": unsigned(1),
        "out_bytes": unsigned(2),
        "residual_base": unsigned(residual_bits),
        "residual_signed": unsigned(1),
        "add_zp_a": signed(32),
        "add_zp_b": signed(32),
        "add_left_shift": unsigned(5),
        "add_sum_shift": unsigned(5),
        "add_a": requant_layout,
        "add_b": requant_layout,
        "add_out": requant_layout,
        "pool_mode": unsigned(2),
        "pool_taps": unsigned(8),
        "pool_d": unsigned(6),
        "pool_mult": unsigned(32),
        "pool_lo": signed(16),
        "pool_hi": signed(16),
    })
