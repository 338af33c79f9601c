"""Fuzzing and bad input: the model-file loader, the command-packet encoders/decoders, the
executable model's packet decoder, the RTL top under garbage streams, and the accumulator proof.

Property: whatever the input, the outcome is a valid result or one clear error line, never a
traceback or a hang.

* Model files: the bundled ``golden/models/digits.json`` / ``.npz`` mutated at three levels
  (JSON structure, raw bytes of either file, arrays of the ``.npz``): :func:`intdeploy.golden.model_file.load`
  returns an :class:`IntegerModel` (which then runs on golden) or raises ``ModelFormatError``
  with one line that starts with the field (or file) it is about; the CLI answers such a file
  with exit status 2, one ``intdeploy: error:`` line and no traceback.
* Packets: descriptor and parameter-entry encoders/decoders are inverse on every 40/8-word
  pattern the decoder accepts; response parsing and beat splitting on garbage; the executable
  model of the top answers every garbage packet with exactly one response and a known status.
* RTL: a stream of garbage packets into the top (Verilator; Icarus in the regress tier), every
  packet answered within the bench's watchdog and equal to the model, then a valid network run
  bit-exact with golden.
* Accumulator: :func:`intdeploy.golden.mac_array.accumulator_range` is the exact worst case (attained,
  never exceeded); weights exactly at the int32 limit are accepted and run bit-exactly (golden
  and RTL), one past it is refused by the model file and by the driver.

Every example runs under a limit of 10 s CPU time (and 120 s wall clock), so a hang fails
instead of stalling the run. ``INTDEPLOY_FUZZ_EXAMPLES`` sets the examples per fuzzer (default 200; ``make fuzz`` runs
10,000).
"""

import contextlib
import io
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from intdeploy.golden import mac_array, model_file
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.model_file import InputSpec, IntegerModel, MacLayer, ModelFormatError
from intdeploy.golden.requantizer import INT32_MAX, INT32_MIN, RequantParams
from intdeploy.host import protocol as P
from intdeploy.host.driver import Driver
from intdeploy.host.engines import Recorder, Replay
from intdeploy.host.job import GemmJob
from intdeploy.host.network import run_network
from intdeploy.sim.accel_model import AcceleratorModel, ModelEngine

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "golden" / "models" / "digits.json"
ARRAYS = REPO / "golden" / "models" / "digits.npz"
EXAMPLES = int(os.environ.get("INTDEPLOY_FUZZ_EXAMPLES", "200"))
#: Wall-clock seconds one example may take (load + validation + one golden inference).
LIMIT = 10

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

#: A one-line error starts with the field path (``layers[2].requant.shift: ...``) or the file.
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*(?:\[\d+\])*(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*)*"
_FIELD = re.compile(rf"^(?:{_NAME}(?:, {_NAME})*|/\S+): \S")
OUTCOMES = {}


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds=LIMIT, wall=12 * LIMIT):
    """Raise :class:`Hang` if the block uses more than ``seconds`` of CPU time or ``wall``
    seconds of wall-clock time.

    CPU time (``ITIMER_PROF``), so that a busy shared machine does not turn a slow scheduler
    into a false hang; the wall-clock backstop catches a block that waits forever. A signal
    that lands in a callback whose exceptions Python swallows (e.g. a gc callback) is still
    reported: the block's exit checks the flag.
    """
    fired = []

    def expire(signum, frame):
        fired.append(signum)
        raise Hang(f"no answer within {seconds} s of CPU time ({wall} s wall)")
    old = {sig: signal.signal(sig, expire) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, wall)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if fired:
        raise Hang(f"no answer within {seconds} s of CPU time ({wall} s wall)")


