"""intdeploy.wire, the one definition of the wire format: its blocks, the tables docs/protocol.md
prints, and every consumer held to it instantly (the hardware's decoding evaluated in Amaranth's
simulator on random words, its enums and layouts, the host codec and the executable model)."""

from pathlib import Path
import subprocess

from amaranth import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy import wire
from intdeploy.golden.mac_array import linear
from intdeploy.golden.pool import POOL_MODES
from intdeploy.golden.requantizer import ROUNDING_MODES, RequantParams, requantize
from intdeploy.host import protocol as P
from intdeploy.hw.config import QUICK, AcceleratorConfig
from intdeploy.hw.descriptor import decode_param, field_bits, param_entry_layout
from intdeploy.hw.pool import PoolMode
from intdeploy.hw.requantizer import Rounding, param_layout
from intdeploy.sim.rtl_engine import run_player
from intdeploy.wire import c_header

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def test_docs_tables_are_the_wire_format():
    """Every table of docs/protocol.md that describes a packet is generated from intdeploy.wire:
    regenerating changes nothing (else run `python -m intdeploy.wire docs/protocol.md`)."""
    text = DOC.read_text()
    assert wire.render_docs(text) == text
    for name in ("COMMAND_HEADER", "RESPONSE_HEADER", "STATUS_CODES", "OPCODES", "PARAM", "RUN", "INFO",
                 "STATUS_PAYLOAD"):
        assert f"<!-- wire:{name} -->" in text, name
    with pytest.raises(ValueError, match="no wire table named 'NOPE'"):
        wire.render_docs("<!-- wire:NOPE -->\nx\n<!-- /wire -->")


def test_code_tables_come_from_golden():
    assert list(wire.ROUNDING) == list(ROUNDING_MODES) and list(wire.ROUNDING.values()) == [0, 1, 2, 3, 4]
    assert list(wire.POOL) == list(POOL_MODES) and list(wire.POOL.values()) == [0, 1, 2]


def _value(field, draw):
    lo, hi = field.range
    return draw(st.integers(lo, hi))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(list(wire.BLOCKS.values())), st.data())
def test_blocks_round_trip(block, data):
    values = {}
    for f in block:
        if f.block is not None:
            values[f.name] = {g.name: _value(g, data.draw) for g in f.block}
        else:
            values[f.name] = _value(f, data.draw)
    words = block.encode(**values)
    assert len(words) == block.words and all(0 <= w < 1 << 32 for w in words)
    assert block.decode(words) == values
    flat = {k: v for k, v in values.items() if not isinstance(v, dict) and block[k].width <= 63}
    arrays = block.decode_array(np.array([words, words]))
    assert {k: int(v[1]) for k, v in arrays.items()} == flat


def test_block_refuses_with_the_field_named():
    with pytest.raises(ValueError, match=r"^shift: 64 is out of range; allowed \[0, 63\]$"):
        wire.PARAM.encode(shift=64)
    with pytest.raises(ValueError, match=r"^rounding: 'ceil' is not one of floor, half_up, half_even, tflite, half_away$"):
        wire.PARAM.encode(rounding="ceil")
    with pytest.raises(ValueError, match=r"^w_zero_point: 128 is out of range"):
        wire.PARAM.encode(w_zero_point=128)
    with pytest.raises(ValueError, match="^nope: not a field of RUN descriptor"):
        wire.RUN.encode(nope=1)
    with pytest.raises(ValueError, match="overlaps"):
        wire.Block("bad", 1, [wire.Field("a", 0, 0, 8), wire.Field("b", 0, 4, 8)])


def test_a_field_across_two_words():
    offset = wire.PARAM["offset"]
    assert offset.segments() == [(2, 0, 32), (3, 0, 16)]
    words = wire.PARAM.encode(offset=-(1 << 47), shift=5)
    assert words[2] == 0 and words[3] == 0x8000 | (5 << 16)


# --- the hardware, instantly ------------------------------------------------------------------------

