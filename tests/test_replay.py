"""`cr.compile`: a replayed call is bit-identical to the eager one, retraces when it must, and
refuses loudly what it cannot repeat."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule import autograd, nn, optim
from chainrule.nn import functional as F
from chainrule.replay import CompileError


def _mlp(seed=0, dtype=np.float32):
    cr.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(),
                          nn.Linear(8, 5))
    if dtype != np.float32:
        model = model.to(dtype)
    return model


def _batches(n, batch=6, seed=1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, 12)).astype(dtype), rng.integers(0, 5, batch))
            for _ in range(n)]


def _train(model, loss_fn, batches, lr=0.1):
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses, snapshots = [], []
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(cr.tensor(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.data.copy())
        snapshots.append([p.data.copy() for p in model.parameters()])
    return losses, snapshots


def _assert_same_runs(a, b):
    for la, lb in zip(a[0], b[0]):
        assert la.dtype == lb.dtype and la.tobytes() == lb.tobytes()
    for pa, pb in zip(a[1], b[1]):
        for x, y in zip(pa, pb):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_with_a_compiled_loss_is_bit_identical_to_eager(dtype):
    eager_model, compiled_model = _mlp(dtype=dtype), _mlp(dtype=dtype)
    batches = _batches(6, dtype=dtype)
    eager = _train(eager_model, lambda x, y: F.cross_entropy(eager_model(x), y), batches)
    step = cr.compile(lambda x, y: F.cross_entropy(compiled_model(x), y))
    compiled = _train(compiled_model, step, batches)
    _assert_same_runs(eager, compiled)
    assert (step.traces, step.replays) == (1, 5)
    assert compiled[0][-1].dtype == dtype  # float32 stays float32


def test_gradients_of_arguments_and_shared_subexpressions_match_eager():
    def f(x, w, b):
        h = cr.tanh(x @ w + b)
        return ((h * h).sum(axis=1) + cr.exp(h).mean(axis=1) * h[:, 0]).sum()

    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in [(4, 3), (3, 5), (5,)]]
    compiled = cr.compile(f)
    for k in range(3):
        arrays = [a + 0.1 * k for a in arrays]
        eager_in = [cr.tensor(a, requires_grad=True) for a in arrays]
        f(*eager_in).backward()
        compiled_in = [cr.tensor(a, requires_grad=True) for a in arrays]
        out = compiled(*compiled_in)
        out.backward()
        np.testing.assert_array_equal(out.data, f(*map(cr.tensor, arrays)).data)
        for e, c in zip(eager_in, compiled_in):
            assert c.grad.data.tobytes() == e.grad.data.tobytes()
    assert (compiled.traces, compiled.replays) == (1, 2)
    assert out.grad_fn.name == "CompiledBackward"


def test_new_shapes_dtypes_values_and_requires_grad_make_new_traces():
    f = cr.compile(lambda x, scale: (x * scale).sum())
    f(cr.ones(3, requires_grad=True), 2.0)
    f(cr.ones(3, requires_grad=True), 2.0)
    assert f.traces == 1
    f(cr.ones(4, requires_grad=True), 2.0)  # shape
    f(cr.ones(4, dtype=np.float64, requires_grad=True), 2.0)  # dtype
    f(cr.ones(4, dtype=np.float64), 2.0)  # requires_grad
    out = f(cr.ones(4, dtype=np.float64), 3.0)  # a Python value
    assert f.traces == 5 and out.item() == 12.0
    with cr.no_grad():  # grad mode is part of the key: no node, no new trace afterwards
        out = f(cr.ones(3, requires_grad=True), 2.0)
    assert out.grad_fn is None and f.traces == 6


def test_a_module_switched_to_eval_or_given_a_new_attribute_retraces():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    model.eval()
    f = cr.compile(lambda x: model(x).sum())
    x = cr.ones(2, 3)
    f(x)
    f(x)
    model.train()
    f(x)  # dropout in training mode: a trace of its own, kept beside the eval one
    model.eval()
    f(x)
    assert (f.traces, f.replays) == (2, 2)
    model[0].weight = nn.Parameter(cr.ones(4, 3))  # same shape, a new tensor: read anew
    out = f(x)
    assert f.traces == 3 and out.item() == model(x).sum().item()
    model.train()
    f(x)
    assert f.traces == 4  # the training trace read the replaced weight too: a new one
    model.eval()
    model[2].weight.data = np.full((1, 4), 2.0, np.float32)  # new values, same tensor: replayed
    out = f(x)
    assert f.replays == 3 and out.item() == model(x).sum().item()
    model[1].p = 0.0  # a Python attribute the trace may have read
    f(x)
    assert f.traces == 5


def test_tensors_that_change_shape_or_requires_grad_between_calls_retrace():
    w = cr.ones(3, requires_grad=True)
    f = cr.compile(lambda x: (x * w).sum())
    f(cr.ones(3))
    w.data = np.ones(1, np.float32)
    assert f(cr.ones(3)).item() == 3.0 and f.traces == 2
    w.data = np.full(1, 2.0, np.float32)
    out = f(cr.ones(3))
    out.backward()
    assert out.item() == 6.0 and w.grad.item() == 3.0 and f.replays == 1
    w.requires_grad_(False)
    assert f(cr.ones(3)).grad_fn is None and f.traces == 3


class _Cube(cr.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2


def _inplace(x):
    y = x * 1
    y += 1
    return y.sum()


def _setitem(x):
    y = x * 1
    y[0] = 5.0
    return y.sum()


@pytest.mark.parametrize("fn,match", [
    (lambda x: x * x.sum().item(), r"\.item\(\)"),
    (lambda x: x * float(x.numpy()[0]), r"\.numpy\(\)"),
    (lambda x: x if (x.sum() > 0) else -x, r"bool\(x\)"),
    (lambda x: x * cr.rand(3, requires_grad=True), "a random tensor that requires grad"),
    (lambda x: x * cr.random.generator().random(3), "the library generator directly"),
    (_inplace, "in-place"),
    (_setitem, "in-place"),
    (lambda x: _Cube.apply(x), "custom Function _Cube"),
    (lambda x: cr.checkpoint(cr.tanh, x), "checkpoint"),
    (lambda x: nn.BatchNorm1d(3)(x.reshape(1, 3) * cr.ones(2, 3)), "running statistics"),
])
def test_what_a_trace_cannot_repeat_is_refused_by_name(fn, match):
    f = cr.compile(fn)
    with pytest.raises(CompileError, match=match):
        f(cr.tensor([1.0, 2.0, 3.0], requires_grad=True))
    assert autograd._tracer is None and f.traces == 0
    fn(cr.tensor([1.0, 2.0, 3.0], requires_grad=True))  # uncompiled, it still runs


def test_hooks_on_intermediate_tensors_are_refused():
    def f(x):
        h = x * 2
        h.register_hook(lambda g: g * 10)
        return h.sum()

    with pytest.raises(CompileError, match="hook"):
        cr.compile(f)(cr.ones(3, requires_grad=True))


def test_the_first_replay_is_checked_against_an_eager_call():
    def reads_data(x):  # NumPy on .data: the trace sees a constant, not a function of x
        return x * cr.tensor(x.data.sum())

    f = cr.compile(reads_data)
    x = cr.tensor([1.0, 2.0])
    assert f(x).tolist() == [3.0, 6.0]
    with pytest.raises(CompileError, match="outside chainrule's operations"):
        f(cr.tensor([1.0, 3.0]))
    assert not any(f._cache.values())  # the bad trace is dropped: the next call traces again
    assert f(cr.tensor([1.0, 3.0])).tolist() == [4.0, 12.0]

    unchecked = cr.compile(reads_data, check=False)
    unchecked(x)
    unchecked(cr.tensor([1.0, 3.0]))
    assert unchecked.replays == 1  # no eager comparison: the caller vouched for the function


def test_labels_are_checked_at_every_replay():
    model = _mlp()
    f = cr.compile(lambda x, y: F.cross_entropy(model(x), y))
    x = cr.tensor(np.ones((2, 12), np.float32))
    f(x, np.array([0, 4]))
    f(x, np.array([1, 2]))
    with pytest.raises(ValueError, match=r"cross_entropy: label 5 \(at position 1"):
        f(x, np.array([0, 5]))
    with pytest.raises(ValueError, match="label -1"):
        f(x, np.array([-1, 0]))


def test_an_operation_failing_at_replay_is_named():
    f = cr.compile(lambda x, i: x[i].sum())
    f(cr.ones(3, requires_grad=True), np.array([0, 2]))
    with pytest.raises(IndexError, match="index 7 is out of bounds"):
        f(cr.ones(3, requires_grad=True), np.array([0, 7]))


def test_retain_graph_and_a_second_backward_behave_as_eager():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    f = cr.compile(lambda v: (v * v).sum())
    f(x)
    out = f(x)
    out.backward(retain_graph=True)
    out.backward()
    np.testing.assert_array_equal(x.grad.data, [4.0, 8.0])
    out = f(x)
    out.backward()
    with pytest.raises(RuntimeError, match="a second time"):
        out.backward()


def test_create_graph_through_a_compiled_call_is_an_error():
    f = cr.compile(lambda v: (v ** 3).sum())
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    f(x)
    with pytest.raises(CompileError, match="create_graph"):
        cr.grad(lambda v: cr.grad(f)(v).sum())(x)
    g = cr.grad(lambda v: cr.grad(f.fn)(v).sum())(x)  # uncompiled: the usual second order
    np.testing.assert_allclose(g.data, [6.0, 12.0])


def test_an_input_changed_in_place_before_backward_is_caught():
    f = cr.compile(lambda v: (v * v).sum())
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    f(x)
    out = f(x)
    with cr.no_grad():
        x += 1
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


def test_containers_in_and_out():
    w = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)

    @cr.compile
    def f(batch, options):
        y = batch["x"] @ w * options[0]
        return y.sum(), y.detach()

    for k in range(3):
        x = cr.tensor([[1.0, float(k)]])
        loss, y = f({"x": x}, (2.0, "unused"))
        assert isinstance(y, cr.Tensor) and not y.requires_grad
        np.testing.assert_array_equal(y.data, (x.data @ w.data) * 2)
    loss.backward()
    np.testing.assert_array_equal(w.grad.data, [[2.0, 2.0], [4.0, 4.0]])
    assert (f.traces, f.replays) == (1, 2)


def test_outputs_that_are_arguments_and_only_one_output_with_grad():
    f = cr.compile(lambda x, y: (x, (y * 2).sum()))
    x, y = cr.ones(2), cr.ones(2, requires_grad=True)
    f(x, y)
    a, b = f(x, y)
    assert a is x and b.item() == 4.0 and b.requires_grad
    with pytest.raises(CompileError, match="require grad"):
        cr.compile(lambda x: (x * 2, x * 3))(cr.ones(2, requires_grad=True))


def test_bad_arguments_and_outputs_are_clear_errors():
    with pytest.raises(TypeError, match="expected a callable"):
        cr.compile(3)
    with pytest.raises(TypeError, match="argument of type object"):
        cr.compile(lambda x: x)(object())
    with pytest.raises(CompileError, match="must return a tensor"):
        cr.compile(lambda x: 3.0)(cr.ones(2))


def test_compiled_calls_inside_a_trace_run_as_written():
    inner = cr.compile(lambda x: cr.tanh(x) * 2)
    outer = cr.compile(lambda x: inner(x).sum(), check=False)
    x = cr.tensor([0.5, -1.0], requires_grad=True)
    for _ in range(3):
        outer(x).backward()
    assert inner.traces == 0 and (outer.traces, outer.replays) == (1, 2)
    np.testing.assert_allclose(x.grad.data, 3 * 2 * (1 - np.tanh([0.5, -1.0]) ** 2))


def test_threads_calling_one_compiled_function_get_their_own_results():
    model = _mlp(dtype=np.float64)
    f = cr.compile(lambda x, y: F.cross_entropy(model(x), y))
    batches = _batches(8, dtype=np.float64)
    with cr.no_grad():
        expected = [F.cross_entropy(model(cr.tensor(x)), y).item() for x, y in batches]
    results, errors = {}, []
    barrier = threading.Barrier(2, timeout=30)

    def work(offset):
        try:
            barrier.wait()
            for i in range(offset, len(batches), 2):
                x, y = batches[i]
                results[i] = f(cr.tensor(x), y).item()
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert [results[i] for i in range(len(batches))] == expected


def test_cross_entropy_keeps_its_softmax_as_a_residual():
    logits = cr.tensor(np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32),
                       requires_grad=True)
    loss = F.cross_entropy(logits, np.arange(64) % 10)
    report = cr.inspect.memory(loss)
    saved = {n.name: n for n in report.nodes}
    node = next(n for name, n in saved.items() if "ross" in name)
    assert (64, 10) in node.shapes and node.nbytes >= 64 * 10 * 4  # the softmax is accounted
    loss.backward()
    q = np.exp(logits.data - logits.data.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    q[np.arange(64), np.arange(64) % 10] -= 1
    np.testing.assert_allclose(logits.grad.data, q / 64, atol=1e-7)


def test_array_arguments_arrive_as_tensors_sharing_memory():
    seen = []

    def f(x, t):
        seen.append((type(t), t.data is array))
        return (x * t).sum()

    array = np.ones(3)
    compiled = cr.compile(f)
    out = compiled(cr.ones(3, dtype=np.float64, requires_grad=True), array)
    assert seen == [(cr.Tensor, True)] and out.item() == 3.0
    t = cr.compile(lambda x, t: (t, x * 2))(cr.ones(2), np.zeros(2))[0]
    assert isinstance(t, cr.Tensor)


_RNG = np.random.default_rng(5)
# Each computes something from an array argument; a replay must recompute it (or refuse).
_FROM_ARGUMENTS = {
    "a float64 target for a float32 loss": (
        lambda x, t: F.mse_loss(x.astype(np.float32), t), lambda: _RNG.standard_normal((4, 3))),
    "one sample's label": (lambda x, t: F.cross_entropy(x[0], t),
                           lambda: np.array(_RNG.integers(0, 3))),
    "one_hot": (lambda x, t: (x * F.one_hot(t, 3)).sum(), lambda: _RNG.integers(0, 3, 4)),
    "a comparison for where": (lambda x, t: cr.where(t > 0, x, 0.0).sum(),
                               lambda: _RNG.standard_normal((4, 3))),
    "views of the argument": (lambda x, t: (x * t.T.T * t[0]).sum(),
                              lambda: _RNG.standard_normal((4, 3))),
    "gather indices": (lambda x, t: cr.take_along_axis(x, t.reshape(4, 1), 1).sum(),
                       lambda: _RNG.integers(0, 3, 4)),
    "embedding rows": (lambda x, t: F.embedding(t, x).sum(), lambda: _RNG.integers(0, 4, 3)),
    "a bound of clip": (lambda x, t: cr.clip(x, t.min(), 1.0).sum(),
                        lambda: _RNG.standard_normal((4, 3))),
    "nll labels": (lambda x, t: F.nll_loss(cr.log_softmax(x), t), lambda: _RNG.integers(0, 3, 4)),
    "binary targets": (lambda x, t: F.binary_cross_entropy_with_logits(x, t),
                       lambda: _RNG.uniform(0, 1, (4, 3))),
    "np.argmax and np.greater": (lambda x, t: x[np.argmax(t, axis=0)].sum()
                                 + (x * np.greater(t, 0)).sum(),
                                 lambda: _RNG.standard_normal((4, 3))),
}


@pytest.mark.parametrize("name", list(_FROM_ARGUMENTS))
def test_what_is_computed_from_array_arguments_is_recomputed_at_every_replay(name):
    fn, make = _FROM_ARGUMENTS[name]
    x = cr.tensor(_RNG.standard_normal((4, 3)), requires_grad=True)
    compiled = cr.compile(fn, check=False)  # no eager comparison to catch a stale constant
    for _ in range(4):
        t = make()
        got = compiled(x, t)
        expected = fn(x, cr.tensor(t))
        assert got.data.tobytes() == expected.data.tobytes()
    assert (compiled.traces, compiled.replays) == (1, 3)


@pytest.mark.parametrize("fn,match", [
    (lambda x, t: x[t > 0].sum(), "boolean mask"),
    (lambda x, t: x[np.nonzero(t > 1)].sum(), r"np\.nonzero on a tensor"),
    (lambda x, t: x * np.count_nonzero(t > 1), r"np\.count_nonzero on a tensor"),
    (lambda x, t: (x * F.one_hot(t.astype(np.int64))).sum(), "one_hot without num_classes"),
    (lambda x, t: (x * cr.tensor(t)).sum(), r"cr\.tensor\(x\) on a tensor"),
    (lambda x, t: (x * x.data[0]).sum(), "a view of an array of the traced call"),
])
def test_values_that_a_replay_could_not_recompute_are_refused(fn, match):
    x = cr.tensor(np.ones((4, 3)), requires_grad=True)
    with pytest.raises(CompileError, match=match):
        cr.compile(fn)(x, np.abs(_RNG.standard_normal((4, 3))))


def test_value_checks_of_embedding_and_one_hot_run_at_every_replay():
    weight = cr.tensor(np.ones((4, 2)), requires_grad=True)
    f = cr.compile(lambda i: F.embedding(i, weight).sum())
    f(np.array([0, 3]))
    with pytest.raises(IndexError, match="index -1 is out of range for 4 embeddings"):
        f(np.array([0, -1]))  # NumPy alone would take row 3
    g = cr.compile(lambda t: F.one_hot(t, 3).sum())
    g(np.array([0, 2]))
    with pytest.raises(ValueError, match="one_hot: label 3 is out of range for 3 classes"):
        g(np.array([0, 3]))


def test_a_compiled_module_keeps_its_attributes_and_methods_compile_per_instance():
    model = _mlp()
    compiled = cr.compile(model)
    assert list(compiled.parameters()) == list(model.parameters())
    compiled.eval()
    assert not model.training

    class Net(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.w = nn.Parameter(cr.ones(3) * scale)

        @cr.compile
        def forward(self, x):
            return (x * self.w).sum()

    a, b = Net(1.0), Net(2.0)
    x = cr.ones(3)
    for _ in range(3):
        assert a(x).item() == 3.0 and b(x).item() == 6.0
    assert a.forward is a.forward and a.forward is not b.forward
    assert (a.forward.traces, a.forward.replays) == (1, 2)


def test_the_cache_keeps_the_latest_traces(monkeypatch):
    from chainrule import replay

    monkeypatch.setattr(replay, "MAX_TRACES", 3)
    f = cr.compile(lambda x: x.sum())
    with pytest.warns(RuntimeWarning, match="has needed 3 traces"):
        for n in range(1, 6):
            f(cr.ones(n))
    assert f.traces == 5 and sum(map(len, f._cache.values())) == 3
    f(cr.ones(5))
    assert f.replays == 1
    f(cr.ones(1))  # dropped: traced again
    assert f.traces == 6


def test_a_backward_pass_inside_the_traced_function_is_replayed_or_refused():
    f = lambda v: (cr.tanh(v) ** 2).sum()  # noqa: E731

    def step(v):
        loss = f(v)
        loss.backward()
        return loss

    compiled = cr.compile(step)
    for _ in range(3):  # a trace, then two replays: each fills .grad as the eager call does
        x, y = cr.tensor([0.3, -0.5], requires_grad=True), cr.tensor([0.3, -0.5],
                                                                     requires_grad=True)
        assert compiled(x).data.tobytes() == step(y).data.tobytes()
        assert x.grad.data.tobytes() == y.grad.data.tobytes()
    assert compiled.replays == 2
    with pytest.raises(CompileError, match=r"a backward pass with create_graph=True or inputs="):
        cr.compile(cr.grad(f))(cr.tensor([0.3, -0.5]))
    # cr.grad of a recording input is itself recorded: compiled, its own gradient is eager's
    h = cr.compile(lambda v: (cr.grad(f)(v) ** 2).sum())
    for _ in range(3):
        y = cr.tensor([0.3, -0.5], requires_grad=True)
        h(y).backward()
    expected = cr.grad(lambda v: (cr.grad(f)(v) ** 2).sum())(cr.tensor([0.3, -0.5]))
    assert y.grad.data.tobytes() == expected.data.tobytes() and h.replays == 2
    assert cr.grad(cr.compile(f))(cr.tensor([0.3, -0.5])).tolist() == \
        cr.grad(f)(cr.tensor([0.3, -0.5])).tolist()


_UNARY = [cr.tanh, cr.sin, cr.sigmoid, lambda a: a * a, lambda a: -a, cr.softplus,
          lambda a: a.T, lambda a: cr.exp(cr.tanh(a)),
          lambda a: a[..., :2] if a.ndim and a.shape[-1] >= 2 else a * 3,
          lambda a: cr.concatenate([a, a * 2]) if a.ndim and a.size <= 24 else a + 1]
_BINARY = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b,
           lambda a, b: a / (1 + b * b), cr.maximum]
_STEP = st.one_of(
    st.tuples(st.just("unary"), st.integers(0, len(_UNARY) - 1), st.integers(0, 99)),
    st.tuples(st.just("binary"), st.integers(0, len(_BINARY) - 1), st.integers(0, 99),
              st.integers(0, 99)),
    st.tuples(st.just("sum"), st.integers(0, 1), st.integers(0, 99)),
)


def _random_graph(steps, weights):
    """A function of the leaves: values fan out, broadcast and reduce; every one reaches it."""
    def fn(*leaves):
        values = list(leaves)
        for kind, k, i, *rest in steps:
            a = values[i % len(values)]
            if kind == "unary":
                values.append(_UNARY[k](a))
            elif kind == "binary":
                b = values[rest[0] % len(values)]
                try:
                    np.broadcast_shapes(a.shape, b.shape)
                except ValueError:  # (after a transpose or a slice) combine with its sum
                    b = b.sum()
                values.append(_BINARY[k](a, b))
            else:
                values.append(a.sum(axis=k % a.ndim, keepdims=True) if a.ndim else a * 2.0)
        loss = 0.0
        for v, w in zip(values, weights):
            loss = loss + (v * np.resize(w, v.shape)).sum()
        return loss

    return fn


@settings(max_examples=40, deadline=None)
@given(shapes=st.lists(st.sampled_from([(3, 4), (4,), (3, 1), ()]), min_size=1, max_size=4),
       steps=st.lists(_STEP, min_size=1, max_size=10), seed=st.integers(0, 2 ** 16))
def test_random_graphs_replay_bit_identically(shapes, steps, seed):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(12) for _ in range(len(shapes) + len(steps))]
    fn = _random_graph(steps, weights)
    compiled = cr.compile(fn)
    for _ in range(3):  # a trace, then two replays with new leaf values
        arrays = [rng.standard_normal(s) for s in shapes]
        eager = [cr.tensor(a, requires_grad=True) for a in arrays]
        fn(*eager).backward()
        replayed = [cr.tensor(a, requires_grad=True) for a in arrays]
        out = compiled(*replayed)
        out.backward()
        assert out.data.tobytes() == fn(*map(cr.tensor, arrays)).data.tobytes()
        for e, r in zip(eager, replayed):
            assert (e.grad is None) == (r.grad is None)
            if e.grad is not None:
                assert e.grad.data.tobytes() == r.grad.data.tobytes()
    assert (compiled.traces, compiled.replays) == (1, 2)


@settings(deadline=None, max_examples=40)
@given(shapes=st.lists(st.sampled_from([(3, 4), (4,), (3, 1), ()]), min_size=1, max_size=4),
       steps=st.lists(_STEP, min_size=1, max_size=10), seed=st.integers(0, 2 ** 16),
       momentum=st.sampled_from([0.0, 0.9]))
def test_random_graphs_as_compiled_training_steps_match_eager(shapes, steps, seed, momentum):
    """The leaves are parameters: zero_grad, the graph, backward and an SGD step, compiled."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(12) for _ in range(len(shapes) + len(steps))]
    fn = _random_graph(steps, weights)
    start = [rng.standard_normal(s) for s in shapes]
    runs = []
    for compiled in (False, True):
        params = [cr.tensor(a.copy(), requires_grad=True) for a in start]
        opt = optim.SGD(params, lr=0.01, momentum=momentum)

        def step(scale, params=params, opt=opt):
            opt.zero_grad()
            loss = fn(*params) * scale
            loss.backward()
            opt.step()
            return loss

        step = cr.compile(step) if compiled else step
        runs.append([(step(cr.tensor(1.0 + k)).data.tobytes(),
                      [p.data.tobytes() for p in params],
                      [None if p.grad is None else p.grad.data.tobytes() for p in params])
                     for k in range(3)])
    assert runs[0] == runs[1] and step.replays == 2


