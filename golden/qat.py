"""Quantization-aware training (QAT) in PyTorch: PACT activations, LSQ quantizers, BN folding, and
the QAT of the digits network exported as model files.

The autograd functions compute exactly what the numpy references of :mod:`intdeploy.golden.fakequant` compute
(same operations in the same order; in float64 the forward values and masked gradients are equal
bit for bit, see ``tests/test_qat.py``):

* :class:`PactFunction` / :class:`PactActivation`: PACT (NEMO report sec. 2.2, Eq. 10), learned
  clip ``beta`` (NEMO's ``alpha``), ``y = eps * clip(floor(x / eps), 0, 2**Q - 1)``,
  ``eps = beta / (2**Q - 1)``; straight-through estimator ``dy/dx = 1`` on ``0 <= x < beta``,
  ``dy/dbeta = 1`` on ``x >= beta`` (:func:`intdeploy.golden.fakequant.pact_backward`).
* :class:`LsqFunction` / :class:`LsqQuantizer`: the LSQ step-size quantizer of the weekly report
  (25 May 2019): ``y = round(clip(x / s, -n, n)) * s``, ``n = 2**(b-1) - 1``, round half to
  even; its ``backward`` (:func:`intdeploy.golden.fakequant.lsq_backward`), and the LSQ gradient scale
  ``g = 1 / sqrt(N * Qp)`` (``Qp = n``, ``N`` the elements sharing one step) applied to the
  step's gradient only, by :class:`GradScale` (forward: the identity, bit for bit). Per tensor
  or per output channel (axis 0).
* :func:`fold_bn`: batch-norm folded into the preceding linear operator (report Eq. 18).

The digits network (:mod:`intdeploy.golden.digits`) is trained from its float parameters at two widths
(:func:`train`), in float64 on the CPU, seeded and single-threaded (deterministic):

* **8 bits** (``fold=True``): BN folded into the convolutions before training (Eq. 18); weights
  8-bit LSQ per channel, activations 8-bit PACT. Exported, each convolution's bias, per-channel
  scale and ReLU clip run on the requantizer (``requant`` epilogue).
* **4 bits** (``fold=False``): weights 4-bit LSQ per channel, BN kept (running statistics
  frozen, ``gamma``/``beta`` trained), activations 4-bit PACT. Exported, BN + activation of each
  convolution become integer thresholds (Eq. 19-20, threshold unit).

:meth:`DigitsQat.deployment` exports through :func:`intdeploy.golden.network.convert`: the network with its
weights hardened to ``step * code`` (NEMO's ``harden_weights``), the learned steps as the
per-channel weight quanta and the learned ``beta`` as activation ranges, so the converter
re-derives exactly the integer codes that training used.
"""

import contextlib
import math
import os

#: The environment that makes training reproducible byte for byte across x86-64 CPUs: ATen's
#: vectorised kernels at the baseline ISA (with AVX2 / AVX-512 kernels a reduction sums in another
#: order) and MKL's conditional-numerical-reproducibility mode (its GEMMs otherwise pick a code path
#: per CPU). ATen and MKL read them at their first computation, so they must be set before torch
#: computes anything: ``scripts/qat_digits.py`` sets them before it imports torch. Measured on an
#: AVX2 machine (AMD EPYC, no AVX-512): the default, each setting alone and both give four
#: different sets of model files; the committed ones are those of both.
REPRODUCIBLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}

try:
    import torch
    from torch import nn
except ImportError:
    raise ImportError("intdeploy.golden.qat needs PyTorch: run `.venv/bin/pip install torch==2.13.0` (the CPU wheel) "
                      "or install the `torch` extra") from None

import numpy as np

from intdeploy.golden import digits
from intdeploy.golden.checks import check_int
from intdeploy.golden.network import (INPUT, Add, AvgPool2d, BatchNorm, Conv2d, ConvertOptions, Flatten, Linear,
                                      Network, convert)

__all__ = [
    "PactFunction", "PactActivation", "GradScale", "LsqFunction", "LsqQuantizer", "fold_bn",
    "DigitsQat", "train", "evaluate", "deterministic", "reproducible_across_cpus", "REPRODUCIBLE_ENV", "WIDTHS",
]

