"""Module registration, naming, counting, state dicts and their errors, repr (against PyTorch)."""

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

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


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(3, 4)
        self.body = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(4, 2))
        self.bn = torch.nn.BatchNorm1d(2)
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.bn(self.body(self.fc1(x))) * self.scale


def test_names_and_order_match_pytorch():
    ours, theirs = Net(), TorchNet()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [type(m).__name__ for m in ours.children()] == ["Linear", "Sequential",
                                                           "BatchNorm1d"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in ours.parameters())
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters()) == 31


def test_pytorch_state_dict_loads_and_gives_the_same_outputs():
    ours, theirs = Net(), TorchNet()
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    theirs(torch.from_numpy(x))  # moves the running statistics away from their start
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(cr.tensor(x)).data, theirs(torch.from_numpy(x)).detach(),
                               rtol=1e-5, atol=1e-6)


def test_seed_002_network_has_60600_parameters():
    layers = [nn.Linear(100, 100) for _ in range(6)]  # 100 inputs, 5 hidden of 100, 100 out
    model = nn.Sequential(*[m for layer in layers for m in (layer, nn.Sigmoid())])
    assert model.num_parameters() == 60_600
    assert len(list(model.parameters())) == 12


def test_shared_parameter_is_listed_once():
    layer = nn.Linear(2, 2)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert model.num_parameters() == 6


def test_state_dict_round_trip_includes_buffers():
    a, b = Net(), Net()
    a(cr.randn(5, 3))  # moves BatchNorm's running statistics
    state = a.state_dict()
    assert {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"} <= set(state)
    assert int(state["bn.num_batches_tracked"].item()) == 1
    b.load_state_dict(state)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v.data, v2.data)
    x = cr.randn(5, 3)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_reports_every_problem_and_writes_nothing():
    net = Net()
    before = net.fc1.bias.data.copy()
    state = OrderedDict(net.state_dict())
    state = OrderedDict((k, v.data + 1) for k, v in state.items())
    del state["fc1.weight"]
    state["extra"] = cr.zeros(1)
    state["body.1.weight"] = cr.zeros(2, 2)
    state["bn.num_batches_tracked"] = np.array(1.5)
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(state)
    message = str(err.value)
    assert "body.1.weight: shape (2, 2) in the state dict, (2, 4) in the model" in message
    assert "bn.num_batches_tracked: dtype float64 in the state dict, int64" in message
    assert "missing keys: fc1.weight" in message
    assert "unexpected keys: extra" in message
    np.testing.assert_array_equal(net.fc1.bias.data, before)  # nothing was written


def test_load_state_dict_non_strict_and_precision_cast():
    net = Net()
    state = {k: v.data.astype(np.float64) if v.dtype == np.float32 else v
             for k, v in net.state_dict().items()}
    del state["scale"]
    state["extra"] = np.zeros(1)
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["scale"] and result.unexpected_keys == ["extra"]
    missing, unexpected = result
    assert missing == ["scale"]
    assert net.fc1.weight.dtype == np.float32  # float64 values cast to the model's float32


def test_load_state_dict_makes_old_graphs_stale():
    layer = nn.Linear(2, 2)
    out = (layer(cr.ones(1, 2, requires_grad=True)) ** 2).sum()  # its VJP reads the weight
    layer.load_state_dict(layer.state_dict())
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


def test_attribute_assignment_rules():
    net = Net()
    with pytest.raises(TypeError, match="cannot assign a Tensor to parameter 'scale'"):
        net.scale = cr.ones(1)
    net.bn.running_mean = cr.ones(2)  # a buffer stays a buffer when reassigned
    np.testing.assert_array_equal(net.state_dict()["bn.running_mean"].data, [1, 1])
    net.fc1 = nn.Linear(3, 4, bias=False)
    assert "fc1.bias" not in net.state_dict()
    del net.body
    assert not any(n.startswith("body") for n in net.state_dict())
    net.note = "plain attribute"
    assert net.note == "plain attribute" and "note" not in net.state_dict()

    class Forgot(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\)"):
        Forgot()


def test_train_eval_zero_grad_apply():
    net = Net()
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(cr.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen[-1] == "Net" and seen.count("Linear") == 2 and len(seen) == 6


def test_repr_tree_matches_pytorch():
    ours = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Tanh(), nn.Sigmoid()),
                         nn.LayerNorm(3), nn.Conv2d(1, 2, 3, padding=1, bias=False),
                         nn.Flatten(), nn.Softmax(dim=-1), nn.Embedding(5, 2), nn.Identity(),
                         nn.LeakyReLU(0.2), nn.GELU())
    T = torch.nn
    theirs = T.Sequential(T.Linear(4, 3), T.ReLU(), T.Sequential(T.Tanh(), T.Sigmoid()),
                          T.LayerNorm(3), T.Conv2d(1, 2, 3, padding=1, bias=False),
                          T.Flatten(), T.Softmax(dim=-1), T.Embedding(5, 2), T.Identity(),
                          T.LeakyReLU(0.2), T.GELU())
    assert repr(ours) == repr(theirs)
    assert "(fc1): Linear(in_features=3, out_features=4, bias=True)" in repr(Net())
    assert repr(nn.Parameter([1.0])).startswith("Parameter containing:\ntensor(")


def test_sequential_indexing_append_and_type_errors():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.ReLU)
    assert len(seq[:1]) == 1 and seq[:1][0] is seq[0]
    assert [type(m) for m in seq] == [nn.Linear, nn.ReLU]
    seq.append(nn.Linear(3, 1))
    assert [n for n, _ in seq.named_parameters()][-1] == "2.bias"
    assert seq(cr.ones(4, 2)).shape == (4, 1)
    with pytest.raises(TypeError, match="item 1 is a int"):
        nn.Sequential(nn.ReLU(), 3)


def test_parameter_is_a_float32_leaf_tensor():
    p = nn.Parameter([1.0, 2.0])
    assert isinstance(p, cr.Tensor) and p.is_leaf and p.requires_grad and p.dtype == np.float32
    assert not nn.Parameter(np.zeros(2), requires_grad=False).requires_grad
    assert type(p * 2) is cr.Tensor


def test_to_float64_and_back_and_deepcopy():
    net = nn.Linear(2, 2).double()
    assert net.weight.dtype == np.float64
    assert net(cr.tensor(np.ones((1, 2)))).dtype == np.float64
    assert net.float().weight.dtype == np.float32
    twin = copy.deepcopy(net)
    assert isinstance(twin.weight, nn.Parameter)
    twin.weight.data[...] = 0
    assert net.weight.data.any()
    bn = nn.BatchNorm1d(2).double()
    assert bn.running_var.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64


def test_module_list_registers_but_does_not_call():
    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    tower = Tower()
    assert [n for n, _ in tower.named_parameters()] == [
        "blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias"]
    tower.blocks.append(nn.ReLU())
    assert len(tower.blocks) == 3 and isinstance(tower.blocks[-1], nn.ReLU)
    assert tower(cr.ones(1, 2)).shape == (1, 2)
    with pytest.raises(TypeError, match="ModuleList: item 3 is a str"):
        tower.blocks.append("relu")