@pytest.mark.parametrize("effect,match", [
    (lambda model, opt: opt.step(), r"an optimizer step before loss.backward\(\)"),
    (lambda model, opt: cr.optim.clip_grad_norm_(model.parameters(), 1.0), "clip_grad_norm_"),
    (lambda model, opt: nn.init.zeros_(model[0].bias), "nn.init"),
    (lambda model, opt: model.load_state_dict(model.state_dict()), "load_state_dict"),
])
def test_side_effects_on_parameters_inside_the_traced_function_are_refused(effect, match):
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(cr.ones(2, 12)), np.array([0, 1])).backward()

    def f(x):
        effect(model, opt)
        return model(x).sum()

    with pytest.raises(CompileError, match=match):
        cr.compile(f)(cr.ones(2, 12))


def test_dropout_and_random_draws_replay_the_eager_stream():
    """A replay draws fresh numbers, in the eager order: with one seed, the same run."""
    def run(compiled):
        cr.manual_seed(3)
        model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 5))

        def loss(x, y):
            return F.cross_entropy(model(x) + 0.01 * cr.randn(5), y)

        loss_fn = cr.compile(loss) if compiled else loss  # check=True: the eager check draws
        return _train(model, loss_fn, _batches(5)), loss_fn  # the numbers the replay drew

    eager, _ = run(False)
    compiled, step = run(True)
    _assert_same_runs(eager, compiled)
    assert (step.traces, step.replays) == (1, 4)
    x = cr.ones(64)
    f = cr.compile(lambda v: F.dropout(v, 0.5, True).sum())
    assert len({f(x).item() for _ in range(6)}) > 1  # a new mask at every call