def _evaluate(build, inputs):
    """Run a combinational Amaranth expression builder in Amaranth's simulator: ``build(signals)``
    returns ``{name: value}``; ``inputs`` is a list of input tuples. Returns a list of dicts."""
    sigs = [Signal(32, name=f"w{i}") for i in range(len(inputs[0]))]
    outs = build(sigs)
    m = Module()
    probes = {k: Signal(len(v), name=f"o_{k}") for k, v in outs.items()}
    m.d.comb += [probes[k].eq(v) for k, v in outs.items()]
    got = []

    async def bench(ctx):
        for words in inputs:
            for s, w in zip(sigs, words):
                ctx.set(s, w)
            got.append({k: ctx.get(p) for k, p in probes.items()})

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


def _random_params(rng, n):
    """Parameter entries, random but for a few fields pushed to their edges (tflite, lo > hi...)."""
    w = rng.integers(0, 1 << 32, (n, 8), dtype=np.int64)
    w[::3, 7] = 0
    w[::4, 3] = (w[::4, 3] & ~(3 << 22)) | (3 << 22)              # tflite
    w[::5, 2] = 0
    w[::5, 3] &= ~0xFFFF                                          # offset 0
    w[::6, 6] = w[::6, 5]                                         # lo == hi
    return w


def test_hardware_decodes_parameter_entries_as_the_wire_format():
    """hw.descriptor.decode_param on 400 entries: every field equals wire.PARAM's decoding, the
    validity flags equal the host's (decode_requant refuses exactly the entries the hardware
    answers BAD_PARAM)."""
    entries = _random_params(np.random.default_rng(0), 400)

    def build(words):
        fields, ok, reserved_ok = decode_param(words)
        return {**fields, "fields_ok": ok, "reserved_ok": reserved_ok}
    got = _evaluate(build, [tuple(int(v) for v in e) for e in entries])
    want = wire.PARAM.decode_array(entries)
    for name, values in want.items():
        width = wire.PARAM[name].width
        np.testing.assert_array_equal([g[name] for g in got], values & ((1 << width) - 1), err_msg=name)
    for e, g in zip(entries, got):
        try:
            P.decode_requant([int(v) for v in e])
            host_ok = True
        except ValueError:
            host_ok = False
        assert host_ok == bool(g["fields_ok"] and g["reserved_ok"]), e


def test_hardware_field_positions_are_the_wire_format():
    """field_bits (what the command processor slices the RUN descriptor's words with) on random
    descriptors, against wire.RUN's decoding."""
    rng = np.random.default_rng(1)
    descs = rng.integers(0, 1 << 32, (50, wire.RUN.words), dtype=np.int64)
    names = [f.name for f in wire.RUN if f.block is None]
    got = _evaluate(lambda ws: {n: field_bits(ws, wire.RUN[n]) for n in names},
                    [tuple(int(v) for v in d) for d in descs])
    want = wire.RUN.decode_array(descs)
    for n in names:
        np.testing.assert_array_equal([g[n] for g in got], want[n] & ((1 << wire.RUN[n].width) - 1), err_msg=n)


def test_hardware_enums_and_info_are_the_wire_format():
    assert {m.name.lower(): m.value for m in Rounding} == wire.ROUNDING
    assert {m.name.lower(): m.value for m in PoolMode} == wire.POOL
    config = AcceleratorConfig(rows=4, cols=8, threshold_channels=300, max_q=4, max_pool_taps=64,
                               max_pool_shift=20)
    info = wire.INFO.decode(config.info_words())
    assert info == {"version": 2, **{f.name: getattr(config, f.name) for f in wire.INFO if f.name != "version"}}
    assert P.decode_info(config.info_words()) == P.Info(**info)


