"""``intdeploy run`` (sim/run.py): the bundled network on the golden engine and the RTL, bit-exact
against golden, planted bugs found and named, bad input refused in one line.

Expected values are computed here independently: accuracy from golden IntegerDeployable, useful
MACs from the layer shapes, never from the report under test. Quick tier: the golden engine on the
whole split, a few images on Verilator (the default 8x8 top, the build ``make demo`` reuses),
planted bugs on both sides. Regress tier: the whole split on Verilator, a shorter run on Icarus.
"""

import dataclasses
import json

import numpy as np
import pytest

from intdeploy.golden import digits, model_file
from intdeploy.golden.integer_deployable import IntegerDeployable
from intdeploy.golden.network import accuracy
from intdeploy.host import protocol as P
from intdeploy.host.timing import ADD_TABLE_CYCLES
from intdeploy.sim.accel_model import ModelEngine
from intdeploy.tools import cli
from intdeploy.tools.run import run
from tests.test_top import QUICK

MODEL = model_file.load(digits.MODEL_FILE)
X_TEST, Y_TEST = digits.load_split()[2:]
#: Useful MACs per image of the digits network, from its shapes (golden/digits.py):
#: conv1 8x8 pixels x 3x3x1 taps x 8, conv2 8x8 x 3x3x8 x 8, fc 128 x 10.
MACS_PER_IMAGE = 64 * 9 * 8 + 64 * 72 * 8 + 128 * 10
#: The quick tier's top (tests/test_top.py QUICK: 4x4, 64-bit bus), whose Verilator build the
#: other quick tests share; the default 8x8 top of ``make demo`` runs in the regress tier.
QUICK_TOP = dict(rows=QUICK["rows"], cols=QUICK["cols"], hardware=QUICK)