#: QAT widths of the digits network: bits -> BN folded into the weights (requantizer) or not
#: (thresholds).
WIDTHS = {8: True, 4: False}


@contextlib.contextmanager
def deterministic():
    """Run the enclosed PyTorch code with deterministic algorithms on one thread (a reduction's
    summation order, and so its last bit, can depend on the thread count) and without oneDNN
    (its kernels are chosen per CPU); restores the settings on exit. Across CPUs the result is
    the same only with :data:`REPRODUCIBLE_ENV` in effect (:func:`reproducible_across_cpus`)."""
    state = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(state[0])
        torch.set_num_threads(state[1])
        torch.backends.mkldnn.enabled = state[2]


def reproducible_across_cpus():
    """True when torch computes here with :data:`REPRODUCIBLE_ENV` in effect (ATen at its baseline
    ISA, MKL asked for its reproducible mode): training then gives the same bytes on x86-64 CPUs
    whatever their vector extensions. (MKL's mode can only be checked as the variable's value.)"""
    return (torch.backends.cpu.get_cpu_capability() == "DEFAULT"
            and os.environ.get("MKL_CBWR") == REPRODUCIBLE_ENV["MKL_CBWR"])


def _bits(bits, lo, hi):
    return check_int("bits", bits, lo, hi)


def _sum_to(t, shape):
    """Sum ``t`` over the axes along which a tensor of ``shape`` was broadcast to ``t``'s shape."""
    if tuple(shape) == tuple(t.shape):
        return t
    lead = t.dim() - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and t.shape[lead + i] != 1)
    return t.sum(dim=dims, keepdim=True).reshape(shape) if dims else t.reshape(shape)


# --- PACT -----------------------------------------------------------------------------------------

class PactFunction(torch.autograd.Function):
    """PACT quantization/activation ``(x, beta, bits) -> y`` with the STE backward of NEMO sec. 2.2.

    Forward: ``eps * clip(floor(x / eps), 0, 2**bits - 1)``, ``eps = beta / (2**bits - 1)``
    (:func:`intdeploy.golden.fakequant.pact_forward`). Backward: ``grad_x = grad_y`` where
    ``0 <= x < beta`` else 0; ``grad_beta = sum(grad_y where x >= beta)`` shaped like ``beta``
    (:func:`intdeploy.golden.fakequant.pact_backward`).
    """

    @staticmethod
    def forward(ctx, x, beta, bits):
        levels = (1 << bits) - 1
        eps = beta / levels
        ctx.save_for_backward(x, beta)
        return eps * torch.clamp(torch.floor(x / eps), 0, levels)

    @staticmethod
    def backward(ctx, grad_y):
        x, beta = ctx.saved_tensors
        zero = torch.zeros_like(grad_y)
        grad_x = torch.where((x >= 0) & (x < beta), grad_y, zero)
        grad_beta = torch.where(x >= beta, grad_y, zero).sum().reshape(beta.shape)
        return grad_x, grad_beta, None


class PactActivation(nn.Module):
    """PACT activation with a learned clip ``beta`` (a 0-d parameter), unsigned ``bits`` (1..16).

    ``eps = beta / (2**bits - 1)``; :meth:`forward` is :class:`PactFunction`.
    """

    def __init__(self, bits, beta=1.0):
        super().__init__()
        self.bits = _bits(bits, 1, 16)
        self.beta = nn.Parameter(torch.tensor(float(beta), dtype=torch.float64))

    @property
    def eps(self):
        return self.beta.item() / ((1 << self.bits) - 1)

    def forward(self, x):
        return PactFunction.apply(x, self.beta, self.bits)

    def extra_repr(self):
        return f"bits={self.bits}, beta={self.beta.item():.6g}"


# --- LSQ ------------------------------------------------------------------------------------------

class GradScale(torch.autograd.Function):
    """``(s, g) -> s`` whose backward multiplies the gradient by ``g`` (LSQ's gradient scale).

    The forward returns ``s`` unchanged (unlike ``s * g + (s - s * g).detach()``, which can
    differ from ``s`` in the last bit)."""

    @staticmethod
    def forward(ctx, s, g):
        ctx.g = g
        return s.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.g, None