def test_hardware_parameter_entry_layout_holds_every_wire_field():
    """The parameter buffer's entry (hw) has a member for every wire field of a parameter entry,
    wide enough and of the same signedness (``w_zero_point`` is the entry's ``w_zp``)."""
    entry = param_entry_layout(param_layout(32))
    members = {**{k: v for k, v in entry.members["rq"].members.items()}, "w_zero_point": entry.members["w_zp"]}
    for f in wire.PARAM:
        shape = members[f.name]
        if f.codes is not None:
            assert {m.name.lower(): m.value for m in shape} == f.codes, f.name
            continue
        shape = shape.as_shape() if hasattr(shape, "as_shape") else shape
        assert shape.signed == f.signed and shape.width >= f.width, (f.name, shape)


# --- the C header (intdeploy.wire.c_header) ----------------------------------------------------------

_C_PROGRAM = r"""
#include <inttypes.h>
#include <stdio.h>
#include "intdeploy_wire.h"

static void print(const uint32_t *w, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%s%08" PRIx32, i ? " " : "", w[i]);
    printf("\n");
}

int main(void) {
    uint32_t out[64], entry[INTDEPLOY_PARAM_WORDS] = {0}, payload[2 + INTDEPLOY_PARAM_WORDS];
    uint32_t run[INTDEPLOY_RUN_WORDS] = {0};
    print(out, intdeploy_command(out, INTDEPLOY_OP_INFO, 7, NULL, 0));
    print(out, intdeploy_command(out, INTDEPLOY_OP_STATUS, 9, NULL, 0));
    /* one parameter entry: a 48-bit offset across words 2-3, negative fields, a code */
    intdeploy_put(entry, INTDEPLOY_PARAM_MULT, 1518500250);
    intdeploy_put(entry, INTDEPLOY_PARAM_BIAS, -12345);
    intdeploy_put(entry, INTDEPLOY_PARAM_OFFSET, -((int64_t)1 << 40) + 3);
    intdeploy_put(entry, INTDEPLOY_PARAM_SHIFT, 38);
    intdeploy_put(entry, INTDEPLOY_PARAM_ROUNDING, INTDEPLOY_ROUNDING_TFLITE);
    intdeploy_put(entry, INTDEPLOY_PARAM_W_ZERO_POINT, -3);
    intdeploy_put(entry, INTDEPLOY_PARAM_ZERO_POINT, -7);
    intdeploy_put(entry, INTDEPLOY_PARAM_LO, -128);
    intdeploy_put(entry, INTDEPLOY_PARAM_HI, 127);
    payload[0] = 5; payload[1] = 1;
    for (unsigned i = 0; i < INTDEPLOY_PARAM_WORDS; i++) payload[2 + i] = entry[i];
    print(out, intdeploy_command(out, INTDEPLOY_OP_WRITE_PARAMS, 3, payload, 2 + INTDEPLOY_PARAM_WORDS));
    /* a RUN descriptor with an add (the entry as branch a) and average pooling */
    intdeploy_put(run, INTDEPLOY_RUN_M_COUNT, 49);
    intdeploy_put(run, INTDEPLOY_RUN_K_STEPS, 9);
    intdeploy_put(run, INTDEPLOY_RUN_N_TILES, 2);
    intdeploy_put(run, INTDEPLOY_RUN_ACT_BASE, 100);
    intdeploy_put(run, INTDEPLOY_RUN_X_SIGNED, 1);
    intdeploy_put(run, INTDEPLOY_RUN_X_ZERO_POINT, (uint8_t)-5);
    intdeploy_put(run, INTDEPLOY_RUN_EPILOGUE, INTDEPLOY_EPILOGUE_REQUANT);
    intdeploy_put(run, INTDEPLOY_RUN_ADD, 1);
    intdeploy_put(run, INTDEPLOY_RUN_POOL, 1);
    intdeploy_put(run, INTDEPLOY_RUN_OUT_BYTES, INTDEPLOY_OUT_BYTES_1B);
    intdeploy_put(run, INTDEPLOY_RUN_ADD_ZERO_POINT_A, -100000);
    intdeploy_put(run, INTDEPLOY_RUN_ADD_LEFT_SHIFT, 20);
    intdeploy_put_block(run, INTDEPLOY_RUN_ADD_A, entry);
    intdeploy_put(run, INTDEPLOY_RUN_POOL_MODE, INTDEPLOY_POOL_AVG_TFLITE);
    intdeploy_put(run, INTDEPLOY_RUN_POOL_TAPS, 4);
    intdeploy_put(run, INTDEPLOY_RUN_POOL_LO, -128);
    intdeploy_put(run, INTDEPLOY_RUN_POOL_HI, 127);
    print(out, intdeploy_command(out, INTDEPLOY_OP_RUN, 200, run, INTDEPLOY_RUN_WORDS));
    /* a value that does not fit is refused and writes nothing */
    printf("%d %d %d\n", intdeploy_put(entry, INTDEPLOY_PARAM_SHIFT, 64),
           intdeploy_put(entry, INTDEPLOY_PARAM_W_ZERO_POINT, 128), intdeploy_put(entry, INTDEPLOY_PARAM_LO, (int64_t)1 << 31));
    print(entry, INTDEPLOY_PARAM_WORDS);
    /* read back: a response header, a signed field across two words */
    intdeploy_response r;
    uint32_t resp[2] = {0x00050208u, 9u};
    intdeploy_parse_response(resp, &r);
    printf("%u %u %u %u %" PRId64 "\n", r.opcode, r.tag, r.status, (unsigned)r.length,
           intdeploy_get(entry, INTDEPLOY_PARAM_OFFSET));
    return 0;
}
"""


