"""Data-parallel training over MPI (``pip install chainrule[mpi]``; launch with ``mpiexec``).

Every process holds the whole model and trains on its own shard of each batch; after
``backward()`` the gradients are averaged across processes with ``Allreduce`` on a few large
contiguous buffers, so every process takes the same step. Without ``mpiexec`` (or without
mpi4py) everything here works unchanged as a world of one process.

    dist.init(timeout=300)                          # a rank that stops taking part ends the job
    model = dist.DistributedDataParallel(model)    # parameters broadcast from rank 0
    for epoch in range(epochs):
        loader = DataLoader(dist.shard(dataset, epoch, seed), batch_size=global_batch // n)
        for xb, yb in loader:
            optimizer.zero_grad(); loss_fn(model(xb), yb).backward()
            model.allreduce_gradients()             # average across ranks
            optimizer.step()

(`chainrule train --distributed` instead splits each global batch of its plain run's order
between the ranks and averages with ``allreduce_gradients(model, weight=len(yb))``, so that it
gives the plain run's weights for any number of processes.)

Only rank 0 (`is_main`) should print or write files; sum metrics with `allreduce_sum`. Wrap the
whole program in `abort_on_error` (or call it through `run_main`) so that an exception on one
rank ends the job instead of leaving the others waiting in a collective forever.

A rank that stops taking part ends the job too. Every collective here is non-blocking: a rank
waiting for it tests it for 1 ms, then sleeps between tests, for a quarter of the time waited
so far, from 1 ms up to 50 ms (a waiting process uses almost no CPU). One that has not
completed after ``init(timeout=...)`` seconds (`DEFAULT_TIMEOUT`, 300 s; ``chainrule train
--timeout``) aborts the job, naming the ranks that did not arrive. A rank whose program ends
(returns, or calls ``sys.exit(0)``) says so to the others at exit and then waits for them in a
final barrier: a rank still waiting in a collective that the leaver never entered aborts the
job, naming it; ranks that all reach the end finish normally.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import math
import numbers
import os
import sys
import time
import traceback
from contextlib import contextmanager

import numpy as np

BUCKET_BYTES = 4 * 1024 * 1024  # gradients are averaged in buffers of about this size
DEFAULT_TIMEOUT = 300.0  # seconds a collective may wait for the other ranks (init(timeout=))

_state = {"comm": None, "initialised": False, "timeout": DEFAULT_TIMEOUT, "watch": None}


def _mpi():
    """The mpi4py MPI module, or None when mpi4py is not installed (imported late on purpose:
    importing it initialises MPI, and chainrule must work without it)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI


def init(timeout: float | None = None):
    """Join the MPI job if there is one; returns the communicator (None without mpi4py).

    ``timeout``: the seconds any collective operation of this module may wait for the other
    ranks before the job is aborted with the ranks that did not arrive named (default
    `DEFAULT_TIMEOUT`; ``math.inf`` waits forever; None keeps the current value). Safe to call
    many times; every other function here calls it for you. Only this module's collectives
    are watched: blocking calls made directly on the returned communicator are not."""
    if timeout is not None:
        set_timeout(timeout)
    if not _state["initialised"]:
        MPI = _mpi()
        _state["comm"] = MPI.COMM_WORLD if MPI is not None else None
        _state["initialised"] = True
        if _state["comm"] is not None and _state["comm"].Get_size() > 1:
            _state["watch"] = _Watch(_state["comm"])
            atexit.register(_state["watch"].finish)
    return _state["comm"]


def set_timeout(seconds: float) -> None:
    """Set the collective timeout (see `init`) without starting MPI."""
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or \
            math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"distributed: timeout must be a positive number of seconds, got "
                         f"{seconds!r}")
    _state["timeout"] = float(seconds)


def get_timeout() -> float:
    """The collective timeout in seconds (see `init`)."""
    return _state["timeout"]


class TimeoutOption(argparse.Action):
    """An argparse action for ``--timeout SECONDS``: sets the collective timeout as it is
    parsed (with a ``type`` that gives a positive number)."""

    def __call__(self, parser, namespace, values, option_string=None):
        set_timeout(values)
        setattr(namespace, self.dest, values)


