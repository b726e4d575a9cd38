"""Gradient checkpointing: activation memory and step time, with and without.

    python benchmarks/bench_checkpoint.py                      # 64 layers, width 512, batch 256
    python benchmarks/bench_checkpoint.py --depth 32 --width 256 --batch 128 --rounds 3

A Linear+ReLU MLP (float32) takes a training step (forward, mean-square loss, backward, SGD
update) plainly and with ``checkpoint_sequential(model, segments, x)``, alternating round by round.

Two memory figures:

* saved: bytes the graph holds for backward right after the forward (``cr.inspect.memory``);
* peak: tracemalloc's peak over forward + backward minus the bytes of the gradients, taken on a
  twin network whose layers share one frozen weight matrix (each keeps its own trainable bias).
  The twin saves the same activations as the real network (relu keeps its output, and matmul's
  input is the previous relu's output) and checkpointing recomputes the same segments, but its
  gradients are 64 bias vectors instead of 64 weight matrices: on the real network the
  gradients (depth x width^2 floats, twice the activations at the default size) would swamp
  the figure. So the peak is activation memory plus the gradient in flight.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

import chainrule as cr
import chainrule.inspect  # noqa: F401  (binds cr.inspect)
from chainrule.checkpoint import checkpoint_sequential


class Dense:
    """Linear followed by ReLU, on the engine (the weights may be shared between layers)."""

    def __init__(self, weight, bias):
        self.weight = weight
        self.bias = bias

    def __call__(self, x):
        return cr.relu(x @ self.weight + self.bias)

    def parameters(self):
        return [self.weight, self.bias]


def _parameter(shape, scale, rng):
    return cr.Tensor((rng.standard_normal(shape) * scale).astype(np.float32), requires_grad=True)


def make_mlp(depth, width, shared=False, seed=0):
    """``depth`` Dense layers; with ``shared`` they use one frozen weight (and their own bias)."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(2.0 / width)
    if shared:
        weight = _parameter((width, width), scale, rng).requires_grad_(False)
        return [Dense(weight, _parameter((width,), 0.0, rng)) for _ in range(depth)]
    return [Dense(_parameter((width, width), scale, rng), _parameter((width,), 0.0, rng))
            for _ in range(depth)]


def unique_parameters(layers):
    return list({id(p): p for layer in layers for p in layer.parameters()}.values())


def forward(layers, x, segments):
    if segments:
        return checkpoint_sequential(layers, segments, x)
    for layer in layers:
        x = layer(x)
    return x


def train_step(layers, x, segments, lr=1e-3):
    loss = (forward(layers, x, segments) ** 2).mean()
    loss.backward()
    for p in unique_parameters(layers):
        p.data -= lr * p.grad.data
        p.grad = None
    return loss


def saved_after_forward(layers, x, segments):
    loss = (forward(layers, x, segments) ** 2).mean()
    return cr.inspect.memory(loss).saved_bytes


def activation_peak(shared_layers, x, segments):
    """tracemalloc peak of forward + backward on the shared-weight twin, less its gradients."""
    params = [p for p in unique_parameters(shared_layers) if p.requires_grad]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        loss = (forward(shared_layers, x, segments) ** 2).mean()
        loss.backward()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    grads = sum(p.grad.data.nbytes for p in params)
    for p in params:
        p.grad = None
    return peak - grads


def mib(n):
    return n / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    cr.manual_seed(0)
    layers = make_mlp(args.depth, args.width)
    shared = make_mlp(args.depth, args.width, shared=True)
    x = cr.Tensor(np.random.default_rng(1).standard_normal((args.batch, args.width)).astype(
        np.float32))
    print(f"MLP: {args.depth} x Linear({args.width}, {args.width}) + ReLU, batch {args.batch}, "
          f"float32; checkpointed with {args.segments} segments; {args.rounds} rounds")

    modes = {"plain": 0, "checkpointed": args.segments}
    saved = {m: saved_after_forward(layers, x, s) for m, s in modes.items()}
    peaks = {m: [] for m in modes}
    times = {m: [] for m in modes}
    train_step(layers, x, 0)  # warm-up: first-touch page faults, BLAS threads
    for _ in range(args.rounds):
        for mode, segments in modes.items():  # interleaved: both see the same machine load
            start = time.perf_counter()
            train_step(layers, x, segments)
            times[mode].append(time.perf_counter() - start)
        for mode, segments in modes.items():
            peaks[mode].append(activation_peak(shared, x, segments))

    print(f"{'mode':<14} {'saved (MiB)':>12} {'peak act. (MiB)':>16} {'step (s, median)':>17}")
    for mode in modes:
        print(f"{mode:<14} {mib(saved[mode]):>12.2f} {mib(statistics.median(peaks[mode])):>16.2f}"
              f" {statistics.median(times[mode]):>17.3f}")
    saved_ratio = saved["plain"] / saved["checkpointed"]
    peak_ratio = statistics.median(peaks["plain"]) / statistics.median(peaks["checkpointed"])
    time_ratio = statistics.median(times["checkpointed"]) / statistics.median(times["plain"])
    print(f"memory: {saved_ratio:.2f}x less saved after forward, {peak_ratio:.2f}x lower "
          f"activation peak (target >= 4x)")
    print(f"time: checkpointed step / plain step = {time_ratio:.2f}x (target <= 1.4x)")


if __name__ == "__main__":
    main()