def test_a_non_leaf_argument_continues_the_callers_graph():
    f = cr.compile(lambda y, *, scale=1.0: (cr.tanh(y) * y * scale).sum())
    for _ in range(3):
        x = cr.tensor([0.5, -1.0], requires_grad=True)
        f(x * 2, scale=3.0).backward()
        expected = cr.tensor([0.5, -1.0], requires_grad=True)
        (cr.tanh(expected * 2) * (expected * 2) * 3.0).sum().backward()
        assert x.grad.data.tobytes() == expected.grad.data.tobytes()
    assert (f.traces, f.replays) == (1, 2)


def test_the_inspection_tools_see_a_compiled_call_as_one_node_with_its_gradients():
    model = _mlp()
    f = cr.compile(lambda x, y: F.cross_entropy(model(x), y))
    x, y = cr.ones(2, 12), np.array([0, 1])
    f(x, y)
    loss = f(x, y)
    trace = cr.inspect.trace(loss)  # before backward: the tools run the traced backward
    text = str(cr.explain(loss, model[0].weight))
    assert "cr.compile(" in trace.nodes[0].op and "the traced backward pass" in text
    loss.backward()
    seen = sorted(tn.grad.tobytes() for tn in trace.nodes if tn.kind == "parameter")
    assert seen == sorted(p.grad.data.tobytes() for p in model.parameters())
    f(cr.ones(2, 12, requires_grad=True), y)  # traced for an input that requires grad
    with pytest.raises(CompileError, match="call its .fn, the function uncompiled"):
        cr.grad(lambda v: cr.grad(lambda u: f(u, y))(v).sum())(cr.ones(2, 12))


