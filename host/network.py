"""Running a network: every program of a model on an engine, and its statistics."""

from dataclasses import dataclass

from intdeploy import wire
from intdeploy.golden.model_file import IntegerModel
from intdeploy.host import protocol as P
from intdeploy.host.driver import Driver
from intdeploy.host.job import EngineError

__all__ = ["LayerStats", "run_network", "run_layers", "network_stats"]

@dataclass
class LayerStats:
    """What one layer cost: packets and words on the streams, MAC steps, STATUS counter deltas.

    For a fused program (:meth:`Driver.plan`) ``name`` and ``kind`` join its layers' with "+";
    ``output`` is always the tensor the program produces (the last layer's name)."""
    name: str
    kind: str
    output: str = ""
    host: bool = False
    packets: int = 0
    runs: int = 0
    words_sent: int = 0
    input_cycles: int = 0
    words_received: int = 0
    mac_steps: int = 0
    useful_macs: int = 0
    cycles: int = 0
    busy_cycles: int = 0
    mac_cycles: int = 0


def run_network(model, images, engine, driver=None, fuse=False):
    """Run ``model`` on the integer ``images`` layer by layer on ``engine``.

    Each layer's packets for the whole batch go to the engine in one ``execute`` call, between two
    STATUS packets whose counter differences give the layer's cycles (so an engine may start each
    call from reset: every layer's packets write all the buffer contents it reads). Flatten
    layers run on the host.

    Parameters
    ----------
    model : IntegerModel
    images : integer array ``(batch,) + model.input.shape`` within the input's ``[lo, hi]`` (several
        inputs: a dict by name or a tuple, :meth:`intdeploy.golden.model_file.IntegerModel.feed`)
    engine : object with ``execute(packets) -> list of Response``
    driver : Driver, optional
        Defaults to one built from the engine's INFO response.
    fuse : bool
        Run an add or pooling layer in the epilogue of the layer before it where it can
        (:meth:`Driver.plan`): fewer cycles, and the tensors in between are not computed apart.

    Returns
    -------
    outputs : dict name -> int64 array, the input and every layer (as
        ``IntegerDeployable.run(x, trace=True)``), except, with ``fuse``, the layers that feed a
        layer fused after them
    stats : dict with ``layers`` (list of :class:`LayerStats`), ``info`` (Info), totals
        ``packets``, ``words_sent``, ``words_received``, ``mac_steps``, ``useful_macs``,
        ``cycles``, ``mac_cycles``, and ``utilisation`` = useful MACs / (R * C * cycles) (None if
        the engine reports no cycles).

    Raises
    ------
    ValueError : a layer the accelerator cannot run (before anything runs), bad images.
    EngineError : an engine answered a valid packet with an error or the wrong shape.
    """
    x = _check_images(model, images)
    first = engine.execute([P.info()])
    if len(first) != 1 or not first[0].ok:
        raise EngineError(f"engine: INFO answered {[str(r) for r in first]}")
    info = P.decode_info(first[0].payload)
    if info.version != wire.PROTOCOL_VERSION:
        raise EngineError(f"engine: INFO reports protocol version {info.version}; this host speaks version "
                          f"{wire.PROTOCOL_VERSION} (docs/protocol.md, INFO): rebuild the accelerator's Verilog "
                          f"from this tree")
    if driver is None:
        driver = Driver(info)
    elif driver.info != info:
        raise ValueError(f"driver: built for {driver.info}, the engine reports {info}")
    driver.check(model)
    tensors = dict(x)
    layers = []
    for group in driver.plan(model, fuse):
        prog = driver.compile_group(model, group, tensors)
        last = group[-1]
        if prog.host:
            tensors[last.name] = prog.finish(None)
            layers.append(LayerStats(name=last.name, kind=last.kind, output=last.name, host=True))
            continue
        responses = engine.execute([P.status()] + prog.packets + [P.status()])
        tensors[last.name], st = _layer_result(group, prog, responses)
        layers.append(st)
    return tensors, network_stats(layers, info)


