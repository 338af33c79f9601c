"""The accelerator top (intdeploy.hw.top.Accelerator) under cocotb: protocol streams, networks, resets,
clock ratios, idle and backpressure, compared with the executable model and with golden.

Expected values come from :class:`intdeploy.sim.accel_model.AcceleratorModel` (response by response, word
by word, inside the bench) and from golden's IntegerDeployable (layer tensors), never from the
RTL. Quick tier: one Verilator build of a 4x4 top with a 64-bit bus, a protocol fuzz stream,
the done-criterion network at 10:11 and 1:4, a reset of each domain, a deliberately wrong model;
one Icarus run of the network. Regress tier: the ratio x simulator matrix, more seeds, a 32-bit
and a 128-bit bus, a non-square array.
"""

import numpy as np
import pytest

from intdeploy import wire
from intdeploy.golden.add import AddParams
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.mac_array import conv2d, linear
from intdeploy.golden.model_file import AddLayer, FlattenLayer, InputSpec, IntegerModel, MacLayer, PoolLayer
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams
from intdeploy.host import protocol as P
from intdeploy.host.engines import Recorder, Replay
from intdeploy.host.network import run_network
from intdeploy.hw.config import QUICK, AcceleratorConfig
from intdeploy.hw.top import Accelerator
from intdeploy.sim.accel_model import AcceleratorModel, ModelEngine
from intdeploy.sim.rtl_engine import RtlEngine, run_top
from intdeploy.sim.runner import SIMULATORS

#: Clock periods (ns) bus:core for the ratio sweep.
RATIOS = {"1:1": (10, 10), "10:11": (10, 11), "11:10": (11, 10), "1:4": (5, 20), "4:1": (20, 5)}


def info_of(params):
    return P.Info.of(AcceleratorConfig(**params))


# --- elaboration parameters -------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("rows", 0), ("rows", 17), ("cols", 0), ("bus_width", 48), ("bus_width", 16), ("weight_bits", 3),
    ("weight_depth", 0), ("weight_banks", 0), ("act_depth", 0), ("param_channels", 2),
    ("residual_depth", 0), ("threshold_channels", 3), ("max_q", 9), ("max_pool_taps", 0),
    ("max_pool_shift", 33), ("fifo_depth", 12), ("fifo_depth", 4), ("rows", True), ("cols", 2.0),
    ("epilogue_lanes", 0), ("epilogue_lanes", 5), ("add_lanes", 0), ("add_lanes", 5),
])
def test_parameters_are_validated(name, value):
    params = dict(rows=4, cols=4)
    params[name] = value
    with pytest.raises(ValueError, match=rf"^{name}: "):
        Accelerator(**params)


def test_keyword_only_and_info_words():
    with pytest.raises(TypeError):
        Accelerator(4, 4)
    acc = Accelerator(**QUICK)
    assert P.decode_info(acc.config.info_words()) == info_of(QUICK)


# --- programs -------------------------------------------------------------------------------------

def _random_requant(rng, tflite=None):
    rounding = rng.choice(["floor", "half_up", "half_even", "tflite", "half_away"]) if tflite is None else \
        ("tflite" if tflite else "floor")
    tfl = rounding == "tflite"
    lo, hi = sorted(int(v) for v in rng.integers(-300, 300, 2))
    if rng.random() < 0.3:
        lo, hi = INT32_MIN, INT32_MAX
    return RequantParams(mult=int(rng.integers(0 if tfl else -(1 << 20), 1 << 20)),
                         shift=int(rng.integers(1, 30)), bias=int(rng.integers(-5000, 5000)),
                         offset=0 if tfl else int(rng.integers(-(1 << 24), 1 << 24)),
                         zero_point=int(rng.integers(-50, 50)), lo=lo, hi=hi, rounding=str(rounding))


