"""How chainrule's cost scales: the cheap-gradient principle, model size, and graph size.

    python benchmarks/bench_scaling.py             # about 3 minutes on a busy 2-core machine
    python benchmarks/bench_scaling.py --quick     # a smaller grid, for a smoke test

1. Cheap gradient: forward time and forward+backward time of Linear+ReLU MLPs (float32, batch
   256) over a grid of depths and widths, and their ratio. Target: <= 3.3 where matmuls dominate.
2. Growth: time and tracemalloc peak of a training step as depth, width and batch each grow 8x
   from (depth 4, width 256, batch 64), plotted to benchmarks/scaling.png.
3. Graph size: forward+backward of chains of 10^3 .. 10^6 cheap operations (``sin`` on a
   4-element vector); time per operation should stay flat (cost linear in graph size).

Repeats alternate between the things compared, and medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

import chainrule as cr

HERE = Path(__file__).resolve().parent


def make_mlp(depth, width, seed=0):
    rng = np.random.default_rng(seed)
    return [(cr.Tensor((rng.standard_normal((width, width)) * np.sqrt(2 / width)).astype(
                np.float32), requires_grad=True),
             cr.Tensor(np.zeros(width, np.float32), requires_grad=True)) for _ in range(depth)]


def mlp_loss(params, x):
    h = x
    for w, b in params:
        h = cr.relu(h @ w + b)
    return (h * h).mean()


def make_input(batch, width, seed=1):
    return cr.Tensor(np.random.default_rng(seed).standard_normal((batch, width)).astype(
        np.float32))


def clear_grads(params):
    for w, b in params:
        w.grad = b.grad = None


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- 1. cheap gradient --------------------------------------------------------------------------
def cheap_gradient(grid, batch, repeats):
    print(f"\n1. Cheap gradient: forward vs forward+backward (batch {batch}, float32, "
          f"median of {repeats})")
    print(f"{'depth':>6} {'width':>6} {'fwd (ms)':>10} {'fwd+bwd (ms)':>13} {'ratio':>7}")
    rows = []
    for depth, width in grid:
        params = make_mlp(depth, width)
        x = make_input(batch, width)
        mlp_loss(params, x).backward()  # warm-up
        clear_grads(params)
        fwd, both = [], []
        for _ in range(repeats):  # interleaved, so both see the same load
            fwd.append(timed(lambda p=params, x=x: mlp_loss(p, x)))
            both.append(timed(lambda p=params, x=x: mlp_loss(p, x).backward()))
            clear_grads(params)
        f, fb = statistics.median(fwd), statistics.median(both)
        rows.append((depth, width, f, fb))
        print(f"{depth:>6} {width:>6} {f * 1e3:>10.2f} {fb * 1e3:>13.2f} {fb / f:>7.2f}")
    return rows


# --- 2. growth ----------------------------------------------------------------------------------
def step_cost(depth, width, batch, repeats):
    """Median time of a training step and tracemalloc peak of one (above the level before it)."""
    params = make_mlp(depth, width)
    x = make_input(batch, width)

    def step():
        mlp_loss(params, x).backward()
        for w, b in params:
            w.data -= 1e-3 * w.grad.data
            b.data -= 1e-3 * b.grad.data
        clear_grads(params)

    step()  # warm-up
    times = [timed(step) for _ in range(repeats)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak


def growth(base, factors, repeats):
    print(f"\n2. Growth of a training step from depth {base['depth']}, width {base['width']}, "
          f"batch {base['batch']} (median of {repeats}; peak = tracemalloc, above parameters)")
    results = {dim: [] for dim in base}
    for factor in factors:
        for dim in base:  # one size of every dimension in turn, then the next factor
            size = dict(base, **{dim: base[dim] * factor})
            results[dim].append(step_cost(size["depth"], size["width"], size["batch"], repeats))
    print(f"{'grown':>6} " + " ".join(f"{f'x{f}':>18}" for f in factors))
    for dim, costs in results.items():
        cells = " ".join(f"{t * 1e3:>8.1f}ms {p / 2**20:>6.1f}MiB" for t, p in costs)
        print(f"{dim:>6} {cells}")
    return results


def plot_growth(results, factors, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
    for dim, costs in results.items():
        times = [t / costs[0][0] for t, _ in costs]
        peaks = [p / costs[0][1] for _, p in costs]
        ax_time.plot(factors, times, "o-", label=dim)
        ax_mem.plot(factors, peaks, "o-", label=dim)
    for ax, what in ((ax_time, "step time"), (ax_mem, "peak memory of a step")):
        ax.plot(factors, factors, "k:", label="linear")
        ax.plot(factors, [f * f for f in factors], "k--", label="quadratic")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("growth factor of one dimension")
        ax.set_ylabel(f"{what} / baseline")
        ax.set_title(what)
        ax.legend()
    fig.suptitle("chainrule MLP training step as depth, width and batch grow")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot written to {path}")


# --- 3. graph size ------------------------------------------------------------------------------
def chain(n_ops, x):
    h = x
    for _ in range(n_ops):
        h = cr.sin(h)
    return h.sum()


def graph_size(sizes, repeats):
    print(f"\n3. Graph size: forward+backward of a chain of n sin ops on a 4-vector "
          f"(median of {repeats})")
    print(f"{'n ops':>9} {'total (s)':>10} {'us per op':>10}")
    x = cr.Tensor(np.full(4, 0.5, np.float32), requires_grad=True)
    times = {n: [] for n in sizes}
    for _ in range(repeats):
        for n in sizes:  # interleaved across sizes
            runs = max(1, 10**5 // n)  # small chains run several times so timer noise evens out
            times[n].append(timed(lambda n=n, runs=runs: [chain(n, x).backward()
                                                          for _ in range(runs)]) / runs)
            x.grad = None
    per_op = {}
    for n in sizes:
        t = statistics.median(times[n])
        per_op[n] = t / n
        print(f"{n:>9} {t:>10.4f} {t / n * 1e6:>10.2f}")
    spread = max(per_op.values()) / min(per_op.values())
    print(f"largest / smallest time per op: {spread:.2f} (1.0 = exactly linear)")
    return per_op


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--png", default=str(HERE / "scaling.png"))
    args = parser.parse_args(argv)
    if args.quick:
        grid = [(2, 64), (8, 256)]
        base, factors, sizes, repeats = dict(depth=2, width=32, batch=16), [1, 2], [100, 1000], 3
        batch = 32
    else:
        grid = [(d, w) for d in (2, 8, 32) for w in (64, 256, 1024)] + [
            (64, 512), (2, 2048), (8, 2048)]
        base, factors, sizes, repeats = (dict(depth=4, width=256, batch=64), [1, 2, 4, 8],
                                         [10**3, 10**4, 10**5, 10**6], 5)
        batch = 256
    cheap_gradient(grid, batch, repeats)
    results = growth(base, factors, repeats)
    plot_growth(results, factors, args.png)
    graph_size(sizes, 3 if not args.quick else repeats)


if __name__ == "__main__":
    main()