class LsqFunction(torch.autograd.Function):
    """The weekly report's ``LsqQuanAct`` (``weight=False``) / ``LsqQuanWeight`` (``weight=True``).

    ``(x, s, bits, weight) -> y``; ``s`` broadcasts against ``x`` (one step, or one per channel).
    Forward: ``nlevel = 2**(bits-1) - 1``, ``y = round(clip(x/s, -nlevel, nlevel)) * s`` (round half
    to even). Backward: ``inside = |x/s| < nlevel``; ``grad_x = grad_y`` for weights, masked to
    ``inside`` for activations; ``grad_s = sum(where(inside, round(x/s) - x/s, round(clip(x/s))) *
    grad_y)`` over the elements sharing each step (:func:`intdeploy.golden.fakequant.lsq_backward`).
    """

    @staticmethod
    def forward(ctx, x, s, bits, weight):
        nlevel = 2 ** (bits - 1) - 1
        ctx.save_for_backward(x, s)
        ctx.nlevel, ctx.weight = nlevel, weight
        return torch.round(torch.clamp(x / s, -nlevel, nlevel)) * s

    @staticmethod
    def backward(ctx, grad_y):
        x, s = ctx.saved_tensors
        nlevel = ctx.nlevel
        x_scale = x / s
        inside = torch.abs(x_scale) < nlevel
        x_bin = torch.round(torch.clamp(x_scale, -nlevel, nlevel))
        grad_x = grad_y if ctx.weight else torch.where(inside, grad_y, torch.zeros_like(grad_y))
        grad_s = _sum_to(torch.where(inside, torch.round(x_scale) - x_scale, x_bin) * grad_y, s.shape)
        return grad_x, grad_s, None, None


class LsqQuantizer(nn.Module):
    """LSQ quantizer with learned step(s): signed, ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``.

    Parameters
    ----------
    bits : int, 2..16
    channels : int, optional
        One step per channel along axis 0 (per output channel of a weight); None: one step.
    weight : bool
        ``LsqQuanWeight`` (unmasked input gradient) or ``LsqQuanAct`` (masked).

    Attributes
    ----------
    step : Parameter ``(channels,)`` or ``(1,)``, float64
    nlevel : ``Qp = 2**(bits-1) - 1``

    :meth:`forward` scales the step's gradient by ``g = 1 / sqrt(N * Qp)`` (LSQ, Esser et al.
    2020; ``N`` the number of elements per step), then applies :class:`LsqFunction`.
    """

    def __init__(self, bits, channels=None, weight=True):
        super().__init__()
        self.bits = _bits(bits, 2, 16)
        self.channels = channels
        self.weight = bool(weight)
        self.nlevel = 2 ** (bits - 1) - 1
        self.step = nn.Parameter(torch.ones(channels or 1, dtype=torch.float64))

    def _per_step(self, x):
        return x.reshape(x.shape[0], -1) if self.channels else x.reshape(1, -1)

    def _shaped(self, s, x):
        return s.reshape((-1,) + (1,) * (x.dim() - 1)) if self.channels else s

    @torch.no_grad()
    def init_step(self, x, mode="lsq"):
        """Initial step from data ``x``: ``"lsq"``: ``2 * mean|x| / sqrt(Qp)`` (LSQ paper);
        ``"max"``: ``max|x| / Qp`` (no clipping, as the converter's symmetric weights)."""
        a = self._per_step(x.detach()).abs()
        s = 2 * a.mean(dim=1) / math.sqrt(self.nlevel) if mode == "lsq" else a.max(dim=1).values / self.nlevel
        self.step.copy_(torch.clamp(s, min=1e-8).to(self.step.dtype))

    def grad_scale(self, x):
        """``1 / sqrt(N * Qp)``, ``N`` = elements of ``x`` per step."""
        return 1.0 / math.sqrt(self._per_step(x).shape[1] * self.nlevel)

    def forward(self, x):
        s = self._shaped(GradScale.apply(self.step, self.grad_scale(x)), x)
        return LsqFunction.apply(x, s, self.bits, self.weight)

    @torch.no_grad()
    def codes(self, x):
        """The integer codes ``round(clip(x/s, -Qp, Qp))`` (int64) of the forward pass."""
        return torch.round(torch.clamp(x / self._shaped(self.step, x), -self.nlevel, self.nlevel)).to(torch.int64)

    def extra_repr(self):
        return f"bits={self.bits}, channels={self.channels}, weight={self.weight}"