def _random_run(rng, info, valid=True):
    """A RUN descriptor; with ``valid`` one that passes every check."""
    R = info.rows
    k = int(rng.integers(1, 4))
    n = int(rng.integers(1, 3))
    add = bool(rng.random() < 0.4)
    pool = bool(rng.random() < 0.4)
    taps = int(rng.integers(1, min(info.max_pool_taps, 4) + 1)) if pool else 1
    m = taps * int(rng.integers(1, 5))
    threshold = bool(rng.random() < 0.3)
    chans = info.threshold_channels if threshold else info.param_channels
    align = wire.threshold_alignment(R)
    row_step = int(rng.choice([0, 0, 1, k, k + 2]))        # 0: k_steps; < k_steps: rows share entries
    span = (m - 1) * (row_step or k) + k
    d = P.RunDescriptor(
        m_count=m, k_steps=k, n_tiles=n, act_base=int(rng.integers(0, info.act_depth - span + 1)), row_step=row_step,
        bank=int(rng.integers(0, info.weight_banks)),
        weight_base=int(rng.integers(0, info.weight_depth - n * k + 1)),
        # thresholds: a multiple of wire.threshold_alignment(R), but sometimes anything (BAD_PARAM)
        channel_base=int(rng.integers(0, chans - n * R + 1)) if not threshold or rng.random() < 0.15 else
        align * int(rng.integers(0, (chans - n * R) // align + 1)),
        x_signed=bool(rng.random() < 0.5), epilogue="threshold" if threshold else "requant",
        add=add, pool=pool, out_bytes=int(rng.choice([1, 2, 4])),
        residual_base=int(rng.integers(0, info.residual_depth - n * m + 1)),
        residual_signed=bool(rng.random() < 0.5))
    d.x_zero_point = int(rng.integers(-128, 128) if d.x_signed else rng.integers(0, 256))
    if add:
        d.add_zero_points = tuple(int(v) for v in rng.integers(-200, 200, 2))
        d.add_left_shift = int(rng.integers(0, 21))
        d.add_sum_shift = int(rng.choice([0, rng.integers(0, 32)]))
        d.add_branches = (_random_requant(rng), _random_requant(rng))
        d.add_output = _random_requant(rng)
    if pool:
        d.pool_mode = str(rng.choice(["max", "avg_nemo", "avg_tflite"]))
        d.pool_taps = taps
        d.pool_d = int(rng.integers(max(taps - 1, 1).bit_length(), info.max_pool_shift + 1))
        d.pool_lo, d.pool_hi = sorted(int(v) for v in rng.integers(-300, 300, 2))
    return d


def _fill_buffers(rng, info):
    """Packets writing random contents to every buffer entry the fuzz stream's RUNs read."""
    R, C = info.rows, info.cols
    lo, hi = -(1 << (info.weight_bits - 1)), 1 << (info.weight_bits - 1)
    pk = [P.write_weights(b, 0, rng.integers(lo, hi, (info.weight_depth, R, C)), info.weight_bits)
          for b in range(info.weight_banks)]
    pk.append(P.write_acts(0, rng.integers(0, 256, (info.act_depth, C))))
    pk.append(P.write_residual(0, rng.integers(0, 256, (info.residual_depth, R))))
    entries = [P.encode_requant(_random_requant(rng), None, int(rng.integers(-128, 128)))
               for _ in range(info.param_channels)]
    pk.append(P.write_param_entries(0, entries))
    for ch in range(info.threshold_channels):
        q = int(rng.integers(1, info.max_q + 1))
        pk.append(P.write_thresholds(ch, np.sort(rng.integers(-40000, 40000, (1 << q) - 1)),
                                     negate=bool(rng.random() < 0.3)))
    return pk


def _malformed(rng, info, valid_packets):
    """One malformed packet: each class of error of docs/protocol.md, and plain garbage."""
    per = info.bus_width // 32
    kind = int(rng.integers(0, 9))
    base = list(valid_packets[int(rng.integers(0, len(valid_packets)))])
    if kind == 0:                                   # unknown opcode, maybe with reserved bits
        op = int(rng.choice([0, 9, 0x55, 0xFF]))
        return [op | (int(rng.integers(0, 256)) << 8) | (int(rng.integers(0, 2)) << 20), 0]
    if kind == 1:                                   # reserved header bits
        return [base[0] | (1 << int(rng.integers(16, 32)))] + base[1:]
    if kind == 2:                                   # wrong length word
        return [base[0], int(rng.choice([0, 1, 2, 39, 41, 0xFFFFFFFF, len(base) - 1]))] + base[2:]
    if kind == 3 and len(base) > 1:                 # truncated: TLAST early
        return base[:int(rng.integers(1, len(base)))]
    if kind == 4:                                   # a further beat after the payload
        return base + [0] * (-len(base) % per) + list(rng.integers(0, 1 << 32, int(rng.integers(1, 3 * per))))
    if kind == 5 and len(base) > 2:                 # one payload word corrupted
        j = int(rng.integers(2, len(base)))
        base[j] ^= 1 << int(rng.integers(0, 32))
        return base
    if kind == 6:                                   # garbage words
        return [int(w) for w in rng.integers(0, 1 << 32, int(rng.integers(1, 12)))]
    if kind == 7:                                   # a plausible opcode, random rest
        return [int(rng.integers(1, 9))] + [int(w) for w in rng.integers(0, 64, int(rng.integers(1, 8)))]
    d = _random_run(rng, info)                      # a RUN with one field pushed out of range
    w = d.encode()
    j = int(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 37, 38, 39]))
    w[j] = int(rng.choice([0, 1, 2, 3, 0xFFFF, 0x10000, info.act_depth, 0xFFFFFFFF, w[j] ^ 0x3]))
    return P.command("RUN", w, tag=int(rng.integers(0, 256)))