# Waiting: spin on Test this long first (the collectives of a balanced step complete within
# it), then sleep between tests: a quarter of the time waited so far, from SLEEP_FIRST up to
# SLEEP_MAX (a late rank then finds the collective done at most a quarter later than a
# spinning wait would, and a rank waiting for long tests 20 times a second).
SPIN_SECONDS = 1e-3
SLEEP_FIRST, SLEEP_MAX = 1e-3, 5e-2
# A collective moving more than this many bytes is preceded by a watched barrier: MPI moves a
# large buffer in many exchanges, each needing both sides to call into MPI, and a rank that
# sleeps between its tests would stretch every one of them (a 200 kB allreduce took 100 ms
# instead of 0.2 ms). Once the barrier is passed every rank has arrived, and the transfer
# itself is waited for spinning, for at most ACTIVE_SPIN_SECONDS before sleeping again.
TWO_PHASE_BYTES = 16 * 1024
ACTIVE_SPIN_SECONDS = 0.2
_QUERY, _REPLY, _LEAVE = 1, 2, 3  # kinds of message on the control communicator
_CONTROL_TAG = 7
_AT_EXIT = -1  # the REPLY of a rank that waits in the final barrier at exit
_yield = getattr(os, "sched_yield", lambda: None)


class _Watch:
    """Watches the collectives of a job of several processes, so that none waits forever.

    Collectives are numbered in the order they start (the same order on every rank). Beside
    the job's communicator a duplicate carries small control messages, [kind, number]:
    QUERY ("which collective are you waiting in?") from a rank that timed out, REPLY to it,
    and LEAVE ("my program ended after collective n") sent at exit. A waiting rank answers
    queries and reads the others' messages between its tests of the collective."""

    def __init__(self, comm):
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.number = 0  # collectives started so far
        self.replies, self.left, self.sends = {}, {}, []
        self.finished = self.at_exit = False
        control, request = comm.Idup()
        self.control = None  # no control messages until the duplicate exists
        self.wait(request, "the start of the job (MPI communicator duplication)")
        self.control = control
        self.inbox = np.zeros(2, np.int64)
        self.receive = control.Irecv(self.inbox, source=_mpi().ANY_SOURCE, tag=_CONTROL_TAG)

    def start(self):
        """The number of the collective about to start."""
        self.number += 1
        return self.number

    def _send(self, dest: int, kind: int, number: int) -> None:
        message = np.array([kind, number], np.int64)
        self.sends.append((self.control.Isend(message, dest=dest, tag=_CONTROL_TAG), message))
        self.sends = [(r, m) for r, m in self.sends if not r.Test()]

    def _read_messages(self, number: int | None) -> None:
        """Handle the control messages that have arrived (``number``: the collective this
        rank waits in, None outside one)."""
        MPI = _mpi()
        status = MPI.Status()
        while self.control is not None and self.receive.Test(status):
            kind, value = (int(v) for v in self.inbox)
            source = status.Get_source()
            if kind == _QUERY and number is not None:
                self._send(source, _REPLY, _AT_EXIT if self.at_exit else number)
            elif kind == _REPLY:
                self.replies[source] = value
            elif kind == _LEAVE:
                self.left[source] = value
            self.receive = self.control.Irecv(self.inbox, source=MPI.ANY_SOURCE,
                                              tag=_CONTROL_TAG)

    def wait(self, request, what: str, number: int | None = None, final: bool = False,
             spin: float = SPIN_SECONDS) -> None:
        """Wait for ``request``, spinning for ``spin`` seconds at most and then sleeping between
        tests; abort the job when a rank left before it (unless ``final``) or when it has not
        completed after the timeout."""
        timeout = _state["timeout"]
        started, cpu_started = time.perf_counter(), time.process_time()
        spin_until = started + spin
        while time.perf_counter() < spin_until:
            if request.Test():
                return
            _yield()  # let a process that shares this core (oversubscribed) run
        queried = None
        self.replies = {}
        while not request.Test():
            self._read_messages(number)
            if not final and number is not None:
                early = sorted(r for r, done in self.left.items() if done < number)
                if early:
                    self._left_early(early, what, number, time.perf_counter() - started,
                                     time.process_time() - cpu_started)
            now = time.perf_counter()
            if queried is None and now - started >= timeout and self.control is None:
                self._timed_out(what, number, now - started, time.process_time() - cpu_started)
            elif queried is None and now - started >= timeout:
                queried = now
                for other in range(self.size):
                    if other != self.rank:
                        self._send(other, _QUERY, number or 0)
            elif queried is not None and (len(self.replies) == self.size - 1 or
                                          now - queried >= _grace(timeout)):
                self._timed_out(what, number, now - started,
                                time.process_time() - cpu_started)
            time.sleep(min(SLEEP_MAX, max(SLEEP_FIRST, 0.25 * (now - started))))

    def _timed_out(self, what, number, waited, cpu) -> None:
        silent = [r for r in range(self.size) if r != self.rank and r not in self.replies]
        elsewhere = {r: n for r, n in self.replies.items() if n != number}
        arrived = sorted([self.rank] + [r for r, n in self.replies.items() if n == number])
        parts = []
        if silent:
            parts.append(f"{_ranks(silent)} did not arrive (no answer: hung, or busy outside "
                         f"chainrule's collectives)")
        parts += [f"rank {r} has ended its program and waits at exit" if n == _AT_EXIT else
                  f"rank {r} waits in collective #{n} instead"
                  for r, n in sorted(elsewhere.items())]
        if not parts:
            parts.append("every rank is waiting in it, yet it does not complete (did the ranks "
                         "call different collectives?)")
        self._abort(f"timed out after {_seconds(_state['timeout'])} waiting in {what} "
                    f"(collective #{number}): {'; '.join(parts)}. Aborting the job "
                    f"(waited {waited:.1f} s using {cpu:.2f} s of CPU; set the limit with "
                    f"--timeout or distributed.init(timeout=...))", first=arrived[0])

    def _left_early(self, early, what, number, waited, cpu) -> None:
        leavers = ", ".join(f"rank {r} after collective #{self.left[r]}" for r in early)
        self._abort(f"{_ranks(early)} left the job before the others finished ({leavers}: its "
                    f"program ended or called sys.exit) while rank {self.rank} waits in {what} "
                    f"(collective #{number}). Aborting the job (waited {waited:.1f} s using "
                    f"{cpu:.2f} s of CPU)",
                    first=min(r for r in range(self.size) if r not in self.left))

    def _abort(self, message: str, first: int) -> None:
        """Print ``rank N: message`` and abort the job. Ranks other than ``first`` (the one
        expected to report) give it a moment first, so that one message, not one per rank,
        explains the end."""
        if self.rank != first:
            time.sleep(1.0)
        self.finished = True
        sys.stdout.flush()
        sys.stderr.write(f"rank {self.rank}: {message}\n")
        _abort_job(self.comm)

    def finish(self) -> None:
        """At exit: tell the others this program has ended, then wait for all of them in a
        final barrier (their own exits). A rank still waiting in an earlier collective then
        aborts the job, naming this one; a healthy job ends normally."""
        MPI = _mpi()
        if self.finished or MPI.Is_finalized():
            return
        self.finished = self.at_exit = True
        done = self.number
        for other in range(self.size):
            if other != self.rank:
                self._send(other, _LEAVE, done)
        # on the control communicator: a barrier on the job's own could complete with (match)
        # the barrier that begins a large collective on a rank still at work
        number = self.start()
        self.wait(self.control.Ibarrier(), "the final barrier at exit", number, final=True)
        # every rank sent its LEAVE before the barrier: receive them all, let this rank's own
        # messages go out, then stop listening (MPI is finalised after this)
        deadline = time.perf_counter() + _grace(_state["timeout"])
        while time.perf_counter() < deadline:
            self._read_messages(None)
            self.sends = [(r, m) for r, m in self.sends if not r.Test()]
            if len(self.left) == self.size - 1 and not self.sends:
                break
            time.sleep(SLEEP_FIRST)
        self.receive.Cancel()
        self.receive.Wait()