def test_c_header_builds_the_hosts_packets(tmp_path):
    """A C program compiled with gcc (-std=c99 -Wall -Wextra -pedantic -Werror) against the
    generated header builds INFO, STATUS, WRITE_PARAMS and a RUN with an add and pooling: every
    word equals the host encoder's (intdeploy.host.protocol); out-of-range values are refused
    without writing; a response header and a two-word signed field read back."""
    (tmp_path / "intdeploy_wire.h").write_text(c_header.render())
    (tmp_path / "prog.c").write_text(_C_PROGRAM)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-o", "prog", "prog.c"],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    lines = subprocess.run([str(tmp_path / "prog")], check=True, capture_output=True, text=True).stdout.splitlines()
    words = lambda line: [int(w, 16) for w in line.split()]            # noqa: E731
    fields = dict(mult=1518500250, bias=-12345, offset=-(1 << 40) + 3, shift=38, rounding="tflite",
                  w_zero_point=-3, zero_point=-7, lo=-128, hi=127)
    entry = wire.PARAM.encode(**fields)
    assert words(lines[0]) == P.info(tag=7)
    assert words(lines[1]) == P.status(tag=9)
    assert words(lines[2]) == P.write_param_entries(5, [entry], tag=3)
    desc = wire.RUN.encode(m_count=49, k_steps=9, n_tiles=2, act_base=100, x_signed=1, x_zero_point=(-5) & 0xFF,
                           epilogue="requant", add=1, pool=1, out_bytes=0, add_zero_point_a=-100000,
                           add_left_shift=20, add_a=entry, pool_mode="avg_tflite", pool_taps=4, pool_lo=-128,
                           pool_hi=127)
    assert words(lines[3]) == P.command("RUN", desc, tag=200)
    assert lines[4] == "-1 -1 -1" and words(lines[5]) == entry
    assert lines[6] == f"8 2 5 9 {-(1 << 40) + 3}"