#: (seed, length) of the quick tier's fuzz stream on the RTL
QUICK_FUZZ = (2, 600)


def fuzz_program(seed, info, length):
    """Buffer fill, then ``length`` packets: valid RUNs, writes, INFO/STATUS and malformed ones,
    each followed now and then by a valid command (the stream must go on after an error)."""
    rng = np.random.default_rng(seed)
    C = info.cols
    packets = _fill_buffers(rng, info)
    valid = [P.info(), P.status()]
    for _ in range(length):
        r = rng.random()
        if r < 0.35:
            pk = P.run(_random_run(rng, info), tag=int(rng.integers(0, 256)))
            valid.append(pk)
        elif r < 0.45:
            pk = P.write_acts(int(rng.integers(0, info.act_depth - 2)), rng.integers(0, 256, (2, C)))
        elif r < 0.5:
            pk = P.write_thresholds(int(rng.integers(0, info.threshold_channels)),
                                    np.sort(rng.integers(-40000, 40000, (1 << int(rng.integers(1, info.max_q + 1))) - 1)))
            valid.append(pk)
        elif r < 0.55:
            pk = P.write_param_entries(int(rng.integers(0, info.param_channels - 1)),
                                       [P.encode_requant(_random_requant(rng), None, 3)])
        elif r < 0.6:
            pk = P.status(tag=int(rng.integers(0, 256)))
        else:
            pk = _malformed(rng, info, valid + packets)
        packets.append(pk)
    packets += [P.info(tag=1), P.status(tag=2)]
    return packets


def test_fuzz_program_covers_every_status():
    """The quick tier's stream exercises every status code (so the comparison in the bench covers them)."""
    info = info_of(QUICK)
    packets = fuzz_program(QUICK_FUZZ[0], info, QUICK_FUZZ[1])
    statuses = {r.status for r in AcceleratorModel(info).transact(packets)}
    assert statuses == set(P.STATUS.values())
    runs = [r for r in AcceleratorModel(info).transact(packets) if r.opcode == P.OPCODES["RUN"] and r.ok]
    assert len(runs) > 50


# --- the done-criterion network --------------------------------------------------------------------

def _rq(rng, acc, rounding, lo=-128, hi=127, zero_point=0, target=60):
    c = acc.shape[-1]
    amax = np.maximum(np.abs(acc.reshape(-1, c)).max(axis=0), 1)
    mult = rng.integers(1 << 30, 1 << 31, c) if rounding == "tflite" else rng.integers(1 << 19, 1 << 20, c)
    shift = np.clip(np.ceil(np.log2(mult * amax / target)).astype(np.int64), 1, 62)
    return RequantParams(mult=mult, shift=shift, bias=rng.integers(-100, 100, c), zero_point=zero_point,
                         lo=lo, hi=hi, rounding=rounding)


