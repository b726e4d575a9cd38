"""How long ``python -c "import chainrule"`` takes, beside the interpreter alone, NumPy and PyTorch.

Each round starts one fresh interpreter per command, interleaved, so a busy machine slows all of
them alike; the script prints the median wall time of each and chainrule's time over NumPy's
(NumPy is what chainrule cannot start without). Bytecode is cached as an installed package has
it: the script gives Python a private cache folder, so an environment that sets
``PYTHONDONTWRITEBYTECODE`` (which makes every start compile chainrule's source again) does not
hide what a user sees; ``--no-cache`` measures that case instead. Target: under 0.3 s.

    python benchmarks/bench_startup.py [--rounds 15] [--no-cache]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 0.3

COMMANDS = {
    "python (nothing imported)": "pass",
    "import numpy": "import numpy",
    "import chainrule": "import chainrule",
    "import torch": "import torch",
}


def _start(code: str, env: dict) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - began


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-cache", action="store_true",
                        help="compile the source at every start (PYTHONDONTWRITEBYTECODE=1)")
    args = parser.parse_args(argv)

    commands = dict(COMMANDS)
    if importlib.util.find_spec("torch") is None:
        del commands["import torch"]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ)
        if args.no_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
            for code in commands.values():  # the first start writes the cache
                _start(code, env)
        times = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, code in commands.items():
                times[name].append(_start(code, env))

    medians = {name: statistics.median(t) for name, t in times.items()}
    mode = "source compiled at every start" if args.no_cache else "bytecode cached"
    print(f"{args.rounds} interleaved rounds, {mode}; median wall time per start")
    numpy_s = medians["import numpy"]
    for name, median in medians.items():
        print(f"  {name:28s} {median * 1e3:7.1f} ms   x{median / numpy_s:.2f} of numpy")
    own = medians["import chainrule"] - medians["import numpy"]
    total = medians["import chainrule"]
    verdict = "met" if total < TARGET_S else "missed"
    print(f"chainrule adds {own * 1e3:.1f} ms to NumPy's start; "
          f"`import chainrule` {total:.2f} s: target < {TARGET_S} s {verdict}")


if __name__ == "__main__":
    main()
