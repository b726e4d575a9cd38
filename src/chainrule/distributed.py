"""Data-parallel training over MPI (``pip install chainrule[mpi]``; launch with ``mpiexec``).

Every process holds the whole model and trains on its own shard of each batch; after
``backward()`` the gradients are averaged across processes with ``Allreduce`` on a few large
contiguous buffers, so every process takes the same step. Without ``mpiexec`` (or without
mpi4py) everything here works unchanged as a world of one process.

    dist.init()
    model = dist.DistributedDataParallel(model)   # parameters broadcast from rank 0
    for epoch ...:
        for xb, yb in loader_over(dist.shard(indices, epoch, seed)):
            loss = ...; loss.backward()
            model.allreduce_gradients()            # average across ranks
            optimizer.step()
"""

from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager

import numpy as np

BUCKET_BYTES = 4 * 1024 * 1024  # gradients are averaged in buffers of about this size

_state = {"comm": None, "initialised": False}


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI


def init():
    """Join the MPI job if there is one; returns the communicator (None for a single process)."""
    if not _state["initialised"]:
        MPI = _mpi()
        _state["comm"] = MPI.COMM_WORLD if MPI is not None else None
        _state["initialised"] = True
    return _state["comm"]


def _comm():
    return init()


def rank() -> int:
    comm = _comm()
    return 0 if comm is None else comm.Get_rank()


def world_size() -> int:
    comm = _comm()
    return 1 if comm is None else comm.Get_size()


def is_main() -> bool:
    """True on rank 0: the one process that prints and writes files."""
    return rank() == 0


def barrier() -> None:
    comm = _comm()
    if comm is not None:
        comm.Barrier()


def allreduce_sum(value):
    """The sum of a number (or array) over all processes."""
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return value
    array = np.asarray(value, dtype=np.float64)
    out = np.empty_like(array)
    comm.Allreduce(array, out, op=_mpi().SUM)
    return out if np.ndim(value) else float(out)


def broadcast_parameters(model, root: int = 0) -> None:
    """Copy rank ``root``'s parameters and buffers into every other process's model."""
    comm = _comm()
    if comm is None or comm.Get_size() == 1:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        comm.Bcast(t.data, root=root)
        t._version[0] += 1


def _buckets(params):
    """Parameters grouped by dtype into runs of about BUCKET_BYTES."""
    groups, current, size, dtype = [], [], 0, None
    for p in params:
        if current and (p.dtype != dtype or size + p.data.nbytes > BUCKET_BYTES):
            groups.append(current)
            current, size = [], 0
        current.append(p)
        size += p.data.nbytes
        dtype = p.dtype
    if current:
        groups.append(current)
    return groups


def allreduce_gradients(model_or_params) -> int:
    """Average every parameter's gradient across processes, in place. A parameter without a
    gradient counts as zeros (on every rank alike). Returns the number of Allreduce calls."""
    params = list(model_or_params.parameters() if hasattr(model_or_params, "parameters")
                  else model_or_params)
    comm = _comm()
    n = 1 if comm is None else comm.Get_size()
    if n == 1:
        return 0
    MPI = _mpi()
    calls = 0
    for bucket in _buckets(params):
        flat = np.concatenate([(p.grad.data if p.grad is not None else
                                np.zeros_like(p.data)).ravel() for p in bucket])
        total = np.empty_like(flat)
        comm.Allreduce(flat, total, op=MPI.SUM)
        calls += 1
        total /= n
        start = 0
        for p in bucket:
            size = p.data.size
            grad = total[start:start + size].reshape(p.shape)
            p.grad = type(p.grad)._wrap(grad) if p.grad is not None else _wrap(grad)
            start += size
    return calls


def _wrap(array):
    from chainrule.tensor import Tensor

    return Tensor._wrap(array)


class DistributedDataParallel:
    """Wraps a model: parameters broadcast from rank 0 now, gradients averaged on request.

    Calling it calls the model; every other attribute is the model's.
    """

    def __init__(self, model):
        self.module = model
        broadcast_parameters(model)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def allreduce_gradients(self) -> int:
        return allreduce_gradients(self.module)

    def __getattr__(self, name):
        return getattr(self.module, name)


def shard(n_samples: int, epoch: int, seed: int = 0, shuffle: bool = True) -> np.ndarray:
    """This process's disjoint share of ``range(n_samples)`` for ``epoch``.

    Every rank draws the same permutation (from ``seed`` and ``epoch``) and takes every
    ``world_size``-th index starting at its rank; the permutation is cut to a multiple of the
    world size so that every rank takes the same number of steps.
    """
    order = (np.random.default_rng((seed, epoch)).permutation(n_samples) if shuffle
             else np.arange(n_samples))
    n = world_size()
    order = order[: len(order) - len(order) % n]
    return order[rank()::n]


@contextmanager
def abort_on_error():
    """An exception on any rank prints ``rank N: <traceback>`` and aborts the whole job, so
    the other ranks don't hang forever in a collective operation."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001  (SystemExit included: a rank leaving early)
        comm = _comm()
        if comm is None or comm.Get_size() == 1 or (isinstance(exc, SystemExit) and not exc.code):
            raise
        sys.stderr.write(f"rank {rank()}: {''.join(traceback.format_exception(exc))}")
        sys.stderr.flush()
        comm.Abort(1)
