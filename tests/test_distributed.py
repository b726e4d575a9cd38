"""Data parallel over MPI: the same weights as one process, and a job ends, naming the rank,
when a rank fails, hangs or leaves early.

The MPI tests launch ``mpiexec -n 2`` on this machine; the rest run in this process, where
chainrule sees a world of one process (or simulate ranks through `shard_indices`' arguments).
"""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli, nn, training
from chainrule import distributed as dist

MPIEXEC = shutil.which("mpiexec")
SCRIPTS = Path(__file__).parent / "distributed_scripts"
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed "
                               "(pip install chainrule[mpi])")


def test_single_process_fallback():
    dist.init()
    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    dist.barrier()
    assert dist.allreduce_sum(3.5) == 3.5
    model = dist.DistributedDataParallel(nn.Linear(3, 2))
    model(cr.ones(1, 3)).sum().backward()
    before = model.weight.grad.data.copy()
    assert model.allreduce_gradients() == 0
    np.testing.assert_array_equal(model.weight.grad.data, before)
    assert dist.run_main(lambda a, b: a + b, 2, b=3) == 5


def test_works_without_mpi4py(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` fail
    monkeypatch.setattr(dist, "_state", {"comm": None, "initialised": False})
    assert dist.init() is None
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    model = dist.DistributedDataParallel(nn.Linear(2, 2))
    assert model.allreduce_gradients() == 0 and dist.allreduce_sum(4) == 4
    assert len(dist.shard(7, epoch=0)) == 7


def test_errors_propagate_unchanged_in_a_single_process():
    with pytest.raises(KeyError, match="plain"), dist.abort_on_error():
        raise KeyError("plain")


def test_bad_input_gets_clear_errors():
    with pytest.raises(TypeError, match="numeric"):
        dist.allreduce_sum("3")
    with pytest.raises(TypeError, match="expected a Module"):
        dist.DistributedDataParallel(42)
    with pytest.raises(TypeError, match="not a Tensor"):
        dist.allreduce_gradients([np.zeros(3)])
    with pytest.raises(ValueError, match="epoch must be a non-negative integer"):
        dist.shard(10, epoch=-1)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        dist.shard_indices(10, 0, rank=2, world_size=2)
    with pytest.raises(TypeError, match="dataset or a number"):
        dist.shard(3.5, 0)


@pytest.mark.parametrize("n_ranks", [1, 2, 3, 4])
def test_shards_are_disjoint_equal_and_make_the_global_batches(n_ranks):
    shards = [dist.shard_indices(10, 3, seed=5, rank=r, world_size=n_ranks)
              for r in range(n_ranks)]
    assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
    together = np.concatenate(shards)
    assert len(set(together.tolist())) == len(together) == 10 - 10 % n_ranks
    # position k of every shard, side by side, is the permutation itself: a local batch of
    # B / n on every rank makes the global batch of B that one process would take
    interleaved = np.stack(shards, axis=1).ravel()
    np.testing.assert_array_equal(interleaved, dist.shard_indices(10, 3, seed=5)[:len(together)])


def test_shards_are_reproducible_and_new_each_epoch():
    first = dist.shard_indices(50, 0, seed=1)
    np.testing.assert_array_equal(first, dist.shard_indices(50, 0, seed=1))
    assert not np.array_equal(first, dist.shard_indices(50, 1, seed=1))
    assert not np.array_equal(first, dist.shard_indices(50, 0, seed=2))
    np.testing.assert_array_equal(dist.shard_indices(5, 0, shuffle=False), np.arange(5))


def test_padding_keeps_every_sample():
    shards = [dist.shard_indices(10, 0, drop_last=False, rank=r, world_size=4) for r in range(4)]
    assert {len(s) for s in shards} == {3}
    assert set(np.concatenate(shards).tolist()) == set(range(10))


def test_a_dataset_shard_is_a_subset_the_data_loader_batches():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    data = cr.data.TensorDataset(X, np.arange(10))
    part = dist.shard(data, epoch=2, seed=3, rank=1, world_size=2)
    assert isinstance(part, cr.data.Subset) and len(part) == 5
    ys = np.concatenate([yb.data for _, yb in cr.data.DataLoader(part, batch_size=2)])
    np.testing.assert_array_equal(ys, dist.shard_indices(10, 2, seed=3, rank=1, world_size=2))


def test_buckets_pack_many_parameters_into_few_calls():
    params = [cr.zeros(1000, requires_grad=True) for _ in range(100)]  # 400 kB in all
    assert len(dist._buckets(params)) == 1
    big = [cr.zeros(600_000, requires_grad=True) for _ in range(4)]  # 2.4 MB each
    assert len(dist._buckets(big)) == 4
    mixed = [cr.zeros(3, requires_grad=True), cr.zeros(3, dtype=cr.float64, requires_grad=True)]
    assert len(dist._buckets(mixed)) == 2  # one dtype per buffer


def _params_with_grads(grads):
    params = [cr.zeros(2, 2, requires_grad=True), cr.zeros(3, requires_grad=True),
              cr.zeros(1, requires_grad=True)]
    for p, g in zip(params, grads):
        p.grad = None if g is None else cr.tensor(np.full(p.shape, g, np.float32))
    return params


def test_missing_gradients_count_as_zeros_and_stay_none_when_missing_everywhere():
    """Two simulated ranks: pack each, sum the buffers as Allreduce would, unpack."""
    rank0 = _params_with_grads([2.0, None, None])
    rank1 = _params_with_grads([4.0, 6.0, None])
    summed = dist._pack(rank0) + dist._pack(rank1)
    dist._unpack(rank0, summed)
    np.testing.assert_array_equal(rank0[0].grad.data, np.full((2, 2), 3.0))
    np.testing.assert_array_equal(rank0[1].grad.data, np.full(3, 3.0))  # (0 + 6) / 2
    assert rank0[2].grad is None
    assert rank0[0].grad.dtype == np.float32


def test_a_weighted_average_is_the_mean_over_all_samples():
    """Rank 0 averaged its loss over 3 samples, rank 1 over 1 and rank 2 over none: weighted by
    those counts the average is the mean over the 4 samples, whatever their split."""
    grads = {0: [2.0, 1.0, None], 1: [6.0, None, None], 2: [None, None, None]}
    counts = {0: 3, 1: 1, 2: 0}
    ranks = {r: _params_with_grads(g) for r, g in grads.items()}
    summed = sum(dist._pack(ranks[r], weight=counts[r]) for r in ranks)
    dist._unpack(ranks[0], summed)
    np.testing.assert_array_equal(ranks[0][0].grad.data, np.full((2, 2), 3.0))  # (6 + 6) / 4
    np.testing.assert_array_equal(ranks[0][1].grad.data, np.full(3, 0.75))  # 3 / 4
    assert ranks[0][2].grad is None
    with pytest.raises(ValueError, match="weight must be a finite number"):
        dist.allreduce_gradients(ranks[0], weight=-1)


def _run(cmd, timeout=120):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@needs_mpi
def test_ddp_steps_over_two_processes_equal_one_process(tmp_path):
    script = str(SCRIPTS / "ddp_steps.py")
    _run([sys.executable, script, str(tmp_path / "one.safetensors")])
    _run([MPIEXEC, "-n", "2", sys.executable, script, str(tmp_path / "two.safetensors")])
    one = cr.load(tmp_path / "one.safetensors")
    two = cr.load(tmp_path / "two.safetensors")
    assert set(one) == set(two)
    for key in one:
        np.testing.assert_allclose(two[key].data, one[key].data, rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    assert int(two["unused_grad_is_none"].data) == 1
    assert int(two["seen"].data) == 2 * 96  # two epochs of every sample, counted over ranks


TRAIN = [sys.executable, "-m", "chainrule", "train", "--epochs", "2", "--hidden", "32",
         "--no-progress"]


def _train(out, n=None, *extra):
    """`chainrule train` into ``out``: plain when ``n`` is None, else ``--distributed`` on n
    processes. Returns its stdout and the final weights."""
    cmd = TRAIN + ["--out", str(out), *extra]
    if n is not None:
        cmd = [MPIEXEC, "-n", str(n)] + cmd + ["--distributed"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout, cr.load(Path(out) / "model.safetensors")


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory):
    """The weights of a plain `chainrule train` (no --distributed, no mpiexec)."""
    return _train(tmp_path_factory.mktemp("plain") / "run")[1]


def _assert_same_weights(weights, reference):
    assert set(weights) == set(reference)
    for key in reference:  # float32 sums in another order: only the last bits differ
        np.testing.assert_allclose(weights[key].data, reference[key].data, rtol=1e-5,
                                   atol=1e-6, err_msg=key)


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_distributed_runs_give_the_weights_of_a_plain_run(tmp_path, plain_weights, n):
    # 2 divides the batch of 32; 3 does not, and splits the last batch of 10 as 4, 3, 3: the
    # gradients are averaged weighted by each rank's share, so that is the same step too
    out, weights = _train(tmp_path / "run", n)
    assert out.count("test accuracy") == 1  # only rank 0 prints
    _assert_same_weights(weights, plain_weights)


def test_plain_and_distributed_batches_are_the_same_global_batches():
    """Each rank's part of step k, put together, is step k of the plain run."""
    X = np.arange(23, dtype=np.float32)[:, None]
    config = training.Config(batch_size=8, seed=4)
    plain = [yb.data for _, yb in training._epoch_batches((X, np.arange(23)), 2, config)]
    assert [len(b) for b in plain] == [8, 8, 7]
    assert sorted(np.concatenate(plain).tolist()) == list(range(23))
    for n in (2, 3, 8, 9):
        parts = [[yb.data for _, yb in training._epoch_batches(
            (X, np.arange(23)), 2, config, _FakeRanks(r, n))] for r in range(n)]
        for step, batch in enumerate(plain):
            np.testing.assert_array_equal(np.concatenate([p[step] for p in parts]), batch)


class _FakeRanks:
    def __init__(self, rank, size):
        self._rank, self._size = rank, size

    def rank(self):
        return self._rank

    def world_size(self):
        return self._size


@needs_mpi
def test_a_failing_rank_ends_the_job_with_its_error():
    # rank 0 waits in a barrier; without the abort this would hang until the timeout fails it
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable,
                             str(SCRIPTS / "fail_on_rank1.py")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rank 1:" in output and "ValueError: rank one broke on purpose" in output


@needs_mpi
def test_models_that_differ_between_ranks_are_refused():
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable,
                             str(SCRIPTS / "mismatched_models.py")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "the processes' models differ" in result.stderr
    assert "broadcast went through" not in result.stdout


@needs_mpi
def test_resume_with_a_different_number_of_processes(tmp_path, plain_weights):
    run = tmp_path / "run"
    _train(run, 2, "--stop-after", "1")
    result = subprocess.run(TRAIN + ["--out", str(run), "--resume"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "resumed from" in result.stdout, result.stderr
    _assert_same_weights(cr.load(run / "model.safetensors"), plain_weights)


def test_timeout_setting():
    before = dist.get_timeout()
    try:
        assert before == dist.DEFAULT_TIMEOUT == 300
        dist.init(timeout=2.5)
        assert dist.get_timeout() == 2.5
        dist.init()  # None keeps it
        assert dist.get_timeout() == 2.5
        for bad in (0, -1, float("nan"), "5", True):
            with pytest.raises(ValueError, match="timeout must be a positive number"):
                dist.set_timeout(bad)
        parser = cli.build_parser()
        parser.parse_args(["train", "--timeout", "7"])
        assert dist.get_timeout() == 7
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "--timeout", "0"])
    finally:
        dist.set_timeout(before)


def _mpi_job(n, script, *args, timeout=60):
    """Run ``script`` on n processes; (result, seconds it took). The subprocess timeout only
    guards against a regression: the job must end by itself well before it."""
    started = time.perf_counter()
    result = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, str(SCRIPTS / script),
                             *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return result, time.perf_counter() - started


def _cpu_share(log, last_seconds):
    """CPU seconds per wall second of rank 0 over the last ``last_seconds`` of its log."""
    samples = np.loadtxt(log, ndmin=2)
    window = samples[samples[:, 0] >= samples[-1, 0] - last_seconds]
    return (window[-1, 1] - window[0, 1]) / (window[-1, 0] - window[0, 0])


def _waited_and_cpu(message):
    waited, cpu = re.search(r"waited ([0-9.]+) s using ([0-9.]+) s of CPU", message).groups()
    return float(waited), float(cpu)


@needs_mpi
def test_a_hanging_rank_ends_the_job_after_the_timeout_naming_it(tmp_path):
    log = tmp_path / "cpu.log"
    result, seconds = _mpi_job(2, "stop_taking_part.py", "hang", tmp_path / "run", log, 5)
    assert result.returncode != 0
    assert "rank 0: timed out after 5 s waiting in allreduce_gradients" in result.stderr
    assert "rank 1 did not arrive" in result.stderr, result.stderr
    assert seconds < 15, result.stderr
    waited, cpu = _waited_and_cpu(result.stderr)
    assert 5 <= waited < 8 and cpu < 0.05 * waited, result.stderr  # it sleeps, not spins
    assert _cpu_share(log, 4) < 0.05


@needs_mpi
def test_a_rank_that_exits_early_ends_the_job_naming_it(tmp_path):
    log = tmp_path / "cpu.log"
    result, seconds = _mpi_job(2, "stop_taking_part.py", "exit", tmp_path / "run", log)
    assert result.returncode != 0
    assert "rank 0: rank 1 left the job before the others finished" in result.stderr, \
        result.stderr
    assert seconds < 12, result.stderr  # rank 1 waits 2 s before it exits; --timeout is 30
    waited, cpu = _waited_and_cpu(result.stderr)
    assert 1.5 < waited < 4 and cpu < 0.05 * waited, result.stderr
    assert _cpu_share(log, 1.5) < 0.05


@needs_mpi
def test_the_api_timeout_names_the_rank_once_among_three():
    result, seconds = _mpi_job(3, "hang_with_api_timeout.py")
    assert result.returncode != 0 and "the barrier went through" not in result.stdout
    assert "rank 2 did not arrive" in result.stderr, result.stderr
    assert result.stderr.count("timed out after 1 s") == 1, result.stderr  # rank 0 reports
    assert "rank 0: timed out after 1 s waiting in barrier" in result.stderr
    assert seconds < 10, result.stderr


@needs_mpi
def test_ranks_that_end_at_different_times_end_the_job_normally():
    result, _ = _mpi_job(2, "end_apart.py")
    assert result.returncode == 0, result.stderr
    assert "rank 0 done: 3" in result.stdout and "rank 1 done: 3" in result.stdout