def run_layers(model, reference, engine, driver=None, fuse=False):
    """Run every layer of ``model`` on ``engine`` in ONE ``execute`` call, each compiled from the
    ``reference`` tensors (e.g. golden's ``IntegerDeployable.run(x, trace=True)``).

    :func:`run_network` compiles layer ``k`` from the engine's own output of the layers before it,
    so it needs one engine call per layer. Here every layer's inputs come from ``reference``, so the
    whole program is known in advance and a batch engine (one simulator run) executes it at once,
    and each layer is checked in isolation: a wrong layer does not disturb the comparison of the
    layers after it. If every layer equals ``reference``, the engine's end-to-end result equals it
    too (by induction over the layers, starting from the same images).

    The call starts with INFO (its answer must equal ``engine.info``, from which the driver was
    built) and brackets each layer's packets with two STATUS packets, as :func:`run_network`.

    Parameters
    ----------
    model : IntegerModel
        The network the engine runs (its layers are compiled).
    reference : dict name -> array
        The input images under ``model.input.name`` and every layer's input tensor.
    engine : object with ``info`` (:class:`intdeploy.host.protocol.Info`) and ``execute(packets)``
    driver : Driver, optional
    fuse : bool
        As :func:`run_network`.

    Returns
    -------
    ``(outputs, stats)`` as :func:`run_network`.
    """
    x = _check_images(model, {name: reference[name] for name in model.input_names})
    info = engine.info
    driver = Driver(info) if driver is None else driver
    if driver.info != info:
        raise ValueError(f"driver: built for {driver.info}, the engine reports {info}")
    driver.check(model)
    ref = {**reference, **x}
    progs = [(group, driver.compile_group(model, group, ref)) for group in driver.plan(model, fuse)]
    packets = [P.info()]
    for _, prog in progs:
        if not prog.host:
            packets += [P.status()] + prog.packets + [P.status()]
    responses = engine.execute(packets)
    if len(responses) != len(packets):
        raise EngineError(f"engine: {len(packets)} packets, {len(responses)} responses")
    if not responses[0].ok or P.decode_info(responses[0].payload) != info:
        raise EngineError(f"engine: INFO answered {responses[0]}, expected {info}")
    outputs = dict(x)
    layers = []
    at = 1
    for group, prog in progs:
        last = group[-1]
        if prog.host:
            outputs[last.name] = prog.finish(None)
            layers.append(LayerStats(name=last.name, kind=last.kind, output=last.name, host=True))
            continue
        n = len(prog.packets) + 2
        outputs[last.name], st = _layer_result(group, prog, responses[at:at + n])
        at += n
        layers.append(st)
    return outputs, network_stats(layers, info)


def network_stats(layers, info):
    """Totals over :class:`LayerStats` ``layers`` (the ``stats`` dict of :func:`run_network`)."""
    tot = {k: sum(getattr(s, k) for s in layers) for k in ("packets", "words_sent", "words_received",
                                                              "mac_steps", "useful_macs", "cycles", "mac_cycles")}
    tot["utilisation"] = tot["useful_macs"] / (info.rows * info.cols * tot["cycles"]) if tot["cycles"] else None
    return dict(layers=list(layers), info=info, **tot)


def _check_images(model, images):
    """The inputs by name (:meth:`intdeploy.golden.model_file.IntegerModel.feed`), at least one sample."""
    if not isinstance(model, IntegerModel):
        raise ValueError(f"model: expected IntegerModel, got {type(model).__name__}")
    x = model.feed(images, "images")
    n = len(next(iter(x.values())))
    if n == 0:
        raise ValueError(f"images: expected N >= 1 samples, got {n}")
    return x


def _layer_result(group, prog, responses):
    """``(output, LayerStats)`` of one program (a tuple of layers, the last one's output) from its
    responses, bracketed by two STATUS answers."""
    name, kind = "+".join(la.name for la in group), "+".join(la.kind for la in group)
    if len(responses) != len(prog.packets) + 2 or not (responses[0].ok and responses[-1].ok):
        raise EngineError(f"layer {name!r}: {len(prog.packets) + 2} packets, {len(responses)} "
                          f"responses, STATUS {[str(r) for r in responses[:1] + responses[-1:]]}")
    out = prog.decode(responses[1:-1])
    start, end = (P.decode_status(r.payload) for r in (responses[0], responses[-1]))
    st = LayerStats(name=name, kind=kind, output=group[-1].name, packets=len(prog.packets), runs=len(prog.runs),
                    words_sent=prog.words_sent, input_cycles=prog.input_cycles, words_received=sum(2 + len(r.payload) for r in responses[1:-1]),
                    mac_steps=prog.mac_steps, useful_macs=prog.useful_macs,
                    **{k: end[k] - start[k] for k in ("cycles", "busy_cycles", "mac_cycles")})
    if st.mac_cycles != st.mac_steps:
        raise EngineError(f"layer {name!r}: STATUS reports {st.mac_cycles} MAC steps, the layer's "
                          f"RUNs have {st.mac_steps}")
    return out, st
