"""One SGD training step of the MLP 784-256-128-10 at batch 128, float32.

chainrule (nn.Sequential, F.cross_entropy, optim.SGD; eager, with the loss compiled, and with the
whole step compiled) vs PyTorch CPU vs a hand-written NumPy
forward/backward, interleaved round by round in one process. Prints the median step time of each
and the ratios. Target: chainrule within 1.10x of hand-written NumPy.

    python benchmarks/bench_mlp_step.py [--rounds 50] [--batch 128] [--threads N]

``--threads`` limits BLAS and PyTorch threads (default: leave as configured) so that the three
run on the same number of cores.
"""

from __future__ import annotations

import os
import statistics

import numpy as np
import steps  # benchmarks/steps.py: the script's folder is on sys.path

# PyTorch's OpenMP workers otherwise spin after each call and steal the cores NumPy's BLAS
# needs for whatever runs next; passive waiting keeps the interleaved comparison fair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SIZES = (784, 256, 128, 10)
LR = 0.01


def make_data(batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], size=batch)
    weights = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)
        weights.append((rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                        rng.uniform(-bound, bound, fan_out).astype(np.float32)))
    return x, y, weights


class NumpyMLP:
    """The same network with the chain rule written out by hand."""

    def __init__(self, weights):
        self.params = [(w.copy(), b.copy()) for w, b in weights]

    def step(self, x, y):
        acts = [x]
        h = x
        for i, (w, b) in enumerate(self.params):
            z = h @ w.T
            z += b
            h = np.maximum(z, 0) if i < len(self.params) - 1 else z
            acts.append(h)
        logits = acts[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        q = np.exp(shifted)
        q /= q.sum(axis=1, keepdims=True)
        n = len(y)
        loss = -np.log(q[np.arange(n), y]).mean()
        g = q
        g[np.arange(n), y] -= 1  # dL/dz = (q - y) / N
        g /= n
        for i in range(len(self.params) - 1, -1, -1):
            w, b = self.params[i]
            gw = g.T @ acts[i]
            gb = g.sum(axis=0)
            if i:
                g = g @ w
                g *= acts[i] > 0
            w -= LR * gw
            b -= LR * gb
        return loss


def chainrule_runner(weights, x, y, compiled=None):
    """``compiled``: None (eager), "loss" (cr.compile of the loss function) or "step" (of the
    whole step: zero_grad, forward, backward and the SGD update in one compiled call)."""
    import chainrule as cr
    from chainrule import nn
    from chainrule.nn import functional as F

    layers = []
    for i, (w, b) in enumerate(weights):
        linear = nn.Linear(w.shape[1], w.shape[0])
        linear.weight.data[...] = w
        linear.bias.data[...] = b
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    opt = cr.optim.SGD(model.parameters(), lr=LR)

    def loss_of(x, y):
        return F.cross_entropy(model(x), y)

    loss_fn = cr.compile(loss_of) if compiled == "loss" else loss_of

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(x, y)
        loss.backward()
        opt.step()
        return loss

    if compiled == "step":
        step = cr.compile(step)
    return (lambda x, y: step(x, y).item()), (cr.tensor(x), cr.tensor(y))


def torch_runner(weights, x, y):
    import torch

    layers = []
    for i, (w, b) in enumerate(weights):
        linear = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    return steps.torch_sgd_step(model, opt), (torch.from_numpy(x), torch.from_numpy(y))


def main(argv=None):
    args = steps.parse(__doc__, rounds=50, batch=128, argv=argv)

    x, y, weights = make_data(args.batch)
    numpy_model = NumpyMLP(weights)
    runners = {"chainrule": chainrule_runner(weights, x, y),
               "cr.compile(loss)": chainrule_runner(weights, x, y, compiled="loss"),
               "cr.compile(step)": chainrule_runner(weights, x, y, compiled="step"),
               "numpy (by hand)": (numpy_model.step, (x, y))}
    steps.add_torch(runners, lambda: torch_runner(weights, x, y), args.threads)

    losses, times = steps.time_interleaved(runners, args.rounds)

    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    threads = args.threads or os.environ.get("OMP_NUM_THREADS", "default")
    print(f"SGD step, MLP {'-'.join(map(str, SIZES))}, batch {args.batch}, float32, "
          f"median of {args.rounds} interleaved rounds, BLAS threads: {threads}")
    print(f"{'implementation':<18}{'ms/step':>9}{'vs numpy':>10}   final loss")
    for name, ms in med.items():
        print(f"{name:<18}{ms:>9.3f}{ms / med['numpy (by hand)']:>9.2f}x   {losses[name][-1]:.5f}")
    target = 1.10 if args.batch >= 128 else 1.20
    for name in ("chainrule", "cr.compile(loss)", "cr.compile(step)"):
        ratio = med[name] / med["numpy (by hand)"]
        print(f"target {name} <= {target:.2f}x hand-written numpy: "
              f"{'meets' if ratio <= target else 'MISSES'} ({ratio:.2f}x)")
    return med


if __name__ == "__main__":
    main()
