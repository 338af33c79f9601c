"""pytest plugin (loaded with ``-p intdeploy.sim.pytest_plugin``): a summary table at the end of a run.

One row per test module (a unit, the golden model, the CLI...) and simulator, with the
number of tests passed / failed / skipped and the time spent, so a regression run ends with a
table a reader can scan instead of a wall of dots.
"""

import collections
import os
import re
import shutil

from intdeploy.sim import coverage
from intdeploy.sim.runner import REPO, SIMULATORS

_SIM_RE = re.compile(r"\b(" + "|".join(SIMULATORS) + r")\b")


def _row_key(report):
    module = report.nodeid.split("::", 1)[0]
    module = module.removeprefix("tests/").removesuffix(".py")
    match = _SIM_RE.search(report.nodeid.split("::", 1)[-1])
    return module, match.group(1) if match else "-"


def pytest_configure(config):
    """Functional coverage (sim/coverage.py): the top-level benches of this run write their bin
    hits to a fresh directory (the workers and simulators inherit the variable)."""
    if hasattr(config, "workerinput"):
        return
    # One directory per pytest process: concurrent runs in the same tree keep their own bins.
    path = REPO / "build" / "coverage" / f"run-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    os.environ.setdefault("INTDEPLOY_COVERAGE_DIR", str(path))


def _coverage_summary(tr):
    lines, _ = coverage.report()
    if not lines[0].startswith("functional coverage of 0 "):
        tr.section("functional coverage")
        for line in lines:
            tr.write_line(line)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _coverage_summary(terminalreporter)
    rows = collections.defaultdict(lambda: collections.Counter())
    for outcome in ("passed", "failed", "error", "skipped", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            if outcome == "passed" and report.when != "call":
                continue
            key = _row_key(report)
            rows[key][outcome] += 1
            rows[key]["seconds"] += getattr(report, "duration", 0.0)
    if not rows:
        return
    tr = terminalreporter
    tr.section("intdeploy summary")
    header = f"{'tests':38} {'sim':10} {'passed':>7} {'failed':>7} {'skipped':>8} {'seconds':>8}"
    tr.write_line(header)
    tr.write_line("-" * len(header))
    total = collections.Counter()
    for (module, sim), c in sorted(rows.items()):
        failed = c["failed"] + c["error"]
        tr.write_line(f"{module:38} {sim:10} {c['passed']:7d} {failed:7d} {c['skipped']:8d} "
                      f"{c['seconds']:8.1f}")
        total.update(c)
    tr.write_line("-" * len(header))
    tr.write_line(f"{'total':38} {'':10} {total['passed']:7d} {total['failed'] + total['error']:7d} "
                  f"{total['skipped']:8d} {total['seconds']:8.1f}")
