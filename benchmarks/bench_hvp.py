"""Cost of Hessian-vector products (and JVPs) relative to one gradient, chainrule and PyTorch.

The function is the mean cross-entropy of an MLP (in-hidden-classes, tanh, batch B, float64) as
a function of its four parameter tensors. Per round, in rotating order, each variant runs once:

* ``forward``: the loss alone, nothing recorded (``cr.no_grad`` / ``torch.no_grad``)
* ``grad``: one gradient (``cr.grad`` / ``torch.autograd.grad``)
* ``hvp reverse``: ``cr.hvp(mode="reverse")``, the derivative of <grad f, v> (reverse over
  reverse); torch: ``torch.autograd.functional.vhp`` (double backward, the same method)
* ``hvp forward``: ``cr.hvp(mode="forward")``, the JVP of grad f, here by transposition;
  torch: ``torch.func.jvp(torch.func.grad(f))``, forward over reverse with real tangents
* ``jvp``: ``cr.jvp`` of f (transposition) / ``torch.func.jvp``
* ``f_jvp``: one more call of ``cr.linearize``'s ``f_jvp`` (graph kept) / ``torch.func.linearize``

Each result is checked against PyTorch once before timing. The script prints medians, each
variant's time divided by the same framework's gradient time, and for the second-order variants
how many backward passes they cost beyond the gradient, (t - t_grad) / (t_grad - t_forward), all
measured in the same run.

    python benchmarks/bench_hvp.py [--rounds 30] [--batch 64] [--sizes 64 128 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import chainrule as cr


def make_problem(batch, sizes, seed=0):
    n_in, hidden, classes = sizes
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((n_in, hidden)) / np.sqrt(n_in), np.zeros(hidden),
              rng.standard_normal((hidden, classes)) / np.sqrt(hidden), np.zeros(classes)]
    vs = [rng.standard_normal(p.shape) for p in params]
    x = rng.standard_normal((batch, n_in))
    onehot = np.eye(classes)[rng.integers(0, classes, batch)]
    return params, vs, x, onehot


def chainrule_variants(params, vs, x, onehot):
    xt, yt = cr.tensor(x), cr.tensor(onehot)

    def loss(w1, b1, w2, b2):
        logits = cr.tanh(xt @ w1 + b1) @ w2 + b2
        return -(cr.log_softmax(logits, axis=1) * yt).sum() / len(x)

    argnums = (0, 1, 2, 3)
    ps, ts = tuple(params), tuple(vs)
    _, f_jvp = cr.linearize(loss, *ps)
    def forward():
        with cr.no_grad():
            return loss(*ps)

    return {
        "forward": forward,
        "grad": lambda: cr.grad(loss, argnums)(*ps),
        "hvp reverse": lambda: cr.hvp(loss, ps, ts)[1],
        "hvp forward": lambda: cr.hvp(loss, ps, ts, mode="forward")[1],
        "jvp": lambda: cr.jvp(loss, ps, ts)[1],
        "f_jvp": lambda: f_jvp(*ts),
    }


def torch_variants(torch, params, vs, x, onehot):
    from torch.autograd.functional import vhp

    xt, yt = torch.from_numpy(x), torch.from_numpy(onehot)

    def loss(w1, b1, w2, b2):
        logits = torch.tanh(xt @ w1 + b1) @ w2 + b2
        return -(torch.log_softmax(logits, 1) * yt).sum() / len(x)

    argnums = (0, 1, 2, 3)
    ps, ts = tuple(map(torch.from_numpy, params)), tuple(map(torch.from_numpy, vs))
    leaves = tuple(p.clone().requires_grad_() for p in ps)
    grad_f = torch.func.grad(loss, argnums)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a UserWarning from torch.fx inside linearize
        _, f_jvp = torch.func.linearize(loss, *ps)

    def forward():
        with torch.no_grad():
            return loss(*ps)

    return {
        "forward": forward,
        "grad": lambda: torch.autograd.grad(loss(*leaves), leaves),
        "hvp reverse": lambda: vhp(loss, ps, ts)[1],
        "hvp forward": lambda: torch.func.jvp(grad_f, ps, ts)[1],
        "jvp": lambda: torch.func.jvp(loss, ps, ts)[1],
        "f_jvp": lambda: f_jvp(*ts),
    }


def _as_arrays(result):
    items = result if isinstance(result, tuple) else (result,)
    return [np.asarray(r.data if isinstance(r, cr.Tensor) else r.detach().numpy()) for r in items]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs=3, default=[64, 128, 10],
                        metavar=("IN", "HIDDEN", "CLASSES"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    problem = make_problem(args.batch, args.sizes)
    runners = {("chainrule", k): fn for k, fn in chainrule_variants(*problem).items()}
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
        for k, fn in torch_variants(torch, *problem).items():
            runners[("torch", k)] = fn
        for k in ("hvp reverse", "hvp forward", "jvp", "f_jvp", "grad"):
            for got, want in zip(_as_arrays(runners[("chainrule", k)]()),
                                 _as_arrays(runners[("torch", k)]())):
                np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11, err_msg=k)

    for fn in runners.values():  # warm up
        fn()
    times = {k: [] for k in runners}
    order = list(runners)
    for r in range(args.rounds):
        for key in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            start = time.perf_counter()
            runners[key]()
            times[key].append(time.perf_counter() - start)

    n_params = sum(p.size for p in problem[0])
    print(f"MLP {args.sizes[0]}-{args.sizes[1]}-{args.sizes[2]}, tanh, batch {args.batch}, "
          f"float64, {n_params} parameters; median of {args.rounds} interleaved rounds, "
          f"{args.threads} thread(s)")
    frameworks = ["chainrule"] + ([] if args.no_torch else ["torch"])
    print(f"{'variant':<14}" + "".join(f"{fw + ' (ms)':>16}{'/ grad':>9}{'+bwd':>7}"
                                       for fw in frameworks))
    for variant in ("forward", "grad", "hvp reverse", "hvp forward", "jvp", "f_jvp"):
        row = f"{variant:<14}"
        for fw in frameworks:
            med = statistics.median(times[(fw, variant)])
            base = statistics.median(times[(fw, "grad")])
            backward = base - statistics.median(times[(fw, "forward")])
            extra = f"{(med - base) / backward:>7.2f}" if variant.startswith("hvp") else " " * 7
            row += f"{med * 1e3:>16.3f}{med / base:>8.2f}x{extra}"
        print(row)
    print("+bwd: backward passes beyond the gradient, (t - t_grad) / (t_grad - t_forward)")


if __name__ == "__main__":
    main()