def count(fuzzer, outcome):
    OUTCOMES.setdefault(fuzzer, {}).setdefault(outcome, 0)
    OUTCOMES[fuzzer][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes():
    yield
    if OUTCOMES:
        path = Path(os.environ.get("INTDEPLOY_FUZZ_REPORT", REPO / "build" / "fuzz-outcomes.json"))
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(OUTCOMES)
        path.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")


def assert_one_line(message):
    assert message, "empty error message"
    assert "\n" not in message, f"multi-line error: {message!r}"
    assert _FIELD.match(message), f"error does not start with the field it is about: {message!r}"


# --- model files --------------------------------------------------------------------------------

_MANIFEST = json.loads(MODEL.read_text())
_NPZ_BYTES = ARRAYS.read_bytes()
with np.load(ARRAYS) as _z:
    _ARRAYS = {k: _z[k] for k in _z.files}
_WORKDIR = Path(tempfile.mkdtemp(prefix="intdeploy-fuzz-"))

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
    st.sampled_from([0, 1, -1, 2, 7, 8, 62, 63, 127, 128, 255, 256, 65535, 65536, INT32_MAX, INT32_MIN,
                     INT32_MAX + 1, 1 << 63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["int8", "uint8", "int32", "floor", "tflite", "conv2d", "linear", "add", "maxpool2d",
                     "input", "conv1", "conv1.weight", "digits.npz", "../digits.npz", "/etc/passwd", ""]))
_json_value = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for j, v in enumerate(node):
            yield from _paths(v, prefix + (j,))


def _mutate_json(data, manifest):
    """1-3 structural mutations at random places of the manifest (a deep copy)."""
    m = json.loads(json.dumps(manifest))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = list(_paths(m))
        path = data.draw(st.sampled_from(paths), label="path")
        if not path:
            m = data.draw(_json_value, label="whole manifest") if data.draw(st.booleans()) else m
            continue
        parent = m
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        op = data.draw(st.sampled_from(["replace", "delete", "add", "duplicate", "nudge"]), label="op")
        if op == "replace":
            parent[key] = data.draw(_json_value, label="value")
        elif op == "delete":
            del parent[key]
        elif op == "add":
            if isinstance(parent, dict):
                parent[data.draw(st.text(max_size=8), label="new key")] = data.draw(_json_value)
            else:
                parent.insert(key, data.draw(_json_value, label="new item"))
        elif op == "duplicate":
            if isinstance(parent, list):
                parent.insert(key, json.loads(json.dumps(parent[key])))
            else:
                parent[key] = [parent[key], parent[key]]
        else:                           # nudge an integer by a small amount (off-by-one limits)
            v = parent[key]
            if isinstance(v, int) and not isinstance(v, bool):
                parent[key] = v + data.draw(st.sampled_from([-1, 1, -128, 256, 1 << 31]))
            elif isinstance(v, list) and v and data.draw(st.booleans()):
                v.pop()
    return m


def _mutate_bytes(data, blob, label):
    b = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4), label=f"{label} byte mutations")):
        op = data.draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]), label=f"{label} op")
        if not b:
            break
        at = data.draw(st.integers(0, len(b) - 1), label=f"{label} offset")
        if op == "flip":
            b[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            b[at] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del b[at:]
        elif op == "insert":
            b[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del b[at:at + data.draw(st.integers(1, 16))]
    return bytes(b)


_DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64", "bool",
           "complex64", "<U3"]


def _mutate_arrays(data):
    arrays = dict(_ARRAYS)
    for _ in range(data.draw(st.integers(1, 3), label="array mutations")):
        name = data.draw(st.sampled_from(sorted(arrays) or ["x"]), label="array")
        op = data.draw(st.sampled_from(["dtype", "shape", "extreme", "random", "delete", "extra", "empty"]),
                       label="array op")
        a = arrays.get(name, np.zeros(1, np.int8))
        if op == "dtype":
            try:
                arrays[name] = a.astype(data.draw(st.sampled_from(_DTYPES)))
            except (ValueError, OverflowError):    # e.g. '0.0' (an earlier <U3 cast) -> int
                pass
        elif op == "shape":
            if a.size > 1 and data.draw(st.booleans()):
                arrays[name] = a.reshape(-1)[:-1]
            else:
                arrays[name] = a.reshape((1,) + a.shape)
        elif op == "extreme" and a.size and a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            b = a.copy().reshape(-1)
            b[data.draw(st.integers(0, b.size - 1))] = data.draw(st.sampled_from([info.min, info.max, 0, -1 % (info.max + 1)]))
            arrays[name] = b.reshape(a.shape)
        elif op == "random" and a.size and a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            rng = np.random.default_rng(data.draw(st.integers(0, 1 << 32)))
            arrays[name] = rng.integers(info.min, int(info.max) + 1, a.shape, dtype=a.dtype)
        elif op == "delete":
            arrays.pop(name, None)
        elif op == "extra":
            arrays[data.draw(st.text("abc.", min_size=1, max_size=6))] = np.arange(3)
        elif op == "empty":
            arrays[name] = a.reshape(-1)[:0]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_case(data, directory):
    """One mutated model file in ``directory``; returns the manifest path and the kind of mutation."""
    kind = data.draw(st.sampled_from(["json", "json-bytes", "npz-bytes", "arrays", "json+arrays"]), label="kind")
    manifest_text, npz = json.dumps(_MANIFEST, indent=1).encode(), _NPZ_BYTES
    if kind in ("json", "json+arrays"):
        manifest_text = json.dumps(_mutate_json(data, _MANIFEST), indent=1).encode()
    if kind == "json-bytes":
        manifest_text = _mutate_bytes(data, manifest_text, "json")
    if kind == "npz-bytes":
        npz = _mutate_bytes(data, npz, "npz")
    if kind in ("arrays", "json+arrays"):
        npz = _mutate_arrays(data)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "digits.npz").write_bytes(npz)
    path = directory / "digits.json"
    path.write_bytes(manifest_text)
    return path, kind


