"""Data parallel over MPI: the same weights as one process, and a failing rank ends the job.

The MPI tests launch ``mpiexec -n 2`` on this machine; the rest run in this process, where
chainrule sees a world of one process (or simulate ranks through `shard_indices`' arguments).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import distributed as dist
from chainrule import nn

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
    dist._unpack(rank0, summed, n_processes=2)
    np.testing.assert_array_equal(rank0[0].grad.data, np.full((2, 2), 3.0))
    np.testing.assert_array_equal(rank0[1].grad.data, np.full(3, 3.0))  # (0 + 6) / 2
    assert rank0[2].grad is None
    assert rank0[0].grad.dtype == np.float32


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


def _train(tmp_path, name, n):
    cmd = [sys.executable, "-m", "chainrule", "train", "--distributed", "--epochs", "2",
           "--hidden", "32", "--out", str(tmp_path / name), "--no-progress"]
    if n > 1:
        cmd = [MPIEXEC, "-n", str(n)] + cmd
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout, cr.load(tmp_path / name / "model.safetensors")


@needs_mpi
def test_two_processes_give_the_weights_of_one_with_the_same_global_batch(tmp_path):
    out1, one = _train(tmp_path, "one", 1)
    out2, two = _train(tmp_path, "two", 2)
    assert out2.count("test accuracy") == 1  # only rank 0 prints
    for key in one:
        np.testing.assert_allclose(two[key].data, one[key].data, rtol=1e-4, atol=1e-5,
                                   err_msg=key)


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
def test_resume_with_a_different_number_of_processes(tmp_path):
    cmd = [sys.executable, "-m", "chainrule", "train", "--distributed", "--epochs", "2",
           "--hidden", "32", "--out", str(tmp_path / "run"), "--no-progress"]
    first = subprocess.run([MPIEXEC, "-n", "2"] + cmd + ["--stop-after", "1"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "resumed from" in second.stdout, second.stderr
    resumed = cr.load(tmp_path / "run" / "model.safetensors")
    _, reference = _train(tmp_path, "reference", 1)  # the same global batch throughout
    for key in reference:
        np.testing.assert_allclose(resumed[key].data, reference[key].data, rtol=1e-4,
                                   atol=1e-5, err_msg=key)
