"""Every layer against the same PyTorch layer with copied weights: outputs and gradients."""

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import nn
from gradtools import central_difference


def _copy_weights(ours, theirs):
    with torch.no_grad():
        for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert name == tname
            tp.copy_(torch.from_numpy(p.data.astype(tp.detach().numpy().dtype)))


def _compare(ours, theirs, x, dtype, atol):
    ours.to(dtype)
    theirs.to(getattr(torch, np.dtype(dtype).name))
    _copy_weights(ours, theirs)
    xc = cr.tensor(x.astype(dtype), requires_grad=True)
    xt = torch.tensor(x.astype(dtype), requires_grad=True)
    out, tout = ours(xc), theirs(xt)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), atol=atol, rtol=atol)
    assert out.dtype == dtype
    weights = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    (out * cr.tensor(weights)).sum().backward()
    (tout * torch.from_numpy(weights)).sum().backward()
    np.testing.assert_allclose(xc.grad.data, xt.grad.numpy(), atol=atol, rtol=atol)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        assert p.grad.dtype == dtype, name
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), atol=atol, rtol=atol,
                                   err_msg=name)


CASES = [
    ("linear", lambda: (nn.Linear(5, 3), torch.nn.Linear(5, 3)), (4, 5)),
    ("linear-3d", lambda: (nn.Linear(5, 3), torch.nn.Linear(5, 3)), (2, 4, 5)),
    ("linear-nobias", lambda: (nn.Linear(5, 3, bias=False), torch.nn.Linear(5, 3, bias=False)),
     (4, 5)),
    ("mlp", lambda: (nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4), nn.Sigmoid()),
                     torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                                         torch.nn.Linear(8, 4), torch.nn.Sigmoid())), (3, 6)),
    ("activations", lambda: (nn.Sequential(nn.GELU(), nn.LeakyReLU(0.1), nn.ReLU(), nn.Softmax()),
                             torch.nn.Sequential(torch.nn.GELU(), torch.nn.LeakyReLU(0.1),
                                                 torch.nn.ReLU(), torch.nn.Softmax(dim=-1))),
     (3, 7)),
    ("conv", lambda: (nn.Conv2d(2, 3, 3), torch.nn.Conv2d(2, 3, 3)), (2, 2, 6, 5)),
    ("conv-stride-pad", lambda: (nn.Conv2d(2, 4, (3, 2), stride=2, padding=1),
                                 torch.nn.Conv2d(2, 4, (3, 2), stride=2, padding=1)),
     (2, 2, 7, 6)),
    ("maxpool", lambda: (nn.MaxPool2d(2), torch.nn.MaxPool2d(2)), (2, 3, 6, 4)),
    ("maxpool-stride-pad", lambda: (nn.MaxPool2d(3, stride=2, padding=1),
                                    torch.nn.MaxPool2d(3, stride=2, padding=1)), (1, 2, 7, 7)),
    ("layernorm", lambda: (nn.LayerNorm(6), torch.nn.LayerNorm(6)), (4, 6)),
    ("batchnorm-train", lambda: (nn.BatchNorm1d(5), torch.nn.BatchNorm1d(5)), (8, 5)),
    ("batchnorm-3d", lambda: (nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)), (4, 3, 5)),
    ("conv-rect-pad", lambda: (nn.Conv2d(1, 2, 3, stride=(1, 2), padding=(2, 1), bias=False),
                               torch.nn.Conv2d(1, 2, 3, stride=(1, 2), padding=(2, 1),
                                               bias=False)), (2, 1, 5, 6)),
    ("maxpool-overlap", lambda: (nn.MaxPool2d((2, 3), stride=1), torch.nn.MaxPool2d((2, 3),
                                                                                 stride=1)),
     (2, 2, 4, 5)),
    ("layernorm-2d-nobias", lambda: (nn.LayerNorm((3, 4), bias=False),
                                     torch.nn.LayerNorm((3, 4), bias=False)), (2, 3, 4)),
    ("gelu-tanh", lambda: (nn.GELU("tanh"), torch.nn.GELU("tanh")), (3, 5)),
    ("identity", lambda: (nn.Identity(), torch.nn.Identity()), (2, 3)),
    ("cnn", lambda: (nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Flatten(), nn.Linear(12, 2)),
                     torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
                                         torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                         torch.nn.Linear(12, 2))), (2, 1, 4, 4)),
    ("flatten", lambda: (nn.Sequential(nn.Flatten(), nn.Linear(12, 2)),
                         torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))),
     (3, 3, 4)),
    ("conv-groups-dilation", lambda: (nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
                                      torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2,
                                                      groups=2)), (2, 4, 6, 5)),
    ("conv1d", lambda: (nn.Conv1d(3, 4, 3, stride=2, padding=1),
                        torch.nn.Conv1d(3, 4, 3, stride=2, padding=1)), (2, 3, 9)),
    ("avgpool", lambda: (nn.AvgPool2d(3, 2, 1), torch.nn.AvgPool2d(3, 2, 1)), (2, 3, 7, 6)),
    ("adaptive-avgpool", lambda: (nn.AdaptiveAvgPool2d((3, 2)),
                                  torch.nn.AdaptiveAvgPool2d((3, 2))), (2, 3, 7, 5)),
    ("batchnorm2d", lambda: (nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)), (4, 3, 3, 5)),
    ("cnn-batch-40", lambda: (
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 3)),
        torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                            torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(24, 3))),
     (40, 1, 8, 8)),
]


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-9), (np.float32, 2e-5)])
@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch(name, make, shape, dtype, atol):
    ours, theirs = make()
    x = np.random.default_rng(0).standard_normal(shape)
    _compare(ours, theirs, x, dtype, atol)


