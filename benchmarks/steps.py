"""What the training-step benchmarks share: the command line, the runners, the timing loop.

A runner is ``(step, args)``: ``step(*args)`` takes one SGD step and returns the loss.
"""

from __future__ import annotations

import argparse
import sys
import time


def parse(doc, rounds, batch, argv=None):
    """``--rounds``, ``--batch`` and ``--threads`` (BLAS threads, set here for the process)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    return args


def torch_sgd_step(model, opt):
    """A runner's step for a PyTorch model: zero grads, cross-entropy, backward, update."""
    import torch

    def step(x, y):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def add_torch(runners, make_runner, threads):
    """``runners["pytorch"] = make_runner()`` where PyTorch is installed (with ``threads``)."""
    try:
        import torch
    except ImportError:
        print("pytorch not installed: skipped", file=sys.stderr)
        return
    if threads:
        torch.set_num_threads(threads)
    runners["pytorch"] = make_runner()


def time_interleaved(runners, rounds):
    """``(losses, seconds)`` per runner: three warm-up steps, then ``rounds`` rounds of one step
    each, the order rotating every round so that none always runs in another's wake."""
    losses = {name: [fn(*fa) for _ in range(3)] for name, (fn, fa) in runners.items()}
    times = {name: [] for name in runners}
    order = list(runners)
    for r in range(rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            fn, fa = runners[name]
            start = time.perf_counter()
            losses[name].append(fn(*fa))
            times[name].append(time.perf_counter() - start)
    return losses, times
