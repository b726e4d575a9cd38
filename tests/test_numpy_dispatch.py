"""NumPy's own functions called on Tensors (chainrule.numpy_dispatch).

A NumPy call with a Tensor runs chainrule's function of that name (values and gradients equal
to calling it directly, and to PyTorch for a NumPy-written network), runs on the values when
the result has no gradient by nature, and otherwise raises TypeError naming the function: never
a silent conversion that would drop the gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chainrule as cr
from gradtools import assert_close, to_torch

RNG = np.random.default_rng(0)


def _leaf(*shape, positive=False):
    a = RNG.standard_normal(shape)
    return cr.tensor(np.abs(a) + 0.5 if positive else a, requires_grad=True)


def _grads_of(fn, leaves):
    for t in leaves:
        t.grad = None
    out = fn(*leaves)
    (out * cr.tensor(np.linspace(-1, 1, out.size).reshape(out.shape))).sum().backward()
    return out, [t.grad for t in leaves]


# (NumPy call, chainrule's own call, input shapes, positive inputs)
SAME_AS_OURS = [
    ("exp", lambda x: np.exp(x), lambda x: cr.exp(x), [(3, 2)], False),
    ("log", lambda x: np.log(x), lambda x: cr.log(x), [(3,)], True),
    ("sqrt", lambda x: np.sqrt(x), lambda x: cr.sqrt(x), [(3,)], True),
    ("tanh", lambda x: np.tanh(x), lambda x: cr.tanh(x), [(4,)], False),
    ("absolute", lambda x: np.absolute(x), lambda x: cr.abs(x), [(4,)], False),
    ("arcsinh", lambda x: np.arcsinh(x), lambda x: cr.arcsinh(x), [(4,)], False),
    ("add array left", lambda x: np.add(np.ones((2, 3)), x), lambda x: 1 + x, [(2, 3)], False),
    ("ndarray * Tensor", lambda x: np.arange(3.0) * x, lambda x: x * cr.arange(3.0), [(2, 3)],
     False),
    ("power", lambda x, y: np.power(x, y), lambda x, y: x ** y, [(3,), (3,)], True),
    ("maximum", lambda x, y: np.maximum(x, y), lambda x, y: cr.maximum(x, y), [(2, 3), (3,)],
     False),
    ("matmul", lambda x, y: np.matmul(x, y), lambda x, y: x @ y, [(2, 3), (3, 4)], False),
    ("sum axis", lambda x: np.sum(x, axis=1, keepdims=True), lambda x: x.sum(1, True),
     [(2, 3)], False),
    ("sum all", lambda x: np.sum(x), lambda x: x.sum(), [(2, 3)], False),
    ("mean", lambda x: np.mean(x, 0), lambda x: x.mean(0), [(2, 3)], False),
    ("max", lambda x: np.max(x, axis=0), lambda x: x.max(0), [(2, 3)], False),
    ("amax", lambda x: np.amax(x, axis=0), lambda x: x.max(0), [(2, 3)], False),
    ("var ddof", lambda x: np.var(x, axis=1, ddof=1), lambda x: x.var(1, ddof=1), [(2, 3)],
     False),
    ("reshape", lambda x: np.reshape(x, (3, 2)), lambda x: x.reshape(3, 2), [(2, 3)], False),
    ("transpose", lambda x: np.transpose(x), lambda x: x.T, [(2, 3)], False),
    ("concatenate", lambda x, y: np.concatenate([x, y], axis=1),
     lambda x, y: cr.concatenate([x, y], axis=1), [(2, 3), (2, 1)], False),
    ("stack", lambda x, y: np.stack((x, y)), lambda x, y: cr.stack([x, y]), [(3,), (3,)],
     False),
    ("where", lambda x, y: np.where(x > 0, x, y), lambda x, y: cr.where(x > 0, x, y),
     [(4,), (4,)], False),
    ("clip a_min", lambda x: np.clip(x, a_min=-0.5, a_max=0.5), lambda x: x.clip(-0.5, 0.5),
     [(5,)], False),
    ("expand_dims", lambda x: np.expand_dims(x, 0), lambda x: x.unsqueeze(0), [(3,)], False),
    ("add.reduce", lambda x: np.add.reduce(x), lambda x: x.sum(0), [(2, 3)], False),
    ("maximum.reduce", lambda x: np.maximum.reduce(x, axis=1), lambda x: x.max(1), [(2, 3)],
     False),
    ("multiply.outer", lambda x, y: np.multiply.outer(x, y),
     lambda x, y: x.reshape(3, 1) * y, [(3,), (2,)], False),
    ("linalg.det", lambda x: np.linalg.det(x), lambda x: cr.linalg.det(x), [(3, 3)], False),
    ("linalg.norm", lambda x: np.linalg.norm(x), lambda x: cr.linalg.norm(x), [(3, 2)], False),
]


@pytest.mark.parametrize("case", SAME_AS_OURS, ids=[c[0] for c in SAME_AS_OURS])
def test_numpy_call_equals_chainrules_own_call(case):
    _, theirs, ours, shapes, positive = case
    leaves = [_leaf(*s, positive=positive) for s in shapes]
    out_np, grads_np = _grads_of(theirs, leaves)
    out_cr, grads_cr = _grads_of(ours, leaves)
    assert isinstance(out_np, cr.Tensor) and out_np.requires_grad
    assert out_np.dtype == out_cr.dtype
    assert_close(out_np, out_cr, rtol=1e-12)
    for a, b in zip(grads_np, grads_cr):
        assert_close(a, b, rtol=1e-12)


def test_a_network_written_in_numpy_trains_through_chainrule_as_in_torch():
    def loss(np_, x, w1, w2, labels):
        h = np_.tanh(x @ w1)
        z = h @ w2
        z = z - np_.max(z, axis=1, keepdims=True)
        logp = z - np_.log(np_.sum(np_.exp(z), axis=1, keepdims=True))
        return -np_.mean(np_.sum(logp * labels, axis=1))

    x = RNG.standard_normal((5, 4))
    w1, w2 = RNG.standard_normal((4, 6)), RNG.standard_normal((6, 3))
    labels = np.eye(3)[[0, 2, 1, 1, 0]]
    ws = [cr.tensor(w1, requires_grad=True), cr.tensor(w2, requires_grad=True)]
    ours = loss(np, cr.tensor(x), *ws, labels)
    ours.backward()
    ts = [to_torch(w1, requires_grad=True), to_torch(w2, requires_grad=True)]

    class TorchAsNumpy:  # the same source with torch's functions
        tanh, exp, log = torch.tanh, torch.exp, torch.log

        @staticmethod
        def max(z, axis, keepdims):
            return z.amax(dim=axis, keepdim=keepdims)

        @staticmethod
        def sum(z, axis, keepdims=False):
            return z.sum(dim=axis, keepdim=keepdims)

        @staticmethod
        def mean(z):
            return z.mean()

    theirs = loss(TorchAsNumpy, to_torch(x), *ts, to_torch(labels))
    theirs.backward()
    assert_close(ours, theirs, rtol=1e-12)
    for w, t in zip(ws, ts):
        assert_close(w.grad, t.grad, rtol=1e-10)


def test_float32_stays_float32_through_numpy_calls():
    x = cr.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    out = np.sum(np.exp(x) * 2.0, axis=0)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("call, expected", [
    (lambda t: np.shape(t), (2, 3)),
    (lambda t: np.ndim(t), 2),
    (lambda t: np.size(t), 6),
    (lambda t: np.allclose(t, np.arange(6.0).reshape(2, 3)), True),
    (lambda t: np.nonzero(t)[1].tolist(), [1, 2, 0, 1, 2]),
    (lambda t: np.where(t > 2)[1].tolist(), [0, 1, 2]),
    (lambda t: np.argsort(t, axis=None).tolist(), [0, 1, 2, 3, 4, 5]),
    (lambda t: np.count_nonzero(t), 5),
], ids=["shape", "ndim", "size", "allclose", "nonzero", "where-one-argument", "argsort",
        "count_nonzero"])
def test_functions_without_gradients_run_on_the_values(call, expected):
    t = cr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    out = call(t)
    assert not isinstance(out, cr.Tensor)
    assert out == expected


def test_boolean_operators_with_an_array_on_the_left_stay_tensors():
    x = cr.tensor([1.0, -1.0, 2.0])
    for out in (np.array([True, False, True]) & (x > 0), np.array([False, True, False]) | (x > 1),
                np.logical_not(x > 0)):
        assert isinstance(out, cr.Tensor) and out.dtype == np.bool_


@pytest.mark.parametrize("call, words", [
    (lambda t: np.fft.fft(t), ["np.fft.fft", "no differentiable version", "t.numpy()"]),
    (lambda t: np.cov(t), ["np.cov", "no differentiable version"]),
    (lambda t: np.sum(t, dtype=np.float64), ["np.sum", "dtype="]),
    (lambda t: np.sum(t, 0, None), ["np.sum", "argument 3", "dtype"]),
    (lambda t: np.exp(t, out=np.zeros(3)), ["np.exp", "out="]),
    (lambda t: np.exp(t, where=np.ones(3, bool)), ["np.exp", "where="]),
    (lambda t: np.add.at(t, [0], 1.0), ["np.add.at", "'at'"]),
    (lambda t: np.subtract.reduce(t), ["np.subtract.reduce"]),
], ids=["fft", "cov", "sum-dtype", "sum-positional-dtype", "out", "where", "ufunc-at",
        "subtract-reduce"])
def test_uncovered_calls_raise_naming_the_function(call, words):
    t = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(TypeError) as err:
        call(t)
    for w in words:
        assert w in str(err.value)


def test_in_place_numpy_update_with_a_tensor_is_refused():
    a = np.zeros(3)
    with pytest.raises(TypeError, match="out="):
        a += cr.tensor([1.0, 2.0, 3.0], requires_grad=True)


def test_explicit_conversion_still_gives_an_array():
    t = cr.tensor([1.0, 2.0], requires_grad=True)
    assert type(np.asarray(t)) is np.ndarray
    assert type(np.exp(t.numpy())) is np.ndarray