_C_GEMM = r"""
#include <inttypes.h>
#include <stdio.h>
#include "intdeploy_wire.h"
#include "data.h"

static uint32_t out[8192], payload[8192];

static void emit(size_t n) {
    for (size_t i = 0; i < n; i++) printf("%s%08" PRIx32, i ? " " : "", out[i]);
    printf("\n");
}

int main(void) {
    size_t p = 0;
    /* activations: entry m * KS + s holds X[m][s*C .. s*C + C - 1] */
    payload[p++] = ACT_BASE; payload[p++] = M * KS;
    for (int m = 0; m < M; m++)
        for (int s = 0; s < KS; s++) p += intdeploy_pack(payload + p, &X[m][s * C], C, 8);
    emit(intdeploy_command(out, INTDEPLOY_OP_WRITE_ACTS, 1, payload, (uint32_t)p));
    /* weights: entry n * KS + s holds the tile w[r][c] = W[n*R + r][s*C + c] */
    p = 0; payload[p++] = BANK; payload[p++] = WEIGHT_BASE; payload[p++] = NT * KS;
    for (int n = 0; n < NT; n++)
        for (int s = 0; s < KS; s++) {
            int32_t tile[R * C];
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) tile[r * C + c] = W[n * R + r][s * C + c];
            p += intdeploy_pack(payload + p, tile, R * C, 8);
        }
    emit(intdeploy_command(out, INTDEPLOY_OP_WRITE_WEIGHTS, 2, payload, (uint32_t)p));
    /* one parameter entry per output channel */
    p = 0; payload[p++] = CHANNEL_BASE; payload[p++] = N;
    for (int ch = 0; ch < N; ch++) {
        uint32_t e[INTDEPLOY_PARAM_WORDS] = {0};
        int bad = intdeploy_put(e, INTDEPLOY_PARAM_MULT, MULT[ch]) | intdeploy_put(e, INTDEPLOY_PARAM_SHIFT, SHIFT[ch])
            | intdeploy_put(e, INTDEPLOY_PARAM_BIAS, BIAS[ch]) | intdeploy_put(e, INTDEPLOY_PARAM_ROUNDING, ROUNDING[ch])
            | intdeploy_put(e, INTDEPLOY_PARAM_ZERO_POINT, ZP[ch]) | intdeploy_put(e, INTDEPLOY_PARAM_LO, LO[ch])
            | intdeploy_put(e, INTDEPLOY_PARAM_HI, HI[ch]) | intdeploy_put(e, INTDEPLOY_PARAM_W_ZERO_POINT, WZP[ch]);
        if (bad) return 1;
        for (unsigned i = 0; i < INTDEPLOY_PARAM_WORDS; i++) payload[p++] = e[i];
    }
    emit(intdeploy_command(out, INTDEPLOY_OP_WRITE_PARAMS, 3, payload, (uint32_t)p));
    /* the GEMM */
    uint32_t run[INTDEPLOY_RUN_WORDS] = {0};
    intdeploy_put(run, INTDEPLOY_RUN_M_COUNT, M);
    intdeploy_put(run, INTDEPLOY_RUN_K_STEPS, KS);
    intdeploy_put(run, INTDEPLOY_RUN_N_TILES, NT);
    intdeploy_put(run, INTDEPLOY_RUN_ACT_BASE, ACT_BASE);
    intdeploy_put(run, INTDEPLOY_RUN_BANK, BANK);
    intdeploy_put(run, INTDEPLOY_RUN_WEIGHT_BASE, WEIGHT_BASE);
    intdeploy_put(run, INTDEPLOY_RUN_CHANNEL_BASE, CHANNEL_BASE);
    intdeploy_put(run, INTDEPLOY_RUN_X_SIGNED, 1);
    intdeploy_put(run, INTDEPLOY_RUN_X_ZERO_POINT, (uint8_t)X_ZERO_POINT);
    intdeploy_put(run, INTDEPLOY_RUN_EPILOGUE, INTDEPLOY_EPILOGUE_REQUANT);
    intdeploy_put(run, INTDEPLOY_RUN_OUT_BYTES, INTDEPLOY_OUT_BYTES_1B);
    emit(intdeploy_command(out, INTDEPLOY_OP_RUN, 4, run, INTDEPLOY_RUN_WORDS));
    return 0;
}
"""


def _c_array(name, values, ctype="int32_t"):
    v = np.asarray(values)
    if v.ndim == 1:
        return f"static const {ctype} {name}[{len(v)}] = {{{', '.join(str(int(a)) for a in v)}}};"
    rows = ", ".join("{" + ", ".join(str(int(a)) for a in row) + "}" for row in v)
    return f"static const {ctype} {name}[{v.shape[0]}][{v.shape[1]}] = {{{rows}}};"


