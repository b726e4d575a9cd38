"""cr.inspect.memory: saved-for-backward accounting, and the backward pass releasing it."""

import tracemalloc

import numpy as np
import pytest

import chainrule as cr
import chainrule.inspect  # noqa: F401  (binds cr.inspect)
from chainrule.inspect.memory import format_bytes, peak_backward


def _leaf(shape, seed=0, requires_grad=True):
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return cr.Tensor(data, requires_grad=requires_grad)


def _mlp(depth, width, seed=0):
    rng = np.random.default_rng(seed)
    weights = [cr.Tensor((rng.standard_normal((width, width)) / np.sqrt(width)).astype(
        np.float32), requires_grad=True) for _ in range(depth)]
    biases = [cr.Tensor(np.zeros(width, np.float32), requires_grad=True) for _ in range(depth)]
    return weights, biases


def _forward(x, weights, biases):
    h = x
    for w, b in zip(weights, biases):
        h = cr.relu(h @ w + b)
    return h.mean()


def test_counts_each_saved_array_once_and_names_nodes():
    x = _leaf((3, 4))
    y = cr.tanh(x)  # keeps its answer: 48 bytes
    loss = (y * y).sum()  # multiply keeps y twice: the same array
    report = cr.inspect.memory(loss)
    names = {n.name for n in report.nodes}
    assert names == {"TanhBackward", "MultiplyBackward", "SumBackward"}
    assert report.saved_bytes == 48
    assert report.saved_arrays == 1
    assert report.saved_bytes_per_node == 48 * 3  # tanh's answer, then y as both factors
    assert report.parameters == 1 and report.parameter_bytes == 48
    assert report.gradients == 0 and report.gradient_bytes == 0


def test_a_saved_view_counts_its_whole_base_once():
    x = _leaf((4, 8))
    big = cr.exp(x)  # 128 bytes, kept as exp's answer
    part = big[:, :2] * 3.0  # getitem's view is not saved; multiply saves nothing for a constant
    loss = (cr.tanh(part) * big[:, 2:4]).sum()
    report = cr.inspect.memory(loss)
    # exp's answer (128 B) owns the memory of the view that multiply keeps of big[:, 2:4];
    # tanh's answer (32 B) is separate.
    assert report.saved_bytes == 128 + 32


def test_saved_parameters_are_reported_as_parameters_not_activations():
    w = _leaf((5, 5))
    x = _leaf((2, 5), seed=1, requires_grad=False)
    loss = (x @ w).sum()  # matmul keeps x (40 B) and w, which is a parameter
    report = cr.inspect.memory(loss)
    assert report.saved_bytes == 40
    assert report.parameter_bytes == 100
    matmul = next(n for n in report.nodes if n.name == "MatmulBackward")
    assert matmul.shapes == ((2, 5), (5, 5)) and matmul.nbytes == 40


def test_custom_function_saved_tensors_are_counted():
    class Square(cr.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x * 1.0)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 2 * x

    x = _leaf((6,))
    report = cr.inspect.memory(Square.apply(x).sum())
    assert report.saved_bytes == 24


def test_str_lists_nodes_and_totals():
    w, b = _mlp(2, 8)
    text = str(cr.inspect.memory(_forward(_leaf((4, 8), requires_grad=False), w, b),
                                 backward=True))
    assert "MatmulBackward" in text and "ReluBackward" in text
    assert "saved for backward" in text and "parameters: 4 tensors" in text
    assert "gradients: 4 filled" in text and "backward peak" in text
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"


def test_rejects_what_is_not_a_tensor():
    with pytest.raises(TypeError, match="memory: expected a Tensor, got list"):
        cr.inspect.memory([1.0])
    with pytest.raises(TypeError, match="peak_backward"):
        peak_backward(np.ones(3))


