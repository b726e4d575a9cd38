"""The default `chainrule train` recipe end to end vs the same recipe in PyTorch CPU.

Same data split, architecture (standardize, 64-256-128-10 ReLU), Adam lr 0.002 with cosine
annealing over 30 epochs, batch 32, shuffled batches; each framework trains from its own random
initialisation. Runs alternate (chainrule, pytorch, chainrule, ...) in one process and the
script prints median training time, test accuracy and the time ratio.

    python benchmarks/bench_digits.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_mlp_step.py

import chainrule as cr  # noqa: E402
from chainrule.training import Config, fit  # noqa: E402


def run_chainrule(seed, out):
    start = time.perf_counter()
    metrics = fit(Config(seed=seed, out=out, progress=False), log=lambda *a: None)
    return time.perf_counter() - start, metrics["test_accuracy"], metrics["train_seconds"]


def run_torch(seed, epochs=30, batch=32, lr=2e-3):
    import torch

    start = time.perf_counter()
    splits = cr.data.digits_splits(seed=seed)
    (X, y), (Xt, yt) = splits.train, splits.test
    mean, scale = X.mean(axis=0), X.std(axis=0) + 0.1
    X, Xt = torch.from_numpy((X - mean) / scale), torch.from_numpy((Xt - mean) / scale)
    y = torch.from_numpy(y)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    rng = np.random.default_rng(seed)
    loop_start = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(X)))
        for i in range(0, len(X), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
        sched.step()
    loop = time.perf_counter() - loop_start
    with torch.no_grad():
        accuracy = (model(Xt).argmax(1).numpy() == yt).mean()
    return time.perf_counter() - start, float(accuracy), loop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="/tmp/chainrule-bench-digits")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    import torch

    torch.set_num_threads(1)  # as chainrule for a model this small (threads only cost here)
    results = {"chainrule": [], "pytorch": []}
    for r in range(args.repeats):
        results["chainrule"].append(run_chainrule(r, args.out))
        results["pytorch"].append(run_torch(r))
    print(f"digits, default recipe (30 epochs), {args.repeats} interleaved repeats")
    print(f"{'framework':<11}{'total s':>8}{'loop s':>8}   test accuracy (each run)")
    total, loop = {}, {}
    for name, runs in results.items():
        total[name] = statistics.median(t for t, _, _ in runs)
        loop[name] = statistics.median(t for _, _, t in runs)
        accs = ", ".join(f"{a:.2%}" for _, a, _ in runs)
        print(f"{name:<11}{total[name]:>8.2f}{loop[name]:>8.2f}   {accs}")
    print(f"chainrule / pytorch: training loop {loop['chainrule'] / loop['pytorch']:.2f}x, "
          f"total {total['chainrule'] / total['pytorch']:.2f}x")
    print("(chainrule's loop also evaluates on the validation split and writes a checkpoint "
          "every epoch; its total also reads the data, saves the model and draws curves.png)")


if __name__ == "__main__":
    main()