def load_outcome(path, seed=0):
    """``("model", model)`` after one golden inference, or ``("error", message)``; anything else
    (another exception, a hang, a message that is not one line naming the field) fails."""
    try:
        with time_limit():
            model = model_file.load(path)
    except ModelFormatError as e:
        assert_one_line(str(e))
        return "error", str(e)
    assert isinstance(model, IntegerModel)
    spec = model.input
    x = np.random.default_rng(seed).integers(spec.lo, spec.hi + 1, (1,) + tuple(spec.shape))
    with time_limit():
        out = IntegerDeployable(model).run(x)
    # One array, or a tuple of them when the manifest lists several outputs (a mutated file may
    # list the same tensor twice, which is harmless), each with the batch of one.
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(model.outputs)
    assert all(np.asarray(o).shape[0] == 1 for o in outs)
    return "model", model


def test_mutation_strategies_reach_both_outcomes():
    """Sanity of the fuzzer: the unmutated files load, and a mutation is refused with one line."""
    assert load_outcome(MODEL)[0] == "model"
    d = _WORKDIR / "sanity"
    d.mkdir(parents=True, exist_ok=True)
    (d / "digits.npz").write_bytes(_NPZ_BYTES)
    bad = json.loads(json.dumps(_MANIFEST))
    bad["layers"][0]["requant"]["rounding"] = "stochastic"
    (d / "digits.json").write_text(json.dumps(bad))
    outcome, message = load_outcome(d / "digits.json")
    assert outcome == "error" and message.startswith("layers[0].requant.rounding: "), message


