"""Every layer against the same PyTorch layer with copied weights: outputs and gradients."""

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import nn


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
    ("flatten", lambda: (nn.Sequential(nn.Flatten(), nn.Linear(12, 2)),
                         torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))),
     (3, 3, 4)),
]


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-9), (np.float32, 2e-5)])
@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch(name, make, shape, dtype, atol):
    ours, theirs = make()
    x = np.random.default_rng(0).standard_normal(shape)
    _compare(ours, theirs, x, dtype, atol)


def test_batchnorm_running_stats_and_eval_match_torch():
    ours, theirs = nn.BatchNorm1d(3, momentum=0.2), torch.nn.BatchNorm1d(3, momentum=0.2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((6, 3)).astype(np.float32) * 2 + 1
        ours(cr.tensor(x))
        theirs(torch.from_numpy(x))
    np.testing.assert_allclose(ours.running_mean.data, theirs.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.running_var.data, theirs.running_var.numpy(), rtol=1e-5)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(cr.tensor(x)).data, theirs(torch.from_numpy(x)).detach(),
                               atol=1e-6)


def test_embedding_accumulates_repeated_indices():
    emb = nn.Embedding(5, 3)
    idx = np.array([[1, 1], [4, 1]])
    emb(idx).sum().backward()
    expected = np.zeros((5, 3), np.float32)
    expected[1] = 3
    expected[4] = 1
    np.testing.assert_array_equal(emb.weight.grad.data, expected)
    with pytest.raises(IndexError, match="out of range for 5"):
        emb(np.array([5]))


def test_dropout_statistics_and_eval_identity():
    drop = nn.Dropout(0.25)
    x = cr.ones(200, 200)
    y = drop(x).data
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert y.dtype == np.float32
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.0)


def test_dropout_mask_follows_manual_seed():
    x = cr.ones(50)
    cr.manual_seed(3)
    a = nn.Dropout(0.5)(x).data
    cr.manual_seed(3)
    b = nn.Dropout(0.5)(x).data
    np.testing.assert_array_equal(a, b)


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
    with pytest.raises(ValueError, match="BatchNorm1d: expected 4 channels"):
        nn.BatchNorm1d(4)(cr.zeros(3, 5))
