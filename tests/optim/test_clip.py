"""clip_grad_norm_ against torch.nn.utils.clip_grad_norm_."""

import math

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import optim


def _grads(dtype, scale):
    rng = np.random.default_rng(3)
    return [np.asarray(rng.standard_normal(s) * scale, dtype) for s in [(3, 4), (5,), ()]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_matches_torch(dtype, norm_type, max_norm):
    grads = _grads(dtype, 2.0)
    ours = [cr.tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
              for g in grads]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad = cr.tensor(g.copy())
        tp.grad = torch.tensor(g.copy())
    total = optim.clip_grad_norm_(ours, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert total.dtype == dtype
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=rtol)
    for p, tp in zip(ours, theirs):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=rtol, atol=1e-7)
    if max_norm < total.item():  # clipped: the new total is max_norm
        new = optim.clip_grad_norm_(ours, 1e9, norm_type)
        assert new.item() == pytest.approx(max_norm, rel=1e-4)


def test_params_without_grad_are_ignored_and_single_tensor_accepted():
    w = cr.tensor([3.0, 4.0], requires_grad=True)
    v = cr.tensor([1.0], requires_grad=True)
    w.grad = cr.tensor([3.0, 4.0])
    assert optim.clip_grad_norm_([w, v], 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(w.grad.data, [0.6, 0.8], rtol=1e-5)
    assert v.grad is None
    assert optim.clip_grad_norm_(w, 10.0).item() == pytest.approx(1.0, rel=1e-5)


def test_nonfinite_and_bad_norm_type():
    w = cr.tensor([1.0], requires_grad=True)
    w.grad = cr.tensor([float("inf")])
    with pytest.raises(RuntimeError, match="clip_grad_norm_"):
        optim.clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type"):
        optim.clip_grad_norm_([w], 1.0, norm_type=-1)
