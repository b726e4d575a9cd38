"""The library's one source of randomness, so `cr.manual_seed(n)` makes every run repeatable."""

from __future__ import annotations

import numpy as np

from chainrule import autograd

_state = {"rng": np.random.default_rng()}


def manual_seed(seed: int) -> np.random.Generator:
    """Seed everything random in chainrule (initialisation, dropout, shuffling)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _state["rng"] = np.random.default_rng(int(seed))
    return _state["rng"]


def generator() -> np.random.Generator:
    """The generator every random operation in chainrule draws from."""
    autograd.untraceable("the library generator directly (a replay would repeat the same "
                         "numbers; cr.random.draw(fn, ...) draws afresh at each replay)")
    return _state["rng"]


def draw(fn, *args):
    """``fn(generator, *args)``, a draw from the library generator that a `cr.compile` replay
    makes again (fresh numbers, in the order the eager calls would draw them)."""
    return autograd.drawn(_with_generator, fn, *args)


def _with_generator(fn, *args):
    return fn(_state["rng"], *args)  # looked up at each call: manual_seed takes effect


def get_rng_state() -> dict:
    """The generator's state, a plain dict (for checkpoints)."""
    return _state["rng"].bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by `get_rng_state`."""
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    _state["rng"] = rng
