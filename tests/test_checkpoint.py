"""cr.checkpoint and checkpoint_sequential: same gradients as the plain run, less saved memory."""

import numpy as np
import pytest

import chainrule as cr
import chainrule.inspect  # noqa: F401  (binds cr.inspect)
from chainrule.checkpoint import checkpoint_sequential, is_recomputing
from chainrule.random import generator


class Dense:
    """A Linear+ReLU layer on the engine alone (the tests do not depend on chainrule.nn)."""

    def __init__(self, n_in, n_out, rng):
        self.w = cr.Tensor((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(
            np.float32), requires_grad=True)
        self.b = cr.Tensor((0.1 * rng.standard_normal(n_out)).astype(np.float32),
                           requires_grad=True)

    def __call__(self, x):
        return cr.relu(x @ self.w + self.b)

    def parameters(self):
        return [self.w, self.b]


class Dropout:
    """Inverted dropout drawing its mask from the library generator."""

    def __init__(self, p):
        self.p = p

    def __call__(self, x):
        keep = generator().random(x.shape) >= self.p
        return x * (keep / (1 - self.p)).astype(np.float32)


class RunningMean:
    """A layer with a forward side effect, guarded the way batch norm's running stats are."""

    def __init__(self):
        self.updates = 0
        self.seen_recomputing = []

    def __call__(self, x):
        self.seen_recomputing.append(is_recomputing())
        if not is_recomputing():
            self.updates += 1
        return x - x.mean(axis=0)


class Chain:
    """Layers run in turn; ``parameters()`` shows checkpoint the weights it closes over."""

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        return _run(self.layers, x)

    def parameters(self):
        return _params(self.layers)


def _layers(n, width=8, seed=0):
    rng = np.random.default_rng(seed)
    return [Dense(width, width, rng) for _ in range(n)]


def _params(layers):
    return [p for layer in layers if hasattr(layer, "parameters") for p in layer.parameters()]


def _run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _grads(tensors):
    out = [t.grad.data.copy() for t in tensors]
    for t in tensors:
        t.grad = None
    return out


def _input(shape=(5, 8), requires_grad=True, seed=1):
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return cr.Tensor(data, requires_grad=requires_grad)


def test_gradients_equal_the_plain_run_exactly():
    layers = _layers(6)
    x = _input()
    loss = (_run(layers, x) ** 2).sum()
    loss.backward()
    plain = _grads(_params(layers) + [x])

    y = cr.checkpoint(lambda h: _run(layers[:3], h), x)
    y = cr.checkpoint(lambda h: _run(layers[3:], h), y)
    loss_ck = (y ** 2).sum()
    assert loss_ck.item() == loss.item()
    loss_ck.backward()
    checked = _grads(_params(layers) + [x])
    assert all(np.array_equal(a, b) for a, b in zip(plain, checked))


def test_saves_only_the_inputs():
    layers = _layers(8, width=16)
    x = _input((32, 16), requires_grad=False)  # a leaf that requires grad counts as a parameter
    plain = cr.inspect.memory(_run(layers, x).sum())
    y = cr.checkpoint(Chain(layers), x)
    report = cr.inspect.memory(y.sum())
    assert [n.name for n in report.nodes if n.name != "SumBackward"] == ["CheckpointBackward"]
    assert report.saved_bytes == x.data.nbytes
    assert plain.saved_bytes >= 8 * x.data.nbytes
    assert report.parameters == 16  # the function's weights, found through parameters()


def test_passes_non_tensor_arguments_and_keywords_through():
    x = _input((3,))
    y = cr.checkpoint(lambda t, power, scale=1.0: (t ** power) * scale, x, 3, scale=2.0)
    y.sum().backward()
    assert np.allclose(x.grad.data, 6.0 * x.data ** 2)


def test_dropout_sees_the_same_mask_and_the_generator_resumes_where_it_was():
    layers = _layers(2) + [Dropout(0.5)] + _layers(2, seed=3)
    x = _input()
    cr.manual_seed(7)
    (_run(layers, x) ** 2).sum().backward()
    after_plain = generator().random(4)
    plain = _grads(_params(layers) + [x])

    cr.manual_seed(7)
    y = cr.checkpoint(lambda h: _run(layers, h), x)
    (y ** 2).sum().backward()
    after_checkpointed = generator().random(4)
    checked = _grads(_params(layers) + [x])
    assert all(np.array_equal(a, b) for a, b in zip(plain, checked))
    assert np.array_equal(after_plain, after_checkpointed)


def test_without_preserving_the_generator_the_mask_differs():
    x = _input((64,))
    y = cr.checkpoint(Dropout(0.5), x, preserve_rng_state=False)
    kept_forward = y.data != 0
    y.sum().backward()
    kept_backward = x.grad.data != 0
    assert not np.array_equal(kept_forward, kept_backward)  # the control for the test above


def test_side_effects_see_the_recomputing_flag_and_apply_once():
    stats = RunningMean()
    x = _input()
    y = cr.checkpoint(lambda h: stats(h) * 2.0, x)
    assert not is_recomputing()
    y.sum().backward()
    assert stats.seen_recomputing == [False, True]
    assert stats.updates == 1
    assert not is_recomputing() and not cr.checkpoint.is_recomputing()


def test_inputs_are_released_after_backward_unless_retained():
    layers = _layers(2)
    x = _input()
    y = cr.checkpoint(lambda h: _run(layers, h), x)
    loss = y.sum()
    loss.backward(retain_graph=True)
    assert not y.grad_fn.freed
    loss.backward()  # walks again: the parameters' gradients double
    assert y.grad_fn.freed
    first = layers[0].w.grad.data.copy()
    layers[0].w.grad = None
    cr.checkpoint(lambda h: _run(layers, h), x).sum().backward()
    assert np.allclose(first, 2 * layers[0].w.grad.data)
    with pytest.raises(RuntimeError, match="CheckpointBackward: trying to backward"):
        loss.backward()


def test_parameters_are_counted_once_per_use():
    layer = _layers(1)[0]
    x = _input()
    plain = (layer(x) + layer(x * 2.0)).sum()
    plain.backward()
    expected = _grads(layer.parameters())
    # the same layer inside and outside a checkpoint, and its weight also passed explicitly
    inside = cr.checkpoint(lambda h, w: cr.relu(h @ w + layer.b), x * 2.0, layer.w)
    (layer(x) + inside).sum().backward()
    got = _grads(layer.parameters())
    assert all(np.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in zip(expected, got))


def test_hooks_on_the_output_run_once_and_can_change_the_gradient():
    x = _input((4,))
    y = cr.checkpoint(lambda t: t * 3.0, x)
    calls = []
    y.register_hook(lambda g: calls.append(g.data.copy()) or g * 2.0)
    y.sum().backward()
    assert len(calls) == 1 and np.array_equal(calls[0], np.ones(4, np.float32))
    assert np.array_equal(x.grad.data, np.full(4, 6.0, np.float32))


def test_in_place_change_of_a_saved_input_is_caught():
    x = _input((4,))
    h = x * 1.0
    y = cr.checkpoint(lambda t: t * t, h)
    h += 1.0
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_inputs_without_grad_still_give_parameter_gradients():
    layers = _layers(3)
    x = _input(requires_grad=False)
    _run(layers, x).sum().backward()
    plain = _grads(_params(layers))
    # a closure: nothing shows the weights, so it runs plainly (and stays correct)
    cr.checkpoint(lambda h: _run(layers, h), x).sum().backward()
    assert all(np.array_equal(a, b) for a, b in zip(plain, _grads(_params(layers))))
    # a layer with parameters(): checkpointed, with no input to send a gradient to
    y = cr.checkpoint(layers[0], x)
    assert y.grad_fn.name == "CheckpointBackward" and y.grad_fn.parents == (None,)


def test_under_no_grad_it_is_a_plain_call():
    x = _input((3,))
    with cr.no_grad():
        y = cr.checkpoint(lambda t: t * 2.0, x)
    assert y.grad_fn is None and not y.requires_grad


def test_bad_calls_are_named():
    x = _input((3,))
    with pytest.raises(TypeError, match="checkpoint: fn must be callable, got int"):
        cr.checkpoint(3, x)
    with pytest.raises(TypeError, match="must return a single Tensor, got tuple"):
        cr.checkpoint(lambda t: (t, t), x)
    y = cr.checkpoint(lambda t: t * t, x)
    with pytest.raises(RuntimeError, match="create_graph=True"):
        y.sum().backward(create_graph=True)


def test_checkpoint_sequential_matches_the_plain_run():
    layers = _layers(7) + [Dropout(0.3)] + _layers(2, seed=5)
    x = _input()
    cr.manual_seed(11)
    (_run(layers, x) ** 2).mean().backward()
    plain = _grads(_params(layers) + [x])
    for segments in (1, 3, 10):
        cr.manual_seed(11)
        (checkpoint_sequential(layers, segments, x) ** 2).mean().backward()
        checked = _grads(_params(layers) + [x])
        assert all(np.array_equal(a, b) for a, b in zip(plain, checked)), segments


def test_checkpoint_sequential_keeps_one_input_per_segment():
    layers = _layers(8, width=16)
    x = _input((32, 16), requires_grad=False)  # a leaf that requires grad counts as a parameter
    report = cr.inspect.memory(checkpoint_sequential(layers, 4, x).sum())
    checkpoints = [n for n in report.nodes if n.name == "CheckpointBackward"]
    assert len(checkpoints) == 3  # the last segment runs plainly
    assert sum(n.nbytes for n in checkpoints) == 3 * x.data.nbytes


def test_checkpoint_sequential_rejects_bad_segments():
    layers = _layers(3)
    x = _input()
    for bad in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match="segments must be an integer from 1 to"):
            checkpoint_sequential(layers, bad, x)
    with pytest.raises(TypeError, match="layer 1 \\(int\\) is not callable"):
        checkpoint_sequential([layers[0], 3], 1, x)
    with pytest.raises(TypeError, match="expected an nn.Sequential"):
        checkpoint_sequential(5, 1, x)


