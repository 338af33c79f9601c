"""intdeploy.sim.accel_model: every status code in its documented precedence, padding per bus width, partial
writes and preserved state, RUN arithmetic against golden computed directly, fuzzing.

Expected statuses come from docs/protocol.md, not from the model; expected RUN results from
golden's functions applied to the test's own arrays.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden.add import AddParams, add
from intdeploy.golden.mac_array import linear
from intdeploy.golden.pool import pool_windows
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams, requantize
from intdeploy.golden.threshold import threshold
from intdeploy import wire
from intdeploy.host import protocol as P
from intdeploy.sim.accel_model import AcceleratorModel, response_mismatch

OK, UNKNOWN, TRUNC, BLEN, OOR, BPARAM, BHDR = range(7)
INFO = P.Info(rows=4, cols=4, bus_width=32, weight_depth=8, weight_banks=2, act_depth=16, param_channels=8,
              residual_depth=8, threshold_channels=4, max_q=3, max_pool_taps=4, max_pool_shift=16)


def desc(**kw):
    """RUN descriptor words: m=2, k=1, one tile, then raw word patches ``w<i>=value``."""
    raw = {int(k[1:]): v for k, v in kw.items() if k[0] == "w" and k[1:].isdigit()}
    d = dict(m_count=2, k_steps=1)
    d.update({k: v for k, v in kw.items() if not (k[0] == "w" and k[1:].isdigit())})
    words = P.RunDescriptor(**d).encode()
    for i, v in raw.items():
        words[i] = v & P.MASK32
    return words


def run_pk(**kw):
    return [0x07, 40] + desc(**kw)


def entry(**kw):
    e = [0] * 8
    for k, v in kw.items():
        e[int(k[1:])] = v & P.MASK32
    return e


_RQ = RequantParams(mult=3, shift=1)
_BAD_RQ = entry(w5=3, w6=2)                                  # lo > hi
_ADD = dict(add=True, add_branches=(_RQ, _RQ), add_output=_RQ)

# (name, packet words, expected status) -- bus width 32: every word is a beat.
TABLE = [
    # word 0
    ("opcode 0", [0x00, 0], UNKNOWN),
    ("opcode 9", [0x09, 0], UNKNOWN),
    ("unknown wins over reserved bits", [0xFFFF00FF, 0], UNKNOWN),
    ("unknown on a one-word packet", [0x0A], UNKNOWN),
    ("reserved bit 16", [0x10001, 0], BHDR),
    ("reserved bit 31", [0x80000008, 0], BHDR),
    ("bad header on a one-word packet", [0x10001], BHDR),
    ("header word only", [0x01], TRUNC),
    # word 1
    ("INFO length 1", [0x01, 1, 0], BLEN),
    ("length checked before truncation", [0x01, 1], BLEN),
    ("STATUS huge length", [0x08, 0xFFFFFFFF], BLEN),
    ("RUN length 39", [0x07, 39] + desc()[:39], BLEN),
    ("RUN length 41", [0x07, 41] + desc() + [0], BLEN),
    ("ACTS length 1 below fixed fields", [0x05, 1, 0], BLEN),
    ("ACTS length 0", [0x05, 0], BLEN),
    ("RESIDUAL length 1", [0x06, 1, 0], BLEN),
    ("WEIGHTS length 2", [0x02, 2, 0, 0], BLEN),
    ("PARAMS length 1", [0x03, 1, 0], BLEN),
    ("THRESHOLDS length 1", [0x04, 1, 0], BLEN),
    # INFO / STATUS
    ("INFO", [0x01, 0], OK),
    ("STATUS", [0x08, 0], OK),
    ("INFO extra beat", [0x01, 0, 0], BLEN),
    # WRITE_ACTS / WRITE_RESIDUAL / WRITE_WEIGHTS
    ("ACTS address = depth", [0x05, 3, 16, 1, 0], OOR),
    ("ACTS address huge", [0x05, 3, 0xFFFFFFFF, 1, 0], OOR),
    ("ACTS count 0", [0x05, 2, 0, 0], OOR),
    ("ACTS address + count > depth (before length)", [0x05, 3, 15, 2, 0], OOR),
    ("ACTS count huge: no 32-bit wrap", [0x05, 3, 1, 0xFFFFFFFF, 0], OOR),
    ("ACTS length disagrees with count", [0x05, 4, 15, 1, 0, 0], BLEN),
    ("ACTS last entry", [0x05, 3, 15, 1, 0x04030201], OK),
    ("ACTS full buffer", [0x05, 18, 0, 16] + [7] * 16, OK),
    ("ACTS TLAST before count", [0x05, 3, 0], TRUNC),
    ("ACTS TLAST inside entries", [0x05, 4, 0, 2, 1], TRUNC),
    ("ACTS bad address on the TLAST word", [0x05, 3, 99], OOR),
    ("ACTS extra beat", [0x05, 3, 0, 1, 5, 0], BLEN),
    ("RESIDUAL address = depth", [0x06, 3, 8, 1, 0], OOR),
    ("RESIDUAL last entry", [0x06, 3, 7, 1, 0], OK),
    ("RESIDUAL count over", [0x06, 4, 7, 2, 0, 0], OOR),
    ("WEIGHTS bank 2", [0x02, 7, 2, 0, 1, 0, 0, 0, 0], OOR),
    ("WEIGHTS bank huge", [0x02, 7, 0xFFFFFFFF, 0, 1, 0, 0, 0, 0], OOR),
    ("WEIGHTS bank checked before address", [0x02, 7, 2, 99, 1, 0, 0, 0, 0], OOR),
    ("WEIGHTS address 8", [0x02, 7, 1, 8, 1, 0, 0, 0, 0], OOR),
    ("WEIGHTS last entry of bank 1", [0x02, 7, 1, 7, 1, 1, 2, 3, 4], OK),
    ("WEIGHTS two entries past the end", [0x02, 11, 0, 7, 2] + [0] * 8, OOR),
    ("WEIGHTS length for 2 entries, count 1", [0x02, 11, 0, 0, 1] + [0] * 8, BLEN),
    ("WEIGHTS TLAST inside an entry", [0x02, 7, 0, 0, 1, 1, 2], TRUNC),
    # WRITE_PARAMS
    ("PARAMS first channel 8", [0x03, 10, 8, 1] + [0] * 8, OOR),
    ("PARAMS count 0", [0x03, 2, 0, 0], OOR),
    ("PARAMS past the end", [0x03, 18, 7, 2] + [0] * 16, OOR),
    ("PARAMS length", [0x03, 11, 0, 1] + [0] * 9, BLEN),
    ("PARAMS all-zero entry", [0x03, 10, 0, 1] + [0] * 8, OK),
    ("PARAMS reserved word 7", [0x03, 10, 0, 1] + entry(w7=1 << 8), BPARAM),
    ("PARAMS reserved word 3", [0x03, 10, 0, 1] + entry(w3=1 << 25), BPARAM),
    ("PARAMS rounding code 5", [0x03, 10, 0, 1] + entry(w3=5 << 22), BPARAM),
    ("PARAMS half_away, w_zero_point -1", [0x03, 10, 0, 1] + entry(w3=4 << 22, w7=0xFF), OK),
    ("PARAMS shift 63", [0x03, 10, 0, 1] + entry(w3=63 << 16), BPARAM),
    ("PARAMS shift 62", [0x03, 10, 0, 1] + entry(w3=62 << 16), OK),
    ("PARAMS tflite shift 0", [0x03, 10, 0, 1] + entry(w3=3 << 22), BPARAM),
    ("PARAMS tflite negative mult", [0x03, 10, 0, 1] + entry(w0=-1, w3=(3 << 22) | (1 << 16)), BPARAM),
    ("PARAMS tflite offset", [0x03, 10, 0, 1] + entry(w2=1, w3=(3 << 22) | (1 << 16)), BPARAM),
    ("PARAMS tflite offset high bits", [0x03, 10, 0, 1] + entry(w3=(3 << 22) | (1 << 16) | 1), BPARAM),
    ("PARAMS tflite valid", [0x03, 10, 0, 1] + entry(w0=INT32_MAX, w3=(3 << 22) | (62 << 16)), OK),
    ("PARAMS negative mult floor", [0x03, 10, 0, 1] + entry(w0=INT32_MIN, w3=(1 << 22)), OK),
    ("PARAMS lo > hi", [0x03, 10, 0, 1] + _BAD_RQ, BPARAM),
    ("PARAMS lo == hi, w_zp -128", [0x03, 10, 0, 1] + entry(w7=0x80, w5=-5, w6=-5), OK),
    ("PARAMS second channel bad", [0x03, 18, 0, 2] + [0] * 8 + _BAD_RQ, BPARAM),
    ("PARAMS TLAST inside a channel", [0x03, 10, 0, 1, 0, 0, 0], TRUNC),
    ("PARAMS bad channel on the TLAST word", [0x03, 18, 0, 2] + _BAD_RQ, BPARAM),
    # WRITE_THRESHOLDS
    ("TH channel 4", [0x04, 3, 4, 1, 0], OOR),
    ("TH channel checked before q", [0x04, 3, 4, 0, 0], OOR),
    ("TH q 0", [0x04, 2, 0, 0], BPARAM),
    ("TH q 4 > max_q", [0x04, 17, 0, 4] + list(range(15)), BPARAM),
    ("TH q checked before length", [0x04, 4, 0, 9, 0, 0], BPARAM),
    ("TH q word: other bits ignored", [0x04, 3, 0, 0xFFFFFEF1, 5], OK),
    ("TH length", [0x04, 4, 0, 1, 5, 6], BLEN),
    ("TH decreasing", [0x04, 5, 0, 2, 1, 0, 2], BPARAM),
    ("TH equal neighbours", [0x04, 5, 0, 2, 1, 1, 1], OK),
    ("TH signed compare", [0x04, 5, 0, 2, INT32_MAX, INT32_MIN & P.MASK32, 0], BPARAM),
    ("TH signed increasing", [0x04, 5, 0, 2, INT32_MIN & P.MASK32, P.MASK32, 0], OK),
    ("TH TLAST inside thresholds", [0x04, 5, 0, 2, 1], TRUNC),
    ("TH extra beat", [0x04, 3, 0, 1, 5, 0], BLEN),
    # RUN, rule by rule
    ("RUN", run_pk(), OK),
    ("RUN TLAST before the last descriptor word", [0x07, 40] + desc(w0=0)[:39], TRUNC),
    ("RUN extra beat", run_pk() + [0], BLEN),
    ("RUN m 0", run_pk(w0=0), OOR),
    ("RUN m 65536", run_pk(w0=65536), OOR),
    ("RUN k 0", run_pk(w1=0), OOR),
    ("RUN n 0", run_pk(w2=0), OOR),
    ("RUN n 65536", run_pk(w2=65536), OOR),
    ("RUN activations past the end", run_pk(act_base=15), OOR),
    ("RUN activations to the end", run_pk(act_base=14), OK),
    ("RUN act_base huge", run_pk(w3=0xFFFFFFFF), OOR),
    ("RUN m*k > act_depth", run_pk(m_count=17), OOR),
    ("RUN bank 2", run_pk(w4=2), OOR),
    ("RUN weights past the end", run_pk(weight_base=8), OOR),
    ("RUN weights to the end", run_pk(weight_base=7, bank=1), OK),
    ("RUN n*k weights past the end", run_pk(n_tiles=3, k_steps=3, m_count=1), OOR),
    ("RUN parameter channels past the end", run_pk(channel_base=5), OOR),
    ("RUN parameter channels to the end", run_pk(channel_base=4), OK),
    ("RUN threshold channels past the end", run_pk(channel_base=4, epilogue="threshold"), OOR),
    ("RUN threshold channels", run_pk(epilogue="threshold"), OK),
    ("RUN epilogue 2", run_pk(w8=2), BPARAM),
    ("RUN epilogue 3", run_pk(w8=3), BPARAM),
    ("RUN out_bytes code 3", run_pk(w8=3 << 8), BPARAM),
    ("RUN out_bytes 4", run_pk(out_bytes=4), OK),
    ("RUN channel range before epilogue code", run_pk(w6=5, w8=2), OOR),
    ("RUN epilogue code before add", run_pk(**_ADD, residual_base=7, w8=2 | (1 << 4)), BPARAM),
    ("RUN add", run_pk(**_ADD), OK),
    ("RUN add residual past the end", run_pk(**_ADD, residual_base=7), OOR),
    ("RUN add residual n*m", run_pk(**_ADD, n_tiles=2, m_count=5), OOR),
    ("RUN add residual range before requantizers", run_pk(**_ADD, residual_base=7, **{"w18": 3, "w19": 2}), OOR),
    ("RUN add branch a lo > hi", run_pk(**_ADD, **{"w18": 3, "w19": 2}), BPARAM),
    ("RUN add branch b shift 63", run_pk(**_ADD, **{"w24": 63 << 16}), BPARAM),
    ("RUN add output tflite shift 0", run_pk(**_ADD, **{"w32": 3 << 22}), BPARAM),
    ("RUN add word 7 and w_zp ignored", run_pk(**_ADD, **{"w20": 5, "w28": 5, "w36": 5, "w16": 0x7F030000}), OK),
    ("RUN add word 12 bits beyond left_shift and sum_shift ignored", run_pk(**_ADD, w12=0xFFFFE0E3), OK),
    ("RUN add sum_shift 31", run_pk(**_ADD, w12=31 << 8), OK),
    ("RUN no add: add words ignored", run_pk(**{"w18": 3, "w19": 2, "w9": 0xFFFFFFFF}), OK),
    ("RUN pool max", run_pk(pool=True, pool_taps=2), OK),
    ("RUN pool mode 3", run_pk(pool=True, pool_taps=2, w37=3 | (2 << 8)), BPARAM),
    ("RUN pool taps 0", run_pk(pool=True, w37=0), BPARAM),
    ("RUN pool taps 5 > max", run_pk(pool=True, m_count=5, w37=5 << 8), BPARAM),
    ("RUN pool m not a multiple of taps", run_pk(pool=True, m_count=3, pool_taps=2), BPARAM),
    ("RUN pool max ignores mult, lo, hi", run_pk(pool=True, pool_taps=2, w38=7, w39=0x0000FFFF), OK),
    ("RUN avg_nemo", run_pk(pool=True, m_count=4, pool_taps=4, pool_mode="avg_nemo", pool_d=16), OK),
    ("RUN avg_nemo d > max_pool_shift", run_pk(pool=True, m_count=4, pool_taps=4, pool_mode="avg_nemo", pool_d=17), BPARAM),
    ("RUN avg_nemo mult - 1", run_pk(pool=True, m_count=3, pool_taps=3, pool_mode="avg_nemo", pool_d=16, pool_mult=21844), BPARAM),
    ("RUN avg_nemo mult + 1", run_pk(pool=True, m_count=3, pool_taps=3, pool_mode="avg_nemo", pool_d=16, pool_mult=21846), BPARAM),
    ("RUN avg_nemo mult 3 taps", run_pk(pool=True, m_count=3, pool_taps=3, pool_mode="avg_nemo", pool_d=16), OK),
    ("RUN avg_nemo 2**d < taps", run_pk(pool=True, m_count=4, pool_taps=4, pool_mode="avg_nemo", pool_d=1, pool_mult=0), BPARAM),
    ("RUN avg_nemo 2**d == taps", run_pk(pool=True, m_count=4, pool_taps=4, pool_mode="avg_nemo", pool_d=2), OK),
    ("RUN avg_tflite lo > hi", run_pk(pool=True, pool_taps=2, pool_mode="avg_tflite", pool_lo=1, pool_hi=0), BPARAM),
    ("RUN avg_tflite lo == hi", run_pk(pool=True, pool_taps=2, pool_mode="avg_tflite", pool_lo=-1, pool_hi=-1), OK),
    ("RUN add error before pool error", run_pk(**_ADD, residual_base=7, pool=True, w37=3), OOR),
    ("RUN reserved descriptor bits ignored",
     run_pk(w7=0x00FE, w8=0xFFFFFC00 | 0b11001100), OK),
    # row_step: rows share entries (the last one read is act_base + (m - 1) * row_step + k - 1)
    ("RUN row_step: last entry at act_depth - 1", run_pk(m_count=5, k_steps=4, row_step=3), OK),
    ("RUN row_step: one entry beyond", run_pk(m_count=5, k_steps=4, row_step=3, act_base=1), OOR),
    ("RUN row_step > k_steps fits", run_pk(m_count=2, k_steps=1, row_step=15), OK),
    ("RUN row_step > k_steps beyond", run_pk(m_count=2, k_steps=1, row_step=16), OOR),
    ("RUN row_step huge", run_pk(m_count=2, row_step=0xFFFF), OOR),
    ("RUN row_step 0 is k_steps", run_pk(m_count=4, k_steps=4, w7=0), OK),
    ("RUN row_step 0 is k_steps, beyond", run_pk(m_count=5, k_steps=4, w7=0), OOR),
]


@pytest.mark.parametrize("name, words, expected", TABLE, ids=[t[0] for t in TABLE])
def test_status_table(name, words, expected):
    model = AcceleratorModel(INFO)
    beats = [(w, i == len(words) - 1) for i, w in enumerate(words)]
    out = P.split_packets(model.process(beats), 32)
    assert len(out) == 1
    r = P.parse_response(out[0])
    assert r.status == expected, f"{name}: {r.status_name}, expected {P.STATUS_NAMES[expected]}"
    assert r.opcode == words[0] & 0xFF and r.tag == (words[0] >> 8) & 0xFF
    if expected:
        assert r.payload == []


def test_tag_echoed_and_counters():
    model = AcceleratorModel(INFO)
    rs = model.transact([P.info(tag=7), [0x2A09, 0], run_pk(w0=0), P.status(tag=255)])
    assert [(r.tag, r.status) for r in rs] == [(7, OK), (0x2A, UNKNOWN), (0, OOR), (255, OK)]
    assert rs[0].payload == INFO.encode()
    s = P.decode_status(rs[3].payload)
    assert (s["commands"], s["errors"], s["last_error"], s["mac_cycles"]) == (3, 2, OOR, 0)
    rs = model.transact([run_pk(m_count=3, k_steps=2, n_tiles=2), P.status()])
    s = P.decode_status(rs[1].payload)
    assert (s["commands"], s["errors"], s["last_error"], s["mac_cycles"]) == (5, 2, OOR, 12)


def _beats(words, bus_width):
    """Beats of ``words`` (whose length is a multiple of the beat) with TLAST on the last."""
    per = bus_width // 32
    assert len(words) % per == 0
    beats = [b for b, _ in P.to_beats(words, bus_width)]
    return [(b, i == len(beats) - 1) for i, b in enumerate(beats)]


G = 0xDEADBEEF        # garbage in padding words


@pytest.mark.parametrize("bus_width, words, expected", [
    (64, [0x01, 0], OK),
    (64, [0x01, 0, 0, 0], BLEN),                         # a further beat after the payload's beat
    (128, [0x01, 0, G, G], OK),                          # padding is not checked
    (128, [0x01, 0, G, G, 0, 0, 0, 0], BLEN),
    (128, [0x05, 3, 0, 1, 0x01020304, G, G, G], OK),
    (128, [0x05, 3, 0, 1], TRUNC),                       # checks of the TLAST beat, then TRUNCATED
    (128, [0x05, 3, 99, 1], OOR),                        # a failing word of the TLAST beat wins
    (64, [0x05, 3, 0, 1, 0x01020304, G], OK),
    (64, [0x05, 3, 0, 1, 0x01020304, G, 0, 0], BLEN),
    (64, [0x05, 4, 0, 2, 1, 2], OK),                     # payload ends exactly at the beat's end
    (64, [0x05, 4, 0, 2, 1, 2, 0, 0], BLEN),
    (128, [0x07, 40] + desc() + [G, G], OK),
    (128, [0x07, 40] + desc()[:38], TRUNC),
    (128, [0x02, 7, 0, 0, 1, 1, 2, 3, 4, G, G, G], OK),
    (256, [0x04, 3, 0, 1, 5, G, G, G], OK),
    (256, [0x04, 3, 0, 1, G, G, G, G] + [0] * 8, BLEN),
])
def test_padding_rules(bus_width, words, expected):
    info = P.Info(**{**INFO.__dict__, "bus_width": bus_width})
    model = AcceleratorModel(info)
    out = model.process(_beats(words, bus_width))
    r = [P.parse_response(p) for p in P.split_packets(out, bus_width)]
    assert len(r) == 1 and r[0].status == expected, r[0]
    assert all(last == (i == len(out) - 1) for i, (_, last) in enumerate(out))


def test_transact_equals_process_on_beats():
    setup, run, _ = _setup_and_run(INFO)
    pks = setup + [run, [0x09, 0], run_pk(w0=0), P.status()]
    a = AcceleratorModel(INFO).transact(pks)
    model = AcceleratorModel(INFO)
    out = model.process([b for pk in pks for b in P.to_beats(pk, 32)])
    assert [r.words() for r in a] == P.split_packets(out, 32)
    model.process([(1, False)])
    with pytest.raises(ValueError, match="TLAST"):
        model.transact([P.info()])


def test_packet_may_span_process_calls():
    model = AcceleratorModel(INFO)
    beats = _beats(P.info(tag=3), 32)
    assert model.process(beats[:1]) == []
    out = model.process(beats[1:])
    assert P.parse_response(P.split_packets(out)[0]).tag == 3


# --- RUN arithmetic against golden ----------------------------------------------------------------

def _load(x, w, info, act_base=0, bank=0, weight_base=0):
    """Packets writing GEMM operands x (M, K) and w (N, K) in the documented layout."""
    R, C = info.rows, info.cols
    m, kk = x.shape
    k = kk // C
    nt = w.shape[0] // R
    tiles = w.reshape(nt, R, k, C).transpose(0, 2, 1, 3).reshape(nt * k, R, C)    # entry n*k + s
    return [P.write_acts(act_base, x.reshape(m * k, C)),
            P.write_weights(bank, weight_base, tiles, info.weight_bits)]


def _values(resp, count, out_bytes=1, signed=True):
    assert resp.ok, resp
    assert len(resp.payload) == -(-count * out_bytes // 4)
    return P.unpack_elements(resp.payload, count, 8 * out_bytes, signed)


def _wrap32(v):
    return np.array([((int(a) + (1 << 31)) % (1 << 32)) - (1 << 31) for a in np.ravel(v)]).reshape(np.shape(v))


def _requant_per_channel(acc, chans):
    return np.stack([requantize(acc[:, j], p) for j, p in enumerate(chans)], axis=1)


@pytest.mark.parametrize("x_signed", [True, False])
def test_run_requant_mixed_rounding_tiles_and_offsets(x_signed):
    info = P.Info(rows=4, cols=4, act_depth=64, weight_depth=16, param_channels=16)
    rng = np.random.default_rng(1)
    M, K, N = 5, 12, 8
    x = rng.integers(-128, 128, (M, K)) if x_signed else rng.integers(0, 256, (M, K))
    x_zp = -3 if x_signed else 200
    w = rng.integers(-128, 128, (N, K))
    w_zp = rng.integers(-128, 128, N)
    modes = ["floor", "half_up", "half_even", "tflite", "half_away", "half_away", "tflite", "floor"]
    chans = [RequantParams(mult=int(rng.integers(1 << 29, 1 << 30)), shift=int(rng.integers(41, 44)),
                           bias=int(rng.integers(-5000, 5000)), zero_point=int(rng.integers(-10, 10)),
                           lo=-100, hi=90, rounding=r) for r in modes]
    pk = _load(x, w, info, act_base=3, bank=1, weight_base=2)
    pk += [P.write_param_entries(4, [P.encode_requant(p, w_zero_point=int(z)) for p, z in zip(chans, w_zp)])]
    pk += [P.run(P.RunDescriptor(m_count=M, k_steps=3, n_tiles=2, act_base=3, bank=1, weight_base=2,
                                 channel_base=4, x_signed=x_signed, x_zero_point=x_zp))]
    rs = AcceleratorModel(info).transact(pk)
    got = _values(rs[-1], 2 * M * 4).reshape(2, M, 4).transpose(1, 0, 2).reshape(M, N)
    acc = linear(x, w, x_zp, w_zp)
    np.testing.assert_array_equal(got, _requant_per_channel(acc, chans))
    assert np.mean((got > -100) & (got < 90)) > 0.5          # mostly unclipped: rounding is visible


@pytest.mark.parametrize("bits", [4, 2])
def test_run_sub_byte_weights(bits):
    info = P.Info(rows=4, cols=8, weight_bits=bits)
    rng = np.random.default_rng(bits)
    x = rng.integers(-128, 128, (6, 16))
    w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (4, 16))
    w_zp = np.array([-128, -1, 0, 127])
    rq = RequantParams(mult=1, shift=0)
    pk = _load(x, w, info) + [P.write_params(0, rq, 4, w_zero_point=w_zp),
                              P.run(P.RunDescriptor(m_count=6, k_steps=2, out_bytes=4))]
    got = _values(AcceleratorModel(info).transact(pk)[-1], 24, 4).reshape(6, 4)
    np.testing.assert_array_equal(got, linear(x, w, 0, w_zp))


def test_run_accumulator_wraps_int32():
    info = P.Info(rows=1, cols=64, act_depth=700, weight_depth=700, param_channels=1)
    K = 64 * 600                                     # 255 * 255 * K > 2**31
    x = np.full((1, K), -128)
    w = np.full((1, K), 127)
    pk = _load(x, w, info) + [P.write_params(0, RequantParams(mult=1, shift=0), 1, w_zero_point=-128),
                              P.run(P.RunDescriptor(m_count=1, k_steps=600, x_zero_point=127, out_bytes=4))]
    got = _values(AcceleratorModel(info).transact(pk)[-1], 1, 4)
    exact = (-128 - 127) * (127 + 128) * K
    assert exact < INT32_MIN
    assert int(got[0]) == _wrap32([exact])[0]


def test_run_thresholds_per_channel_q_negate_disabled():
    info = P.Info(rows=4, cols=4, threshold_channels=8, max_q=3)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (40, 4))
    x[:14, 2] = [100, 101, 99, 50, 51, 49, 0, 1, -1, -5, -4, -6, -100, -128]   # at and around -thresholds
    x[:3, 0] = [0, 1, -1]
    w = np.eye(4, dtype=np.int64)
    acc = linear(x, w)
    ths = {1: np.array([0]), 2: np.sort(rng.integers(-100, 100, 3)),
           3: np.array([-100, -50, -50, 0, 5, 5, 100])}
    pk = _load(x, w, info) + [P.write_params(4, RequantParams(mult=0, shift=0), 4),
                              P.write_thresholds(4, ths[1], negate=True), P.write_thresholds(5, ths[2]),
                              P.write_thresholds(6, ths[3], negate=True),
                              P.run(P.RunDescriptor(m_count=40, k_steps=1, channel_base=4, epilogue="threshold"))]
    got = _values(AcceleratorModel(info).transact(pk)[-1], 160).reshape(40, 4)
    exp = np.stack([threshold(acc[:, :1], ths[1][None], np.array([True]))[:, 0],
                    threshold(acc[:, 1:2], ths[2][None])[:, 0],
                    threshold(acc[:, 2:3], ths[3][None], np.array([True]))[:, 0],
                    np.zeros(40, dtype=np.int64)], axis=1)             # channel 7 never written: disabled
    np.testing.assert_array_equal(got, exp)
    assert set(got[:, 2].tolist()) == set(range(8)) - {2, 5}      # repeated thresholds skip levels


@pytest.mark.parametrize("style", ["nemo", "tflite"])
@pytest.mark.parametrize("res_signed", [True, False])
def test_run_add(style, res_signed):
    info = P.Info(rows=4, cols=4, residual_depth=32)
    rng = np.random.default_rng(7)
    M = 6
    x = rng.integers(-128, 128, (M, 8))
    w = rng.integers(-20, 20, (8, 8))
    b = rng.integers(-128, 128, (M, 8)) if res_signed else rng.integers(0, 256, (M, 8))
    rq = RequantParams(mult=1 << 30, shift=38, rounding="tflite", lo=-128, hi=127, zero_point=3)
    ap = (AddParams.nemo(7302, 16384, 14) if style == "nemo"
          else AddParams.tflite(0.05, 3, 0.02, 128 if not res_signed else -5, 0.06, -2))
    d = P.RunDescriptor(m_count=M, k_steps=2, n_tiles=2, add=True, residual_base=4, residual_signed=res_signed,
                        add_zero_points=ap.in_zero_points, add_left_shift=ap.left_shift,
                        add_branches=ap.branches, add_output=ap.output, out_bytes=4)
    res_entries = np.concatenate([b[:, 0:4], b[:, 4:8]])                # entry n*M + m
    pk = _load(x, w, info) + [P.write_params(0, rq, 8), P.write_residual(4, res_entries), P.run(d)]
    got = _values(AcceleratorModel(info).transact(pk)[-1], 2 * M * 4, 4).reshape(2, M, 4)
    got = got.transpose(1, 0, 2).reshape(M, 8)
    exp = add(requantize(linear(x, w), rq), b, ap)
    np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("mode", ["max", "avg_nemo", "avg_tflite"])
@pytest.mark.parametrize("taps", [1, 3, 4])
def test_run_pool(mode, taps):
    info = P.Info(rows=4, cols=4, max_pool_taps=4)
    rng = np.random.default_rng(taps)
    M = 4 * taps
    x = rng.integers(0, 256, (M, 4))
    w = np.eye(4, dtype=np.int64) * rng.integers(1, 3, 4)[:, None]       # values up to 510: 9-bit wrap
    ident = RequantParams(mult=1, shift=0)
    d = P.RunDescriptor(m_count=M, k_steps=1, x_signed=False, pool=True, pool_mode=mode, pool_taps=taps,
                        pool_d=16, pool_lo=-100, pool_hi=120, out_bytes=2)
    pk = _load(x, w, info) + [P.write_params(0, ident, 4), P.run(d)]
    got = _values(AcceleratorModel(info).transact(pk)[-1], 4 * 4, 2).reshape(4, 4)
    y = linear(x, w)
    taps9 = ((y + 256) % 512) - 256                                      # the pool unit's 9-bit taps
    assert np.any(taps9 != y)
    kw = {"avg_nemo": dict(d=16), "avg_tflite": dict(lo=-100, hi=120)}.get(mode, {})
    np.testing.assert_array_equal(got, pool_windows(taps9.reshape(4, taps, 4), mode, **kw))


@pytest.mark.parametrize("out_bytes", [1, 2, 4])
def test_run_output_truncation_and_order(out_bytes):
    info = P.Info(rows=4, cols=4)
    x = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    w = np.array([[i * 1000003 % 127 - 60 for i in range(4)] for _ in range(8)]) + np.arange(8)[:, None]
    rq = RequantParams(mult=np.arange(1, 9) * 99991, shift=0)
    pk = _load(x, w, info) + [P.write_params(0, rq, 8), P.run(P.RunDescriptor(m_count=3, k_steps=1, n_tiles=2,
                                                                                out_bytes=out_bytes))]
    resp = AcceleratorModel(info).transact(pk)[-1]
    full = requantize(linear(x, w), rq)                                  # (3, 8), beyond 16 bits
    order = [int(full[m, n * 4 + r]) for n in range(2) for m in range(3) for r in range(4)]
    mask = (1 << (8 * out_bytes)) - 1
    assert resp.payload == P.pack_elements([v & mask for v in order], 8 * out_bytes)
    by = b"".join(int(v & mask).to_bytes(out_bytes, "little") for v in order)
    by += b"\0" * (-len(by) % 4)
    assert resp.payload == [int.from_bytes(by[i:i + 4], "little") for i in range(0, len(by), 4)]


# --- state -----------------------------------------------------------------------------------------

def _setup_and_run(info):
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (4, 8))
    w = rng.integers(-128, 128, (4, 8))
    rq = RequantParams(mult=rng.integers(1, 1 << 16, 4), shift=12, lo=-128, hi=127, rounding="half_even")
    setup = _load(x, w, info) + [P.write_params(0, rq, 4)]
    run = P.run(P.RunDescriptor(m_count=4, k_steps=2))
    return setup, run, requantize(linear(x, w), rq)


NO_STORE_ERRORS = [t[1] for t in TABLE if t[2] != OK and not t[0].startswith(("ACTS TLAST inside",
                   "PARAMS second", "WEIGHTS TLAST", "TH ", "ACTS extra", "PARAMS bad channel on"))]


def test_threshold_run_channel_base_must_be_aligned():
    """A threshold RUN's channel_base must be a multiple of the largest power of two dividing R
    (4 here): each threshold channel is stored in the memories of the lane that reads it. A
    requant RUN may start anywhere."""
    info = P.Info(rows=4, cols=4, bus_width=32, param_channels=16, threshold_channels=16)
    for base, epilogue, status in ((2, "threshold", BPARAM), (6, "threshold", BPARAM), (4, "threshold", OK),
                                   (2, "requant", OK)):
        r = AcceleratorModel(info).transact([run_pk(channel_base=base, epilogue=epilogue)])[-1]
        assert r.status == status, (base, epilogue, r)
    assert [wire.threshold_alignment(r) for r in (1, 3, 4, 5, 6, 8, 12, 16)] == [1, 1, 4, 1, 2, 8, 4, 16]


def test_state_preserved_after_errors():
    info = INFO
    setup, run, exp = _setup_and_run(info)
    model = AcceleratorModel(info)
    model.transact(setup)
    before = (model.weights.copy(), model.acts.copy(), model.params.copy(), model.residual.copy())
    rs = model.transact(NO_STORE_ERRORS + [run])
    assert all(not r.ok for r in rs[:-1])
    np.testing.assert_array_equal(_values(rs[-1], 16).reshape(4, 4), exp)
    for a, b in zip(before, (model.weights, model.acts, model.params, model.residual)):
        np.testing.assert_array_equal(a, b)


def test_partial_write_keeps_completed_entries():
    info = P.Info(rows=4, cols=8, bus_width=32)          # one word per beat: the packet ends mid-entry
    model = AcceleratorModel(info)
    old = np.arange(24).reshape(3, 8)
    new = 100 + np.arange(24).reshape(3, 8)
    model.transact([P.write_acts(0, old)])
    pk = P.write_acts(0, new)
    r = model.transact([pk[:4 + 2 + 2 + 1]])[0]          # header, address, count, 2 entries, 1 word
    assert r.status == TRUNC
    # black box: a RUN reading the three rows with identity weights shows the rows
    w = np.eye(4, 8, dtype=np.int64)
    rs = model.transact(_load(np.zeros((1, 8), int), w, info)[1:] + [
        P.write_params(0, RequantParams(mult=1, shift=0), 4),
        P.run(P.RunDescriptor(m_count=3, k_steps=1, x_signed=False, out_bytes=2))])
    got = _values(rs[-1], 12, 2).reshape(3, 4)
    np.testing.assert_array_equal(got, np.concatenate([new[:2, :4], old[2:, :4]]))


def test_params_stored_up_to_the_bad_channel():
    model = AcceleratorModel(INFO)
    good = [P.encode_requant(RequantParams(mult=k + 1, shift=0)) for k in range(3)]
    model.transact([P.write_param_entries(0, [[0] * 7 + [0]] * 3)])
    r = model.transact([P.write_param_entries(0, [good[0], _BAD_RQ, good[2]])])[0]
    assert r.status == BPARAM
    assert model.params[0].tolist() == good[0]
    assert model.params[1].tolist() == [0] * 8 and model.params[2].tolist() == [0] * 8


def _threshold_outputs(model, info):
    x = np.array([[-5, 0, 0, 0], [0, 0, 0, 0], [7, 0, 0, 0], [100, 0, 0, 0]])
    w = np.zeros((4, 4), dtype=np.int64)
    w[0, 0] = 1
    rs = model.transact(_load(x, w, info) + [P.run(P.RunDescriptor(m_count=4, k_steps=1, epilogue="threshold"))])
    return _values(rs[-1], 16).reshape(4, 4)[:, 0].tolist()


def test_threshold_write_failure_disables_channel():
    info = INFO
    model = AcceleratorModel(info)
    model.transact([P.write_params(0, RequantParams(mult=0, shift=0), 4), P.write_thresholds(0, [-5, 0, 7])])
    assert _threshold_outputs(model, info) == [1, 2, 3, 3]
    # fails before the first threshold (length): channel unchanged
    assert model.transact([[0x04, 4, 0, 2, 1, 2]])[0].status == BLEN
    assert _threshold_outputs(model, info) == [1, 2, 3, 3]
    # fails at the q word (TLAST): unchanged
    assert model.transact([[0x04, 5, 0, 2]])[0].status == TRUNC
    assert _threshold_outputs(model, info) == [1, 2, 3, 3]
    # a decreasing threshold after one was stored: disabled (outputs 0)
    assert model.transact([[0x04, 5, 0, 2, 50, 1, 60]])[0].status == BPARAM
    assert _threshold_outputs(model, info) == [0, 0, 0, 0]
    model.transact([P.write_thresholds(0, [0])])
    assert _threshold_outputs(model, info) == [0, 1, 1, 1]
    # truncated after the first threshold: disabled
    assert model.transact([[0x04, 5, 0, 2, -100]])[0].status == TRUNC
    assert _threshold_outputs(model, info) == [0, 0, 0, 0]
    # complete, but a further beat: disabled as well
    model.transact([P.write_thresholds(0, [0])])
    assert model.transact([P.write_thresholds(0, [-5, 0, 7]) + [0]])[0].status == BLEN
    assert _threshold_outputs(model, info) == [0, 0, 0, 0]


def test_reset_keeps_buffers_disables_thresholds_clears_counters():
    setup, run, exp = _setup_and_run(INFO)
    model = AcceleratorModel(INFO)
    model.transact(setup + [P.write_thresholds(0, [-5, 0, 7]), [0x09, 0]])
    model.process([(P.info()[0], False)])            # a packet in flight is dropped by the reset
    model.reset()
    rs = model.transact([run, P.status()])
    np.testing.assert_array_equal(_values(rs[0], 16).reshape(4, 4), exp)
    s = P.decode_status(rs[1].payload)
    assert (s["commands"], s["errors"], s["last_error"], s["mac_cycles"]) == (1, 0, 0, 8)
    assert model.th_q.tolist() == [0, 0, 0, 0]


def test_response_mismatch():
    a = P.Response(8, 1, 0, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert response_mismatch(a, P.Response(8, 1, 0, [1, 2, 3, 0, 0, 0, 0, 8, 9])) is None
    assert "payload word 7" in response_mismatch(a, P.Response(8, 1, 0, [1, 2, 3, 4, 5, 6, 7, 0, 9]))
    assert "tag" in response_mismatch(a, P.Response(8, 2, 0, a.payload))
    r = P.Response(7, 0, 0, [1, 2])
    assert "payload word 1" in response_mismatch(r, P.Response(7, 0, 0, [1, 3]))
    assert "length" in response_mismatch(r, P.Response(7, 0, 0, [1]))


# --- fuzzing -----------------------------------------------------------------------------------------

_words = st.integers(0, P.MASK32)
_small = st.integers(0, 20)


@st.composite
def random_packet(draw):
    kind = draw(st.sampled_from(["random", "header", "mutated"]))
    if kind == "random":
        return draw(st.lists(_words, min_size=1, max_size=30))
    if kind == "header":
        op = draw(st.integers(0, 10)) | (draw(st.sampled_from([0, 0, 0, 1 << 16])))
        length = draw(st.one_of(_small, _words))
        return [op | (draw(st.integers(0, 255)) << 8), length] + draw(st.lists(st.one_of(_small, _words), max_size=45))
    base = draw(st.sampled_from(TABLE))[1]
    words = list(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "drop", "append", "cut"]))
        if op == "flip":
            i = draw(st.integers(0, len(words) - 1))
            words[i] ^= 1 << draw(st.integers(0, 31))
        elif op == "drop" and len(words) > 1:
            del words[draw(st.integers(0, len(words) - 1))]
        elif op == "append":
            words.append(draw(_words))
        elif op == "cut" and len(words) > 1:
            words = words[:draw(st.integers(1, len(words) - 1))]
    return words


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([32, 64, 128]), st.lists(random_packet(), min_size=1, max_size=8), st.data())
def test_fuzz_one_response_per_packet_never_raises(bus_width, packets, data):
    info = P.Info(**{**INFO.__dict__, "bus_width": bus_width})
    model = AcceleratorModel(info)
    beats = [b for pk in packets for b in P.to_beats(pk, bus_width)]
    # feed in random chunks: packets may span calls
    out, i = [], 0
    while i < len(beats):
        j = i + data.draw(st.integers(1, 8))
        out += model.process(beats[i:j])
        i = j
    rs = [P.parse_response(p) for p in P.split_packets(out, bus_width)]
    assert len(rs) == len(packets)
    for pk, r in zip(packets, rs):
        assert r.opcode == pk[0] & 0xFF and r.tag == (pk[0] >> 8) & 0xFF
        assert 0 <= r.status <= 6
        if r.status:
            assert r.payload == []
    s = model.counters
    assert s["commands"] == len(packets) and s["errors"] == sum(1 for r in rs if r.status)
    # afterwards a complete valid program still gives golden's results
    setup, run, exp = _setup_and_run(info)
    r = model.transact(setup + [run])[-1]
    np.testing.assert_array_equal(_values(r, 16).reshape(4, 4), exp)


def test_cycles_count_the_words_hidden_behind_a_run():
    """The model's idealised ``cycles``: words in, words out and MAC steps, less the words of
    writes behind a RUN that do not meet its entries, at most its MAC steps
    (docs/protocol.md "Overlap"); :func:`program_cycles` gives the same without executing."""
    from intdeploy.host.timing import program_cycles
    info = P.Info(rows=4, cols=4, bus_width=32)
    rng = np.random.default_rng(3)
    acts = lambda at, n: P.write_acts(at, rng.integers(0, 256, (n, 4)))
    run = P.run(P.RunDescriptor(m_count=10, k_steps=2, n_tiles=1, out_bytes=4))      # 20 steps, acts 0..19
    cases = [                                       # (writes, cycles they add, the last one's overlap)
        ([acts(20, 3)], 7 - 7 + 2, "apart"),            # 7 words, all hidden; 2 response words
        ([acts(19, 3)], 7 + 2, "meets"),                # meets entry 19: waits, nothing hidden
        ([acts(20, 10), acts(40, 10)], 2 * 14 - 20 + 4, "apart"),   # 28 words, 20 steps to hide them in
        ([acts(19, 1), acts(40, 3)], 5 + 7 + 4, None),  # behind a waiting write: after the RUN
        ([P.write_param_entries(0, [[0] * 8]), acts(40, 3)], 12 + 7 + 4, None),  # parameters wait
    ]
    base = AcceleratorModel(info)
    base.transact([run])
    before = base.counters["cycles"]
    for tail, cycles, last in cases:
        model = AcceleratorModel(info)
        assert all(r.ok for r in model.transact([run] + tail))
        assert model.counters["cycles"] - before == cycles, tail
        assert model.overlap == last
        assert program_cycles([run] + tail, info) == model.counters["cycles"]


def test_response_cycles_two_result_words_per_cycle():
    """The model's response cycles: the header one word a cycle, a RUN's result words in pairs
    within each result beat of two or more whole words, on a bus of two or more words per beat."""
    from intdeploy.host.timing import response_cycles
    wide, narrow = P.Info(rows=8, cols=8, bus_width=64), P.Info(rows=8, cols=8, bus_width=32)
    assert response_cycles(2 + 20, wide, 1) == 2 + 10          # 10 beats of 2 words
    assert response_cycles(2 + 20, wide, 2) == 2 + 10          # 5 beats of 4 words
    assert response_cycles(2 + 20, narrow, 1) == 22
    assert response_cycles(2 + 5, P.Info(rows=4, cols=4, bus_width=64), 1) == 7     # 1-word beats
    assert response_cycles(2 + 9, P.Info(rows=3, cols=3, bus_width=64), 4) == 2 + 6   # 3 beats of 3 words
    assert response_cycles(2 + 5, P.Info(rows=5, cols=4, bus_width=64), 2) == 7     # 10-byte beats
    assert response_cycles(2, wide) == 2 and response_cycles(12, wide, None) == 12


def test_input_cycles_two_words_per_cycle_in_buffer_entries():
    """The model's input cycles: two words per cycle in the entries of buffer writes whose
    entries are two or more words, on a bus of two or more words per beat; else one per word."""
    from intdeploy.host.timing import input_cycles
    wide, narrow = P.Info(rows=8, cols=8, bus_width=64), P.Info(rows=8, cols=8, bus_width=32)
    small = P.Info(rows=4, cols=4, bus_width=64)          # 1-word activation and residual entries
    pad = lambda pk: list(pk) + [0] * (len(pk) % 2)
    acts = pad(P.write_acts(0, np.zeros((5, 8), dtype=np.int64)))        # 4 + 10 words
    assert (input_cycles(acts, wide), input_cycles(acts, narrow)) == (4 + 5, 14)
    assert input_cycles(acts, wide, ok=False) == 14
    weights = pad(P.write_weights(0, 0, np.zeros((2, 8, 8), dtype=np.int64)))   # 5 + 32 + 1 padding
    assert input_cycles(weights, wide) == 5 + 17
    acts4 = pad(P.write_acts(0, np.zeros((5, 4), dtype=np.int64)))       # 4 + 5 words + 1 padding
    assert input_cycles(acts4, small) == 10
    params = P.write_param_entries(0, [[0] * 8])
    assert input_cycles(params, wide) == len(params)
