"""The accelerator top on a simulator, as an engine that executes command packets.

:class:`RtlEngine` runs a list of command packets (lists of 32-bit words, as
:mod:`intdeploy.host.protocol` builds them) through the Verilog of :class:`intdeploy.hw.top.Accelerator` on Verilator
or Icarus (cocotb bench :mod:`intdeploy.sim.tb_top`, scenario ``batch``) and returns the responses, so the
host driver can run the same program on the executable model and on the RTL. :func:`run_top`
is the lower-level entry the tests use (any scenario of the bench).
"""

import json
from pathlib import Path
import tempfile

from intdeploy.golden.checks import check_int
from intdeploy.host import protocol as P
from intdeploy.hw.config import AcceleratorConfig
from intdeploy.hw.top import Accelerator
from intdeploy.sim import player
from intdeploy.sim.runner import SIMULATORS, run_bench

__all__ = ["RtlEngine", "run_top", "run_player", "write_packets", "read_responses", "accelerator_config"]


def accelerator_config(params):
    """An :class:`AcceleratorConfig` from a dict of elaboration parameters, an
    ``AcceleratorConfig`` or a :class:`intdeploy.host.protocol.Info` (ValueError names a bad field)."""
    if isinstance(params, AcceleratorConfig):
        return params
    if isinstance(params, P.Info):
        params = {k: getattr(params, k) for k in AcceleratorConfig.__dataclass_fields__
                  if hasattr(params, k)}
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict, AcceleratorConfig or Info, got {type(params).__name__}")
    return AcceleratorConfig(**params)


def write_packets(path, **streams):
    """Write packet lists (``packets=[...]``, or ``first=``/``interrupted=``/``second=``) to
    ``path`` as JSON, words reduced modulo 2**32."""
    data = {name: [[int(w) & P.MASK32 for w in pk] for pk in pks] for name, pks in streams.items()}
    Path(path).write_text(json.dumps(data))
    return Path(path)


def read_responses(path):
    """``(responses, core_cycles)`` from the bench's ``responses_file``."""
    data = json.loads(Path(path).read_text())
    return [P.Response(o, t, s, list(p)) for o, t, s, p in data["responses"]], data["cycles"]