def test_c_driver_runs_a_gemm_on_the_rtl(tmp_path):
    """A C program built on the generated header (gcc -std=c99 -Wall -Wextra -pedantic -Werror)
    writes a whole program, operands, per-channel parameters in all five rounding modes and a RUN,
    from its own arrays with ``intdeploy_pack`` and ``intdeploy_put``: the words equal those the
    Python host builds for the same GEMM, and replayed on the RTL (the 4x4 top in the stream player,
    Verilator) they give golden's results element by element."""
    R, C, M, K, N = QUICK["rows"], QUICK["cols"], 6, 12, 8
    KS, NT = K // C, N // R
    act_base, bank, weight_base, channel_base, x_zp = 5, 1, 3, 4, -3
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (M, K))
    w = rng.integers(-128, 128, (N, K))
    w_zp = rng.integers(-128, 128, N)
    modes = [list(ROUNDING_MODES)[k % len(ROUNDING_MODES)] for k in range(N)]
    chans = [RequantParams(mult=int(rng.integers(1 << 29, 1 << 30)), shift=int(rng.integers(40, 43)),
                           bias=int(rng.integers(-5000, 5000)), zero_point=int(rng.integers(-10, 10)),
                           lo=-100, hi=90, rounding=r) for r in modes]
    data = [f"#define {k} {v}" for k, v in dict(R=R, C=C, M=M, K=K, N=N, KS=KS, NT=NT, ACT_BASE=act_base, BANK=bank,
                                                 WEIGHT_BASE=weight_base, CHANNEL_BASE=channel_base,
                                                 X_ZERO_POINT=x_zp).items()]
    data += [_c_array("X", x), _c_array("W", w), _c_array("WZP", w_zp)]
    for name in ("mult", "shift", "bias", "zero_point", "lo", "hi"):
        data.append(_c_array({"zero_point": "ZP"}.get(name, name.upper()), [int(getattr(p, name)) for p in chans],
                             "int64_t"))
    data.append(_c_array("ROUNDING", [wire.ROUNDING[p.rounding] for p in chans], "int64_t"))
    (tmp_path / "data.h").write_text("\n".join(data) + "\n")
    (tmp_path / "intdeploy_wire.h").write_text(c_header.render())
    (tmp_path / "gemm.c").write_text(_C_GEMM)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-o", "gemm", "gemm.c"],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    lines = subprocess.run([str(tmp_path / "gemm")], check=True, capture_output=True, text=True).stdout.splitlines()
    c_packets = [[int(v, 16) for v in line.split()] for line in lines]

    tiles = w.reshape(NT, R, KS, C).transpose(0, 2, 1, 3).reshape(NT * KS, R, C)        # entry n*KS + s
    py_packets = [P.write_acts(act_base, x.reshape(M * KS, C), tag=1),
                  P.write_weights(bank, weight_base, tiles, 8, tag=2),
                  P.write_param_entries(channel_base, [P.encode_requant(p, w_zero_point=int(z))
                                                       for p, z in zip(chans, w_zp)], tag=3),
                  P.run(P.RunDescriptor(m_count=M, k_steps=KS, n_tiles=NT, act_base=act_base, bank=bank,
                                        weight_base=weight_base, channel_base=channel_base, x_signed=True,
                                        x_zero_point=x_zp, residual_signed=False), tag=4)]
    assert c_packets == py_packets

    responses, _ = run_player("verilator", QUICK, c_packets, test_dir=tmp_path / "rtl")
    assert [r.status_name for r in responses] == ["OK"] * 4
    got = P.unpack_elements(responses[-1].payload, NT * M * R, 8, True).reshape(NT, M, R).transpose(1, 0, 2)
    acc = linear(x, w, x_zp, w_zp)
    want = np.stack([requantize(acc[:, j], p) for j, p in enumerate(chans)], axis=1)
    np.testing.assert_array_equal(got.reshape(M, N), want)
    assert np.mean((want > -100) & (want < 90)) > 0.5          # mostly unclipped: the rounding shows