# --- a whole training step: zero_grad, forward, backward and the optimizer step, compiled -------
_OPTIMIZERS = {
    "sgd-momentum": lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda params: optim.Adam(params, lr=0.01),
    "rmsprop": lambda params: optim.RMSprop(params, lr=0.01),
}


def _training_step(model, opt, where_zero="start"):
    def step(x, y):
        if where_zero == "start":
            opt.zero_grad()
        elif where_zero == "model":
            model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if where_zero == "end":
            opt.zero_grad()
        return loss

    return step


def _run_steps(step, model, opt, batches):
    """Losses, parameters, gradients and optimizer state after each step, as bytes."""
    record = []
    for x, y in batches:
        loss = step(x, y)
        params = list(model.parameters())
        record.append((loss.data.tobytes(),
                       [p.data.tobytes() for p in params],
                       [None if p.grad is None else p.grad.data.tobytes() for p in params],
                       [{k: np.asarray(v).tobytes() for k, v in opt.state.get(p, {}).items()}
                        for p in params]))
    return record


@pytest.mark.parametrize("where_zero", ["start", "model", "end", "never"])
@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
def test_a_compiled_training_step_is_bit_identical_to_the_eager_one(name, where_zero):
    batches = _batches(6)
    runs = []
    for compiled in (False, True):
        model = _mlp()
        opt = _OPTIMIZERS[name](model.parameters())
        step = _training_step(model, opt, where_zero)
        if compiled:
            step = cr.compile(step)
        runs.append(_run_steps(step, model, opt, batches))
    assert runs[0] == runs[1]
    assert (step.traces, step.replays) == (1, 5)  # the first replay was checked against eager


