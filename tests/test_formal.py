"""Formal proofs of the stream and clock-crossing contracts (SymbiYosys via yowasp-sby,
solver yices-smt2), each with its planted-bug companions, which must fail with a
counterexample VCD. docs/formal.md describes every proof and what it covers.

Quick tier: the fast proofs and one planted bug per fast proof, plus the clock-crossing
planted bugs (seconds each). Regress tier: every proof and every planted bug (``make formal``
runs the same set with a summary table).
"""

import os

import pytest

from formal.proofs import PROOFS
from formal.run import run_proof


@pytest.fixture(autouse=True)
def _formal_build(tmp_path, monkeypatch):
    # One build directory per test: no race with another run of the same proof.
    monkeypatch.setenv("INTDEPLOY_BUILD", str(tmp_path))


def _check(proof, mutant=None):
    r = run_proof(proof, mutant=mutant, timeout=float(os.environ.get("INTDEPLOY_FORMAL_TIMEOUT", 1800)))
    log = (r.workdir.parent / "sby.log").read_text()
    if mutant is None:
        assert r.status == "PASS", f"{proof.name}: {r.status}\n{log[-3000:]}"
    else:
        assert r.status == "FAIL", f"{proof.name} with {mutant}: {r.status} (the bug went unnoticed)\n{log[-3000:]}"
        assert r.vcds, f"{proof.name} with {mutant}: no counterexample trace"


def _mark(fast):
    return [] if fast else [pytest.mark.regress]


# Planted bugs in the quick tier besides the fast proofs' first ones: each fails in seconds.
QUICK_MUTANTS = {"cdc_fifo": ["no_full", "unsynchronized_wptr"],
                 "requantizer_equiv_half_up": ["half_up_as_floor"],
                 "requantizer_equiv_half_even": ["no_even_fix"],
                 "requantizer_equiv_tflite": ["no_tflite_nudge"],
                 "requantizer_equiv_half_away": ["half_away_as_half_up"]}

PROOF_CASES = [pytest.param(p, id=p.name, marks=_mark(p.fast)) for p in PROOFS]
MUTANT_CASES = [
    pytest.param(p, mu, id=f"{p.name}-{mu}",
                 marks=_mark((p.fast and mu == p.mutants[0]) or mu in QUICK_MUTANTS.get(p.name, ())))
    for p in PROOFS for mu in p.mutants]


@pytest.mark.parametrize("proof", PROOF_CASES)
def test_proof_passes(proof):
    _check(proof)


@pytest.mark.parametrize("proof, mutant", MUTANT_CASES)
def test_planted_bug_fails(proof, mutant):
    _check(proof, mutant)


def test_every_proof_has_a_planted_bug():
    # The equivalence proof of floor is covered by the other modes' planted bugs (same datapath);
    # every other proof must show it can fail.
    lonely = [p.name for p in PROOFS if not p.mutants and p.name != "requantizer_equiv_floor"]
    assert not lonely, f"proofs without a planted-bug companion: {lonely}"
