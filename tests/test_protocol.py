"""intdeploy.host.protocol: encoders/decoders round-trip, bit-level packing, refusal of unrepresentable values."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams, requantize
from intdeploy.host import protocol as P


def _oracle_pack(values, bits):
    """The documented layout, bit by bit: element i at bits [i*bits, (i+1)*bits), words LSB first."""
    acc = 0
    for i, v in enumerate(values):
        acc |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    n = -(-len(values) * bits // 32)
    return [(acc >> (32 * j)) & 0xFFFFFFFF for j in range(n)]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8, 16, 32])
@pytest.mark.parametrize("count", [1, 3, 4, 5, 17, 64])
def test_pack_matches_bit_layout_and_round_trips(bits, count):
    rng = np.random.default_rng(bits * 100 + count)
    v = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), count) if bits > 1 else rng.integers(-1, 1, count)
    words = P.pack_elements(v, bits)
    assert words == _oracle_pack(v, bits)
    np.testing.assert_array_equal(P.unpack_elements(words, count, bits, signed=True), v)
    u = v & ((1 << bits) - 1)
    np.testing.assert_array_equal(P.unpack_elements(words, count, bits, signed=False), u)


def test_sub_byte_weight_tile_layout():
    # 4-bit weights, R=2, C=4: element (r, c) at bits [(r*C + c)*4, +4): one word per tile.
    tile = np.array([[1, -1, 7, -8], [0, 2, -2, 3]])
    pk = P.write_weights(1, 5, tile[None], weight_bits=4)
    assert pk[:5] == [0x02, 4, 1, 5, 1]
    assert pk[5] == 0x3E20_87F1
    # 2-bit weights, R=C=4: 32 bits exactly.
    t2 = np.array([[-2, -1, 0, 1]] * 4)
    assert P.write_weights(0, 0, t2[None], weight_bits=2)[5] == 0x4E4E_4E4E


def test_pack_entries_batch_equals_per_entry():
    rng = np.random.default_rng(1)
    v = rng.integers(-8, 8, (7, 9))
    words = P.pack_entries(v, 4)
    assert words.shape == (7, 2)
    for row, wrow in zip(v, words):
        assert wrow.tolist() == _oracle_pack(row, 4)
    np.testing.assert_array_equal(P.unpack_entries(words, 9, 4), v)


@pytest.mark.parametrize("bus_width", [32, 64, 128, 256])
def test_beats_round_trip_and_padding(bus_width):
    words = list(range(1, 8))
    beats = P.to_beats(words, bus_width)
    per = bus_width // 32
    assert len(beats) == -(-7 // per)
    assert [last for _, last in beats] == [False] * (len(beats) - 1) + [True]
    back = P.from_beats([b for b, _ in beats], bus_width)
    assert back[:7] == words and back[7:] == [0] * (len(back) - 7)
    assert beats[0][0] & 0xFFFFFFFF == 1                     # word 0 is TDATA[31:0]
    two = P.split_packets(beats + P.to_beats([9], bus_width), bus_width)
    assert two[0][:7] == words and two[1][0] == 9


def test_split_packets_requires_tlast():
    with pytest.raises(ValueError, match="beats"):
        P.split_packets([(1, False)], 32)


@pytest.mark.parametrize("bus_width", [0, 16, 48, -32, True])
def test_bad_bus_width(bus_width):
    with pytest.raises(ValueError, match="bus_width"):
        P.to_beats([1], bus_width)


def test_command_and_response_headers():
    assert P.command("RUN", [1, 2], tag=0xAB) == [0xAB07, 2, 1, 2]
    assert P.response(0x07, 0xAB, 5, [9]) == [0x05AB07, 1, 9]
    r = P.parse_response([0x05AB07, 1, 9, 0])
    assert (r.opcode, r.tag, r.status, r.payload, r.ok) == (7, 0xAB, 5, [9], False)
    assert r.words() == [0x05AB07, 1, 9]
    assert r.status_name == "BAD_PARAM"
    with pytest.raises(ValueError, match="tag"):
        P.command("INFO", tag=256)
    with pytest.raises(ValueError, match="response"):
        P.parse_response([0x07, 3, 1])


_RQ_CASES = [
    RequantParams(mult=-7, shift=3, bias=INT32_MIN, offset=-(1 << 47), zero_point=INT32_MAX, lo=-5, hi=9),
    RequantParams(mult=INT32_MAX, shift=62, bias=INT32_MAX, offset=(1 << 47) - 1, rounding="half_even"),
    RequantParams(mult=1 << 30, shift=1, rounding="tflite", zero_point=-128, lo=-128, hi=127),
    RequantParams(mult=0, shift=0, rounding="half_up"),
    RequantParams(mult=1518500250, shift=38, bias=-5, zero_point=3, lo=-128, hi=127, rounding="half_away"),
]


@pytest.mark.parametrize("params", _RQ_CASES)
@pytest.mark.parametrize("w_zp", [-128, 0, 127])
def test_requant_round_trip(params, w_zp):
    words = P.encode_requant(params, w_zero_point=w_zp)
    assert len(words) == 8 and words[7] == w_zp & 0xFF         # w_zero_point alone in word 7
    back, zp = P.decode_requant(words)
    assert zp == w_zp
    for f in ("mult", "shift", "bias", "offset", "zero_point", "lo", "hi", "rounding"):
        assert np.array_equal(getattr(back, f), getattr(params, f)), f
    acc = np.array([INT32_MIN, -1000, 0, 77, INT32_MAX])
    np.testing.assert_array_equal(requantize(acc, back), requantize(acc, params))


def test_requant_field_positions():
    p = RequantParams(mult=-2, shift=5, bias=3, offset=-(1 << 40), zero_point=4, lo=-6, hi=7, rounding="half_even")
    w = P.encode_requant(p, w_zero_point=-3)
    off = (-(1 << 40)) & ((1 << 48) - 1)
    assert w == [0xFFFFFFFE, 3, off & 0xFFFFFFFF, (off >> 32) | (5 << 16) | (2 << 22), 4, 0xFFFFFFFA, 7, 0xFD]
    # half_away is code 4: bit 24, the rounding field's third bit
    w = P.encode_requant(RequantParams(mult=1, shift=5, rounding="half_away"))
    assert w[3] == (5 << 16) | (4 << 22) and w[7] == 0


@pytest.mark.parametrize("word, value, message", [
    (3, 5 << 22, "rounding: code 5"), (3, 7 << 22, "rounding: code 7"),
    (3, 1 << 25, "reserved: word 3"), (3, 1 << 31, "reserved: word 3"),
    (7, 1 << 8, "reserved: word 7"), (7, 1 << 31, "reserved: word 7"),
])
def test_requant_reserved_bits_and_codes_are_refused(word, value, message):
    """What WRITE_PARAMS answers BAD_PARAM for: a reserved bit (word 3 bits 31:25, word 7 bits
    31:8) or a rounding code without a mode (5..7); a RUN's add parameters ignore the reserved
    bits but not the codes."""
    w = P.encode_requant(RequantParams(mult=3, shift=4, rounding="floor"))
    w[word] |= value
    with pytest.raises(ValueError, match=f"^{message}"):
        P.decode_requant(w)
    if message.startswith("reserved"):
        assert P.decode_requant(w, reserved=False)[0].rounding == "floor"
    else:
        with pytest.raises(ValueError, match=f"^{message}"):
            P.decode_requant(w, reserved=False)


@pytest.mark.parametrize("patch, what", [
    ({7: 1 << 8}, "reserved"),
    ({3: 1 << 25}, "reserved"),
    ({3: 6 << 22}, "rounding"),
    ({3: 63 << 16}, "shift"),
    ({3: (3 << 22) | (0 << 16), 0: 5}, "shift"),                 # tflite with shift 0
    ({3: (3 << 22) | (5 << 16), 0: 0x80000000}, "mult"),         # tflite with a negative mult
    ({3: (3 << 22) | (5 << 16) | 1}, "offset"),                  # tflite with a non-zero offset
    ({5: 3, 6: 2}, "lo"),
])
def test_decode_requant_refuses_bad_entries(patch, what):
    w = [0] * 8
    for k, v in patch.items():
        w[k] = v
    with pytest.raises(ValueError, match=what):
        P.decode_requant(w)


def test_write_commands_layout():
    acts = np.array([[1, 2, 3, 4, 255], [-1, -2, 0, 0, 0]])
    pk = P.write_acts(7, acts)
    assert pk[:4] == [0x05, 2 + 4, 7, 2]
    assert pk[4:] == [0x04030201, 0xFF, 0x0000FEFF, 0]
    rp = RequantParams(mult=np.array([1, 2]), shift=3)
    pk = P.write_params(4, rp, 2, w_zero_point=[5, -5])
    assert pk[:4] == [0x03, 18, 4, 2] and pk[4] == 1 and pk[12] == 2
    assert pk[11] == 5 and pk[19] == 0xFB                # w_zero_point: word 7 of each entry
    pk = P.write_thresholds(3, [-5, 0, 0], negate=True)
    assert pk == [0x04, 5, 3, 2 | 256, 0xFFFFFFFB, 0, 0]


@pytest.mark.parametrize("call, field", [
    (lambda: P.write_weights(0, 0, np.full((1, 2, 2), 8), weight_bits=4), "tiles"),
    (lambda: P.write_weights(0, 0, np.zeros((2, 2))), "tiles"),
    (lambda: P.write_weights(-1, 0, np.zeros((1, 2, 2), int)), "bank"),
    (lambda: P.write_weights(0, 1 << 32, np.zeros((1, 2, 2), int)), "address"),
    (lambda: P.write_acts(0, np.array([[256]])), "entries"),
    (lambda: P.write_acts(0, np.array([[0.5]])), "entries"),
    (lambda: P.write_residual(0, np.zeros((0, 4), int)), "entries"),
    (lambda: P.write_thresholds(0, [1, 2]), "thresholds"),
    (lambda: P.write_thresholds(0, [3, 2, 1]), "thresholds"),
    (lambda: P.write_thresholds(0, [0, 1, 1 << 31]), "thresholds"),
    (lambda: P.write_params(0, RequantParams(mult=np.array([1, 2]), shift=0), 3), "count"),
    (lambda: P.encode_requant(RequantParams(mult=1, shift=0), w_zero_point=128), "w_zero_point"),
    (lambda: P.encode_requant("x"), "params"),
    (lambda: P.encode_requant(RequantParams(mult=np.array([1, 2]), shift=0)), "channel"),
    (lambda: P.RunDescriptor(m_count=0 - 1, k_steps=1).encode(), "m_count"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, x_signed=False, x_zero_point=-1).encode(), "x_zero_point"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, x_signed=True, x_zero_point=128).encode(), "x_zero_point"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, epilogue="relu").encode(), "epilogue"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, out_bytes=3).encode(), "out_bytes"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, add=True).encode(), "add_branches"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, pool=True, pool_mode="min").encode(), "pool_mode"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, pool=True, pool_taps=0).encode(), "pool_taps"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, pool=True, pool_lo=-40000).encode(), "pool_lo"),
    (lambda: P.RunDescriptor(m_count=1, k_steps=1, residual_base=1 << 31).encode(), "residual_base"),
    (lambda: P.Info(rows=0), "rows"),
    (lambda: P.Info(bus_width=48), "bus_width"),
    (lambda: P.Info(max_pool_taps=256), "max_pool_taps"),
    (lambda: P.Info(max_q=9), "max_q"),
])
def test_encoders_refuse_with_field_named(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_run_descriptor_round_trip_full():
    br = (RequantParams(mult=3, shift=1, zero_point=-2), RequantParams(mult=-4, shift=0, rounding="half_up"))
    out = RequantParams(mult=1 << 30, shift=40, rounding="tflite", lo=-128, hi=127, zero_point=5)
    d = P.RunDescriptor(m_count=12, k_steps=3, n_tiles=2, act_base=5, bank=1, weight_base=7,
                        channel_base=16, x_signed=False, x_zero_point=200, epilogue="threshold",
                        add=True, pool=True, out_bytes=2, residual_base=9, residual_signed=False,
                        add_zero_points=(-7, INT32_MAX), add_left_shift=20, add_sum_shift=13, add_branches=br, add_output=out,
                        pool_mode="avg_nemo", pool_taps=4, pool_d=16, pool_lo=-3, pool_hi=300)
    w = d.encode()
    assert len(w) == 40 and w[38] == (1 << 16) // 4
    back, words = P.RunDescriptor.decode(w)
    assert words == w
    for f in ("m_count", "k_steps", "n_tiles", "act_base", "bank", "weight_base", "channel_base", "x_signed",
              "x_zero_point", "epilogue", "add", "pool", "out_bytes", "residual_base", "residual_signed",
              "add_zero_points", "add_left_shift", "add_sum_shift", "pool_mode", "pool_taps", "pool_d", "pool_lo", "pool_hi"):
        assert getattr(back, f) == getattr(d, f), f
    assert back.pool_mult == 16384
    assert back.encode() == w
    x = np.arange(-50, 50)
    for a, b in zip(back.add_branches + (back.add_output,), br + (out,)):
        np.testing.assert_array_equal(requantize(x, a), requantize(x, b))


def test_run_descriptor_signed_zero_point_encoding():
    assert P.RunDescriptor(m_count=1, k_steps=1, x_signed=True, x_zero_point=-1).encode()[7] == 0xFF01
    assert P.RunDescriptor(m_count=1, k_steps=1, x_signed=False, x_zero_point=255).encode()[7] == 0xFF00


def test_info_round_trip_and_packing():
    i = P.Info(rows=16, cols=4, bus_width=128, weight_bits=4, threshold_channels=300, max_q=4,
               max_pool_taps=64, max_pool_shift=20)
    words = i.encode()
    assert words[10] == 300 | (4 << 16) and words[11] == 64 | (20 << 16)
    assert P.decode_info(words) == i
    assert (i.weight_entry_words, i.act_entry_words, i.residual_entry_words) == (8, 1, 4)
    with pytest.raises(ValueError, match="INFO"):
        P.decode_info(words[:-1])


def test_status_decode():
    s = P.decode_status([5, 2, 3, 1, 2, 3, 0, 0xFFFFFFFF, 1])
    assert s == {"commands": 5, "errors": 2, "last_error": 3, "cycles": 1 | (2 << 32),
                 "busy_cycles": 3, "mac_cycles": 0x1FFFFFFFF}


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=40))
def test_pack_property(bits, vals):
    v = np.array([P.sext(x, bits) for x in vals])
    words = P.pack_elements(v, bits)
    assert words == _oracle_pack(v, bits)
    np.testing.assert_array_equal(P.unpack_elements(words, len(v), bits), v)
