"""Engines that record a program on one engine and replay another's responses to it.

An *engine* executes command packets: ``execute(packets) -> responses``, one
:class:`intdeploy.host.protocol.Response` per packet, in order (the executable model
:class:`intdeploy.sim.accel_model.ModelEngine`, the RTL :class:`intdeploy.sim.rtl_engine.RtlEngine`,
a board). A driver run makes several calls (one per layer, each depending on the last); an RTL
simulation is cheapest as one run. So: run the driver once on a :class:`Recorder` around a fast
engine, send every recorded packet to the slow engine at once, and run the driver again on a
:class:`Replay` of those responses, which checks that the driver sends the same program.
"""

__all__ = ["Recorder", "Replay", "ReplayError"]


class ReplayError(AssertionError):
    """The driver sent a different program to the :class:`Replay` than it recorded."""


class Recorder:
    """Executes on ``engine`` and records every call's packets in :attr:`calls`."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    @property
    def info(self):
        """The recorded engine's INFO (:func:`intdeploy.host.network.run_layers` reads it)."""
        return self.engine.info

    @property
    def packets(self):
        """Every recorded packet, in order."""
        return [p for call in self.calls for p in call]

    def execute(self, packets):
        self.calls.append([list(p) for p in packets])
        return self.engine.execute(packets)


class Replay:
    """Answers each call with the next of ``responses`` (one per packet of the recorded
    ``calls``), after checking that the call sends the packets recorded for it. ``info``: the
    INFO of the engine the responses come from."""

    def __init__(self, calls, responses, info=None):
        self.calls, self.responses, self.info = list(calls), list(responses), info

    def execute(self, packets):
        packets = [list(p) for p in packets]
        if not self.calls or packets != self.calls[0]:
            raise ReplayError("the driver sent a different program than it recorded")
        self.calls.pop(0)
        out, self.responses = self.responses[:len(packets)], self.responses[len(packets):]
        return out
