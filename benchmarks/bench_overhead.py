"""Per-operation overhead on small tensors: chainrule vs PyTorch CPU vs hand-written NumPy.

The workload is a 100-layer chain ``h = tanh(h * w_i + b_i)`` on 16-element float32 vectors and
the gradient of ``h.sum()`` with respect to every w_i and b_i: 300 recorded operations forward,
300 VJPs backward. The three implementations run interleaved in one process, round after round,
so a noisy machine slows all of them alike; the script prints the median time per operation
(forward + backward) and the ratios. Target: chainrule at most 0.70x PyTorch's time per op.

    python benchmarks/bench_overhead.py [--rounds 30] [--layers 100] [--size 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

# PyTorch's OpenMP workers otherwise spin after each call and steal the cores NumPy's BLAS
# needs for whatever runs next; passive waiting keeps the interleaved comparison fair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import chainrule as cr

TARGET = 0.70  # chainrule's time per op over PyTorch's

def make_params(layers, size, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(size).astype(np.float32) * 0.5 for _ in range(layers)]
    bs = [rng.standard_normal(size).astype(np.float32) * 0.1 for _ in range(layers)]
    return rng.standard_normal(size).astype(np.float32), ws, bs


def chainrule_step(x, ws, bs):
    h = x
    for w, b in zip(ws, bs):
        h = cr.tanh(h * w + b)
    h.sum().backward()


def compiled_step(ws, bs):
    """The same chain through `cr.compile`: traced once, then replayed as generated code."""
    def chain(x):
        h = x
        for w, b in zip(ws, bs):
            h = cr.tanh(h * w + b)
        return h.sum()

    loss_fn = cr.compile(chain)
    return lambda x: loss_fn(x).backward()


def torch_step(torch, x, ws, bs):
    h = x
    for w, b in zip(ws, bs):
        h = torch.tanh(h * w + b)
    h.sum().backward()


def numpy_step(x, ws, bs):
    """Forward keeping what backward needs, then the chain rule by hand."""
    hs = [x]
    for w, b in zip(ws, bs):
        hs.append(np.tanh(hs[-1] * w + b))
    g = np.ones_like(x)
    grads = []
    for i in range(len(ws) - 1, -1, -1):
        gz = g * (1 - hs[i + 1] * hs[i + 1])
        grads.append((gz * hs[i], gz))
        g = gz * ws[i]
    return grads


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args(argv)

    x, ws, bs = make_params(args.layers, args.size)
    cr_ws = [cr.tensor(w, requires_grad=True) for w in ws]
    cr_bs = [cr.tensor(b, requires_grad=True) for b in bs]
    cr_x = cr.tensor(x)
    runners = {
        "chainrule": (chainrule_step, (cr_x, cr_ws, cr_bs)),
        "cr.compile": (compiled_step(cr_ws, cr_bs), (cr_x,)),
        "numpy (by hand)": (numpy_step, (x, ws, bs)),
    }
    try:
        import torch

        torch.set_num_threads(1)
        t_ws = [torch.tensor(w, requires_grad=True) for w in ws]
        t_bs = [torch.tensor(b, requires_grad=True) for b in bs]
        runners["pytorch"] = (lambda *a: torch_step(torch, *a), (torch.tensor(x), t_ws, t_bs))
    except ImportError:
        print("pytorch not installed: skipped")

    for fn, fn_args in runners.values():  # warm up
        for _ in range(3):
            fn(*fn_args)
    times = {name: [] for name in runners}
    order = list(runners)
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            fn, fn_args = runners[name]
            times[name].append(timed(fn, *fn_args))

    ops = 3 * args.layers
    per_op = {name: statistics.median(t) / ops * 1e6 for name, t in times.items()}
    print(f"chain of {args.layers} layers h = tanh(h * w + b), {args.size} float32 elements, "
          f"{ops} ops, forward + backward, median of {args.rounds} interleaved rounds")
    print(f"{'implementation':<18}{'us per op':>10}{'vs chainrule':>14}")
    for name, us in per_op.items():
        print(f"{name:<18}{us:>10.2f}{us / per_op['chainrule']:>13.2f}x")
    if "pytorch" in per_op:
        for name in ("chainrule", "cr.compile"):
            ratio = per_op[name] / per_op["pytorch"]
            print(f"target {name} <= {TARGET:.2f}x pytorch per op: "
                  f"{'meets' if ratio <= TARGET else 'MISSES'} ({ratio:.2f}x)")
    return per_op


if __name__ == "__main__":
    main()
