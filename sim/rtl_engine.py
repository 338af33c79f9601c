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

from intdeploy.host import protocol as P
from intdeploy.hw.config import AcceleratorConfig
from intdeploy.hw.top import Accelerator
from intdeploy.sim.runner import SIMULATORS, run_bench

__all__ = ["RtlEngine", "run_top", "write_packets", "read_responses", "accelerator_config"]


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


class RtlEngine:
    """Executes command packets on the RTL top under a simulator.

    Parameters
    ----------
    sim : ``"verilator"`` or ``"icarus"``
    params : dict, AcceleratorConfig or intdeploy.host.protocol.Info
        Elaboration parameters of the top.
    work_dir : path, optional
        Where packets, responses and logs go (a temporary directory by default).
    bench : keyword arguments
        Bench configuration: ``bus_period``, ``core_period`` (ns), ``idle``, ``backpressure``,
        ``watchdog``, ``seed``.

    Attributes
    ----------
    cycles : int or None
        Core cycles of the last :meth:`execute`, from the first command beat to the last
        response.
    """

    def __init__(self, sim, params, *, work_dir=None, **bench):
        if sim not in SIMULATORS:
            raise ValueError(f"sim: {sim!r} is not one of {', '.join(SIMULATORS)}")
        self.sim = sim
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
        responses, self.cycles = run_top(self.sim, self.config, test_dir=run_dir, scenario="batch",
                                         packets=packets, **self.bench)
        return responses
