"""Data parallel over MPI: the same weights as one process, and a failing rank ends the job."""

import shutil
import subprocess
import sys
import time
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
    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    assert dist.allreduce_sum(3.5) == 3.5
    model = nn.Linear(3, 2)
    model(cr.ones(1, 3)).sum().backward()
    before = model.weight.grad.data.copy()
    assert dist.allreduce_gradients(model) == 0
    np.testing.assert_array_equal(model.weight.grad.data, before)
    shard = dist.shard(10, epoch=0, seed=1)
    assert sorted(shard.tolist()) == list(range(10))
    assert not np.array_equal(shard, dist.shard(10, epoch=1, seed=1))


def test_buckets_pack_many_parameters_into_few_calls():
    params = [cr.zeros(1000, requires_grad=True) for _ in range(100)]  # 400 kB in all
    assert len(dist._buckets(params)) == 1
    big = [cr.zeros(600_000, requires_grad=True) for _ in range(4)]  # 2.4 MB each
    assert len(dist._buckets(big)) == 4


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
    start = time.perf_counter()
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable,
                             str(SCRIPTS / "fail_on_rank1.py")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rank 1:" in output and "rank one broke on purpose" in output
    assert time.perf_counter() - start < 30


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
