"""The wire format as a C header, for a host CPU that drives the accelerator without Python.

:func:`render` writes ``intdeploy_wire.h`` from the tables of :mod:`intdeploy.wire` (nothing in it is
typed by hand): the opcode, status, rounding, pooling, epilogue and result-size codes as
``#define``\\ s; every field of every block as an ``intdeploy_field`` constant (first bit within its
block, width, signedness); and a small portable driver in C99, ``static inline``, with no
dependency beyond ``<stdint.h>`` and ``<stddef.h>``:

* ``intdeploy_put(words, field, value)`` / ``intdeploy_get(words, field)``: a field into or out of
  a block's words (a field may span two words: the parameter entry's 48-bit ``offset``); ``put``
  returns -1 and writes nothing when the value does not fit the field;
* ``intdeploy_put_block(words, field, src)``: a nested block (the RUN descriptor's three add
  requantizers are parameter entries);
* ``intdeploy_command(out, opcode, tag, payload, length)``: the header and payload words of a
  command packet; ``intdeploy_parse_response(words, &response)``: a response's header;
* ``intdeploy_pack(words, values, n, bits)``: a buffer entry's elements packed as stored (8-bit
  activations and residual values, 8/4/2-bit weights; elements never straddle words for these).

``python -m intdeploy.wire --c-header FILE`` writes it; ``tests/test_wire.py`` compiles a program
against it with gcc and compares the packets it builds with the host's
(:mod:`intdeploy.host.protocol`), word for word.
"""

from intdeploy import wire

__all__ = ["render", "PREFIX"]

PREFIX = "INTDEPLOY"

_PRELUDE = """\
/* intdeploy wire format: generated from intdeploy.wire by `python -m intdeploy.wire --c-header FILE`.
   Do not edit; docs/protocol.md explains every field. C99, no dependency beyond stdint.h/stddef.h.
   Every packet is a sequence of 32-bit words: a 2-word header (opcode, tag, length) and the payload;
   on the AXI4-Stream bus word 0 of a beat is TDATA[31:0], and a packet ends with TLAST. */
#ifndef INTDEPLOY_WIRE_H
#define INTDEPLOY_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* A field of a block: bits [offset, offset + width) counted from bit 0 of the block's word 0. */
typedef struct { uint16_t offset; uint16_t width; uint8_t is_signed; } intdeploy_field;

typedef struct { uint8_t opcode, tag, status; uint32_t length; } intdeploy_response;
"""