def test_backward_true_reports_the_peak_and_fills_gradients():
    w, b = _mlp(3, 16)
    loss = _forward(_leaf((8, 16), requires_grad=False), w, b)
    before = cr.inspect.memory(loss)
    report = cr.inspect.memory(loss, backward=True)
    assert report.saved_bytes == before.saved_bytes > 0  # taken before the backward pass
    assert report.gradients == 6 and report.gradient_bytes == report.parameter_bytes
    # at least the weight gradients were allocated during the backward pass
    assert report.backward_peak_bytes >= 3 * 16 * 16 * 4
    assert all(n.freed for n in cr.inspect.memory(loss).nodes if n.name != "AddBackward"
               and n.name != "MeanBackward")


# The deep MLP of the issue: 16 layers of width 128, float32. The batch is 128 rather than 64 so
# that the saved activations (one 64 KiB array per layer, plus the input) weigh about as much as
# the parameter gradients (16 x 66 KiB): then a backward that frees as it goes peaks near the
# larger of the two, while one that keeps everything peaks near their sum, and the two cases
# are far apart.
DEPTH, WIDTH, BATCH = 16, 128, 128


def _traced_step(retain_graph):
    """Forward and backward under tracemalloc; figures relative to the level before forward."""
    weights, biases = _mlp(DEPTH, WIDTH)
    x = _leaf((BATCH, WIDTH), requires_grad=False)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        loss = _forward(x, weights, biases)
        report = cr.inspect.memory(loss)
        tracemalloc.reset_peak()
        loss.backward(retain_graph=retain_graph)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grads = sum(p.grad.data.nbytes for p in weights + biases)
    return report, grads, peak - base, current - base, cr.inspect.memory(loss)


def _transient_allowance():
    # What the walk holds besides saved values and finished gradients at any one moment: the
    # incoming and outgoing activation gradients, relu's mask and product (4 arrays of
    # batch x width), a weight gradient being formed plus its copy (2 of width x width), and
    # 64 KiB for the Python objects (tuples, dict entries) made along the way.
    activation = BATCH * WIDTH * 4
    weight = WIDTH * WIDTH * 4
    return 4 * activation + 2 * weight + 64 * 1024


def test_backward_peak_stays_near_saved_plus_gradients_and_frees_as_it_goes():
    report, grads, peak, after, later = _traced_step(retain_graph=False)
    saved = report.saved_bytes
    # Never more than parameters' gradients + saved activations + transients...
    assert peak <= saved + grads + _transient_allowance()
    # ...and in fact near the larger of the two: activations are released while gradients grow.
    assert peak <= max(saved, grads) + _transient_allowance()
    # Afterwards only the gradients remain (the input, allocated before tracing, is not counted).
    assert after <= grads + 64 * 1024
    freed = [n for n in later.nodes if n.name not in ("AddBackward", "MeanBackward")]
    assert freed and all(n.freed for n in freed)  # add and mean keep nothing, so free nothing
    assert later.saved_bytes == 0


def test_retain_graph_keeps_saved_values_alive():
    report, grads, peak, after, later = _traced_step(retain_graph=True)
    assert not any(n.freed for n in later.nodes)
    assert later.saved_bytes == report.saved_bytes
    # the saved activations (minus the input, allocated before tracing) are still allocated
    activations_traced = report.saved_bytes - BATCH * WIDTH * 4
    assert after >= activations_traced + grads - 16 * 1024
    assert peak > max(report.saved_bytes, grads) + _transient_allowance() // 2


def test_report_agrees_with_tracemalloc_after_forward():
    weights, biases = _mlp(8, 64)
    x = _leaf((32, 64), requires_grad=False)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        loss = _forward(x, weights, biases)
        traced = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    report = cr.inspect.memory(loss)
    # everything the forward allocated and kept is what the graph saved (the input excepted),
    # plus Python objects for 25 nodes and tensors
    assert abs(traced - (report.saved_bytes - x.data.nbytes)) <= 16 * 1024


def test_saved_arrays_of_a_node_that_saved_nothing_is_empty():
    # regression: Node.saved_arrays() raised TypeError when ``saved`` was None (add, sum, ...)
    x = _leaf((3,))
    node = (x + 1.0).grad_fn
    assert node.saved is None and node.saved_arrays() == []