def cli_run(capsys, *argv):
    rc = cli.main(["run", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def with_requant(model, layer_name, **fields):
    """``model`` with fields of one layer's requantizer replaced."""
    layers = tuple(dataclasses.replace(la, requant=dataclasses.replace(la.requant, **fields))
                   if la.name == layer_name else la for la in model.layers)
    return dataclasses.replace(model, layers=layers)


def test_golden_engine_json_whole_split(capsys):
    """``--sim golden``, the executable model's former name, still runs it (now called model)."""
    rc, out, err = cli_run(capsys, "--sim", "golden", "--json")
    assert rc == 0, err
    r = json.loads(out)                                   # one JSON object, nothing else on stdout
    assert r["sim"] == "model"
    assert err == ""                                      # no progress bar with --json
    for key in ("bit_exact", "mismatches", "accuracy", "cycles", "mac_utilization", "layers", "first_mismatch"):
        assert key in r
    assert r["bit_exact"] is True and r["mismatches"] == 0 and r["first_mismatch"] is None
    assert r["images"] == len(Y_TEST) == 360
    expected = accuracy(IntegerDeployable(MODEL).run(X_TEST), Y_TEST)
    assert r["accuracy"]["integer"] == r["accuracy"]["engine"] == expected
    assert r["accuracy"]["float"] is not None and r["accuracy"]["fake_quant"] is not None
    assert r["useful_macs"] == MACS_PER_IMAGE * 360
    assert r["mac_utilization"] == pytest.approx(r["useful_macs"] / (64 * r["cycles"]))
    assert 0 < r["mac_utilization"] < 1
    assert [la["name"] for la in r["layers"]] == [la.name for la in MODEL.layers]
    assert all(la["mismatches"] == 0 for la in r["layers"])
    assert sum(la["elements"] for la in r["layers"]) == r["elements"]


def test_text_report_and_model_without_float_representations(capsys):
    rc, out, err = cli_run(capsys, str(digits.MODELS_DIR / "digits_qat8.json"), "--images", "7", "--rows", "4",
                           "--cols", "16")
    assert rc == 0, err
    assert "4x16 MAC array" in out and "first 7 of 360" in out
    assert "float and fake-quant: not available" in out
    assert "bit-exact: yes" in out


def test_verilator_few_images_bit_exact_and_model_cycles_bound_rtl(tmp_path):
    """A few images on the RTL. The executable model's cycle count (what ``--sim golden``
    reports) is an estimate: words in and out at the top's rates, MAC steps, less the words
    hidden behind RUNs. Checked
    against the RTL's STATUS counters: MAC steps equal exactly, the total bounds the RTL's from
    above, and each layer's RTL count lies within 60..110 % of the estimate (the RTL overlaps
    transfers with compute; a short layer pays a few cycles of pipeline latency)."""
    rtl = run(MODEL, sim="verilator", images=6, work_dir=tmp_path, **QUICK_TOP)
    assert rtl["bit_exact"] and rtl["mismatches"] == 0, rtl["mismatch_line"]
    assert rtl["useful_macs"] == 6 * MACS_PER_IMAGE
    est = run(MODEL, sim="model", images=6, **QUICK_TOP)
    for a, b in zip(rtl["layers"], est["layers"]):
        assert a["mac_steps"] == b["mac_steps"], a["name"]
        if not a["host"]:
            assert a["mac_steps"] < a["cycles"] and 0.6 * b["cycles"] <= a["cycles"] <= 1.1 * b["cycles"], \
                (a["name"], a["cycles"], b["cycles"])
    assert rtl["cycles"] <= est["cycles"]
    assert 0 < rtl["mac_utilization"] < 1
    assert (tmp_path / "sim.log").exists()


def test_sharded_run_reports_what_one_simulation_reports(tmp_path):
    """``--workers 2``: 100 images (chunks of 45, 45 and 10) sharded over two simulator processes
    of a Dask LocalCluster (chunks 0-1 and chunk 2), each simulating from reset in its own
    directory. The report equals one simulation's, results, MAC steps and cycles per layer, except
    that the second shard starts from reset and so refills the add unit's branch-b table, which one
    simulation filled once for all chunks: the add layer's cycles and the total are higher by at
    most ADD_TABLE_CYCLES, every other layer's are the same (a chunk's program and its STATUS
    cycle counts depend on the chunks before it only through that table)."""
    one = run(MODEL, sim="verilator", images=100, work_dir=tmp_path / "one", **QUICK_TOP)
    two = run(MODEL, sim="verilator", images=100, work_dir=tmp_path / "two", workers=2, **QUICK_TOP)
    assert one["bit_exact"] and one["images"] == 100
    extra = two["cycles"] - one["cycles"]
    assert 0 < extra <= ADD_TABLE_CYCLES
    for a, b in zip(one["layers"], two["layers"]):
        if a["kind"] == "add":
            assert b["cycles"] - a["cycles"] == extra, a["name"]
            a["cycles"], a["mac_utilization"] = b["cycles"], b["mac_utilization"]
    for r in (one, two):
        for key in ("wall_seconds", "cycles", "mac_utilization"):
            r.pop(key)
    assert two == one
    assert (tmp_path / "two" / "shard0" / "sim.log").exists() and (tmp_path / "two" / "shard1" / "sim.log").exists()


# --- planted bugs ------------------------------------------------------------------------------

def test_planted_rounding_mode_in_golden_is_caught(tmp_path, capsys):
    """Golden's fc rounds half_up, the accelerator floor (as the model file says)."""
    bad = model_file.save(with_requant(MODEL, "fc", rounding="half_up"), tmp_path / "bad.json")
    rc, out, err = cli_run(capsys, "--sim", "golden", "--reference", str(bad), "--images", "20", "--json")
    assert rc == 1
    r = json.loads(out)
    assert r["bit_exact"] is False and r["mismatches"] > 0
    m = r["first_mismatch"]
    assert m["layer"] == "fc" and m["cause"] == "rounding mode"
    assert [la["name"] for la in r["layers"] if la["mismatches"]] == ["fc"]
    # independently: the first element where the two roundings differ
    g = IntegerDeployable(model_file.load(bad)).run(X_TEST[:20])
    e = IntegerDeployable(MODEL).run(X_TEST[:20])
    first = tuple(int(v) for v in np.argwhere(g != e)[0])
    assert tuple(m["index"]) == first and m["channel"] == first[-1]
    assert (m["golden"], m["engine"]) == (g[first], e[first])
    assert "MISMATCH: layer 'fc'" in err and f"channel {first[-1]}" in err


def test_planted_bug_inside_a_fused_program_is_caught_and_pointed_at(tmp_path, capsys):
    """conv2 rounds differently in golden: with --fuse its output is not read back, the mismatch
    shows at the program's output (pool) with a hint; without --fuse it is conv2 itself."""
    bad = model_file.save(with_requant(MODEL, "conv2", rounding="half_up"), tmp_path / "bad.json")
    rc, out, err = cli_run(capsys, "--reference", str(bad), "--images", "10", "--fuse", "--json")
    r = json.loads(out)
    assert rc == 1 and r["first_mismatch"]["layer"] == "pool"
    assert [la["name"] for la in r["layers"] if la["mismatches"]][0] == "conv2+add.sum+add+pool"
    assert "in the fused program conv2+add.sum+add+pool: run without --fuse" in err
    rc, out, err = cli_run(capsys, "--reference", str(bad), "--images", "10", "--json")
    assert rc == 1 and json.loads(out)["first_mismatch"]["layer"] == "conv2" and "fused" not in err


def test_planted_clamp_in_golden_is_caught_as_saturation(capsys, tmp_path):
    peak = int(IntegerDeployable(MODEL).run(X_TEST[:20], trace=True)["conv1"].max())
    bad = model_file.save(with_requant(MODEL, "conv1", hi=peak - 3), tmp_path / "bad.json")
    rc, out, err = cli_run(capsys, "--reference", str(bad), "--images", "20")
    assert rc == 1 and "bit-exact: NO" in out
    assert "MISMATCH: layer 'conv1'" in err and "likely cause: saturation" in err
    assert f"golden {peak - 3}, accelerator model" in err


def test_planted_engine_bug_is_caught(monkeypatch, capsys):
    """One result bit of the accelerator model flipped: the first element of add.sum."""
    execute = ModelEngine.execute
    status, run_op = P.OPCODES["STATUS"], P.OPCODES["RUN"]

    def corrupt(self, packets):
        rs = execute(self, packets)
        seen = 0                                  # STATUS packets so far: 2 per layer
        for pk, r in zip(packets, rs):
            if pk[0] & 0xFF == status:
                seen += 1
            elif pk[0] & 0xFF == run_op and seen == 5:       # third layer (add.sum), first RUN
                r.payload[0] ^= 1
                break
        return rs
    monkeypatch.setattr(ModelEngine, "execute", corrupt)
    rc, out, err = cli_run(capsys, "--images", "5", "--json")
    assert rc == 1
    r = json.loads(out)
    g = IntegerDeployable(MODEL).run(X_TEST[:5], trace=True)["add.sum"]
    m = r["first_mismatch"]
    assert (m["layer"], m["index"], m["channel"]) == ("add.sum", [0, 0, 0, 0], 0)
    assert (m["golden"], m["engine"]) == (g[0, 0, 0, 0], g[0, 0, 0, 0] ^ 1)
    assert [la["mismatches"] for la in r["layers"]] == [0, 0, 1, 0, 0, 0, 0]


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, field", [
    (["--rows", "0"], "--rows"), (["--rows", "17"], "--rows"), (["--cols", "65"], "--cols"),
    (["--images", "0"], "--images"), (["--images", "-3"], "--images"), (["--images", "361"], "--images"),
    (["--images", "ten"], "--images"), (["--sim", "modelsim"], "--sim"),
    (["/nonexistent/model.json"], "/nonexistent/model.json"), (["MALFORMED"], "bad.json"),
    (["--reference", "MALFORMED"], "bad.json"),
])
def test_bad_input_one_line_exit_2(argv, field, capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"format\": ")
    argv = [str(bad) if a == "MALFORMED" else a for a in argv]
    rc, out, err = cli_run(capsys, *argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("intdeploy: error: ")
    assert field in err and "Traceback" not in err


def test_model_that_is_not_a_digits_network_is_refused(capsys, tmp_path):
    from intdeploy.golden.model_file import InputSpec, IntegerModel, MacLayer
    from intdeploy.golden.requantizer import RequantParams
    layer = MacLayer(kind="linear", name="fc", inputs=("input",), weight=np.ones((3, 4), dtype=np.int8),
                     requant=RequantParams(mult=1, shift=0), dtype="int32")
    path = model_file.save(IntegerModel(input=InputSpec(shape=(4,)), layers=(layer,), outputs=("fc",)),
                           tmp_path / "small.json")
    rc, out, err = cli_run(capsys, str(path))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "allowed a model with input (8, 8, 1)" in err


# --- any model, the user's inputs --------------------------------------------------------------

def _small_model():
    from intdeploy.golden.model_file import InputSpec, IntegerModel, MacLayer
    from intdeploy.golden.requantizer import RequantParams
    w = np.random.default_rng(3).integers(-20, 21, (3, 6)).astype(np.int8)
    layer = MacLayer(kind="linear", name="fc", inputs=("x",), weight=w, input_zero_point=-5,
                     requant=RequantParams(mult=3, shift=4, bias=[7, -7, 0], zero_point=2, lo=-128, hi=127,
                                           rounding="half_away"), dtype="int8")
    return IntegerModel(input=InputSpec(name="x", shape=(6,), dtype="int8", zero_point=-5), layers=(layer,),
                        outputs=("fc",), name="small")


def test_run_any_model_on_the_users_inputs(capsys, tmp_path):
    """--inputs (.npy and .npz), --save-outputs: the saved outputs are golden's, computed here."""
    model = _small_model()
    path = model_file.save(model, tmp_path / "small.json")
    x = np.random.default_rng(0).integers(-128, 128, (7, 6))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    want = np.clip(((x + 5) @ model.layers[0].weight.astype(np.int64).T + [7, -7, 0]) * 3, -2 ** 31, 2 ** 31)
    want = np.clip(np.sign(want) * ((np.abs(want) + 8) >> 4) + 2, -128, 127)    # half away from zero, / 16
    for name in ("x.npy", "x.npz"):
        rc, out, err = cli_run(capsys, str(path), "--inputs", str(tmp_path / name), "--save-outputs",
                               str(tmp_path / "y.npz"))
        assert rc == 0, err
        assert f"7 inputs from {name}" in out and "bit-exact: yes" in out and "accuracy" not in out
        with np.load(tmp_path / "y.npz") as y:
            np.testing.assert_array_equal(y["fc"], want)


def test_run_random_inputs_against_the_tflite_model(capsys, tmp_path):
    """--random N and --reference MODEL.tflite: the framework's outputs equal the accelerator's."""
    from tests.test_import_tflite import cnn
    (tmp_path / "cnn.tflite").write_bytes(cnn())
    assert cli.main(["import", str(tmp_path / "cnn.tflite"), "-o", str(tmp_path / "cnn.json"), "--verify", "0"]) == 0
    rc, out, err = cli_run(capsys, str(tmp_path / "cnn.json"), "--random", "12", "--seed", "4", "--reference",
                           str(tmp_path / "cnn.tflite"), "--rows", "4", "--cols", "4")
    assert rc == 0, err
    assert "12 random inputs in [-128, 127]" in out and "bit-exact: yes" in out
    assert "operator #7 SOFTMAX of the imported model: layer 'op7_softmax' runs on the host" in out
    assert "op7_softmax" in out.split("per layer")[1].split("cycles:")[0]
    assert "framework (cnn.tflite) vs accelerator: 120/120 elements of the output equal" in out


@pytest.mark.parametrize("make, field", [
    (lambda d: np.save(d / "in.npy", np.full((2, 6), 127) + np.eye(2, 6, dtype=np.int64)), "value 128 at (0, 0)"),
    (lambda d: np.save(d / "in.npy", np.zeros((2, 5), dtype=np.int64)), "allowed an integer array of shape (N,) + (6,)"),
    (lambda d: np.save(d / "in.npy", np.zeros((2, 6))), "float64"),
    (lambda d: (d / "in.npy").write_bytes(b"not numpy"), "not a readable numpy file"),
    (lambda d: np.savez(d / "in.npz", a=np.zeros((1, 6)), b=np.zeros((1, 6))), "allowed one array"),
])
def test_bad_inputs_one_line(make, field, capsys, tmp_path):
    path = model_file.save(_small_model(), tmp_path / "small.json")
    make(tmp_path)
    name = "in.npz" if (tmp_path / "in.npz").exists() else "in.npy"
    rc, out, err = cli_run(capsys, str(path), "--inputs", str(tmp_path / name))
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--inputs" in err and field in err and "Traceback" not in err


def test_a_non_digits_model_without_inputs_says_how_to_give_them(capsys, tmp_path):
    path = model_file.save(_small_model(), tmp_path / "small.json")
    rc, out, err = cli_run(capsys, str(path))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--inputs FILE" in err and "--random N" in err


# --- regress tier: the done criterion ---------------------------------------------------------

@pytest.mark.regress
def test_whole_split_bit_exact_on_verilator(tmp_path):
    r = run(MODEL, sim="verilator", work_dir=tmp_path)
    assert r["images"] == 360 and r["bit_exact"], r["mismatch_line"]
    assert r["accuracy"]["engine"] == accuracy(IntegerDeployable(MODEL).run(X_TEST), Y_TEST)
    assert r["useful_macs"] == 360 * MACS_PER_IMAGE


@pytest.mark.regress
def test_icarus_bit_exact(tmp_path):
    r = run(MODEL, sim="icarus", images=2, work_dir=tmp_path)
    assert r["bit_exact"], r["mismatch_line"]