def _clipping_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) * 50  # large gradients: the clip scales them
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        return loss

    return step


def test_a_compiled_step_clips_the_gradients_as_the_eager_one():
    runs = []
    for compiled in (False, True):
        model = _mlp()
        opt = optim.Adam(model.parameters(), lr=0.01)
        step = _clipping_step(model, opt)
        step = cr.compile(step) if compiled else step
        runs.append(_run_steps(step, model, opt, _batches(4)))
    assert runs[0] == runs[1] and step.replays == 3
    norm = np.sqrt(sum(float((p.grad.data.astype(np.float64) ** 2).sum())
                       for p in model.parameters()))
    assert norm == pytest.approx(0.5, rel=1e-4)  # the replayed steps clipped


def test_a_compiled_step_sees_a_new_learning_rate_and_runs_the_leaf_hooks():
    runs, seen = [], []
    for compiled in (False, True):
        model = _mlp()
        opt = optim.SGD(model.parameters(), lr=0.1)
        scheduler = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        model[0].bias.register_hook(lambda g, c=compiled: seen.append(c) or g * 2)
        step = _training_step(model, opt)
        step = cr.compile(step) if compiled else step
        record = []
        for x, y in _batches(5):
            record.append(_run_steps(step, model, opt, [(x, y)]))
            scheduler.step()
        runs.append(record)
    assert runs[0] == runs[1]
    assert seen.count(False) == 5 and seen.count(True) == 6  # 5 steps, and the eager check


