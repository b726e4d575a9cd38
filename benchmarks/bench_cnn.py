"""One SGD training step of a small CNN on MNIST-sized input, float32.

Conv2d(1, 16, 3, padding=1), ReLU, MaxPool2d(2), Conv2d(16, 32, 3, padding=1), ReLU,
MaxPool2d(2), Flatten, Linear(32*7*7, 10), cross-entropy, one SGD step, on a (64, 1, 28, 28)
batch. chainrule (nn.Sequential, F.cross_entropy, optim.SGD) vs PyTorch CPU vs the same network
written by hand in NumPy (channels-last im2col, one matrix product per convolution, pooling that
keeps its argmax), interleaved round by round in one process. Prints the median step time of
each and the ratios. Targets: chainrule / PyTorch <= 1.00 at one thread, <= 1.50 at two.

    python benchmarks/bench_cnn.py [--rounds 40] [--batch 64] [--threads 1|2]

``--threads`` sets NumPy's BLAS threads (threadpoolctl; chainrule and the hand-written version
share them) and PyTorch's intra-op threads alike (default: leave each as configured).
"""

from __future__ import annotations

import os
import statistics

import numpy as np
import steps  # benchmarks/steps.py: the script's folder is on sys.path

# PyTorch's OpenMP workers otherwise spin after each call and steal the cores NumPy's BLAS
# needs for whatever runs next; passive waiting keeps the interleaved comparison fair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

LR = 0.01
SHAPES = {"conv1": (16, 1, 3, 3), "conv2": (32, 16, 3, 3), "fc": (10, 32 * 7 * 7)}