# --- BN folding -----------------------------------------------------------------------------------

def fold_bn(weight, bias, gamma, beta, mean, var, eps):
    """Fold batch-norm (report Eq. 3) into the preceding linear operator (Eq. 18).

    ``weight`` is output-channel first (any layout); ``bias`` ``(C,)`` or None. Returns
    ``(w', b')`` with ``w' = gamma/sigma * w`` (per output channel), ``sigma = sqrt(var + eps)``,
    and ``b' = gamma/sigma * (b - mean) + beta`` (Eq. 18 writes ``b + beta - gamma/sigma * mean``,
    which is this for the bias-free operator its derivation assumes). Works on numpy arrays and
    on torch tensors (differentiably).
    """
    sqrt = torch.sqrt if torch.is_tensor(var) else np.sqrt
    k = gamma / sqrt(var + eps)
    w = weight * k.reshape((-1,) + (1,) * (weight.ndim - 1))
    b = -mean if bias is None else bias - mean
    return w, k * b + beta


# --- the digits network ---------------------------------------------------------------------------

_CONVS = ("conv1", "conv2")


class DigitsQat(nn.Module):
    """The digits network (:mod:`intdeploy.golden.digits`) with QAT quantizers, float64.

    Parameters
    ----------
    params : dict of numpy arrays
        Float parameters in the layout of ``golden/models/digits_float.npz`` (OHWI convolutions,
        the linear layer's columns in (h, w, c) order).
    bits : int
        Weight and activation bits (weights LSQ per output channel, activations PACT).
    fold : bool
        Fold BN into the convolutions (Eq. 18) or keep it (running statistics frozen).

    ``forward(x, quantize=True)`` takes float inputs NHWC ``(N, 8, 8, 1)`` (``pixel / 16``) and
    returns the logits; ``quantize=False`` runs the float network (no quantizer).
    """

    def __init__(self, params, bits, fold):
        super().__init__()
        self.bits = _bits(bits, 2, 8)
        self.fold = bool(fold)
        t = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self.bn = nn.ParameterDict()
        self.bn_eps = {}
        for c in _CONVS:
            w = t[f"{c}.weight"].permute(0, 3, 1, 2).contiguous()          # OHWI -> OIHW
            g, b, m, v, e = (t[f"{c}.bn.{k}"] for k in ("gamma", "beta", "mean", "var", "eps"))
            if self.fold:
                w, bias = fold_bn(w, None, g, b, m, v, e)
                self.biases[c] = nn.Parameter(bias)
            else:
                self.bn[f"{c}_gamma"], self.bn[f"{c}_beta"] = nn.Parameter(g), nn.Parameter(b)
                self.register_buffer(f"{c}_mean", m)
                self.register_buffer(f"{c}_var", v)
                self.bn_eps[c] = float(e)
            self.weights[c] = nn.Parameter(w)
        self.weights["fc"] = nn.Parameter(t["fc.weight"])
        self.biases["fc"] = nn.Parameter(t["fc.bias"])
        self.wq = nn.ModuleDict({name: LsqQuantizer(bits, channels=w.shape[0], weight=True)
                                 for name, w in self.weights.items()})
        self.act = nn.ModuleDict({name: PactActivation(bits) for name in _CONVS + ("add",)})

    def weight(self, name, quantize=True):
        w = self.weights[name]
        return self.wq[name](w) if quantize else w

    def _conv(self, name, x, quantize, trace):
        phi = torch.nn.functional.conv2d(x, self.weight(name, quantize), padding=1)
        if self.fold:
            phi = phi + self.biases[name].reshape(1, -1, 1, 1)
        else:
            g, b = self.bn[f"{name}_gamma"], self.bn[f"{name}_beta"]
            mean, var = getattr(self, f"{name}_mean"), getattr(self, f"{name}_var")
            sigma = torch.sqrt(var + self.bn_eps[name])
            # The FullPrecision expression (intdeploy.golden.network), Eq. 3.
            phi = (g / sigma).reshape(1, -1, 1, 1) * (phi - mean.reshape(1, -1, 1, 1)) + b.reshape(1, -1, 1, 1)
        return self._act(name, phi, quantize, trace)

    def _act(self, name, phi, quantize, trace):
        if trace is not None:
            trace[name] = phi
        return self.act[name](phi) if quantize else torch.relu(phi)

    def forward(self, x, quantize=True, trace=None):
        x = x.permute(0, 3, 1, 2)
        y1 = self._conv("conv1", x, quantize, trace)
        y2 = self._conv("conv2", y1, quantize, trace)
        s = self._act("add", y1 + y2, quantize, trace)
        p = torch.nn.functional.avg_pool2d(s, 2).permute(0, 2, 3, 1).flatten(1)    # (h, w, c) order
        return p @ self.weight("fc", quantize).T + self.biases["fc"]

    @torch.no_grad()
    def calibrate(self, x, percentile=100.0, step_init="max"):
        """Initial PACT ``beta`` (a percentile of each float pre-activation, 100 = max, as the
        converter's calibration) and LSQ steps (:meth:`LsqQuantizer.init_step`)."""
        trace = {}
        self(x, quantize=False, trace=trace)
        for name, phi in trace.items():
            v = torch.relu(phi).flatten()
            beta = float(v.max()) if percentile >= 100 else float(torch.quantile(v, percentile / 100))
            self.act[name].beta.fill_(beta if beta > 0 else 1.0)
        for name, w in self.weights.items():
            self.wq[name].init_step(w, step_init)

    @torch.no_grad()
    def float_params(self):
        """The trained float parameters in the project's layout (BN folded or not)."""
        out = {}
        for name, w in self.weights.items():
            w = w.numpy().copy()
            out[f"{name}.weight"] = w.transpose(0, 2, 3, 1).copy() if w.ndim == 4 else w
        for name, b in self.biases.items():
            out[f"{name}.bias"] = b.numpy().copy()
        for c in self.bn_eps:
            out.update({f"{c}.bn.gamma": self.bn[f"{c}_gamma"].numpy().copy(),
                        f"{c}.bn.beta": self.bn[f"{c}_beta"].numpy().copy(),
                        f"{c}.bn.mean": getattr(self, f"{c}_mean").numpy().copy(),
                        f"{c}.bn.var": getattr(self, f"{c}_var").numpy().copy(),
                        f"{c}.bn.eps": np.float64(self.bn_eps[c])})
        return out

    @torch.no_grad()
    def hardened_network(self):
        """``(net, betas, weight_eps)``: the :class:`intdeploy.golden.network.Network` whose weights are the
        fake-quantized ``step * code`` of the forward pass, with the learned activation ranges
        and per-channel weight steps, for :func:`intdeploy.golden.network.convert`."""

        hard = {}
        for name, w in self.weights.items():
            h = (self.wq[name].codes(w).to(torch.float64) * self.wq[name]._shaped(self.wq[name].step, w)).numpy()
            hard[name] = h.transpose(0, 2, 3, 1).copy() if h.ndim == 4 else h
        convs = []
        for i, c in enumerate(_CONVS):
            kw = {}
            if self.fold:
                kw["bias"] = self.biases[c].numpy().copy()
            else:
                kw["bn"] = BatchNorm(gamma=self.bn[f"{c}_gamma"].numpy(), beta=self.bn[f"{c}_beta"].numpy(),
                                     mean=getattr(self, f"{c}_mean").numpy(), var=getattr(self, f"{c}_var").numpy(),
                                     eps=self.bn_eps[c])
            convs.append(Conv2d(name=c, inputs=(INPUT if i == 0 else _CONVS[i - 1],), weight=hard[c], padding=1, **kw))
        layers = tuple(convs) + (
            Add(name="add", inputs=_CONVS),
            AvgPool2d(name="pool", inputs=("add",), kernel=2),
            Flatten(name="flat", inputs=("pool",)),
            Linear(name="fc", inputs=("flat",), weight=hard["fc"], bias=self.biases["fc"].numpy().copy(), act=None),
        )
        net = Network(input_shape=(8, 8, 1), layers=layers, input_eps=1 / 16, input_range=(0, 16))
        betas = {name: a.beta.item() for name, a in self.act.items()}
        weight_eps = {name: q.step.detach().numpy().copy() for name, q in self.wq.items()}
        return net, betas, weight_eps

    def deployment(self, x_cal, name=None):
        """All four representations of the trained network (:func:`intdeploy.golden.network.convert`).

        ``x_cal``: integer images (the training split) for the one range not learned, that of the
        8-bit signed logits (the maximum ``|logit|`` of this fake-quantized network on them).
        """

        net, betas, weight_eps = self.hardened_network()
        x = torch.tensor(np.asarray(x_cal) / 16.0)
        with torch.no_grad(), deterministic():
            betas["fc"] = float(self(x).abs().max())
        opts = ConvertOptions(act_bits=self.bits, weight_bits=self.bits, weights="symmetric",
                              threshold_bits=4)
        name = name or f"digits_qat{self.bits}"
        meta = {"description": f"8x8 digits CNN (golden/digits.py), {self.bits}-bit quantization-aware training "
                               f"(golden/qat.py, scripts/qat_digits.py)",
                "qat": {"bits": self.bits, "bn_folded": self.fold}}
        return convert(net, np.asarray(x_cal) / 16.0, opts, name=name, metadata=meta, betas=betas,
                       weight_eps=weight_eps)