def network(seed=0, batch=2, shape=(5, 5), cin=3, ch=4, classes=5, weight_bits=8):
    """Two 3x3 convolutions, a residual Add of their outputs, 2x2 average pooling (TFLite, clamped), a fully connected
    layer: ``(IntegerModel, images)``. Rounding differs per layer (tflite, half_even, floor)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (batch,) + shape + (cin,))
    spec = InputSpec(shape=shape + (cin,), dtype="int8", zero_point=-3)
    wlo, whi = -(1 << (weight_bits - 1)), 1 << (weight_bits - 1)
    w1 = rng.integers(wlo, whi, (ch, 3, 3, cin)).astype(np.int8)
    w1_zp = rng.integers(-10, 10, ch)
    a1 = conv2d(x, w1, 1, 1, -3, w1_zp)
    conv1 = MacLayer(kind="conv2d", name="conv1", inputs=("input",), weight=w1, weight_zero_point=w1_zp,
                     weight_bits=weight_bits,
                     input_zero_point=-3, padding=((1, 1), (1, 1)), requant=_rq(rng, a1, "tflite", zero_point=2),
                     dtype="int8")
    y1 = IntegerDeployable(IntegerModel(input=spec, layers=(conv1,), outputs=("conv1",))).run(x)
    w2 = rng.integers(wlo, whi, (ch, 3, 3, ch)).astype(np.int8)
    a2 = conv2d(y1, w2, 1, 1, 2, 0)
    conv2 = MacLayer(kind="conv2d", name="conv2", inputs=("conv1",), weight=w2, input_zero_point=2,
                     weight_bits=weight_bits,
                     padding=((1, 1), (1, 1)), requant=_rq(rng, a2, "half_even", zero_point=-1), dtype="int8")
    add = AddLayer(name="res", inputs=("conv1", "conv2"), dtype="int8",
                   params=AddParams.tflite(0.05, 2, 0.04, -1, 0.07, 0, lo=-128, hi=127))
    pool = PoolLayer(name="pool", inputs=("res",), mode="avg_tflite", kernel=(2, 2), stride=(2, 2), lo=-100,
                     hi=100, dtype="int8")
    flat = FlattenLayer(name="flat", inputs=("pool",), dtype="int8")
    feat = (shape[0] // 2) * (shape[1] // 2) * ch
    w3 = rng.integers(wlo, whi, (classes, feat)).astype(np.int8)
    part = IntegerModel(input=spec, layers=(conv1, conv2, add, pool, flat), outputs=("flat",))
    a3 = linear(IntegerDeployable(part).run(x), w3, 0, 5)
    fc = MacLayer(kind="linear", name="fc", inputs=("flat",), weight=w3, weight_zero_point=5,
                  weight_bits=weight_bits,
                  requant=_rq(rng, a3, "floor"), dtype="int8")
    model = IntegerModel(input=spec, layers=(conv1, conv2, add, pool, flat, fc), outputs=("fc",))
    return model, x


def run_network_on_top(sim, params, ratio, tmp_path, *, seed=0, idle=0.2, backpressure=0.3, fuse=False, **bench):
    """The network through the top: every response compared with the model in the bench, every
    layer tensor decoded from the RTL's responses and compared with golden IntegerDeployable
    (with ``fuse``, conv2 + add + pooling run as one program and its output is compared)."""
    model, x = network(seed, weight_bits=params.get("weight_bits", 8))
    golden = IntegerDeployable(model).run(x, trace=True)
    rec = Recorder(ModelEngine(info_of(params)))
    run_network(model, x, rec, fuse=fuse)
    packets = [p for call in rec.calls for p in call]
    bus, core = RATIOS[ratio]
    responses, cycles = run_top(sim, params, test_dir=tmp_path, packets=packets, seed=seed,
                                bus_period=bus, core_period=core, idle=idle, idle_burst=3,
                                backpressure=backpressure, bp_burst=4, **bench)
    out, stats = run_network(model, x, Replay(rec.calls, responses), fuse=fuse)
    fused_away = {"conv2", "res"} if fuse else set()
    assert set(out) == set(golden) - fused_away
    for name, a in out.items():
        np.testing.assert_array_equal(a, golden[name], err_msg=f"layer {name} on {sim} at {ratio}")
    return stats, cycles


@pytest.mark.parametrize("sim, ratio, fuse", [("verilator", "10:11", False), ("verilator", "1:4", True),
                                              ("icarus", "11:10", False)])
def test_network_bit_exact(sim, ratio, fuse, tmp_path):
    stats, cycles = run_network_on_top(sim, QUICK, ratio, tmp_path, fuse=fuse)
    assert stats["mac_cycles"] == stats["mac_steps"] > 0
    assert [s.name for s in stats["layers"]][1] == ("conv2+res+pool" if fuse else "conv2")


@pytest.mark.regress
@pytest.mark.parametrize("ratio", list(RATIOS))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_network_ratio_matrix(sim, ratio, tmp_path):
    run_network_on_top(sim, QUICK, ratio, tmp_path, seed=list(RATIOS).index(ratio) + 1)


# --- protocol streams ---------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", ["4:1"])
def test_fuzz_stream_matches_model(ratio, tmp_path):
    bus, core = RATIOS[ratio]
    run_top("verilator", QUICK, test_dir=tmp_path, packets=fuzz_program(QUICK_FUZZ[0], info_of(QUICK), QUICK_FUZZ[1]),
            bus_period=bus, core_period=core, idle=0.3, idle_burst=4, backpressure=0.4, bp_burst=6, seed=1)


@pytest.mark.regress
@pytest.mark.parametrize("seed", [2, 3, 4])
@pytest.mark.parametrize("ratio", list(RATIOS))
def test_fuzz_ratio_sweep(seed, ratio, tmp_path):
    bus, core = RATIOS[ratio]
    run_top("verilator", QUICK, test_dir=tmp_path, packets=fuzz_program(seed, info_of(QUICK), 400),
            bus_period=bus, core_period=core, idle=0.3, idle_burst=4, backpressure=0.4, bp_burst=6,
            seed=seed)


def test_activation_bound_at_the_edge(tmp_path):
    """RUNs whose last activation entry (act_base + (m - 1) * row_step + k - 1) is the buffer's last
    (OK) and one beyond (OUT_OF_RANGE), for row_step 0 (= k_steps), 1, 2 and k + 3, on the RTL,
    each response compared with the model in the bench."""
    info = info_of(QUICK)
    rng = np.random.default_rng(8)
    packets = _fill_buffers(rng, info)
    expected = []
    for row_step in (0, 1, 2, 6):
        for m, k in ((5, 3), (1, 3), (7, 1)):
            last = info.act_depth - ((m - 1) * (row_step or k) + k)
            for act_base, status in ((last, "OK"), (last + 1, "OUT_OF_RANGE")):
                d = P.RunDescriptor(m_count=m, k_steps=k, act_base=act_base, row_step=row_step)
                packets.append(P.run(d))
                expected.append(status)
    got = [P.STATUS_NAMES[r.status] for r in AcceleratorModel(info).transact(packets)[-len(expected):]]
    assert got == expected
    run_top("verilator", QUICK, test_dir=tmp_path, packets=packets)


def _long_run(add):
    """60 GEMM rows x 4 steps x 4 tiles (960 MAC steps): activations 0..239, weights 0..15 of
    bank 0, with ``add`` residual entries 0..239; each tile reads every activation entry again."""
    d = P.RunDescriptor(m_count=60, k_steps=4, n_tiles=4, out_bytes=4, add=add)
    if add:
        rq = RequantParams(mult=3, shift=1)
        d.add_branches, d.add_output = (rq, rq), rq
    return P.run(d)


def test_writes_during_a_run_that_meet_it_wait(tmp_path):
    """Writes sent right behind a RUN into the entries it reads (activations, weights of its
    bank, residual) must wait for its end; writes next to them go at once. Every response is
    compared with the model, which executes one packet at a time: a write that did not wait
    would change what the RUN's later tiles read."""
    info = info_of(QUICK)
    rng = np.random.default_rng(21)
    R, C = info.rows, info.cols
    w = lambda n: rng.integers(-128, 128, (n, R, C))
    packets = _fill_buffers(rng, info)
    # each meeting write first behind its RUN (a waiting write holds up the packets after it)
    for write in (P.write_acts(200, rng.integers(0, 256, (16, C))), P.write_weights(0, 8, w(4), 8),
                  P.write_residual(100, rng.integers(0, 256, (16, R)))):
        packets += [_long_run(True), write]
    packets += [_long_run(True), P.write_acts(240, rng.integers(0, 256, (16, C))), P.write_weights(1, 0, w(16), 8),
                P.write_weights(0, 16, w(4), 8), P.write_residual(240, rng.integers(0, 256, (16, R))),
                _long_run(True), P.status()]
    run_top("verilator", QUICK, test_dir=tmp_path, packets=packets)