def _grace(timeout: float) -> float:
    """How long a rank that timed out waits for answers to its query."""
    return min(2.0, max(0.5, 0.2 * timeout))


def _ranks(ranks) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _seconds(value: float) -> str:
    return "forever" if math.isinf(value) else f"{value:g} s"


def _wait(start, what: str, nbytes: int = 0) -> None:
    """Run the non-blocking collective that ``start()`` starts and wait for it under the watch
    (``nbytes``: how much it moves; a large one is preceded by a barrier, see TWO_PHASE_BYTES)."""
    watch = _state["watch"]
    if nbytes > TWO_PHASE_BYTES:
        watch.wait(watch.comm.Ibarrier(), what, watch.start())
        watch.wait(start(), what, watch.start(), spin=ACTIVE_SPIN_SECONDS)
    else:
        watch.wait(start(), what, watch.start())


def _comm():
    return init()


def _parallel_comm():
    """The communicator when there are at least two processes, else None (nothing to do)."""
    comm = _comm()
    return comm if comm is not None and comm.Get_size() > 1 else None


def rank() -> int:
    """This process's number, 0 to world_size() - 1 (0 without mpiexec)."""
    comm = _comm()
    return 0 if comm is None else comm.Get_rank()


def world_size() -> int:
    """How many processes train together (1 without mpiexec)."""
    comm = _comm()
    return 1 if comm is None else comm.Get_size()


