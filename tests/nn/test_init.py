"""Initialisers: statistics, bounds, dtype kept, and the library seed."""

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.nn import init


def test_linear_default_init_bounds_match_pytorch_rule():
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) gives the same bound as the bias
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.95 * bound
    assert np.abs(layer.bias.data).max() <= bound
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32


@pytest.mark.parametrize("fn,expected_std", [
    (lambda t: init.xavier_normal_(t), math.sqrt(2 / (200 + 300))),
    (lambda t: init.xavier_uniform_(t), math.sqrt(2 / (200 + 300))),
    (lambda t: init.kaiming_normal_(t, nonlinearity="relu"), math.sqrt(2 / 200)),
    (lambda t: init.kaiming_uniform_(t, nonlinearity="relu"), math.sqrt(2 / 200)),
    (lambda t: init.normal_(t, 0.0, 0.5), 0.5),
])
def test_init_statistics(fn, expected_std):
    t = cr.zeros(300, 200)
    fn(t)
    assert t.dtype == np.float32
    assert abs(t.data.mean()) < 0.05 * expected_std + 1e-3
    assert abs(t.data.std() - expected_std) < 0.03 * expected_std


def test_init_follows_manual_seed_and_bumps_version():
    cr.manual_seed(5)
    a = nn.Linear(3, 3).weight.data.copy()
    cr.manual_seed(5)
    layer = nn.Linear(3, 3)
    np.testing.assert_array_equal(a, layer.weight.data)
    before = layer.weight._version[0]
    init.zeros_(layer.weight)
    assert layer.weight._version[0] == before + 1 and not layer.weight.data.any()


def test_gain_and_errors():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(cr.zeros(3))


@pytest.mark.parametrize("name,param", [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain_matches_torch(name, param):
    import torch

    assert init.calculate_gain(name, param) == pytest.approx(
        torch.nn.init.calculate_gain(name, param))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_initialiser_keeps_dtype_and_bumps_version(dtype):
    fns = [lambda t: init.uniform_(t, -2, 3), lambda t: init.normal_(t, 1, 2), init.zeros_,
           init.ones_, lambda t: init.constant_(t, 0.25), init.xavier_uniform_,
           init.xavier_normal_, init.kaiming_uniform_, init.kaiming_normal_]
    t = cr.zeros(4, 5, dtype=dtype, requires_grad=True)
    for fn in fns:
        before = t._version[0]
        assert fn(t) is t
        assert t.dtype == dtype and t.requires_grad and t._version[0] == before + 1
    np.testing.assert_array_equal(init.constant_(t, 0.25).data, 0.25)


def test_uniform_bounds_and_kaiming_modes():
    t = cr.zeros(200, 300)
    init.uniform_(t, -2, 3)
    assert -2 <= t.data.min() < -1.95 and 2.95 < t.data.max() < 3
    assert abs(t.data.mean() - 0.5) < 0.02
    init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    assert abs(t.data.std() - np.sqrt(2 / 200)) < 0.03 * np.sqrt(2 / 200)
    init.kaiming_uniform_(t, a=0.2)  # leaky_relu gain sqrt(2 / (1 + a^2)), fan_in 300
    bound = np.sqrt(2 / (1 + 0.04)) * np.sqrt(3 / 300)
    assert 0.99 * bound < np.abs(t.data).max() <= bound
    conv = cr.zeros(16, 8, 3, 3)  # fan_in = 8 * 9, fan_out = 16 * 9
    init.xavier_uniform_(conv, gain=2.0)
    bound = 2.0 * np.sqrt(6 / (72 + 144))
    assert 0.99 * bound < np.abs(conv.data).max() <= bound
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_normal_(t, mode="fan_avg")
