"""The intdeploy command line, run as the installed console script."""

import json
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

from intdeploy.golden import digits

INTDEPLOY = Path(sys.executable).with_name("intdeploy")


def run(*args, cwd=None):
    assert INTDEPLOY.exists(), f"{INTDEPLOY} missing: run `make setup` (pip install -e .)"
    return subprocess.run([str(INTDEPLOY), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_user_error(p, *fragments):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("intdeploy: error: "), p.stderr
    assert "Traceback" not in p.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture
def model_copy(tmp_path):
    """A writable copy of the committed model file: (json path, manifest dict)."""
    path = tmp_path / "digits.json"
    shutil.copy(digits.MODEL_FILE, path)
    shutil.copy(digits.MODEL_FILE.with_suffix(".npz"), tmp_path / "digits.npz")
    return path, json.loads(path.read_text())


def test_help_lists_commands():
    p = run("--help")
    assert p.returncode == 0
    assert "demo" in p.stdout and "bench" in p.stdout


def test_demo_reports_four_parts():
    p = run("demo")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for part in ("FullPrecision", "FakeQuantized", "IntegerDeployable", "IntegerDeployable vs QuantizedDeployable",
                 "identical to a fresh conversion"):
        assert part in out, out
    table = out.split("IntegerDeployable vs QuantizedDeployable")[1]
    for name in ("conv1", "conv2", "add.sum", "add", "pool", "flat", "fc"):
        assert f"\n  {name} " in table, table
    assert " NO" not in table


def test_demo_corrupt_model_is_one_line_naming_the_field(model_copy):
    path, manifest = model_copy
    manifest["layers"][3]["requant"]["shift"] = 70
    path.write_text(json.dumps(manifest))
    assert_user_error(run("demo", path), "layers[3].requant.shift: 70 is out of range; allowed [0, 62]")


def test_demo_truncated_npz(model_copy):
    path, _ = model_copy
    npz = path.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:100])
    assert_user_error(run("demo", path), "not a readable .npz file")


def test_demo_missing_file(tmp_path):
    assert_user_error(run("demo", tmp_path / "nope.json"), "nope.json: file not found")


def test_demo_flags_a_wrong_but_valid_model(model_copy):
    path, manifest = model_copy
    rq = manifest["layers"][3]["requant"]            # the activation after the add
    rq["mult"] = int(rq["mult"] * 1.05)
    path.write_text(json.dumps(manifest))
    p = run("demo", path)
    assert p.returncode == 1
    assert "DIFFERS from a fresh conversion" in p.stdout
    assert "outside the RQ error bound in layer(s) add" in p.stderr


def test_bad_arguments_are_one_line():
    assert_user_error(run("bench", "--runs", "x"), "--runs", "invalid int value")
    assert_user_error(run("bench", "--runs", "0"), "--runs: 0 is out of range")
    assert_user_error(run(), "command")
    assert_user_error(run("frobnicate"), "frobnicate")


def test_bench_writes_json(tmp_path):
    out = tmp_path / "perf" / "golden.json"
    p = run("bench", "--runs", "2", "--out", out)
    assert p.returncode == 0, p.stderr
    assert "images/s" in p.stdout
    result = json.loads(out.read_text())
    assert result["images"] == digits.N_TEST and result["images_per_second"] > 0 and result["runs"] == 2
    assert result["accuracy"] >= 0.97
