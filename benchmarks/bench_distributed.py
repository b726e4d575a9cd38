"""Data-parallel training over MPI on this machine: steps per second with 1 and 2 processes, and
the time of the gradient allreduce as a function of the parameter count.

    python benchmarks/bench_distributed.py            # launches mpiexec itself

Each measurement runs the same script under ``mpiexec -n N``; the per-step figures are the
median over the steps of rank 0.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

WORKER = "worker"


def worker():
    from threadpoolctl import threadpool_limits

    import chainrule as cr
    from chainrule import distributed as dist
    from chainrule import nn
    from chainrule.nn import functional as F

    threadpool_limits(1)  # one core per process: two processes on two cores
    dist.init()
    results = {"world": dist.world_size(), "steps": [], "allreduce": {}}
    cr.manual_seed(0)
    model = dist.DistributedDataParallel(nn.Sequential(nn.Linear(64, 256), nn.ReLU(),
                                                       nn.Linear(256, 10)))
    opt = cr.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(dist.rank())
    global_batch = 256
    x = cr.tensor(rng.random((global_batch // dist.world_size(), 64), dtype=np.float32))
    y = rng.integers(0, 10, len(x))
    for _ in range(60):
        start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        model.allreduce_gradients()
        opt.step()
        results["steps"].append(time.perf_counter() - start)
    for n_params in (10_000, 100_000, 1_000_000, 4_000_000):
        p = cr.zeros(n_params, requires_grad=True)
        p.grad = cr.ones(n_params)
        times = []
        for _ in range(20):
            dist.barrier()
            start = time.perf_counter()
            dist.allreduce_gradients([p])
            times.append(time.perf_counter() - start)
        results["allreduce"][n_params] = statistics.median(times)
    if dist.is_main():
        print(json.dumps(results))


def main():
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("mpiexec not found: pip install chainrule[mpi]")
    runs = {}
    for n in (1, 2):
        out = subprocess.run([mpiexec, "-n", str(n), sys.executable, __file__, WORKER],
                             capture_output=True, text=True, check=True, timeout=600).stdout
        runs[n] = json.loads(out.strip().splitlines()[-1])
    print("MLP 64-256-10, global batch 256, SGD; median of 60 steps on rank 0")
    base = 1 / statistics.median(runs[1]["steps"])
    for n, r in runs.items():
        rate = 1 / statistics.median(r["steps"])
        print(f"  {n} process{'es' if n > 1 else ''}: {rate:7.1f} steps/s ({rate / base:.2f}x)")
    print("gradient allreduce time per step (2 processes):")
    for n_params, seconds in runs[2]["allreduce"].items():
        print(f"  {int(n_params):>9,} parameters: {seconds * 1e3:8.3f} ms")


if __name__ == "__main__":
    worker() if sys.argv[1:] == [WORKER] else main()
