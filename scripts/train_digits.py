#!/usr/bin/env python3
"""Train the default digits network in PyTorch and write its committed model files.

Writes, from the repository root:

* ``golden/models/digits_float.npz``: the float parameters in the project's conventions
  (channels-last: conv weights OHWI, the linear layer's columns in (h, w, c) flatten order),
  BatchNorm running statistics and ``eps``;
* ``golden/models/digits.json`` + ``digits.npz``: the IntegerDeployable model file that
  :func:`intdeploy.golden.digits.convert` produces from them with the default options.

Needs PyTorch (``.venv/bin/pip install torch==2.13.0``, the CPU wheel); nothing else in the
project does. Deterministic on one machine (seeded, deterministic algorithms, one thread);
the committed files are what `make demo` and the tests use, so retraining is never required.

Usage: ``.venv/bin/python scripts/train_digits.py [--epochs N] [--seed S]``
"""

import argparse
import sys

import numpy as np

from intdeploy.golden import digits
from intdeploy.golden.network import FullPrecision


def build_torch_model(torch):
    nn = torch.nn

    class DigitsNet(nn.Module):
        """The network of :mod:`intdeploy.golden.digits`, NCHW as PyTorch wants it."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(8)
            self.pool = nn.AvgPool2d(2)
            self.fc = nn.Linear(128, 10)

        def forward(self, x):
            y1 = torch.relu(self.bn1(self.conv1(x)))
            y2 = torch.relu(self.bn2(self.conv2(y1)))
            s = torch.relu(y1 + y2)
            return self.fc(torch.flatten(self.pool(s), 1))

    return DigitsNet()


def export(model):
    """The trained parameters as a dict of numpy arrays in the project's layout."""
    def t(p):
        return p.detach().cpu().numpy().astype(np.float32)

    out = {}
    for conv, bn in (("conv1", model.bn1), ("conv2", model.bn2)):
        out[f"{conv}.weight"] = t(getattr(model, conv).weight).transpose(0, 2, 3, 1).copy()  # OIHW -> OHWI
        out[f"{conv}.bn.gamma"] = t(bn.weight)
        out[f"{conv}.bn.beta"] = t(bn.bias)
        out[f"{conv}.bn.mean"] = t(bn.running_mean)
        out[f"{conv}.bn.var"] = t(bn.running_var)
        out[f"{conv}.bn.eps"] = np.float32(bn.eps)
    # torch flattens (c, h, w); the project flattens NHWC tensors in (h, w, c) order.
    w = t(model.fc.weight).reshape(10, 8, 4, 4).transpose(0, 2, 3, 1).reshape(10, 128)
    out["fc.weight"] = np.ascontiguousarray(w)
    out["fc.bias"] = t(model.fc.bias)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.01)
    args = ap.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = digits.load_split()
    # NHWC integer images -> NCHW floats in [0, 1] (the float input is pixel / 16).
    xt = torch.tensor(x_train.transpose(0, 3, 1, 2) / 16.0, dtype=torch.float32)
    yt = torch.tensor(y_train)
    xv = torch.tensor(x_test.transpose(0, 3, 1, 2) / 16.0, dtype=torch.float32)

    model = build_torch_model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for i in range(0, len(yt), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if (epoch + 1) % 10 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(xv).argmax(1).numpy() == y_test).mean()
            print(f"epoch {epoch + 1:3d}: loss {total / len(yt):.4f}, test accuracy {acc:.4f}")

    model.eval()
    with torch.no_grad():
        torch_logits = model(xv).numpy()
    params = export(model)
    digits.MODELS_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(digits.FLOAT_PARAMS, **params)

    # The numpy FullPrecision evaluator must reproduce PyTorch (same float network).
    net = digits.float_network(digits.FLOAT_PARAMS)
    np_logits = FullPrecision(net).run(x_test / 16.0)
    diff = float(np.abs(np_logits - torch_logits).max())
    print(f"torch accuracy {(torch_logits.argmax(1) == y_test).mean():.4f}, numpy FullPrecision "
          f"accuracy {(np_logits.argmax(1) == y_test).mean():.4f}, max |logit difference| {diff:.2e}")
    if diff > 1e-3:
        sys.exit("train_digits: numpy FullPrecision disagrees with PyTorch; not writing the model file")

    digits.build_model_file(digits.MODEL_FILE)
    print(f"wrote {digits.FLOAT_PARAMS} and {digits.MODEL_FILE} (+ .npz)")


if __name__ == "__main__":
    main()
