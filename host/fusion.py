"""Programs of layers: one layer, or a group fused into one GEMM's epilogue (docs/driver.md,
"Fusion"), and the plan of a network's groups."""

import dataclasses

import numpy as np

from intdeploy.golden.model_file import (AddLayer, FlattenLayer, IntegerModel, MacLayer, PoolLayer, RequantLayer,
                                         SoftmaxLayer)
from intdeploy.golden.softmax import softmax
from intdeploy.host.job import MAX_COUNT, LayerProgram, Refusal, SplitProgram
from intdeploy.host.lowering import out_format
from intdeploy.host.timing import program_cycles

__all__ = ["Fusion"]

class Fusion:
    """Layer programs and fusion of :class:`intdeploy.host.driver.Driver`."""

    def check(self, model):
        """Refuse (ValueError) the first layer of ``model`` the accelerator cannot run; no packets."""
        if not isinstance(model, IntegerModel):
            raise ValueError(f"model: expected IntegerModel, got {type(model).__name__}")
        for layer in model.layers:
            dummy = {name: np.full((1,) + t.shape, t.lo, dtype=np.int64) for name, t in model.tensors.items()
                     if name in layer.inputs}
            self.compile(model, layer, dummy)

    def compile(self, model, layer, tensors):
        """:class:`LayerProgram` for ``layer`` of ``model`` on ``tensors`` (name -> ``(batch,) + shape``)."""
        return self.compile_group(model, (layer,), tensors)

    def compile_group(self, model, group, tensors):
        """:class:`LayerProgram` computing the layers ``group`` (a tuple from :meth:`plan`) as one GEMM.

        The first layer sets the GEMM (a MAC layer, or the identity GEMM of an element-wise layer);
        a following ``add`` becomes the add unit of the same RUNs (its other operand in the
        residual buffer) and a following pooling layer the pooling unit (rows reordered window by
        window). The program's output is the last layer's tensor; the layers before it are not
        read back.
        """
        head, last = group[0], group[-1]
        xs = [np.asarray(tensors[s], dtype=np.int64) for s in head.inputs]
        batch = xs[0].shape[0]
        out_shape = (batch,) + model.tensors[last.name].shape
        what = f"layer {last.name!r} ({last.kind})"
        name = "+".join(la.name for la in group)
        if isinstance(head, (FlattenLayer, SoftmaxLayer)):
            if len(group) > 1:
                raise Refusal(f"{what}: a {head.kind} layer runs on the host and cannot be fused")
            if isinstance(head, SoftmaxLayer):            # no softmax unit: golden's integer kernel
                finish = lambda _, x=xs[0], la=head: softmax(x, la.multiplier, la.left_shift, la.diff_min)
            else:
                finish = lambda _, x=xs[0]: x.reshape(batch, -1)
            return LayerProgram(name=head.name, packets=[], host=True, gemm_shape=(0, 0), finish=finish)
        out = model.tensors[last.name]
        out_bytes, out_signed = out_format(out.lo, out.hi, what)
        hwhat = f"layer {head.name!r} ({head.kind})"
        if isinstance(head, MacLayer) and len(group) == 1 and head.out_channels > self.info.rows \
                and head.name in model.metadata.get("block_diagonal", {}):
            return self._block_diagonal(model, head, xs[0], out_bytes, out_signed)
        if isinstance(head, MacLayer):
            job = self._mac(model, head, xs[0], hwhat)
        elif isinstance(head, AddLayer):
            job = self._add(model, head, xs, hwhat)
        elif isinstance(head, RequantLayer):
            job = self._requant(model, head, xs[0], hwhat)
        elif isinstance(head, PoolLayer):
            job = self._pool(model, head, xs[0], hwhat)
        else:
            raise Refusal(f"{hwhat}: not a layer kind the driver knows")
        flowing = head.name
        for j, layer in enumerate(group[1:], 1):
            lwhat = f"layer {layer.name!r} ({layer.kind})"
            if isinstance(layer, AddLayer) and job.add is None and job.pool is None:
                if list(layer.inputs).count(flowing) != 1:
                    raise Refusal(f"{lwhat}: fused after {flowing!r}, which must be exactly one of its inputs")
                k = layer.inputs.index(flowing)
                self._attach_add(model, layer, job, k, np.asarray(tensors[layer.inputs[1 - k]], dtype=np.int64),
                                 lwhat)
            elif isinstance(layer, PoolLayer) and job.pool is None and layer.inputs[0] == flowing:
                self._attach_pool(model, layer, job, batch, lwhat)
            elif (isinstance(layer, RequantLayer) and job.add is not None and job.pool is None
                  and layer.inputs[0] == flowing and isinstance(group[j - 1], AddLayer)):
                if layer.requant.channels is not None:
                    raise Refusal(f"{lwhat}: per-channel; the add unit's output requantizer is per-tensor")
                fused = job.add.then(layer.requant)
                if fused is None:
                    raise Refusal(f"{lwhat}: the add before it ends in a requantizer that is not a plain floor "
                                     f"division by a power of two, so the sum shift cannot take it")
                job.add = fused
            else:
                raise Refusal(f"{lwhat}: cannot be fused after {flowing!r} (an add, the requant layer after it, "
                                 f"then a pooling layer, may follow a GEMM's epilogue, each once)")
            flowing = layer.name
        job.name = name
        job.out_bytes, job.out_signed = out_bytes, out_signed
        if job.strips is not None and not self._strips_fit(job):
            job.strips = None
        try:
            prog = self.compile_gemm(job)
            if job.strips is not None and self.conv_strips == "auto":
                rows = self.compile_gemm(dataclasses.replace(job, strips=None))
                if program_cycles(rows.packets, self.info) <= program_cycles(prog.packets, self.info):
                    prog = rows
        except ValueError as e:
            raise type(e)(str(e).replace(f"layer {name!r}:", f"{what}:", 1)) from None
        if job.columns is None:
            prog.finish = lambda y: y.reshape(out_shape)
        else:
            prog.finish = lambda y, c=job.columns: y[np.arange(len(c)), c].reshape(out_shape)
        return prog

    def _block_diagonal(self, model, layer, x, out_bytes, out_signed):
        """A grouped convolution imported as a block-diagonal conv2d (model metadata
        ``block_diagonal``: input channels per output; depthwise: 1) as one GEMM per group of R
        output channels, each reading only the input channels its weights use: K = KH*KW*(those
        inputs) instead of KH*KW*Cin, so for a depthwise layer 1/R of the array's MACs are useful
        instead of 1/Cout. Results equal the block-diagonal GEMM's: the weights left out equal the
        weight zero point and add exactly 0."""
        w = layer.weight
        wzp = np.broadcast_to(np.asarray(layer.weight_zero_point), (layer.out_channels,))
        parts = []
        for c0 in range(0, layer.out_channels, self.info.rows):
            outs = np.arange(c0, min(c0 + self.info.rows, layer.out_channels))
            effective = w[outs].astype(np.int64) - wzp[outs, None, None, None]
            ins = np.flatnonzero(np.any(effective != 0, axis=(0, 1, 2)))    # the others add exactly 0
            ins = ins if ins.size else np.array([0])
            sub = dataclasses.replace(layer, weight=w[outs][..., ins], requant=layer.requant.select(outs),
                                      weight_eps=None,
                                      weight_zero_point=wzp[outs] if np.ndim(layer.weight_zero_point) else
                                      layer.weight_zero_point)
            what = f"layer {layer.name!r} (conv2d, channels {c0}..{outs[-1]})"
            job = self._mac(model, sub, x[..., ins], what)
            job.useful_macs = job.x.shape[0] * w.shape[1] * w.shape[2] * model.metadata["block_diagonal"][layer.name] \
                * outs.size
            job.out_bytes, job.out_signed = out_bytes, out_signed
            prog = self.compile_gemm(job)
            shape = x.shape[:1] + model.tensors[layer.name].shape[:-1] + (outs.size,)
            prog.finish = lambda y, shape=shape: y.reshape(shape)
            parts.append(prog)
        return SplitProgram(name=layer.name, packets=[p for part in parts for p in part.packets],
                            runs=[r for part in parts for r in part.runs], rows=self.info.rows,
                            mac_steps=sum(p.mac_steps for p in parts), useful_macs=sum(p.useful_macs for p in parts),
                            weight_chunks=sum(p.weight_chunks for p in parts),
                            row_chunks=sum(p.row_chunks for p in parts),
                            input_cycles=sum(p.input_cycles for p in parts), parts=parts)

    def dry_run(self, model, group, tensors):
        """Compile ``group`` as one program on ``tensors`` (e.g. every tensor at its lower bound)
        and send nothing: None if the accelerator can run it so, else the :class:`Refusal`'s
        one line. A ValueError that is not a refusal (a malformed model, a bug) propagates."""
        try:
            self.compile_group(model, group, tensors)
        except Refusal as e:
            return str(e)
        return None

    def _strips_fit(self, job):
        """Whether ``job``'s convolution strips can run: no pooling (it needs the rows window by
        window) and a strip fits the buffers. With ``conv_strips="auto"`` :meth:`compile_group`
        then compiles both ways and keeps the one of fewer cycles by
        :func:`intdeploy.sim.accel_model.program_cycles` (MAC steps, words, and the words hidden behind
        RUNs: the dropped rows between a strip's outputs count as steps)."""
        i, st = self.info, job.strips
        if job.pool is not None:
            return False
        L = st.entries.shape[1]
        k_strip = st.w.shape[1] // i.cols
        if L > i.act_depth or k_strip > min(i.weight_depth, MAX_COUNT) or st.row_step > MAX_COUNT:
            return False
        return job.add is None or st.valid <= i.residual_depth

    def plan(self, model, fuse=False):
        """The programs of ``model``: a list of tuples of layers, in model order.

        Without ``fuse`` every layer is its own program. With ``fuse``, a program whose output
        feeds only the next layer (and is not a network output) takes that layer in when the
        epilogue can compute it after what the program already does: an ``add`` if the program has
        no add or pooling yet (the other operand a byte, per-tensor requantizers), a per-tensor
        ``requant`` right after that add when the add's output requantizer is a plain floor
        division by ``2**d`` (NEMO's Eq. 24: the add unit's sum shift takes the division and its
        output requantizer the requant layer, :meth:`intdeploy.golden.add.AddParams.then`), a pooling layer
        if it has no pooling yet, and the combined program fits the buffers (docs/driver.md,
        "Fusion"). Fusing changes neither arithmetic nor results; it saves the fused layer's
        identity GEMM, the words of its operand and the read-back of the tensor in between, which
        is then not observed.
        """
        layers = list(model.layers)
        if not fuse:
            return [(la,) for la in layers]
        users = {}
        for la in layers:
            for s in la.inputs:
                users.setdefault(s, []).append(la.name)
        dummy = {name: np.full((1,) + t.shape, t.lo, dtype=np.int64) for name, t in model.tensors.items()}
        groups, i = [], 0
        while i < len(layers):
            group = (layers[i],)
            while i + len(group) < len(layers) and not isinstance(group[0], (FlattenLayer, SoftmaxLayer)):
                nxt = layers[i + len(group)]
                last = group[-1]
                if users.get(last.name) != [nxt.name] or last.name in model.outputs:
                    break
                if not isinstance(nxt, (AddLayer, RequantLayer, PoolLayer)):
                    break
                if self.dry_run(model, group + (nxt,), dummy) is not None:
                    break
                group += (nxt,)
            groups.append(group)
            i += len(group)
        return groups