def test_writes_overlap_a_run(tmp_path):
    """Core cycles of a RUN followed by a 500-entry activation write: outside the RUN's entries
    the write is absorbed by the RUN's 960 busy cycles; meeting them, it follows the RUN."""
    info = info_of(QUICK)
    rng = np.random.default_rng(22)
    base = _fill_buffers(rng, info)
    data = rng.integers(0, 256, (500, info.cols))
    cycles = {}
    for name, tail in (("run", []), ("apart", [P.write_acts(300, data)]), ("meets", [P.write_acts(200, data)])):
        _, cycles[name] = run_top("verilator", QUICK, test_dir=tmp_path / name,
                                  packets=base + [_long_run(False)] + tail)
    assert cycles["apart"] - cycles["run"] <= 10, cycles
    assert cycles["meets"] - cycles["run"] >= 500, cycles


def test_two_words_per_cycle_into_the_buffers(tmp_path):
    """Buffer entries of two or more words enter two words per cycle (the 3x5 top: 128-bit bus,
    activation and weight entries of 2 words, residual entries of 1): a fuzz stream compared
    with the model, and the cycles of a 600-entry activation write (1200 entry words) after it:
    about one cycle per two words."""
    params = OTHERS["3x5-w4-bus128"]
    info = info_of(params)
    run_top("verilator", params, test_dir=tmp_path / "fuzz", packets=fuzz_program(23, info, 300),
            idle=0.2, backpressure=0.3, seed=23)
    base = _fill_buffers(np.random.default_rng(24), info)
    big = P.write_acts(8, np.random.default_rng(25).integers(0, 256, (600, info.cols)))
    cycles = [run_top("verilator", params, test_dir=tmp_path / f"c{k}", packets=base + tail)[1]
              for k, tail in enumerate(([], [big]))]
    assert 600 <= cycles[1] - cycles[0] <= 600 + 20, cycles