_DRIVER = """\
/* Write value into the field f of the block at words; -1 (and nothing written) if it does not fit. */
static inline int intdeploy_put(uint32_t *words, intdeploy_field f, int64_t value) {
    if (f.width < 64) {
        int64_t lo = f.is_signed ? -((int64_t)1 << (f.width - 1)) : 0;
        int64_t hi = f.is_signed ? ((int64_t)1 << (f.width - 1)) - 1 : ((int64_t)1 << f.width) - 1;
        if (value < lo || value > hi) return -1;
    }
    uint64_t raw = (uint64_t)value;
    unsigned pos = f.offset, left = f.width;
    while (left) {
        unsigned word = pos / 32, bit = pos % 32, n = 32 - bit < left ? 32 - bit : left;
        uint32_t mask = (n == 32 ? 0xFFFFFFFFu : ((1u << n) - 1u)) << bit;
        words[word] = (words[word] & ~mask) | (((uint32_t)raw << bit) & mask);
        raw >>= n; pos += n; left -= n;
    }
    return 0;
}

/* The value of the field f of the block at words (sign-extended if the field is signed). */
static inline int64_t intdeploy_get(const uint32_t *words, intdeploy_field f) {
    uint64_t raw = 0;
    unsigned pos = f.offset, got = 0;
    while (got < f.width) {
        unsigned word = pos / 32, bit = pos % 32, n = 32 - bit < f.width - got ? 32 - bit : f.width - got;
        uint64_t part = (words[word] >> bit) & (n == 32 ? 0xFFFFFFFFu : ((1u << n) - 1u));
        raw |= part << got;
        pos += n; got += n;
    }
    if (f.is_signed && f.width < 64 && (raw >> (f.width - 1)) & 1u) raw |= ~(uint64_t)0 << f.width;
    return (int64_t)raw;
}

/* Copy the words of a nested block (e.g. a parameter entry) into the field f (whole words). */
static inline void intdeploy_put_block(uint32_t *words, intdeploy_field f, const uint32_t *src) {
    for (unsigned i = 0; i < f.width / 32u; i++) words[f.offset / 32u + i] = src[i];
}

/* A command packet: header and payload into out (2 + length words); returns the word count. */
static inline size_t intdeploy_command(uint32_t *out, uint8_t opcode, uint8_t tag, const uint32_t *payload,
                                       uint32_t length) {
    out[0] = 0; out[1] = 0;
    intdeploy_put(out, INTDEPLOY_COMMAND_HEADER_OPCODE, opcode);
    intdeploy_put(out, INTDEPLOY_COMMAND_HEADER_TAG, tag);
    intdeploy_put(out, INTDEPLOY_COMMAND_HEADER_LENGTH, length);
    for (uint32_t i = 0; i < length; i++) out[2 + i] = payload[i];
    return 2u + length;
}

/* A buffer entry's elements packed as the accelerator stores them (docs/protocol.md, buffer
   writes): element i in bits [i*bits, (i+1)*bits) of the entry, two's complement, little-endian
   over the words, the bits above the last element 0. bits is 8 for activations and residual
   entries, the weight width (8, 4 or 2) for weight entries; values must fit (int8/uint8 for 8
   bits). Returns the entry's words, ceil(n * bits / 32). */
static inline size_t intdeploy_pack(uint32_t *words, const int32_t *values, size_t n, unsigned bits) {
    size_t count = (n * bits + 31u) / 32u;
    uint32_t mask = (bits >= 32u) ? 0xFFFFFFFFu : ((1u << bits) - 1u);
    for (size_t w = 0; w < count; w++) words[w] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t bit = i * bits;
        words[bit / 32u] |= ((uint32_t)values[i] & mask) << (bit % 32u);
    }
    return count;
}

/* The header of a response packet (words[0..1]); its payload follows in words[2..]. */
static inline void intdeploy_parse_response(const uint32_t *words, intdeploy_response *r) {
    r->opcode = (uint8_t)intdeploy_get(words, INTDEPLOY_RESPONSE_HEADER_OPCODE);
    r->tag = (uint8_t)intdeploy_get(words, INTDEPLOY_RESPONSE_HEADER_TAG);
    r->status = (uint8_t)intdeploy_get(words, INTDEPLOY_RESPONSE_HEADER_STATUS);
    r->length = (uint32_t)intdeploy_get(words, INTDEPLOY_RESPONSE_HEADER_LENGTH);
}

#endif /* INTDEPLOY_WIRE_H */
"""


def _ident(text):
    return "".join(c if c.isalnum() else "_" for c in text).upper()


def render():
    """The text of ``intdeploy_wire.h``."""
    lines = [_PRELUDE]
    tables = (("OP", wire.OPCODES, "opcodes"), ("STATUS", wire.STATUS, "response status codes"),
              ("ROUNDING", wire.ROUNDING, "the requantizer's rounding field"),
              ("POOL", wire.POOL, "the RUN descriptor's pool_mode"),
              ("EPILOGUE", wire.EPILOGUES, "the RUN descriptor's epilogue"),
              ("OUT_BYTES", {f"{k}B": v for k, v in wire.OUT_BYTES.items()}, "the RUN descriptor's out_bytes"))
    for tag, table, what in tables:
        lines.append(f"/* {what} */")
        lines += [f"#define {PREFIX}_{tag}_{_ident(name)} {code}u" for name, code in table.items()]
        lines.append("")
    for key, block in wire.BLOCKS.items():
        lines.append(f"/* {block.name}: {block.words} words */")
        lines.append(f"#define {PREFIX}_{key}_WORDS {block.words}u")
        for f in block:
            lines.append(f"static const intdeploy_field {PREFIX}_{key}_{_ident(f.name)} = "
                         f"{{{f.offset}, {f.width}, {int(f.signed)}}};")
        lines.append("")
    lines.append(_DRIVER)
    return "\n".join(lines)