def run_top(sim, params, *, test_dir, scenario="model", seed=0, **bench):
    """Run :mod:`intdeploy.sim.tb_top` on the top elaborated with ``params``; raises AssertionError with
    the bench's report on a mismatch or hang.

    ``bench`` holds the bench configuration (``packets_file`` or the packets themselves as
    ``packets=`` / ``first=`` ... lists, clock periods, stall rates, ...); returns
    ``(responses, core_cycles)`` when the bench wrote them.
    """
    config = accelerator_config(params)
    test_dir = Path(test_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    streams = {k: bench.pop(k) for k in ("packets", "first", "interrupted", "second") if k in bench}
    if streams:
        bench["packets_file"] = str(write_packets(test_dir / "packets.json", **streams))
    bench.setdefault("responses_file", str(test_dir / "responses.json"))
    cfg = {"accel": config.as_dict(), "scenario": scenario, "seed": seed, **bench}

    run_bench("top", lambda: Accelerator(**config.as_dict()), config.key(), sim, cfg,
              test_dir=test_dir)
    path = Path(bench["responses_file"])
    return read_responses(path) if path.exists() else (None, None)


def run_player(sim, params, packets, *, test_dir, seed=0, bus_period=10, core_period=10, idle=0.0, idle_burst=1,
               backpressure=0.0, bp_burst=1, watchdog=200000, power_up="init", memories="inline"):
    """Run ``packets`` through the top inside the stream player (:mod:`intdeploy.sim.player`): the
    native-speed path. ``idle`` / ``backpressure`` are rates in [0, 1) of the player's LFSR
    stalls (``*_burst``: their longest length in cycles), ``watchdog`` core cycles without a
    response beat end the run as a hang (AssertionError naming the responses received).
    ``power_up`` (:data:`intdeploy.sim.runner.POWER_UP`): ``"random"`` starts every register at a
    random value drawn from ``seed`` on Verilator (X on Icarus), ``"random-2012"`` the same on
    Icarus in SystemVerilog mode. ``memories="wrapped"``: the memories as instances of their
    wrapper modules (:mod:`intdeploy.hw.ram`, behavioural bodies). Returns ``(responses, core_cycles)``."""
    config = accelerator_config(params)
    test_dir = Path(test_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    packets = [list(p) for p in packets]
    bw = config.bus_width
    beats = player.write_beats(test_dir / "commands.hex", packets, bw)
    result_file, out_file = test_dir / "player.json", test_dir / "responses.hex"
    out_file.unlink(missing_ok=True)
    rate = lambda r, name: check_int(name, int(round(float(r) * 65536)), 0, 65535)   # noqa: E731
    plusargs = [f"+player_in={test_dir / 'commands.hex'}", f"+player_out={out_file}", f"+player_beats={beats}",
                f"+player_packets={len(packets)}", f"+player_seed={int(seed) & 0x7FFFFFFF or 1}",
                f"+player_idle={rate(idle, 'idle')}", f"+player_idle_burst={check_int('idle_burst', idle_burst, 1)}",
                f"+player_bp={rate(backpressure, 'backpressure')}",
                f"+player_bp_burst={check_int('bp_burst', bp_burst, 1)}",
                f"+player_watchdog={check_int('watchdog', watchdog, 1)}"]
    plusargs += [f"+player_bus_period={float(bus_period)}", f"+player_core_period={float(core_period)}"]
    if power_up != "init" and sim == "verilator":
        plusargs += ["+verilator+rand+reset+2", f"+verilator+seed+{int(seed) % 1000 + 1}"]
    cfg = {"bus_period": bus_period, "core_period": core_period, "result_file": str(result_file),
           "self_clocked": sim == "icarus"}
    run_bench("player", lambda: Accelerator(**config.as_dict()), config.key(), sim, cfg, test_dir=test_dir,
              toplevel="top", harness=(player.MODULE, lambda top: player.harness(top, bw)), plusargs=plusargs,
              power_up=power_up, memories=memories)
    result = json.loads(result_file.read_text())
    packs = P.split_packets(player.read_beats(out_file, bw), bw) if result["out_beats"] else []
    if result["out_beats"] > 1 << player.ADDR_BITS:
        raise AssertionError(f"top: {result['out_beats']} response beats overflowed the player's memory of "
                             f"{1 << player.ADDR_BITS} (split the program into runs)")
    responses = [P.parse_response(words) for words in packs]
    if result["hang"] or len(responses) != len(packets):
        raise AssertionError(f"top: HANG: {len(responses)} of {len(packets)} responses within the watchdog of "
                             f"{watchdog} core cycles (player, {sim})")
    return responses, result["cycles"]


class RtlEngine:
    """Executes command packets on the RTL top under a simulator.

    Parameters
    ----------
    sim : ``"verilator"`` or ``"icarus"``
    params : dict, AcceleratorConfig or intdeploy.host.protocol.Info
        Elaboration parameters of the top.
    work_dir : path, optional
        Where packets, responses and logs go (a temporary directory by default).
    native : bool
        True (default): the stream player around the top, no Python per beat or cycle
        (:func:`run_player`); False: the cocotbext-axi bench (:func:`run_top`, scenario
        ``batch``). The responses are the same but for STATUS's cycle counts.
    bench : keyword arguments
        Bench configuration: ``bus_period``, ``core_period`` (ns), ``idle``, ``idle_burst``,
        ``backpressure``, ``bp_burst``, ``watchdog``, ``seed``.

    Attributes
    ----------
    cycles : int or None
        Core cycles of the last :meth:`execute`: from the first command beat to the last
        response (cocotbext-axi path), from the core reset's release to the last response
        (player).
    """

    def __init__(self, sim, params, *, work_dir=None, native=True, **bench):
        if sim not in SIMULATORS:
            raise ValueError(f"sim: {sim!r} is not one of {', '.join(SIMULATORS)}")
        self.sim = sim
        self.native = bool(native)
        self.config = accelerator_config(params)
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="intdeploy-rtl-"))
        self.bench = bench
        self.cycles = None
        self._runs = 0

    @property
    def info(self):
        """The :class:`intdeploy.host.protocol.Info` that INFO reports for this top."""
        c = self.config
        return P.Info.of(c)

    def execute(self, packets):
        """Send ``packets`` (lists of words) in order; returns one :class:`intdeploy.host.protocol.Response`
        per packet. The accelerator starts from reset (buffers at power-up: zero)."""
        packets = [list(p) for p in packets]
        if not packets or any(len(p) == 0 for p in packets):
            raise ValueError("packets: expected one or more non-empty packets")
        self._runs += 1
        run_dir = self.work_dir / f"run{self._runs}"
        if self.native:
            responses, self.cycles = run_player(self.sim, self.config, packets, test_dir=run_dir, **self.bench)
        else:
            responses, self.cycles = run_top(self.sim, self.config, test_dir=run_dir, scenario="batch",
                                             packets=packets, **self.bench)
        return responses