def test_mismatch_is_detected(tmp_path):
    """A model whose first result word is one LSB off: the bench must report the mismatch."""
    packets = fuzz_program(5, info_of(QUICK), 30)
    with pytest.raises(AssertionError) as e:
        run_top("verilator", QUICK, test_dir=tmp_path, packets=packets, bug=True)
    assert "MISMATCH" in str(e.value)


# --- resets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("domain, ratio", [("bus", "1:4"), ("core", "4:1")])
def test_reset_mid_stream_then_clean_run(domain, ratio, tmp_path):
    info = info_of(QUICK)
    first = fuzz_program(11, info, 20)
    interrupted = fuzz_program(12, info, 60)
    second = fuzz_program(13, info, 40)
    bus, core = RATIOS[ratio]
    run_top("verilator", QUICK, test_dir=tmp_path, scenario="reset", first=first,
            interrupted=interrupted, second=second, reset_domain=domain,
            reset_after=sum(len(p) for p in interrupted) // (2 * 2), bus_period=bus, core_period=core,
            idle=0.2, backpressure=0.3, seed=3)


# --- throughput ------------------------------------------------------------------------------------

def _ii_program(info, shapes, seed=0):
    """Buffers filled, then for each ``(m, k, n)`` a RUN between two STATUS packets."""
    rng = np.random.default_rng(seed)
    packets = _fill_buffers(rng, info)
    for m, k, n in shapes:
        d = P.RunDescriptor(m_count=m, k_steps=k, n_tiles=n)
        packets += [P.status(), P.run(d), P.status()]
    return packets


def test_one_mac_step_per_cycle(tmp_path):
    """II = 1: a RUN's busy cycles grow by exactly one per extra MAC step, whether the steps
    are added as GEMM rows or as channel tiles (no bubble between steps, rows or tiles), and the
    fixed part (pipeline fill and drain) is small."""
    params = QUICK
    info = info_of(params)
    shapes = [(64, 4, 2), (128, 4, 2), (128, 4, 4), (255, 4, 4)]
    responses, _ = run_top("verilator", params, test_dir=tmp_path, packets=_ii_program(info, shapes))
    busy, steps = [], []
    tail = responses[-3 * len(shapes):]
    for j, (m, k, n) in enumerate(shapes):
        before, run, after = tail[3 * j:3 * j + 3]
        assert run.ok
        b, a = P.decode_status(before.payload), P.decode_status(after.payload)
        assert a["mac_cycles"] - b["mac_cycles"] == m * k * n
        busy.append(a["busy_cycles"] - b["busy_cycles"])
        steps.append(m * k * n)
    for j in range(1, len(shapes)):
        assert busy[j] - busy[0] == steps[j] - steps[0], (busy, steps)
    assert busy[0] - steps[0] < 80, (busy, steps)


# --- other hardware configurations (regress) -------------------------------------------------------