@pytest.mark.parametrize("momentum", [0.2, None])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (4, 3, 2, 5)])
def test_batchnorm_running_stats_and_eval_match_torch(momentum, shape):
    ours = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(3, momentum=momentum)
    theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        3, momentum=momentum)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal(shape).astype(np.float32) * 2 + 1
        ours(cr.tensor(x))
        theirs(torch.from_numpy(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(ours, name).data, getattr(theirs, name).numpy(),
                                   rtol=1e-5, err_msg=name)
    assert ours.running_var.dtype == np.float32
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = ours(xc), theirs(xt)
    np.testing.assert_allclose(out.data, tout.detach(), atol=1e-6)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(xc.grad.data, xt.grad.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.weight.grad.data, theirs.weight.grad.numpy(), atol=1e-5)
    assert int(ours.num_batches_tracked.item()) == 3  # eval does not count


def test_batchnorm_without_running_stats_always_uses_the_batch():
    ours = nn.BatchNorm1d(2, track_running_stats=False, affine=False).eval()
    theirs = torch.nn.BatchNorm1d(2, track_running_stats=False, affine=False).eval()
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_allclose(ours(cr.tensor(x)).data, theirs(torch.from_numpy(x)), atol=1e-6)
    assert ours.num_parameters() == 0 and not ours.state_dict()


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(2, 2, 3, stride=2, padding=1),
    lambda: nn.MaxPool2d(2, stride=1),
    lambda: nn.BatchNorm1d(3),
    lambda: nn.LayerNorm(4),
], ids=["conv", "maxpool", "batchnorm", "layernorm"])
def test_input_gradient_matches_finite_differences(make):
    layer = make().double()
    shape = {nn.Conv2d: (1, 2, 4, 4), nn.MaxPool2d: (1, 2, 3, 3), nn.BatchNorm1d: (4, 3),
             nn.LayerNorm: (2, 4)}[type(layer)]
    x = np.random.default_rng(3).standard_normal(shape)
    w = np.random.default_rng(4).standard_normal(layer(cr.tensor(x)).shape)

    def f(arr):
        with cr.no_grad():
            return float((layer(cr.tensor(arr)).data * w).sum())

    xc = cr.tensor(x.copy(), requires_grad=True)
    (layer(xc) * cr.tensor(w)).sum().backward()
    np.testing.assert_allclose(xc.grad.data, central_difference(f, [x])[0], rtol=1e-6, atol=1e-8)


def test_maxpool_sends_a_tie_to_the_first_maximum_as_torch():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 2:, 2:] = [[1, 3], [3, 2]]
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    nn.MaxPool2d(2)(xc).sum().backward()
    torch.nn.MaxPool2d(2)(xt).sum().backward()
    np.testing.assert_array_equal(xc.grad.data, xt.grad.numpy())
    assert xc.grad.data.sum() == 4 and xc.grad.data[0, 0, 0, 0] == 1


def test_maxpool_second_derivative_matches_torch():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    g = cr.grad(lambda z: (cr.grad(lambda v: (nn.MaxPool2d(2)(v) ** 3).sum())(z) ** 2).sum())(
        cr.tensor(x))
    xt = torch.tensor(x, requires_grad=True)
    inner = torch.autograd.grad((torch.nn.MaxPool2d(2)(xt) ** 3).sum(), xt, create_graph=True)
    gt = torch.autograd.grad((inner[0] ** 2).sum(), xt)[0]
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_matches_torch_and_accumulates_repeated_indices(dtype):
    ours, theirs = nn.Embedding(5, 3).to(dtype), torch.nn.Embedding(5, 3)
    theirs.to(getattr(torch, np.dtype(dtype).name))
    _copy_weights(ours, theirs)
    idx = np.array([[1, 1], [4, 1]])
    out, tout = ours(idx), theirs(torch.from_numpy(idx))
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    (out * 2).sum().backward()
    (tout * 2).sum().backward()
    np.testing.assert_array_equal(ours.weight.grad.data, theirs.weight.grad.numpy())
    assert ours.weight.grad.data[1, 0] == 6 and ours.weight.grad.dtype == dtype
    with pytest.raises(IndexError, match="index 5 is out of range for 5 embeddings"):
        ours(np.array([5]))
    with pytest.raises(TypeError, match="indices must be integers"):
        ours(np.array([1.0]))


