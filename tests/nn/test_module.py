"""Module registration, naming, counting, state dicts and their errors, repr."""

from collections import OrderedDict

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
        self.bn = nn.BatchNorm1d(2)
        self.scale = nn.Parameter(np.ones(1, np.float32))

    def forward(self, x):
        return self.bn(self.body(self.fc1(x))) * self.scale


def test_parameters_are_registered_with_dotted_names():
    names = [n for n, _ in Net().named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "body.1.weight", "body.1.bias",
                     "bn.weight", "bn.bias"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in Net().parameters())


def test_seed_002_network_has_60600_parameters():
    layers = [nn.Linear(100, 100) for _ in range(6)]  # 100 inputs, 5 hidden of 100, 100 out
    model = nn.Sequential(*[m for layer in layers for m in (layer, nn.Sigmoid())])
    assert model.num_parameters() == 60_600


def test_state_dict_round_trip_includes_buffers():
    a, b = Net(), Net()
    a(cr.randn(5, 3))  # moves BatchNorm's running statistics
    state = a.state_dict()
    assert "bn.running_mean" in state and "bn.running_var" in state
    b.load_state_dict(state)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v.data, v2.data)
    x = cr.randn(5, 3)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_reports_every_problem():
    net = Net()
    state = OrderedDict(net.state_dict())
    del state["fc1.bias"]
    state["extra"] = cr.zeros(1)
    state["fc1.weight"] = cr.zeros(2, 2)
    with pytest.raises(KeyError) as err:
        net.load_state_dict(state)
    message = str(err.value)
    assert "fc1.weight: shape (2, 2)" in message
    assert "missing keys: fc1.bias" in message
    assert "unexpected keys: extra" in message
    del state["extra"]
    state["fc1.weight"] = net.fc1.weight.detach()
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["fc1.bias"] and unexpected == []


def test_train_eval_zero_grad_and_repr():
    net = Net()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(cr.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    text = repr(net)
    assert "(fc1): Linear(in_features=3, out_features=4, bias=True)" in text
    assert "(body): Sequential(" in text and "(1): Linear" in text


def test_sequential_indexing_and_type_errors():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.ReLU)
    assert len(seq[:1]) == 1
    with pytest.raises(TypeError, match="item 1 is a int"):
        nn.Sequential(nn.ReLU(), 3)


def test_to_float64_and_back():
    net = nn.Linear(2, 2).double()
    assert net.weight.dtype == np.float64
    assert net(cr.tensor(np.ones((1, 2)))).dtype == np.float64
    assert net.float().weight.dtype == np.float32
