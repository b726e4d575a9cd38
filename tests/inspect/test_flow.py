"""The gradient-flow recorder flags vanishing and dead layers, and is quiet for a healthy MLP."""

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.inspect.flow import GradientFlow
from chainrule.nn import functional as F


def _train(model, steps=5, lr=0.05):
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.standard_normal((64, 16)).astype(np.float32))
    y = rng.integers(0, 4, 64)
    opt = cr.optim.SGD(model.parameters(), lr=lr)
    flow = GradientFlow(model)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        flow.step()
    return flow


def _mlp(depth, activation, width=16):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), activation()]
    return nn.Sequential(*layers, nn.Linear(width, 4))


def test_deep_sigmoid_network_is_flagged_as_vanishing():
    warnings = _train(_mlp(20, nn.Sigmoid)).warnings()
    assert any(w.startswith("vanishing gradient: the first layer (0.weight)") for w in warnings)


def test_dead_relu_layer_is_flagged():
    model = _mlp(3, nn.ReLU)
    with cr.no_grad():
        model[2].bias.data[...] = -100  # every unit of the second layer is negative: dead
    warnings = _train(model).warnings()
    assert any(w.startswith("dead layer: 0.weight") for w in warnings), warnings


def test_healthy_mlp_has_no_warnings_and_records_statistics(tmp_path):
    flow = _train(_mlp(2, nn.ReLU))
    assert flow.warnings() == []
    assert flow.steps == 5
    record = flow.history["0.weight"][-1]
    assert record["grad_norm"] > 0 and 0 < record["update_ratio"] < 1
    assert record["max_abs_grad"] >= record["mean_abs_grad"] > 0
    path = flow.save(tmp_path)
    data = json.loads(path.read_text())
    assert data["steps"] == 5 and "0.weight" in data["summary"]
    for name in ("gradient-norms.png", "gradient-bars.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_update_ratio_is_the_relative_size_of_the_step():
    model = nn.Linear(3, 2)
    flow = GradientFlow(model)
    before = model.weight.data.copy()
    model.weight.grad = cr.ones(2, 3)
    model.bias.grad = cr.ones(2)
    model.weight.data -= 0.1
    flow.step()
    expected = np.linalg.norm(np.full((2, 3), 0.1)) / np.linalg.norm(before - 0.1)
    assert np.isclose(flow.history["weight"][0]["update_ratio"], expected, rtol=1e-5)


class _StandIn:
    """Anything with named_parameters() can be recorded."""

    def __init__(self, **params):
        self.params = params

    def named_parameters(self):
        return list(self.params.items())


def test_growing_gradients_are_flagged_as_exploding():
    w = cr.tensor(np.ones((3, 3), np.float32), requires_grad=True)
    flow = GradientFlow(_StandIn(**{"0.weight": w}))
    for step in range(8):
        w.grad = cr.tensor(np.full((3, 3), 0.01 * 4.0 ** step, np.float32))
        flow.step()
    warnings = flow.warnings()
    assert any(w.startswith("exploding gradient: 0.weight's gradient norm grew") for w in warnings)
    assert len(flow.history["0.weight"]) == 8


def test_steady_gradients_are_not_flagged():
    w = cr.tensor(np.ones((3, 3), np.float32), requires_grad=True)
    flow = GradientFlow(_StandIn(w=w))
    for step in range(8):
        w.grad = cr.tensor(np.full((3, 3), 0.1 + 0.01 * step, np.float32))
        flow.step()
    assert flow.warnings() == []


def test_a_model_without_trainable_parameters_is_refused():
    with pytest.raises(ValueError, match="GradientFlow: the model has no parameters"):
        GradientFlow(_StandIn(w=cr.tensor([1.0])))
