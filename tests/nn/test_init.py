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
