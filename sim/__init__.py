"""Verification: the executable model of the accelerator, the cocotb benches and their runner, the
RTL engine, coverage, and the soak and cross-check campaigns.

:data:`ENGINES` names what can run a program of packets: ``model`` (the executable model,
:class:`intdeploy.sim.accel_model.ModelEngine`) or the RTL on ``verilator`` / ``icarus``.
``golden`` is the numpy reference (:mod:`intdeploy.golden`), which every engine is compared with;
as an engine name it is the former name of ``model`` and still accepted (:func:`engine_name`).
"""

__all__ = ["ENGINES", "engine_name", "engine_alias"]

ENGINES = ("model", "verilator", "icarus")


def engine_alias(text):
    """``model`` for ``golden`` (the executable model's former name), else ``text`` unchanged: the
    ``type`` of a ``--sim`` option, whose ``choices`` then name the allowed values."""
    return "model" if text == "golden" else text


def engine_name(text):
    """``text`` as one of :data:`ENGINES` (``golden``, the executable model's former name, is
    ``model``); ValueError naming the allowed values otherwise."""
    name = engine_alias(text)
    if name not in ENGINES:
        raise ValueError(f"--sim: {text!r} is not one of {', '.join(ENGINES)}")
    return name