def _scheduled_step(model, opt, scheduler):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        scheduler.step()  # per step (a warm-up, a cosine per batch): replayed, not only traced
        return loss

    return step


def test_a_learning_rate_scheduler_stepped_inside_a_compiled_step_steps_at_every_call():
    runs, lrs = [], []
    for compiled in (False, True):
        model = _mlp()
        opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        scheduler = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        step = _scheduled_step(model, opt, scheduler)
        step = cr.compile(step) if compiled else step
        runs.append(_run_steps(step, model, opt, _batches(6)))
        lrs.append((scheduler.last_epoch, opt.param_groups[0]["lr"]))
    assert runs[0] == runs[1] and lrs[0] == lrs[1] == (6, 0.2 * 0.5 ** 3)
    stepping = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loss_fn = cr.compile(lambda x: stepping.step() or (x * 2).sum())  # no backward: no step
    for _ in range(4):  # a trace, the checked replay (its eager check undone), two replays
        loss_fn(cr.ones(2))
    assert stepping.last_epoch == 4 and loss_fn.replays == 3
    plateau = optim.lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(CompileError, match="ReduceLROnPlateau.step"):
        cr.compile(lambda x: plateau.step(1.0) or x * 2)(cr.ones(2))


def test_a_compiled_step_may_return_nothing():
    runs = []
    for compiled in (False, True):
        model = _mlp()
        opt = optim.Adam(model.parameters(), lr=0.01)
        inner = _training_step(model, opt)

        def step(x, y, inner=inner):
            inner(x, y)  # the loss is not returned

        step = cr.compile(step) if compiled else step
        for x, y in _batches(4):
            assert step(x, y) is None
        runs.append([p.data.tobytes() for p in model.parameters()])
    assert runs[0] == runs[1] and step.replays == 3
    with pytest.raises(CompileError, match="must return a tensor"):  # nothing, and no step
        cr.compile(lambda x: None)(cr.ones(2))