def evaluate(model, x, y):
    """Accuracy of ``model`` (fake-quantized, eval) on integer images ``x`` and labels ``y``."""
    with torch.no_grad(), deterministic():
        logits = model(torch.tensor(np.asarray(x) / 16.0))
    return float((logits.argmax(1).numpy() == np.asarray(y)).mean())


def train(bits, *, epochs=10, seed=0, lr=1e-3, batch=32, steps=None, params=None, log=None):
    """QAT of the digits network at ``bits`` (:data:`WIDTHS`) from its float parameters.

    Adam (``lr`` for weights, biases, BN, steps and clips; cosine schedule over the run), batches
    of ``batch`` training images in a seeded order, ``epochs`` epochs or ``steps`` optimizer
    steps if given. Float64, one thread, deterministic algorithms: the same arguments give the
    same parameters on one machine (the global determinism and thread settings are restored
    afterwards). Returns the trained :class:`DigitsQat`.
    """
    if bits not in WIDTHS:
        raise ValueError(f"bits: {bits!r} is not one of {', '.join(map(str, WIDTHS))}")
    with deterministic():
        return _train(bits, epochs, seed, lr, batch, steps, params, log)


def _train(bits, epochs, seed, lr, batch, steps, params, log):

    torch.manual_seed(seed)
    if params is None:
        with np.load(digits.FLOAT_PARAMS) as f:
            params = {k: f[k] for k in f.files}
    x_train, y_train = digits.load_split()[:2]
    xt = torch.tensor(x_train / 16.0)
    yt = torch.tensor(y_train)
    model = DigitsQat(params, bits, WIDTHS[bits])
    model.calibrate(xt)
    total = steps if steps is not None else epochs * math.ceil(len(yt) / batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < total:
        perm = torch.randperm(len(yt), generator=gen)
        loss_sum, n = 0.0, 0
        for i in range(0, len(yt), batch):
            if done == total:
                break
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            # The clips and steps must stay positive.
            with torch.no_grad():
                for p in list(model.act.parameters()) + list(model.wq.parameters()):
                    p.clamp_(min=1e-6)
            loss_sum += loss.item() * len(idx)
            n += len(idx)
            done += 1
        if log:
            log(f"{bits}-bit QAT: step {done}/{total}, loss {loss_sum / max(n, 1):.4f}, "
                f"train accuracy (fake-quant) {evaluate(model, x_train, y_train):.4f}")
    return model
