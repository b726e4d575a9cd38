"""How many threads chainrule's work uses: one policy, in one place.

chainrule's own code runs on one thread; its matrix products (matmul, linear, the GEMM of each
convolution) run in NumPy's BLAS, which starts one thread per core by default. The policy:

- ``import chainrule`` changes nothing: a user of ``cr.nn`` directly gets the BLAS default until
  they say otherwise, exactly as with NumPy.
- ``cr.set_num_threads(n)`` / ``cr.get_num_threads()`` (PyTorch's names) set and read the BLAS
  thread count for the whole process; ``with cr.num_threads(n):`` sets it for a block and
  restores it after.
- ``chainrule train`` (and `chainrule.training.fit`) picks the count with
  `threads_for_model`: one thread for small models, where a product takes microseconds and
  splitting it costs more than it saves (and, on a busy machine, a waiting BLAS thread spins on
  a core another process needs: the default digits run took 8 s instead of 1.1 s that way); the
  BLAS default for large ones. ``--threads N`` overrides it.

The thread counts are set through threadpoolctl, which knows OpenBLAS, MKL and BLIS.
"""

from __future__ import annotations

import contextlib

# Parameters times batch size below which a training step runs its BLAS on one thread.
SMALL_MODEL_WORK = 50_000_000


def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def get_num_threads() -> int:
    """The number of threads NumPy's BLAS uses now (the largest, if several BLAS are loaded)."""
    pools = [p for p in _controller().info() if p.get("user_api") == "blas"]
    return max((p["num_threads"] for p in pools), default=1)


def _check(n, where):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}: the number of threads must be a positive int, got {n!r}")


def set_num_threads(n: int) -> None:
    """Make NumPy's BLAS use ``n`` threads from now on, in the whole process."""
    _check(n, "set_num_threads")
    _controller().limit(limits=n, user_api="blas")


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run a block with ``n`` BLAS threads (None: leave them as they are), restoring after."""
    if n is None:
        yield
        return
    _check(n, "num_threads")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def threads_for_model(n_parameters: int, batch_size: int, requested: int | None = None):
    """The BLAS threads a training loop runs with: ``requested`` if given, else 1 for a model
    whose parameters times batch size is under `SMALL_MODEL_WORK`, else None (the default)."""
    if requested is not None:
        return requested
    return 1 if n_parameters * batch_size < SMALL_MODEL_WORK else None