def test_embedding_default_init_is_standard_normal():
    weight = nn.Embedding(1000, 100).weight.data
    assert weight.dtype == np.float32
    assert abs(weight.mean()) < 0.01 and abs(weight.std() - 1) < 0.01


def test_dropout_statistics_gradient_and_eval_identity():
    drop = nn.Dropout(0.25)
    x = cr.ones(200, 200, requires_grad=True)
    out = drop(x)
    y = out.data
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert y.dtype == np.float32
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y)  # the same mask and scale flow back
    drop.eval()
    assert drop(x) is x
    assert not nn.Dropout(1.0)(x).data.any()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        nn.Dropout(1.5)


def test_dropout_mask_follows_manual_seed():
    x = cr.ones(50)
    cr.manual_seed(3)
    a = nn.Dropout(0.5)(x).data
    cr.manual_seed(3)
    b = nn.Dropout(0.5)(x).data
    np.testing.assert_array_equal(a, b)
    assert 0 < (a == 0).sum() < 50


def test_conv_and_linear_default_init_follow_pytorch_bounds():
    conv = nn.Conv2d(8, 16, 3)
    bound = 1 / np.sqrt(8 * 9)  # kaiming_uniform(a=sqrt(5)) and the bias share this bound
    for p in (conv.weight, conv.bias):
        assert p.dtype == np.float32
        assert 0.9 * bound < np.abs(p.data).max() <= bound


def test_small_cnn_learns():
    cr.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > x[:, 0, 4:].sum(axis=(1, 2))).astype(np.int64)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 2))
    opt = cr.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(cr.tensor(x)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_layer_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"linear: input has 4 features .* expects 5"):
        nn.Linear(5, 2)(cr.zeros(3, 4))
    with pytest.raises(ValueError, match="conv2d: input has 3 channels"):
        nn.Conv2d(2, 1, 3)(cr.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d: kernel 3x3 is larger than the \(padded\)"):
        nn.Conv2d(1, 1, 3)(cr.zeros(1, 1, 2, 5))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input \(N, 4\) .* \(3, 5\)"):
        nn.BatchNorm1d(4)(cr.zeros(3, 5))
    with pytest.raises(ValueError, match="need more than 1 value per channel"):
        nn.BatchNorm1d(5)(cr.zeros(1, 5))
    with pytest.raises(ValueError, match="max_pool2d: padding"):
        nn.MaxPool2d(2, padding=2)(cr.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="layer_norm: input shape"):
        nn.LayerNorm(3)(cr.zeros(2, 4))
    with pytest.raises(ValueError, match="Linear: sizes must be positive"):
        nn.Linear(0, 2)


def test_second_derivative_through_conv_and_linear_matches_torch():
    cr.manual_seed(1)
    ours = nn.Sequential(nn.Conv2d(1, 2, 2, stride=2, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(18, 1)).double()
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2, stride=2, padding=1), torch.nn.Tanh(),
                                 torch.nn.Flatten(), torch.nn.Linear(18, 1)).double()
    _copy_weights(ours, theirs)
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4))
    g = cr.grad(lambda z: (cr.grad(lambda v: ours(v).sum())(z) ** 2).sum())(cr.tensor(x))
    xt = torch.tensor(x, requires_grad=True)
    inner = torch.autograd.grad(theirs(xt).sum(), xt, create_graph=True)[0]
    gt = torch.autograd.grad((inner ** 2).sum(), xt)[0]
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-9, atol=1e-12)


def test_linear_refuses_an_input_of_another_float_dtype_like_torch():
    layer = nn.Linear(3, 2)  # float32 weights
    x64 = cr.tensor(np.ones((4, 3)))  # float64
    with pytest.raises(RuntimeError):  # PyTorch refuses too
        torch.nn.Linear(3, 2)(torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"Linear\(in_features=3, out_features=2, bias=True\): "
                                        r"the input has dtype float64 but the layer's weight has "
                                        r"dtype float32"):
        layer(x64)
    assert layer(x64.astype(cr.float32)).dtype == np.float32
    assert layer(cr.tensor([[1, 2, 3]])).dtype == np.float32  # integers convert exactly
    layer.to(cr.float64)
    assert layer(x64).dtype == np.float64
    with pytest.raises(TypeError, match="input has dtype float32 but the layer's weight has "
                                        "dtype float64"):
        layer(cr.tensor(np.ones((1, 3), np.float32)))