def is_main() -> bool:
    """True on rank 0: the one process that prints and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process has got here."""
    comm = _parallel_comm()
    if comm is not None:
        _wait(comm.Ibarrier, "barrier")


def allreduce_sum(value):
    """The sum of a number, array or Tensor over all processes (a metric: a loss sum, a count
    of correct answers). Integers stay integers; a Tensor comes back as an ndarray."""
    data = getattr(value, "data", value)
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"allreduce_sum: expected a number or a numeric array, got "
                        f"{type(value).__name__} of {array.dtype}")
    comm = _parallel_comm()
    if comm is None:
        return data
    # float64 and int64 so that sums over many processes neither round nor overflow early
    array = np.array(array, dtype=np.int64 if array.dtype.kind in "biu" else np.float64,
                     order="C")  # a contiguous copy; np.ascontiguousarray would make 0-d 1-d
    total = np.empty_like(array)
    _wait(lambda: comm.Iallreduce(array, total, op=_mpi().SUM), "allreduce_sum",
          array.nbytes)
    if array.ndim:
        return total
    return int(total) if array.dtype.kind == "i" else float(total)


def _parameters_of(model_or_params) -> list:
    params = model_or_params.parameters() if hasattr(model_or_params, "parameters") \
        else model_or_params
    params = list(params)
    for i, p in enumerate(params):
        if not hasattr(p, "data") or not isinstance(p.data, np.ndarray):
            raise TypeError(f"distributed: parameter {i} is a {type(p).__name__}, not a Tensor")
    return params


def _check_same_layout(comm, tensors, root: int) -> None:
    """Raise the same error on every rank when the processes' models differ in their tensors'
    shapes or dtypes (a rank-dependent model would otherwise hang or mix up the weights)."""
    layout = [(tuple(t.shape), str(t.dtype)) for t in tensors]
    digest = hashlib.sha256(repr(layout).encode()).digest()[:16]
    mine = np.concatenate([[len(layout)], np.frombuffer(digest, np.int64)]).astype(np.int64)
    reference = mine.copy()
    _wait(lambda: comm.Ibcast(reference, root=root), "the model check of broadcast_parameters")
    same = np.array(int(np.array_equal(mine, reference)), np.int64)
    _wait(lambda: comm.Iallreduce(_mpi().IN_PLACE, same, op=_mpi().MIN),
          "the model check of broadcast_parameters")
    if not same:
        raise ValueError(f"distributed: the processes' models differ (rank {root} has "
                         f"{reference[0]} tensors, rank {comm.Get_rank()} has {len(layout)}, "
                         f"or shapes/dtypes differ); build the same model on every rank")


def broadcast_parameters(model, root: int = 0) -> None:
    """Copy rank ``root``'s parameters and buffers into every other process's model, in place.

    A model may hold its parameters in arrays that are not contiguous; those are broadcast
    through a contiguous copy."""
    comm = _parallel_comm()
    if comm is None:
        return
    tensors = _parameters_of(model) + list(model.buffers() if hasattr(model, "buffers") else [])
    _check_same_layout(comm, tensors, root)
    for t in tensors:
        buffer = t.data if t.data.flags.c_contiguous else np.ascontiguousarray(t.data)
        _wait(lambda b=buffer: comm.Ibcast(b, root=root), "broadcast_parameters", buffer.nbytes)
        if buffer is not t.data:
            t.data[...] = buffer
        t._version[0] += 1  # the data changed in place: saved copies of it are now stale


def _buckets(params):
    """Parameters grouped by dtype into runs of about BUCKET_BYTES (a parameter bigger than
    that gets a bucket of its own)."""
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


_send_buffers: dict = {}  # bucket number -> the flat buffer reused for it step after step