#: Non-square array with lane counts that are not multiples of 4 (byte packing across words),
#: 4-bit weights, a 128-bit bus, a 2-lane epilogue with a 1-lane add unit; and the default 32-bit
#: bus with a full-width epilogue (E = R) and a 3-lane add unit (its last part partial).
OTHERS = {
    "3x5-w4-bus128": dict(rows=3, cols=5, bus_width=128, weight_bits=4, weight_depth=64, act_depth=1024,
                          param_channels=12, residual_depth=256, threshold_channels=6, max_q=4,
                          max_pool_taps=9, max_pool_shift=20, fifo_depth=16, epilogue_lanes=2, add_lanes=1),
    "4x4-bus32": {**QUICK, "bus_width": 32, "fifo_depth": 16, "epilogue_lanes": 4, "add_lanes": 3},
}


def test_banked_thresholds_on_the_top(tmp_path):
    """The threshold storage of the default top (banked: each channel stored once, in the memories
    of the epilogue lane that reads it, since E divides R): a fuzz program with threshold RUNs at
    aligned and misaligned channel_base on the 4x4 top with E = 4, every response against the
    executable model. (QUICK's E = 3 keeps the replicated storage.)"""
    params = OTHERS["4x4-bus32"]
    bus, core = RATIOS["10:11"]
    run_top("verilator", params, test_dir=tmp_path, packets=fuzz_program(5, info_of(params), 160),
            bus_period=bus, core_period=core, idle=0.3, idle_burst=4, backpressure=0.4, bp_burst=6, seed=5)


@pytest.mark.regress
@pytest.mark.parametrize("name", list(OTHERS))
def test_other_configuration_fuzz_and_network(name, tmp_path):
    params = OTHERS[name]
    bus, core = RATIOS["10:11"]
    run_top("verilator", params, test_dir=tmp_path / "fuzz", packets=fuzz_program(21, info_of(params), 500),
            bus_period=bus, core_period=core, idle=0.3, idle_burst=4, backpressure=0.4, bp_burst=6, seed=21)
    run_network_on_top("verilator", params, "11:10", tmp_path / "net", seed=4)


@pytest.mark.regress
@pytest.mark.parametrize("domain", ["bus", "core"])
def test_reset_on_icarus(domain, tmp_path):
    info = info_of(QUICK)
    interrupted = fuzz_program(32, info, 40)
    run_top("icarus", QUICK, test_dir=tmp_path, scenario="reset", first=fuzz_program(31, info, 10),
            interrupted=interrupted, second=fuzz_program(33, info, 20), reset_domain=domain,
            reset_after=sum(len(p) for p in interrupted) // 5, bus_period=7, core_period=13, seed=5)


@pytest.mark.regress
def test_fuzz_on_icarus(tmp_path):
    run_top("icarus", QUICK, test_dir=tmp_path, packets=fuzz_program(41, info_of(QUICK), 80),
            bus_period=11, core_period=10, idle=0.3, backpressure=0.3, seed=41)


# --- the RTL engine ---------------------------------------------------------------------------------

def test_rtl_engine_executes_packets(tmp_path):
    engine = RtlEngine("verilator", QUICK, work_dir=tmp_path)
    packets = [P.info(tag=7), P.command(0x42, [], tag=8), P.status(tag=9)]
    responses = engine.execute(packets)
    expected = AcceleratorModel(info_of(QUICK)).transact(packets)
    assert [(r.opcode, r.tag, r.status) for r in responses] == [(e.opcode, e.tag, e.status) for e in expected]
    assert P.decode_info(responses[0].payload) == engine.info == info_of(QUICK)
    assert engine.cycles > 0


def test_rtl_engine_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="^sim: "):
        RtlEngine("modelsim", QUICK)
    with pytest.raises(ValueError, match="^rows: "):
        RtlEngine("verilator", {**QUICK, "rows": 0})
    with pytest.raises(ValueError, match="^packets: "):
        RtlEngine("verilator", QUICK, work_dir=tmp_path).execute([])


@pytest.mark.regress
def test_driver_runs_the_network_on_the_rtl_engine(tmp_path):
    """intdeploy.host.driver.run_network with RtlEngine (one simulator run per layer), bit-exact with golden."""
    model, x = network(seed=9)
    golden = IntegerDeployable(model).run(x, trace=True)
    out, stats = run_network(model, x, RtlEngine("verilator", QUICK, work_dir=tmp_path))
    for name, g in golden.items():
        np.testing.assert_array_equal(out[name], g, err_msg=name)
    assert stats["utilisation"] is not None and 0 < stats["utilisation"] < 1
