"""Losses and functional layers against PyTorch; the fused cross-entropy gradient is (q - y)/N."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
from chainrule.nn import functional as F


def _pair(shape, seed=0, dtype=np.float64):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["mse", "l1", "bce", "bce_logits", "ce_labels", "ce_probs",
                                  "nll"])
def test_losses_match_torch(name, reduction):
    rng = np.random.default_rng(1)
    x, xt = _pair((6, 4))
    labels = rng.integers(0, 4, 6)
    probs = rng.dirichlet(np.ones(4), 6)
    targets = rng.standard_normal((6, 4))
    binary = rng.integers(0, 2, (6, 4)).astype(np.float64)
    if name == "mse":
        ours, theirs = F.mse_loss(x, targets, reduction), TF.mse_loss(
            xt, torch.tensor(targets), reduction=reduction)
    elif name == "l1":
        ours, theirs = F.l1_loss(x, targets, reduction), TF.l1_loss(
            xt, torch.tensor(targets), reduction=reduction)
    elif name == "bce":
        p, pt = cr.sigmoid(x), torch.sigmoid(xt)
        ours, theirs = F.binary_cross_entropy(p, binary, reduction), TF.binary_cross_entropy(
            pt, torch.tensor(binary), reduction=reduction)
    elif name == "bce_logits":
        ours = F.binary_cross_entropy_with_logits(x, binary, reduction)
        theirs = TF.binary_cross_entropy_with_logits(xt, torch.tensor(binary),
                                                     reduction=reduction)
    elif name == "ce_labels":
        ours, theirs = F.cross_entropy(x, labels, reduction), TF.cross_entropy(
            xt, torch.tensor(labels), reduction=reduction)
    elif name == "ce_probs":
        ours, theirs = F.cross_entropy(x, probs, reduction), TF.cross_entropy(
            xt, torch.tensor(probs), reduction=reduction)
    else:
        ours = F.nll_loss(cr.log_softmax(x), labels, reduction)
        theirs = TF.nll_loss(torch.log_softmax(xt, -1), torch.tensor(labels), reduction=reduction)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = np.random.default_rng(2).standard_normal(ours.shape)
    (ours * cr.tensor(w)).sum().backward()
    (theirs * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_cross_entropy_gradient_is_q_minus_y_over_n():
    logits = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    x = cr.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, labels)
    loss.backward()
    q = cr.softmax(cr.tensor(logits)).data
    y = np.eye(5, dtype=np.float32)[labels]
    np.testing.assert_allclose(x.grad.data, (q - y) / 8, atol=1e-7)
    assert x.grad.dtype == np.float32 and loss.dtype == np.float32
    assert x.grad.grad_fn is None


def test_seed_002_cross_entropy_values():
    # y = (1, 0, 0); p = (0.8, 0.1, 0.1): loss -ln 0.8 = 0.223; for p1 = 0.1 it is 2.303
    logits = cr.log(cr.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]))
    losses = F.cross_entropy(logits, np.array([0, 0]), reduction="none")
    np.testing.assert_allclose(losses.data, [0.2231, 2.3026], atol=1e-4)


def test_cross_entropy_second_derivative_matches_torch():
    x, xt = _pair((3, 4))
    labels = np.array([1, 0, 3])
    g = cr.grad(lambda z: (cr.grad(lambda v: F.cross_entropy(v, labels))(z) ** 2).sum())(x)
    gt = torch.autograd.grad(
        (torch.autograd.grad(TF.cross_entropy(xt, torch.tensor(labels)), xt,
                             create_graph=True)[0] ** 2).sum(), xt)[0]
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("labels,error,match", [
    (np.array([0, 4]), ValueError, "label 4 is out of range for 4 classes"),
    (np.array([0, -1]), ValueError, "label -1 is out of range"),
    (np.array([0.0, 1.0]), TypeError, "must be integers"),
    (np.array([0, 1, 2]), ValueError, r"expected 2 labels .* got shape \(3,\)"),
])
def test_bad_labels_are_clear_errors(labels, error, match):
    with pytest.raises(error, match=match):
        F.cross_entropy(cr.zeros(2, 4), labels)


def test_bad_reduction_and_shapes():
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(cr.zeros(2), cr.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(2,\) and target shape"):
        F.mse_loss(cr.zeros(2), cr.zeros(3))
    with pytest.raises(ValueError, match="probabilities must lie in"):
        F.binary_cross_entropy(cr.tensor([1.5]), cr.tensor([1.0]))


def test_one_hot():
    np.testing.assert_array_equal(F.one_hot(np.array([2, 0]), 3).data, [[0, 0, 1], [1, 0, 0]])