def _buffer(number: int, dtype, length: int) -> np.ndarray:
    """The reusable flat buffer for bucket ``number``. Reusing it matters: an Allreduce on
    freshly allocated memory took 4.7 ms for 4 MB here against 0.7 ms on a buffer used before
    (the pages are new to the kernel and to MPI's memory registration)."""
    buffer = _send_buffers.get(number)
    if buffer is None or buffer.dtype != dtype or buffer.size != length:
        buffer = _send_buffers[number] = np.empty(length, dtype=dtype)
    return buffer


def _pack(bucket, out: np.ndarray | None = None, weight: float = 1.0) -> np.ndarray:
    """One flat buffer (``out`` when given): every gradient of the bucket (zeros for a missing
    one) times ``weight``, then one flag per parameter saying whether it had a gradient here,
    then ``weight`` itself (summed over the ranks, it is what `_unpack` divides by)."""
    n_values = sum(p.data.size for p in bucket)
    length = n_values + len(bucket) + 1
    flat = np.empty(length, dtype=bucket[0].dtype) if out is None else out
    start = 0
    for i, p in enumerate(bucket):
        size = p.data.size
        if p.grad is not None:
            flat[start:start + size] = np.ravel(p.grad.data)  # casts to the parameter's dtype
        else:
            flat[start:start + size] = 0
        flat[n_values + i] = p.grad is not None
        start += size
    if weight != 1:
        flat[:n_values] *= weight
    flat[-1] = weight
    return flat


def _unpack(bucket, flat: np.ndarray) -> None:
    """Set each parameter's gradient to its part of the summed buffer divided by the summed
    weights (the number of processes when unweighted): a new array, so the buffer can be
    reused while the gradients are kept."""
    from chainrule.tensor import Tensor

    n_values = flat.size - len(bucket) - 1
    total = flat[-1]
    start = 0
    for i, p in enumerate(bucket):
        size = p.data.size
        if flat[n_values + i] > 0:  # some rank had a gradient: the others count as zeros
            if total <= 0:
                raise ValueError("allreduce_gradients: the ranks' weights sum to 0, yet some "
                                 "rank has a gradient")
            mean = np.divide(flat[start:start + size], total, dtype=flat.dtype)
            p.grad = Tensor._wrap(mean.reshape(p.shape))
        start += size  # no rank had one: stays None everywhere, as in a single process


def allreduce_gradients(model_or_params, weight: float | None = None) -> int:
    """Average every parameter's gradient across processes (``p.grad`` is replaced).

    With ``weight`` (this rank's number of samples, say), the average is weighted: the sum of
    weight times gradient over the ranks, divided by the sum of the weights. When each rank's
    gradient is the mean loss gradient over its own samples, that is the mean over all of
    them, even when the ranks hold different numbers of samples (or none: weight 0, no
    gradient). A gradient missing on some ranks counts as zeros there; a gradient missing on
    every rank stays None, so optimizers skip that parameter just as they would in one process.
    Gradients travel in buckets of about `BUCKET_BYTES`, so a model with many small parameters
    makes few calls. Returns the number of Allreduce calls (0 for a single process)."""
    params = _parameters_of(model_or_params)
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, numbers.Real)
                               or not math.isfinite(weight) or weight < 0):
        raise ValueError(f"allreduce_gradients: weight must be a finite number >= 0, got "
                         f"{weight!r}")
    comm = _parallel_comm()
    if comm is None:
        return 0
    MPI = _mpi()
    buckets = _buckets(params)
    for number, bucket in enumerate(buckets):
        length = sum(p.data.size for p in bucket) + len(bucket) + 1
        flat = _pack(bucket, out=_buffer(number, bucket[0].dtype, length),
                     weight=1.0 if weight is None else weight)
        _wait(lambda f=flat: comm.Iallreduce(MPI.IN_PLACE, f, op=MPI.SUM),
              "allreduce_gradients", flat.nbytes)
        _unpack(bucket, flat)
    return len(buckets)


class DistributedDataParallel:
    """Wraps a model: parameters broadcast from rank 0 now, gradients averaged on request.

    Calling it calls the model; every other attribute (``parameters``, ``state_dict``,
    ``train``, ...) is the model's, so the state dict has the model's own keys and a checkpoint
    written by a distributed run loads into a plain model.
    """

    def __init__(self, model):
        if not callable(model) or not hasattr(model, "parameters"):
            raise TypeError(f"DistributedDataParallel: expected a Module, got "
                            f"{type(model).__name__}")
        self.module = model
        broadcast_parameters(model)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def allreduce_gradients(self) -> int:
        """Average the gradients across processes; call it after ``backward()``."""
        return allreduce_gradients(self.module)

    def __getattr__(self, name):
        if name == "module":  # not set yet (during unpickling): avoid endless recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self):
        return f"DistributedDataParallel({self.module!r}, world_size={world_size()})"