def test_the_loss_a_compiled_step_returns_reads_out_and_refuses_a_second_backward():
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    step = cr.compile(_training_step(model, opt))
    for x, y in _batches(3):
        loss = step(x, y)
        assert isinstance(loss.item(), float) and loss.requires_grad
    assert step.replays == 2
    with pytest.raises(RuntimeError, match=r"whole training step, whose loss.backward\(\) "
                                           r"already ran inside the call"):
        loss.backward()


def test_the_check_of_a_compiled_step_runs_it_once_from_the_same_state():
    """A step whose replay would differ (a Python number read when traced) fails its check,
    which leaves the model as one eager step per call would."""
    scale = [1.0]

    def runs(compiled):
        model = _mlp()
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y) * scale[0]
            loss.backward()
            opt.step()
            return loss

        step = cr.compile(step) if compiled else step
        scale[0] = 1.0
        for i, (x, y) in enumerate(_batches(2)):
            scale[0] = 1.0 + i
            if compiled and i == 1:
                with pytest.raises(CompileError, match="gave output 0 unlike running it"):
                    step(x, y)
            else:
                step(x, y)
        return [p.data.tobytes() for p in model.parameters()], opt

    eager, eager_opt = runs(False)
    compiled, compiled_opt = runs(True)
    assert eager == compiled  # the failed replay was undone; its eager check was the step
    for p, q in zip(eager_opt.param_groups[0]["params"], compiled_opt.param_groups[0]["params"]):
        assert eager_opt.state[p]["momentum_buffer"].tobytes() == \
            compiled_opt.state[q]["momentum_buffer"].tobytes()


