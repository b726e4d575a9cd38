"""Data-parallel training over MPI on this machine: steps per second with 1 and 2 processes, and
the time of the gradient allreduce as a function of the parameter count.

    python benchmarks/bench_distributed.py                    # launches mpiexec itself
    python benchmarks/bench_distributed.py --processes 1 2 4  # other process counts

Each measurement runs this script under ``mpiexec -n N`` with one BLAS thread per process; the
per-step figures are medians over the steps of rank 0. The allreduce is timed twice for a model
of many small parameters: bucketed (the default, few calls) and one call per parameter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

WORKER = "worker"
STEPS = 300
REPEATS = 50
GLOBAL_BATCH = 256


def _times(fn, repeats=REPEATS) -> dict:
    """Median and least seconds of ``fn()``, each repeat started together on all ranks (the
    least is the better estimate of the cost itself on a machine other work keeps busy)."""
    from chainrule import distributed as dist

    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times)}


def _train_steps() -> list[float]:
    """Seconds of each training step of a small MLP over this rank's share of the batch."""
    import chainrule as cr
    from chainrule import distributed as dist
    from chainrule import nn
    from chainrule.nn import functional as F

    cr.manual_seed(0)
    model = dist.DistributedDataParallel(nn.Sequential(nn.Linear(64, 256), nn.ReLU(),
                                                       nn.Linear(256, 10)))
    optimizer = cr.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(dist.rank())
    x = cr.tensor(rng.random((GLOBAL_BATCH // dist.world_size(), 64), dtype=np.float32))
    y = rng.integers(0, 10, len(x))
    steps = []
    for _ in range(STEPS):
        start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        model.allreduce_gradients()
        optimizer.step()
        steps.append(time.perf_counter() - start)
    return steps


def _gradients(sizes):
    import chainrule as cr

    params = [cr.zeros(n, requires_grad=True) for n in sizes]
    for p in params:
        p.grad = cr.ones(p.shape)
    return params


def _allreduce_times() -> dict:
    """Allreduce seconds per step by parameter count, and bucketed vs per-parameter calls."""
    from chainrule import distributed as dist

    by_size = {}
    for n_params in (10_000, 100_000, 1_000_000, 4_000_000):
        params = _gradients([n_params])
        by_size[n_params] = _times(lambda p=params: dist.allreduce_gradients(p))
    many = _gradients([1000] * 500)  # 500 parameters of 1,000 numbers: 2 MB in all
    bucketed = _times(lambda: dist.allreduce_gradients(many))
    saved, dist.BUCKET_BYTES = dist.BUCKET_BYTES, 0  # every parameter in a bucket of its own
    try:
        per_parameter = _times(lambda: dist.allreduce_gradients(many))
    finally:
        dist.BUCKET_BYTES = saved
    return {"by_size": by_size, "many_bucketed": bucketed, "many_per_parameter": per_parameter}


def worker():
    from threadpoolctl import threadpool_limits

    from chainrule import distributed as dist

    threadpool_limits(1)  # one core per process
    dist.init()
    with dist.abort_on_error():
        results = {"world": dist.world_size(), "steps": _train_steps(),
                   "allreduce": _allreduce_times()}
    if dist.is_main():
        print(json.dumps(results))


def _run(mpiexec, n) -> dict:
    result = subprocess.run([mpiexec, "-n", str(n), sys.executable, __file__, WORKER],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        sys.exit(f"mpiexec -n {n} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _print(runs):
    print(f"MLP 64-256-10, global batch {GLOBAL_BATCH}, SGD; median of {STEPS} steps on rank 0")
    base = 1 / statistics.median(runs[min(runs)]["steps"])
    for n, r in runs.items():
        rate = 1 / statistics.median(r["steps"])
        print(f"  {n} process{'es' if n > 1 else ''}: {rate:7.1f} steps/s ({rate / base:.2f}x)")
    for n, r in runs.items():
        if n == 1:
            continue
        a = r["allreduce"]
        print(f"gradient allreduce time per step ({n} processes):")
        print(f"  {'parameters':>24} {'median ms':>10} {'least ms':>9}")
        rows = [(f"{int(k):,}", t) for k, t in a["by_size"].items()]
        rows += [("500 x 1,000, bucketed", a["many_bucketed"]),
                 ("500 x 1,000, per tensor", a["many_per_parameter"])]
        for label, t in rows:
            print(f"  {label:>24} {t['median'] * 1e3:10.3f} {t['min'] * 1e3:9.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("mpiexec not found: pip install chainrule[mpi]")
    _print({n: _run(mpiexec, n) for n in sorted(set(args.processes))})


if __name__ == "__main__":
    worker() if sys.argv[1:] == [WORKER] else main()