@FUZZ
@given(st.data())
def test_fuzz_model_file(data):
    path, kind = write_case(data, _WORKDIR / "case")
    outcome, _ = load_outcome(path)
    count("model_file", f"{kind}:{outcome}")


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("INTDEPLOY_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "intdeploy.tools.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_cli_refuses_mutated_files_with_one_line(tmp_path):
    """Refused mutated files through ``intdeploy demo FILE`` and ``bench --model FILE``: exit 2,
    one ``intdeploy: error:`` line naming the field, no traceback."""
    cases = []
    for j, mutate in enumerate([
        lambda m: m["layers"][1].__setitem__("weight_bits", 9),
        lambda m: m["layers"].__setitem__(2, {"name": "x"}),
        lambda m: m["input"].__setitem__("shape", [8, 8, -1]),
        lambda m: m.__setitem__("arrays", "missing.npz"),
    ]):
        d = tmp_path / f"c{j}"
        d.mkdir()
        (d / "digits.npz").write_bytes(_NPZ_BYTES)
        m = json.loads(json.dumps(_MANIFEST))
        mutate(m)
        (d / "digits.json").write_text(json.dumps(m))
        cases.append(d / "digits.json")
    trunc = tmp_path / "trunc"
    trunc.mkdir()
    (trunc / "digits.json").write_bytes(MODEL.read_bytes())
    (trunc / "digits.npz").write_bytes(_NPZ_BYTES[:len(_NPZ_BYTES) // 2])
    cases.append(trunc / "digits.json")
    for j, path in enumerate(cases):
        outcome, message = load_outcome(path)
        assert outcome == "error"
        r = _cli("demo", str(path)) if j % 2 == 0 else _cli("bench", "--model", str(path))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
        assert lines[0] == f"intdeploy: error: {message}", (lines, message)


# --- packets ------------------------------------------------------------------------------------

_word = st.one_of(st.integers(0, P.MASK32), st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
                                                            0x80000000, P.MASK32]))
_field_value = st.one_of(st.integers(-5, 300), st.integers(-(1 << 40), 1 << 40),
                         st.sampled_from([0xFFFF, 0x10000, P.MASK32, 1 << 32, -1]))


@st.composite
def _requant(draw, valid=True):
    rounding = draw(st.sampled_from(list(P.ROUNDING_CODES)))
    tfl = rounding == "tflite"
    lo = draw(st.integers(INT32_MIN, INT32_MAX))
    hi = draw(st.integers(lo, INT32_MAX))
    return RequantParams(mult=draw(st.integers(0 if tfl else INT32_MIN, INT32_MAX)),
                         shift=draw(st.integers(1 if tfl else 0, 62)), bias=draw(st.integers(INT32_MIN, INT32_MAX)),
                         offset=0 if tfl else draw(st.integers(-(1 << 47), (1 << 47) - 1)),
                         zero_point=draw(st.integers(INT32_MIN, INT32_MAX)), lo=lo, hi=hi, rounding=rounding)


@FUZZ
@given(st.data())
def test_fuzz_run_descriptor(data):
    """Random field values: ``encode`` gives 40 words or one ValueError line naming the field;
    ``decode`` of those words re-encodes to the same words. Random 40-word patterns always
    decode, and re-encode to the same words whenever every field is encodable."""
    with time_limit():
        if data.draw(st.booleans(), label="from fields"):
            kw = {name: data.draw(_field_value, label=name) for name in
                  ("m_count", "k_steps", "n_tiles", "act_base", "bank", "weight_base", "channel_base",
                   "residual_base", "x_zero_point", "add_left_shift", "add_sum_shift", "pool_taps", "pool_d", "pool_lo",
                   "pool_hi")}
            kw.update(x_signed=data.draw(st.booleans()), add=data.draw(st.booleans()),
                      pool=data.draw(st.booleans()),
                      epilogue=data.draw(st.sampled_from(["requant", "threshold", "softmax"])),
                      out_bytes=data.draw(st.sampled_from([1, 2, 3, 4])),
                      pool_mode=data.draw(st.sampled_from(["max", "avg_nemo", "avg_tflite", "min"])),
                      add_zero_points=(data.draw(_field_value), data.draw(_field_value)))
            if kw["add"]:
                kw.update(add_branches=(data.draw(_requant()), data.draw(_requant())), add_output=data.draw(_requant()))
            try:
                d = P.RunDescriptor(**kw)
                words = d.encode()
            except ValueError as e:
                assert_one_line(str(e))
                count("run_descriptor", "refused")
                return
            count("run_descriptor", "encoded")
        else:
            words = data.draw(st.lists(_word, min_size=P.RUN_WORDS, max_size=P.RUN_WORDS), label="words")
        d2, w2 = P.RunDescriptor.decode(words)
        assert w2 == [w & P.MASK32 for w in words]
        try:
            again = d2.encode()
        except ValueError as e:
            assert_one_line(str(e))
            count("run_descriptor", "decoded-not-encodable")
            return
        # fields a disabled unit ignores are not re-encoded
        keep = [j for j in range(P.RUN_WORDS) if (j < 10 or (10 <= j < 37 and d2.add) or (j >= 37 and d2.pool))]
        mask9 = 0x7FFFFFFF | (1 << 31)
        assert [again[j] for j in keep] == [w2[j] & (mask9 if j == 9 else P.MASK32) for j in keep] or \
            not _canonical(w2), (words, again)
        count("run_descriptor", "round-trip")


def _canonical(w):
    """Whether the reserved bits of the descriptor words are zero (only then is decode injective)."""
    return (w[7] & ~0xFFFFFF01 & P.MASK32) == 0 and (w[8] & ~0x333 & P.MASK32) == 0 and w[12] < 32 \
        and (w[37] & ~0x3FFF03 & P.MASK32) == 0


@FUZZ
@given(st.lists(_word, min_size=8, max_size=8))
def test_fuzz_param_entry(words):
    """A parameter entry decodes (then re-encodes to the same 8 words) or is refused with one line."""
    with time_limit():
        try:
            params, wzp = P.decode_requant(words)
        except ValueError as e:
            assert_one_line(str(e))
            count("param_entry", "refused")
            return
        assert P.encode_requant(params, None, wzp) == words
        count("param_entry", "round-trip")


@FUZZ
@given(st.lists(_word, max_size=20), st.sampled_from([32, 64, 128]),
       st.lists(st.lists(_word, min_size=1, max_size=9), min_size=1, max_size=6))
def test_fuzz_responses_and_beats(words, bus_width, packets):
    """Garbage response words parse or give one ValueError line; packets survive the beat split."""
    with time_limit():
        try:
            r = P.parse_response(words)
            head = [int(w) for w in words[:len(r.words())]]
            # parse_response ignores the header's reserved bits 24-31 (the bench would not see a
            # top that sets them); apart from those the parse is exact
            assert r.words() == [head[0] & 0xFFFFFF] + head[1:]
            count("responses_and_beats", "parsed" if head[0] >> 24 == 0 else "parsed-reserved-bits-ignored")
        except ValueError as e:
            assert_one_line(str(e))
            count("responses_and_beats", "refused")
        per = bus_width // 32
        beats = [b for pk in packets for b in P.to_beats(pk, bus_width)]
        back = P.split_packets(beats, bus_width)
        assert back == [pk + [0] * (-len(pk) % per) for pk in packets]


_INFO = P.Info(rows=4, cols=4, bus_width=64, weight_depth=64, weight_banks=2, act_depth=1024, param_channels=16,
               residual_depth=256, threshold_channels=8, max_q=3, max_pool_taps=9, max_pool_shift=16)


@st.composite
def _garbage_packet(draw):
    kind = draw(st.sampled_from(["random", "opcode", "run"]))
    if kind == "random":
        return draw(st.lists(_word, min_size=1, max_size=24))
    if kind == "opcode":       # a real opcode, a length word, random payload
        op = draw(st.sampled_from(list(P.OPCODES.values()) + [0, 9, 0xFF]))
        payload = draw(st.lists(_word, max_size=45))
        length = draw(st.one_of(st.just(len(payload)), _word))
        return [op | (draw(st.integers(0, 255)) << 8) | (draw(st.sampled_from([0, 0, 1 << 16, 1 << 31]))), length] + payload
    payload = draw(st.lists(st.integers(0, 70), min_size=P.RUN_WORDS, max_size=P.RUN_WORDS))
    return P.command("RUN", payload, tag=draw(st.integers(0, 255)))


@FUZZ
@given(st.lists(_garbage_packet(), min_size=1, max_size=8))
def test_fuzz_model_packet_decoder(packets):
    """The executable model of the top (the RTL's reference) answers every garbage packet with one
    response, a known status and its header echoed; a valid INFO afterwards is answered OK."""
    with time_limit():
        model = AcceleratorModel(_INFO)
        responses = model.transact(packets + [P.info(tag=9)])
    assert len(responses) == len(packets) + 1
    for pk, r in zip(packets, responses):
        assert r.status in P.STATUS_NAMES and r.opcode == pk[0] & 0xFF and r.tag == (pk[0] >> 8) & 0xFF
        count("model_packet_decoder", P.STATUS_NAMES[r.status])
    assert responses[-1].ok and P.decode_info(responses[-1].payload) == _INFO
    assert model.counters["errors"] == sum(not r.ok for r in responses)


# --- importers ----------------------------------------------------------------------------------

def _importers():
    found = []
    for name in ("import_onnx", "import_torch"):
        if (REPO / "golden" / f"{name}.py").exists():
            found.append(name)
    return found


# --- the RTL top: garbage, then a valid network -----------------------------------------------------

def garbage_stream(seed, length):
    """``length`` packets of garbage: random words, real opcodes with random length words and
    payloads, RUNs with random small fields (some valid), early TLAST, trailing beats."""
    rng = np.random.default_rng(seed)
    packets = []
    for _ in range(length):
        r = rng.random()
        if r < 0.3:
            pk = [int(w) for w in rng.integers(0, 1 << 32, int(rng.integers(1, 16)))]
        elif r < 0.7:
            op = int(rng.choice(list(P.OPCODES.values()) + [0, 9, 0xFF]))
            n = int(rng.integers(0, 45))
            length = n if rng.random() < 0.5 else int(rng.integers(0, 1 << 32))
            pk = [op | (int(rng.integers(0, 256)) << 8), length] + [int(w) for w in rng.integers(0, 1 << 32, n)]
        else:
            pk = P.command("RUN", [int(w) for w in rng.integers(0, 8, P.RUN_WORDS)], tag=int(rng.integers(0, 256)))
        packets.append(pk)
    return packets


def garbage_then_network(sim, tmp_path, *, seed, length, ratio="10:11", **bench):
    """Garbage into the top (each response checked against the model in the bench, under the
    watchdog), then the network of tests/test_top.py, decoded and compared with golden."""
    from intdeploy.sim.rtl_engine import run_top
    from tests.test_top import QUICK, RATIOS, info_of, network

    model, x = network(seed)
    golden = IntegerDeployable(model).run(x, trace=True)
    rec = Recorder(ModelEngine(info_of(QUICK)))
    run_network(model, x, rec)
    net = [p for call in rec.calls for p in call]
    garbage = garbage_stream(seed, length)
    statuses = {r.status for r in AcceleratorModel(info_of(QUICK)).transact(garbage)}
    bus, core = RATIOS[ratio]
    responses, _ = run_top(sim, QUICK, test_dir=tmp_path, packets=garbage + net, seed=seed, bus_period=bus,
                           core_period=core, idle=0.2, idle_burst=3, backpressure=0.3, bp_burst=5, **bench)
    assert len(responses) == len(garbage) + len(net)
    out, _ = run_network(model, x, Replay(rec.calls, responses[len(garbage):]))
    for name, g in golden.items():
        np.testing.assert_array_equal(out[name], g, err_msg=f"layer {name} after garbage on {sim}")
    return statuses


def test_rtl_garbage_then_network_verilator(tmp_path):
    statuses = garbage_then_network("verilator", tmp_path, seed=3, length=300)
    assert len(statuses) >= 5, statuses


@pytest.mark.regress
def test_rtl_garbage_then_network_icarus(tmp_path):
    garbage_then_network("icarus", tmp_path, seed=4, length=60, ratio="11:10")


@pytest.mark.regress
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_rtl_garbage_sweep(seed, tmp_path):
    garbage_then_network("verilator", tmp_path, seed=seed, length=1500, ratio=["1:4", "4:1", "10:11"][seed % 3])


# --- accumulator: a real worst-case proof, tested at the limit ------------------------------------------

@FUZZ
@given(st.data())
def test_fuzz_accumulator_range_is_exact(data):
    """For random small layers, ``accumulator_range`` is attained by some input (each channel's
    bound is reached by putting every x at the end that maximises its term) and no input exceeds
    it: the proof is exact, not a loose bound, and not optimistic."""
    m = data.draw(st.integers(1, 3))
    k = data.draw(st.integers(1, 6))
    w = np.array(data.draw(st.lists(st.integers(-128, 127), min_size=m * k, max_size=m * k))).reshape(m, k)
    x_lo = data.draw(st.integers(-128, 255))
    x_hi = data.draw(st.integers(x_lo, 255))
    zx = data.draw(st.integers(-300, 300))
    zw = np.array(data.draw(st.lists(st.integers(-128, 127), min_size=m, max_size=m)))
    bias = np.array(data.draw(st.lists(st.integers(-(1 << 20), 1 << 20), min_size=m, max_size=m)))
    lo, hi = mac_array.accumulator_range(w, x_lo, x_hi, zx, zw, bias)
    wc = w - zw[:, None]
    x_max = np.where(wc >= 0, x_hi, x_lo)       # per channel: the arg-max input
    x_min = np.where(wc >= 0, x_lo, x_hi)
    for c in range(m):
        acc = lambda x: int(mac_array.linear(x[None, :], w[c:c + 1], zx, zw[c:c + 1])[0, 0]) + int(bias[c])
        assert acc(x_max[c]) == hi[c] and acc(x_min[c]) == lo[c]
        rng = np.random.default_rng(data.draw(st.integers(0, 1 << 30)))
        for x in rng.integers(x_lo, x_hi + 1, (20, k)):
            assert lo[c] <= acc(x) <= hi[c]
    count("accumulator_range", "exact")


def _limit_layer(bias_hi, bias_lo, k=8):
    """A linear layer whose channel 0 reaches ``bias_hi + 255*127*k`` and channel 1
    ``bias_lo - 255*128*k`` for int8 inputs (zero point -128): all x = 127, weights 127 / -128."""
    w = np.zeros((4, k), dtype=np.int8)
    w[0], w[1], w[2], w[3] = 127, -128, 5, -7
    bias = np.array([bias_hi, bias_lo, 0, 0])
    return w, bias


def _limit_model(extra_hi=0, extra_lo=0, k=8):
    top = 255 * 127 * k
    bottom = 255 * 128 * k
    w, bias = _limit_layer(INT32_MAX - top + extra_hi, INT32_MIN + bottom - extra_lo, k)
    spec = InputSpec(shape=(k,), dtype="int8", zero_point=-128)
    rq = RequantParams(mult=np.array([1 << 20] * 4), shift=np.array([40] * 4), bias=bias,
                       zero_point=0, lo=-128, hi=127, rounding="half_even")
    layer = MacLayer(kind="linear", name="fc", inputs=("input",), weight=w, input_zero_point=-128,
                     requant=rq, dtype="int8")
    return IntegerModel(input=spec, layers=(layer,), outputs=("fc",)), w, bias


def _taps(total, step):
    """``total`` as taps of ``step`` plus one remainder tap (all of the sign of ``step``)."""
    n, rest = divmod(abs(total), abs(step))
    return [step] * n + ([rest if step > 0 else -rest] if rest else [])


def _products_at_limit(extra=0):
    """Two channels of int8 weights, uint8 inputs with zero point 1 (x - 1 in [-1, 254]) whose
    products alone reach exactly INT32_MAX (channel 0) and INT32_MIN (channel 1); ``extra``
    moves one weight one step further (one past the limit)."""
    # hi = 254 * P + 1 * N where P / N sum the positive / |negative| centred weights
    p0, n0 = divmod(INT32_MAX, 254)                  # 8454660 * 254 + 7
    ch0 = _taps(p0, 247) + _taps(-n0 - extra, -8)    # zero point -120: centred weights in [-8, 247]
    # lo = -(1 * P) - 254 * N
    n1, p1 = divmod(1 << 31, 254)
    ch1 = _taps(-n1, -248) + _taps(p1 + extra, 7)    # zero point 120: centred weights in [-248, 7]
    k = max(len(ch0), len(ch1))
    wc = np.zeros((2, k), dtype=np.int64)
    wc[0, :len(ch0)], wc[1, :len(ch1)] = ch0, ch1
    zw = np.array([-120, 120])
    w = wc + zw[:, None]
    assert w.min() >= -128 and w.max() <= 127
    return w, zw


def test_accumulator_products_exactly_at_the_limit():
    """Products alone (no bias) exactly at INT32_MAX and INT32_MIN over ~34,000 taps: the proof
    gives exactly those bounds, 32 bits suffice, the adversarial input reaches them in golden;
    one weight one step further on either channel: refused as needing 33 bits."""
    w, zw = _products_at_limit()
    lo, hi = mac_array.accumulator_range(w, 0, 255, 1, zw)
    assert int(hi[0]) == INT32_MAX and int(lo[1]) == INT32_MIN
    assert mac_array.check_accumulator(w, 0, 255, 1, zw) == 32
    wc = w - zw[:, None]
    x_max = np.where(wc[0] >= 0, 255, 0)
    x_min = np.where(wc[1] >= 0, 0, 255)
    assert int(mac_array.linear(x_max[None], w[:1], 1, zw[:1])[0, 0]) == INT32_MAX
    assert int(mac_array.linear(x_min[None], w[1:], 1, zw[1:])[0, 0]) == INT32_MIN
    w1, zw1 = _products_at_limit(extra=1)
    lo1, hi1 = mac_array.accumulator_range(w1, 0, 255, 1, zw1)
    assert int(hi1[0]) == INT32_MAX + 1 and int(lo1[1]) == INT32_MIN - 1
    for c in (0, 1):
        with pytest.raises(ValueError) as e:
            mac_array.check_accumulator(w1[c:c + 1], 0, 255, 1, zw1[c:c + 1], name="fc")
        assert_one_line(str(e.value))
        assert str(e.value).startswith("fc: accumulator needs 33 bits, hardware has 32")


def test_accumulator_limit_check_exact():
    """``check_accumulator`` at INT32_MAX / INT32_MIN exactly: accepted with 32 bits; one past
    either end: refused with one line naming the layer, the bits and the worst channel."""
    k = 8
    top, bottom = 255 * 127 * k, 255 * 128 * k
    w, _ = _limit_layer(0, 0, k)
    for bias_hi, bias_lo, ok in [(INT32_MAX - top, INT32_MIN + bottom, True),
                                 (INT32_MAX - top + 1, INT32_MIN + bottom, False),
                                 (INT32_MAX - top, INT32_MIN + bottom - 1, False)]:
        bias = np.array([bias_hi, bias_lo, 0, 0])
        lo, hi = mac_array.accumulator_range(w, -128, 127, -128, 0, bias)
        if ok:
            assert int(hi[0]) == INT32_MAX and int(lo[1]) == INT32_MIN
            assert mac_array.check_accumulator(w, -128, 127, -128, 0, bias, name="fc") == 32
        else:
            with pytest.raises(ValueError) as e:
                mac_array.check_accumulator(w, -128, 127, -128, 0, bias, name="fc")
            assert_one_line(str(e.value))
            assert str(e.value).startswith("fc: accumulator needs 33 bits, hardware has 32 (worst channel ")


def test_accumulator_at_limit_model_file_and_driver():
    """The at-limit layer is a valid model, golden reaches INT32_MAX / INT32_MIN exactly on the
    adversarial input and the driver accepts it; one past the limit the model file refuses it,
    and the driver refuses the same GEMM given directly."""
    model, w, bias = _limit_model()
    x = np.full((1, 8), 127)
    acc = mac_array.linear(x, w.astype(np.int64), -128, 0) + bias
    assert int(acc[0, 0]) == INT32_MAX and int(acc[0, 1]) == INT32_MIN
    out, _ = run_network(model, np.vstack([x, -x - 1]), ModelEngine(_INFO))
    np.testing.assert_array_equal(out["fc"], IntegerDeployable(model).run(np.vstack([x, -x - 1])))
    for extra in (dict(extra_hi=1), dict(extra_lo=1)):
        with pytest.raises(ModelFormatError) as e:
            _limit_model(**extra)
        assert_one_line(str(e.value))
        assert "accumulator needs 33 bits, hardware has 32" in str(e.value)
        _, w1, b1 = (None,) + _limit_layer(INT32_MAX - 255 * 127 * 8 + extra.get("extra_hi", 0),
                                           INT32_MIN + 255 * 128 * 8 - extra.get("extra_lo", 0))
        job = GemmJob(name="fc", x=np.full((1, 8), 127), w=w1.astype(np.int64), x_signed=True, x_zero_point=-128,
                      w_zero_point=np.zeros(4, np.int64),
                      requant=RequantParams(mult=1 << 20, shift=40, bias=b1, lo=-128, hi=127))
        with pytest.raises(ValueError, match=r"^layer 'fc': accumulator needs 33 bits, hardware has 32"):
            Driver(_INFO).compile_gemm(job)


@pytest.mark.parametrize("sim", ["verilator"])
def test_accumulator_at_limit_rtl(sim, tmp_path):
    """The at-limit layer on the RTL top: the accumulator plus bias reaches INT32_MAX and
    INT32_MIN exactly; every output bit-exact with golden (a 33-bit or saturating adder, or a
    wrong bias add, would change the requantized result)."""
    from intdeploy.sim.rtl_engine import RtlEngine
    from tests.test_top import QUICK

    model, w, bias = _limit_model()
    rng = np.random.default_rng(0)
    x = np.vstack([np.full((1, 8), 127), np.full((1, 8), -128), rng.integers(-128, 128, (2, 8))])
    golden = IntegerDeployable(model).run(x)
    out, _ = run_network(model, x, RtlEngine(sim, QUICK, work_dir=tmp_path))
    np.testing.assert_array_equal(out["fc"], golden)
    # the requantized results at the limit are the clamp ends (INT32_MAX * 2**20 >> 40 = 2047 -> 127)
    assert int(golden[0, 0]) == 127 and int(golden[0, 1]) == -128
