"""The gradient-flow recorder flags vanishing and dead layers, and is quiet for a healthy MLP;
its plots name layers readably, smooth the curves, keep bounded samples and show the flags."""

import json

import matplotlib.text
import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.inspect.flow import GradientFlow, display_names, smooth, smoothing_span
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
    assert any(w.startswith("vanishing gradient: the first layer, fc1.weight (0.weight), gets")
               and "the last, fc21.weight (40.weight)" in w for w in warnings), warnings


def test_dead_relu_layer_is_flagged():
    model = _mlp(3, nn.ReLU)
    with cr.no_grad():
        model[2].bias.data[...] = -100  # every unit of the second layer is negative: dead
    warnings = _train(model).warnings()
    assert any(w.startswith("dead layer: fc1.weight (0.weight)") for w in warnings), warnings


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
    assert data["display_names"] == {"0.weight": "fc1.weight", "0.bias": "fc1.bias",
                                     "2.weight": "fc2.weight", "2.bias": "fc2.bias",
                                     "4.weight": "fc3.weight", "4.bias": "fc3.bias"}
    assert [d["step"] for d in data["distributions"]] == [1, 2, 3, 5]
    first = data["distributions"][0]["layers"]["0.weight"]
    assert first["samples"] == 256 and set(first["log10_abs_grad_percentiles"]) == {
        "5", "25", "50", "75", "95"}
    for name in ("gradient-norms.png", "gradient-distributions.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "gradient-bars.png").exists()


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


class _Encoder(nn.Module):
    """User-chosen names: kept as they are."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.layers = nn.Sequential(nn.Linear(4, 4), nn.ReLU())


class _NoParameters(nn.Module):
    def forward(self, x):
        return x


def test_display_names_replace_sequential_indices_and_keep_chosen_names():
    model = nn.Sequential(_NoParameters(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4),
                          nn.Conv2d(1, 2, 3), nn.BatchNorm1d(4), nn.LayerNorm(4),
                          nn.Embedding(5, 4), nn.Sequential(nn.Linear(4, 2)))
    names = display_names(model)
    assert names["1.weight"] == "fc1.weight" and names["1.bias"] == "fc1.bias"
    assert names["3.weight"] == "fc2.weight"
    assert names["4.weight"] == "conv1.weight"
    assert names["5.weight"] == "norm1.weight" and names["6.bias"] == "norm2.bias"
    assert names["7.weight"] == "embedding1.weight"
    assert names["8.0.weight"] == "fc3.weight"  # nested Sequential: still only indices
    assert display_names(_Encoder()) == {
        "encoder.weight": "encoder.weight", "encoder.bias": "encoder.bias",
        "layers.0.weight": "layers.0.weight", "layers.0.bias": "layers.0.bias"}
    flow = GradientFlow(model)
    assert flow.display_names["3.weight"] == "fc2.weight"


def test_smoothing_is_an_unbiased_moving_average_that_skips_gaps():
    assert np.allclose(smooth([2.0] * 10, 5), 2.0)  # no pull towards 0 at the start
    assert smooth([3.0, 1.0], 5)[0] == 3.0
    noisy = np.tile([1.0, -1.0], 50)
    assert np.std(smooth(noisy, 10)[10:]) < 0.2 * np.std(noisy)
    step = smooth([0.0] * 20 + [1.0] * 20, 4)
    assert step[19] == 0 and 0.5 < step[25] < step[39] and step[39] > 0.99
    with_gap = smooth([1.0, np.nan, np.inf, 1.0], 3)
    assert np.isnan(with_gap[1]) and np.isnan(with_gap[2]) and with_gap[3] == 1.0
    assert np.array_equal(smooth([1.0, 5.0, 2.0], 1), [1.0, 5.0, 2.0])
    assert smoothing_span(5) == 1 and smoothing_span(1000) == 40


def _manual_flow(steps, **options):
    """A flow over one 30x30 weight whose gradient at step t is t everywhere."""
    w = cr.tensor(np.ones((30, 30), np.float32), requires_grad=True)
    flow = GradientFlow(_StandIn(w=w), **options)
    for t in range(1, steps + 1):
        w.grad = cr.tensor(np.full((30, 30), float(t), np.float32))
        flow.step()
    return flow


def test_distribution_snapshots_use_bounded_memory_and_spread_over_training():
    bound = (4 + 2) * 50  # (max_snapshots + first + latest) * sample_size
    short, long = (_manual_flow(n, sample_size=50, max_snapshots=4) for n in (40, 1000))
    assert 0 < short.stored_values <= bound and 0 < long.stored_values <= bound
    steps = long.distribution_steps()
    assert steps[0] == 1 and steps[-1] == 1000 and len(steps) == 4
    assert abs(steps[1] - 250) <= 125 and abs(steps[2] - 500) <= 125
    for step, sample in long.distributions().items():  # each sample is of its own step
        assert sample["w"].shape == (50,) and np.all(sample["w"] == step)


def _texts(figure):
    return [t.get_text() for t in figure.findobj(matplotlib.text.Text) if t.get_text()]


def test_flagged_layers_are_named_on_both_plots():
    model = _mlp(3, nn.ReLU)
    with cr.no_grad():
        model[2].bias.data[...] = -100
    flow = _train(model)
    assert flow.layer_flags()["0.weight"] == ["dead", "vanishing"]
    norms = _texts(flow.norms_figure())
    assert any("fc1.weight" in t and "dead" in t for t in norms)  # the legend label
    joined = " ".join(" ".join(norms).split())  # undo the wrapping of the lines
    for warning in flow.warnings():  # written in full under the plots
        assert warning in joined
    assert "not drawn in the gradient norm panel (0 or not finite at every step): " \
           "fc1.weight, fc2.weight, fc3.weight" in joined
    dists = flow.distributions_figure()
    labels = [t for t in dists.axes[0].get_yticklabels() if "\u26a0" in t.get_text()]
    assert {t.get_text().split()[0] for t in labels} == {"fc1.weight", "fc2.weight",
                                                         "fc3.weight"}
    assert all(t.get_color() == "#c62828" for t in labels)
    assert "every gradient is 0" in _texts(dists)


def test_a_healthy_run_has_no_flags_on_its_plots():
    flow = _train(_mlp(2, nn.ReLU))
    texts = _texts(flow.norms_figure()) + _texts(flow.distributions_figure())
    assert not any("\u26a0" in t for t in texts)
    assert "no vanishing, exploding or dead layers found" in texts
    assert {"fc1.weight", "fc2.weight", "fc3.weight"} <= set(texts)
    assert any("1e-3" in t for t in texts)  # the reference line of the update ratio