class _LoggingSGD(optim.SGD):
    def step(self, closure=None):
        return super().step(closure)


@pytest.mark.parametrize("body,match", [
    ("twice", "a backward pass a second time"),
    ("retain", "retain_graph=True"),
    ("create_graph", "create_graph=True"),
    ("after", r"runs after loss.backward\(\)"),
    ("closure", "an optimizer step with a closure"),
    ("overridden", r"_LoggingSGD.step \(overridden"),
])
def test_what_a_compiled_training_step_cannot_repeat_is_refused_by_name(body, match):
    model = _mlp()
    opt = (_LoggingSGD if body == "overridden" else optim.SGD)(model.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward(retain_graph=body == "retain",
                      create_graph=body == "create_graph")
        if body == "twice":
            loss.backward()
        if body == "after":
            return loss * 2
        opt.step(closure=(lambda: loss) if body == "closure" else None)
        return loss

    x, y = _batches(1)[0]
    with pytest.raises(CompileError, match=match):
        cr.compile(step)(x, y)


def test_a_compiled_step_with_dropout_and_a_given_seed_gradient():
    def run(compiled):
        cr.manual_seed(5)
        model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.4), nn.Linear(16, 5))
        opt = optim.SGD(model.parameters(), lr=0.1)

        def step(x, y):
            opt.zero_grad()
            losses = F.cross_entropy(model(x), y, reduction="none")
            losses.backward(gradient=cr.ones(6) / 6)  # computed in the call: replayed
            opt.step()
            return losses

        step = cr.compile(step) if compiled else step
        return _run_steps(step, model, opt, _batches(4)), step

    (eager, _), (compiled, step) = run(False), run(True)
    assert eager == compiled and step.replays == 3

    def seeded_by_argument(x, g):
        loss = x * 2
        loss.backward(gradient=g)
        return loss

    compiled = cr.compile(seeded_by_argument)
    for i in range(3):  # the seed is the argument of each call, not the traced one
        x = cr.tensor(np.ones(3), requires_grad=True)
        compiled(x, np.full(3, float(i)))
        assert x.grad.tolist() == [2.0 * i] * 3
    assert compiled.replays == 2


def test_a_compiled_step_refuses_to_walk_into_a_graph_made_outside_it():
    w = cr.tensor(np.ones(3), requires_grad=True)
    h = w * 2  # not a leaf: its gradient would go on to w, outside the traced call

    def step(v):
        loss = (v * v).sum()
        loss.backward()
        return loss

    with pytest.raises(CompileError, match="reaches a tensor made by MultiplyBackward"):
        cr.compile(step)(h)


def test_a_detached_parameter_is_read_afresh_at_every_replay():
    w = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    fn = lambda x: (x * w.detach()).sum() + (x * w).sum()  # noqa: E731  (detached first)
    compiled = cr.compile(fn)
    x = cr.tensor(np.ones(3))
    for scale in (1.0, 1.0, 2.0, 3.0):
        w.data = np.array([1.0, 2.0, 3.0]) * scale  # a new array, as a hand-written update makes
        w.grad = None
        got = compiled(x)
        got.backward()
        assert got.item() == fn(x).item() == 12.0 * scale and w.grad.tolist() == [1.0] * 3
    assert compiled.replays == 3
    only = cr.compile(lambda x: (x * w.detach()).sum())  # was replayed stale: the old array
    for scale in (1.0, 1.0, 5.0):
        w.data = np.array([1.0, 2.0, 3.0]) * scale
        assert only(x).item() == 6.0 * scale