def test_checkpoint_sequential_takes_a_container_with_children():
    class Container:
        def __init__(self, layers):
            self.layers = layers

        def children(self):
            return iter(self.layers)

    layers = _layers(4)
    x = _input()
    _run(layers, x).sum().backward()
    plain = _grads(_params(layers) + [x])
    checkpoint_sequential(Container(layers), 2, x).sum().backward()
    assert all(np.array_equal(a, b) for a, b in zip(plain, _grads(_params(layers) + [x])))


def test_checkpoint_sequential_with_real_dropout_and_batchnorm():
    from chainrule import nn

    def make():
        cr.manual_seed(11)
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))

    x = cr.tensor(np.random.default_rng(0).standard_normal((5, 6)))
    results = []
    for checkpointed in (False, True):
        model = make().double()
        cr.manual_seed(99)
        out = nn.checkpoint_sequential(model, 2, x) if checkpointed else model(x)
        (out * out).sum().backward()
        results.append((out.data, [p.grad.data for p in model.parameters()],
                        model[1].running_mean.data.copy(), model[1].num_batches_tracked
                        if hasattr(model[1], "num_batches_tracked") else None))
    (out_a, grads_a, mean_a, count_a), (out_b, grads_b, mean_b, count_b) = results
    np.testing.assert_array_equal(out_a, out_b)
    for ga, gb in zip(grads_a, grads_b):
        np.testing.assert_array_equal(ga, gb)  # same dropout mask in the recomputation
    np.testing.assert_array_equal(mean_a, mean_b)  # running statistics moved once, not twice
    if count_a is not None:
        assert count_a.item() == count_b.item() == 1