def make_data(batch, seed=0):
    """Input, labels and PyTorch-style initial weights (uniform in +-1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=batch)
    weights = {}
    for name, shape in SHAPES.items():
        bound = 1 / np.sqrt(np.prod(shape[1:]))
        weights[name] = (rng.uniform(-bound, bound, shape).astype(np.float32),
                         rng.uniform(-bound, bound, shape[0]).astype(np.float32))
    return x, y, weights


# ----------------------------------------------------------------------------------------------
# The floor: the same step by hand in NumPy
# ----------------------------------------------------------------------------------------------
def _im2col(xp, k):
    """(N, Hp, Wp, C) padded channels-last input -> (N oh ow, k k C) rows, one copy."""
    n, hp, wp, c = xp.shape
    s = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, (n, hp - k + 1, wp - k + 1, k, k, c), (s[0], s[1], s[2], s[1], s[2], s[3]))
    return view.reshape(-1, k * k * c)


def _pool_forward(a):
    """2x2 max pooling of (N, H, W, C) with the winner's offset 0..3 kept as uint8."""
    n, h, w, c = a.shape
    v = a.reshape(n, h // 2, 2, w // 2, 2, c)
    m = v[:, :, 0, :, 0].copy()
    idx = np.zeros(m.shape, np.uint8)
    for k, (i, j) in enumerate(((0, 1), (1, 0), (1, 1)), start=1):
        s = v[:, :, i, :, j]
        np.putmask(idx, s > m, k)
        np.maximum(m, s, out=m)
    return m, idx


def _pool_backward(g, idx):
    n, oh, ow, c = g.shape
    out = np.empty((n, oh, 2, ow, 2, c), g.dtype)
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        np.multiply(g, idx == k, out=out[:, :, i, :, j])
    return out.reshape(n, 2 * oh, 2 * ow, c)


class NumpyCNN:
    """The network with the chain rule written out by hand, channels-last throughout."""

    def __init__(self, weights):
        self.w = {name: (w.copy(), b.copy()) for name, (w, b) in weights.items()}

    def _conv(self, name, x):
        w, b = self.w[name]
        n, h, wd, c = x.shape
        xp = np.zeros((n, h + 2, wd + 2, c), x.dtype)
        xp[:, 1:-1, 1:-1] = x
        cols = _im2col(xp, 3)
        wm = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        z = cols @ wm.T
        z += b
        np.maximum(z, 0, out=z)  # the ReLU, in place
        return cols, wm, z.reshape(n, h, wd, -1)

    def _conv_backward(self, name, g, cols, wm, a, want_input):
        w, b = self.w[name]
        g *= a > 0  # ReLU backward, in place
        n, h, wd, o = g.shape
        g2 = g.reshape(-1, o)
        gw = (g2.T @ cols).reshape(o, 3, 3, -1).transpose(0, 3, 1, 2)
        gb = g2.sum(axis=0)
        gx = None
        if want_input:
            gcols = (g2 @ wm).reshape(n, h, wd, 3, 3, -1)
            gxp = np.zeros((n, h + 2, wd + 2, gcols.shape[-1]), g.dtype)
            for i in range(3):
                for j in range(3):
                    gxp[:, i:i + h, j:j + wd] += gcols[:, :, :, i, j]
            gx = gxp[:, 1:-1, 1:-1]
        w -= LR * gw
        b -= LR * gb
        return gx

    def step(self, x, y):
        n = len(x)
        cols1, wm1, a1 = self._conv("conv1", x.reshape(n, 28, 28, 1))
        p1, idx1 = _pool_forward(a1)
        cols2, wm2, a2 = self._conv("conv2", p1)
        p2, idx2 = _pool_forward(a2)
        flat = p2.transpose(0, 3, 1, 2).reshape(n, -1)  # PyTorch's (C, H, W) order
        wf, bf = self.w["fc"]
        logits = flat @ wf.T
        logits += bf
        logits -= logits.max(axis=1, keepdims=True)
        q = np.exp(logits)
        q /= q.sum(axis=1, keepdims=True)
        loss = -np.log(q[np.arange(n), y]).mean()
        g = q
        g[np.arange(n), y] -= 1
        g /= n
        gflat = g @ wf
        wf -= LR * (g.T @ flat)
        bf -= LR * g.sum(axis=0)
        g = gflat.reshape(n, 32, 7, 7).transpose(0, 2, 3, 1)
        g = _pool_backward(g, idx2)
        g = self._conv_backward("conv2", g, cols2, wm2, a2, want_input=True)
        g = _pool_backward(g, idx1)
        self._conv_backward("conv1", g, cols1, wm1, a1, want_input=False)
        return float(loss)


# ----------------------------------------------------------------------------------------------
# chainrule and PyTorch
# ----------------------------------------------------------------------------------------------
def chainrule_runner(weights, x, y):
    import chainrule as cr
    from chainrule import nn
    from chainrule.nn import functional as F

    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    for layer, name in ((model[0], "conv1"), (model[3], "conv2"), (model[7], "fc")):
        layer.weight.data[...] = weights[name][0]
        layer.bias.data[...] = weights[name][1]
    opt = cr.optim.SGD(model.parameters(), lr=LR)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step, (cr.tensor(x), cr.tensor(y))


def torch_runner(weights, x, y):
    import torch

    tnn = torch.nn
    model = tnn.Sequential(tnn.Conv2d(1, 16, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                           tnn.Conv2d(16, 32, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                           tnn.Flatten(), tnn.Linear(32 * 7 * 7, 10))
    with torch.no_grad():
        for layer, name in ((model[0], "conv1"), (model[3], "conv2"), (model[7], "fc")):
            layer.weight.copy_(torch.from_numpy(weights[name][0]))
            layer.bias.copy_(torch.from_numpy(weights[name][1]))
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    return steps.torch_sgd_step(model, opt), (torch.from_numpy(x), torch.from_numpy(y))


def main(argv=None):
    args = steps.parse(__doc__, rounds=40, batch=64, argv=argv)

    x, y, weights = make_data(args.batch)
    runners = {"chainrule": chainrule_runner(weights, x, y),
               "numpy (by hand)": (NumpyCNN(weights).step, (x, y))}
    steps.add_torch(runners, lambda: torch_runner(weights, x, y), args.threads)

    losses, times = steps.time_interleaved(runners, args.rounds)

    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    best = {name: min(t) * 1e3 for name, t in times.items()}
    threads = args.threads or os.environ.get("OMP_NUM_THREADS", "default")
    print(f"SGD step, CNN conv16-pool-conv32-pool-fc10, batch {args.batch}, float32, median of "
          f"{args.rounds} interleaved rounds, threads: {threads}")
    ref = "pytorch" if "pytorch" in med else "numpy (by hand)"
    print(f"{'implementation':<18}{'ms/step':>9}{'vs ' + ref.split()[0]:>12}{'fastest':>10}"
          f"{'vs ' + ref.split()[0]:>12}   loss after {len(losses[ref])} steps")
    for name, ms in med.items():
        print(f"{name:<18}{ms:>9.3f}{ms / med[ref]:>11.2f}x{best[name]:>10.3f}"
              f"{best[name] / best[ref]:>11.2f}x   {losses[name][-1]:.5f}")
    print(f"chainrule / numpy (by hand) = {med['chainrule'] / med['numpy (by hand)']:.2f}")
    if "pytorch" in med:
        ratio = med["chainrule"] / med["pytorch"]
        goal = 1.50 if args.threads and args.threads >= 2 else 1.00
        print(f"target chainrule / pytorch <= {goal:.2f}: "
              f"{'meets' if ratio <= goal else 'MISSES'} ({ratio:.2f})")
    return med, best


if __name__ == "__main__":
    main()
