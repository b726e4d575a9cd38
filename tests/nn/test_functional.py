"""Losses and functional layers against PyTorch; the fused cross-entropy gradient is (q - y)/N."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
from chainrule import nn
from chainrule.nn import functional as F
from gradtools import central_difference


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
    (np.array([0, 4]), ValueError, r"label 4 \(at position 1 of target shape \(2,\)\) is out of "
     r"range for 4 classes \(input shape \(2, 4\)"),
    (np.array([0, -1]), ValueError, "label -1 .* is out of range"),
    (np.array([0.0, 1.0]), TypeError, r"class labels must be integers, got dtype float64 "
     r"\(shape \(2,\)\) for input of shape \(2, 4\)"),
    (np.array([0, 1, 2]), ValueError, r"expected 2 labels .* got shape \(3,\)"),
])
def test_bad_labels_are_clear_errors(labels, error, match):
    with pytest.raises(error, match="cross_entropy: " + match):
        F.cross_entropy(cr.zeros(2, 4), labels)
    with pytest.raises(error, match="nll_loss: " + match):
        F.nll_loss(cr.zeros(2, 4), labels)


def test_bad_reduction_and_shapes():
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(cr.zeros(2), cr.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(2,\) and target shape \(3,\)"):
        F.mse_loss(cr.zeros(2), cr.zeros(3))
    with pytest.raises(ValueError, match="probabilities must lie in"):
        F.binary_cross_entropy(cr.tensor([1.5]), cr.tensor([1.0]))


@pytest.mark.parametrize("name", ["mse", "l1", "bce", "bce_logits", "ce_labels", "ce_probs"])
def test_float32_losses_stay_float32_with_float64_targets(name):
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((5, 3)).astype(np.float32)
    x = cr.tensor(x32, requires_grad=True)
    xt = torch.tensor(x32, requires_grad=True)
    target = rng.random((5, 3))  # float64, as NumPy makes them
    target_t = torch.tensor(target, dtype=torch.float32)
    if name == "ce_labels":
        target = rng.integers(0, 3, 5)
        target_t = torch.tensor(target)
    ours_fn, theirs_fn, squash = {
        "mse": (F.mse_loss, TF.mse_loss, False), "l1": (F.l1_loss, TF.l1_loss, False),
        "bce": (F.binary_cross_entropy, TF.binary_cross_entropy, True),
        "bce_logits": (F.binary_cross_entropy_with_logits,
                       TF.binary_cross_entropy_with_logits, False),
        "ce_labels": (F.cross_entropy, TF.cross_entropy, False),
        "ce_probs": (F.cross_entropy, TF.cross_entropy, False)}[name]
    inp, inp_t = (cr.sigmoid(x), torch.sigmoid(xt)) if squash else (x, xt)
    loss, loss_t = ours_fn(inp, target), theirs_fn(inp_t, target_t)
    loss.backward()
    loss_t.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_cross_entropy_with_probabilities_gradient_and_target_gradient():
    x, xt = _pair((4, 3))
    p, pt = _pair((4, 3), seed=5)
    probs, probs_t = cr.softmax(p), torch.softmax(pt, -1)
    F.cross_entropy(x, probs).backward()
    TF.cross_entropy(xt, probs_t).backward()
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(p.grad.data, pt.grad.numpy(), rtol=1e-9, atol=1e-12)
    q = cr.softmax(cr.tensor(x.data)).data
    np.testing.assert_allclose(x.grad.data, (q - probs.data) / 4, rtol=1e-12)


def test_cross_entropy_single_sample_and_bad_shapes():
    logits = np.array([0.5, -1.0, 2.0])
    ours = F.cross_entropy(cr.tensor(logits), np.array(2))
    assert ours.item() == pytest.approx(TF.cross_entropy(torch.tensor(logits),
                                                         torch.tensor(2)).item())
    with pytest.raises(ValueError, match=r"class probabilities shape \(2, 3\) differ"):
        F.cross_entropy(cr.zeros(2, 4), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, C\)"):
        F.cross_entropy(cr.zeros(2, 4, 5), np.zeros(2, np.int64))




@pytest.mark.parametrize("name", ["ce_labels", "ce_probs", "bce", "bce_logits"])
def test_fused_loss_gradients_match_finite_differences(name):
    rng = np.random.default_rng(7)
    labels, probs = rng.integers(0, 4, 3), rng.dirichlet(np.ones(4), 3)
    binary = rng.integers(0, 2, (3, 4)).astype(np.float64)
    loss = {"ce_labels": lambda z: F.cross_entropy(z, labels),
            "ce_probs": lambda z: F.cross_entropy(z, probs, "sum"),
            "bce": lambda z: F.binary_cross_entropy(cr.sigmoid(z), binary),
            "bce_logits": lambda z: F.binary_cross_entropy_with_logits(z, binary)}[name]
    x = rng.standard_normal((3, 4))
    xc = cr.tensor(x.copy(), requires_grad=True)
    loss(xc).backward()

    def value(arr):
        with cr.no_grad():
            return float(loss(cr.tensor(arr)).item())

    expected = central_difference(value, [x])[0]
    np.testing.assert_allclose(xc.grad.data, expected, rtol=1e-6, atol=1e-9)


def test_binary_cross_entropy_at_zero_and_one_is_finite_like_torch():
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.3])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.5])
    pc, pt = cr.tensor(p, requires_grad=True), torch.tensor(p, requires_grad=True)
    yc, yt = cr.tensor(y, requires_grad=True), torch.tensor(y, requires_grad=True)
    loss, loss_t = F.binary_cross_entropy(pc, yc, "sum"), TF.binary_cross_entropy(
        pt, yt, reduction="sum")
    assert loss.item() == pytest.approx(loss_t.item()) == pytest.approx(200 - np.log(0.7) * 0.5
                                                                        - np.log(0.3) * 0.5)
    loss.backward()
    loss_t.backward()
    # PyTorch's 1e-12 floor is a float32 constant: the huge gradients agree to 4e-9
    np.testing.assert_allclose(pc.grad.data, pt.grad.numpy(), rtol=1e-8)
    # d/dy of the clamped loss is the clamped log-odds: +-100 where PyTorch's unclamped rule
    # gives +-inf; inside (0, 1) the two agree
    np.testing.assert_allclose(yc.grad.data[4], yt.grad.numpy()[4], rtol=1e-12)
    np.testing.assert_array_equal(yc.grad.data[:4], [100, -100, 100, -100])
    assert np.isfinite(pc.grad.data).all()


def test_bce_with_logits_is_stable_and_takes_pos_weight():
    x = np.array([[-200.0, 0.5, 200.0], [3.0, -1.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    pos = np.array([2.0, 0.5, 1.0])
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    for weight in (None, pos):
        ours = F.binary_cross_entropy_with_logits(xc, y, pos_weight=weight)
        theirs = TF.binary_cross_entropy_with_logits(
            xt, torch.tensor(y), pos_weight=None if weight is None else torch.tensor(weight))
        assert np.isfinite(ours.item())
        np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-12)
        ours.backward()
        theirs.backward()
        np.testing.assert_allclose(xc.grad.data, xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("cls,fn,target", [
    (nn.MSELoss, TF.mse_loss, "real"), (nn.L1Loss, TF.l1_loss, "real"),
    (nn.CrossEntropyLoss, TF.cross_entropy, "labels"), (nn.NLLLoss, TF.nll_loss, "labels"),
    (nn.BCELoss, TF.binary_cross_entropy, "binary"),
    (nn.BCEWithLogitsLoss, TF.binary_cross_entropy_with_logits, "binary")])
def test_loss_modules_call_their_function(cls, fn, target):
    rng = np.random.default_rng(0)
    x = rng.random((4, 3))
    t = {"real": rng.standard_normal((4, 3)), "labels": rng.integers(0, 3, 4),
         "binary": rng.integers(0, 2, (4, 3)).astype(np.float64)}[target]
    for reduction in ("mean", "sum", "none"):
        ours = cls(reduction=reduction)(cr.tensor(x), t)
        theirs = fn(torch.tensor(x), torch.tensor(t), reduction=reduction)
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-12)


def test_functional_activations_take_dim_and_match_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    xt = torch.tensor(x)
    np.testing.assert_allclose(F.softmax(cr.tensor(x), dim=1).data, torch.softmax(xt, dim=1))
    np.testing.assert_allclose(F.log_softmax(cr.tensor(x), dim=0).data,
                               torch.log_softmax(xt, dim=0))
    np.testing.assert_allclose(F.gelu(cr.tensor(x), approximate="tanh").data,
                               TF.gelu(xt, approximate="tanh"), rtol=1e-12)
    np.testing.assert_allclose(F.leaky_relu(cr.tensor(x), 0.2).data, TF.leaky_relu(xt, 0.2))
    with pytest.raises(ValueError, match="approximate must be"):
        F.gelu(cr.tensor(x), approximate="fast")


def test_functional_layers_on_plain_arrays_and_batch_norm_default():
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    w, b = np.ones((2, 3), np.float32), np.zeros(2, np.float32)
    out = F.linear(x, w, b)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    # training defaults to False, as in PyTorch: the running statistics normalise
    np.testing.assert_allclose(F.batch_norm(cr.tensor(x), mean, var).data, x / np.sqrt(1 + 1e-5),
                               rtol=1e-6)
    np.testing.assert_array_equal(mean, 0)
    F.batch_norm(cr.tensor(x), mean, var, training=True, momentum=0.5)
    np.testing.assert_allclose(mean, 0.5 * x.mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="running_mean and running_var are needed"):
        F.batch_norm(cr.tensor(x), None, None)


def test_conv2d_and_max_pool2d_functional_match_torch():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 2, 3))
    b = rng.standard_normal(4)
    ours = F.conv2d(cr.tensor(x), cr.tensor(w), cr.tensor(b), stride=(2, 1), padding=1)
    theirs = TF.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=(2, 1),
                       padding=1)
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-10, atol=1e-12)
    pooled = F.max_pool2d(cr.tensor(x), (3, 2), stride=(1, 2), padding=1)
    np.testing.assert_array_equal(pooled.data, TF.max_pool2d(torch.tensor(x), (3, 2),
                                                             stride=(1, 2), padding=1).numpy())


def test_one_hot():
    np.testing.assert_array_equal(F.one_hot(np.array([2, 0]), 3).data, [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(F.one_hot(cr.tensor([1, 0])).data,
                                  TF.one_hot(torch.tensor([1, 0])).numpy())
    with pytest.raises(ValueError, match=r"one_hot: label 3 is out of range for 3 classes"):
        F.one_hot(np.array([0, 3]), 3)
    with pytest.raises(TypeError, match="one_hot: labels must be integers"):
        F.one_hot(np.array([0.5]))


def test_linear_refuses_mixed_float_dtypes():
    w = cr.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="linear: the input has dtype float64 but the weight has "
                                        "dtype float32"):
        F.linear(cr.tensor(np.ones((1, 3))), w)
    with pytest.raises(TypeError, match="linear: the bias has dtype float64 but the weight "
                                        "float32"):
        F.linear(cr.tensor(np.ones((1, 3), np.float32)), w, cr.tensor(np.zeros(2)))
    out = F.linear(cr.tensor([[1, 0, 2]]), w)  # an integer input takes the weight's dtype
    assert out.dtype == np.float32
    out.sum().backward()
    assert w.grad.dtype == np.float32


@pytest.mark.parametrize("x_shape", [(3, 4), (2, 3, 4)])
def test_linear_second_derivative_matches_torch_for_matrices_and_batches(x_shape):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((5, 4)), rng.standard_normal(5)

    def ours(x_, w_, b_):
        gx, gw = cr.grad(lambda u, v: (cr.tanh(F.linear(u, v, b_)) ** 2).sum(), argnums=(0, 1))(
            x_, w_)
        return (gx ** 2).sum() + (gw ** 2).sum()

    got = cr.grad(ours, argnums=(0, 1, 2))(*(cr.tensor(a) for a in (x, w, b)))
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    gx, gw = torch.autograd.grad((torch.tanh(TF.linear(*ts)) ** 2).sum(), ts[:2],
                                 create_graph=True)
    expected = torch.autograd.grad((gx ** 2).sum() + (gw ** 2).sum(), ts)
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a.data, e.numpy(), rtol=1e-9, atol=1e-12)