_this_rank, _this_world_size = rank, world_size  # shard_indices has arguments of these names


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"shard: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def shard_indices(n_samples: int, epoch: int, seed: int = 0, *, shuffle: bool = True,
                  drop_last: bool = True, rank: int | None = None,
                  world_size: int | None = None) -> np.ndarray:
    """This process's disjoint share of ``range(n_samples)`` for ``epoch``.

    Every rank draws the same permutation (from ``seed`` and ``epoch``) and takes every
    ``world_size``-th index starting at its rank, so the first ``k`` indices of all the
    shards together are the first ``k * world_size`` of the permutation: a local batch of
    ``B / world_size`` on every rank makes the same global batches as one process with ``B``.
    All shards have the same length, so every rank takes the same number of steps:
    ``drop_last=True`` cuts the permutation to a multiple of the world size, ``False`` pads it
    with its own first indices. ``rank`` and ``world_size`` default to this process's.
    """
    n_samples, epoch, seed = (_check_count(k, v) for k, v in
                              (("n_samples", n_samples), ("epoch", epoch), ("seed", seed)))
    n = _this_world_size() if world_size is None else _check_count("world_size", world_size)
    r = _this_rank() if rank is None else _check_count("rank", rank)
    if not 0 <= r < n:
        raise ValueError(f"shard: rank {r} is not in [0, {n}) (world size {n})")
    order = (np.random.default_rng((seed, epoch)).permutation(n_samples) if shuffle
             else np.arange(n_samples))
    if drop_last:
        order = order[: len(order) - len(order) % n]
    elif len(order) % n:
        if not len(order):
            raise ValueError("shard: cannot pad an empty dataset")
        order = np.resize(order, len(order) + n - len(order) % n)  # repeats from the start
    return order[r::n]


def shard(data, epoch: int, seed: int = 0, **options):
    """This process's share of ``data`` for ``epoch``: a `chainrule.data.Subset` of a dataset,
    or, for an integer ``n``, the indices into ``range(n)`` (see `shard_indices` for the
    rules and ``options``). Give the Subset to a DataLoader with ``shuffle=False``: it is
    shuffled already, the same way on every rank, and anew each epoch."""
    if isinstance(data, numbers.Integral) and not isinstance(data, bool):
        return shard_indices(data, epoch, seed, **options)
    if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise TypeError(f"shard: expected a dataset or a number of samples, got "
                        f"{type(data).__name__}")
    from chainrule.data import Subset

    return Subset(data, shard_indices(len(data), epoch, seed, **options))


def _report_and_abort(exc: BaseException) -> None:
    """Print ``rank N: <traceback>`` to stderr and end every process of the job."""
    sys.stdout.flush()
    sys.stderr.write(f"rank {rank()}: {''.join(traceback.format_exception(exc))}")
    _abort_job(_comm())


ABORT_DELAY = 0.3  # seconds between printing why and aborting


def _abort_job(comm) -> None:
    """MPI_Abort the job, after a pause: mpiexec forwards a process's output through a pipe
    and may tear the job down before it has read the last of it (the message saying why was
    lost in 1 run of 10 without the pause)."""
    sys.stderr.flush()
    time.sleep(ABORT_DELAY)
    comm.Abort(1)


@contextmanager
def abort_on_error():
    """An exception on any rank prints ``rank N: <traceback>`` and aborts the whole job, so
    the other ranks don't wait forever in a collective operation. With one process the
    exception propagates as usual; ``sys.exit(0)`` is not an error here: it ends the program,
    and the exit hook (see `init`) aborts the job if the other ranks still wait for this one."""
    try:
        yield
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: a rank leaving early
        clean_exit = isinstance(exc, SystemExit) and exc.code in (None, 0)
        if _parallel_comm() is None or clean_exit:
            raise
        _report_and_abort(exc)


def run_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under `abort_on_error`; returns what it returns."""
    with abort_on_error():
        return fn(*args, **kwargs)
