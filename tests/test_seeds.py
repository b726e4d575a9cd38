"""The seed examples, worked by hand and checked against the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as crF
from gradtools import assert_close


def _s(z):
    return 1 / (1 + math.exp(-z))


_sigmoid = _s


def test_seed_003_two_unit_sigmoid_network_hand_chain_rule():
    w = [0.5, -0.3, 0.8, 0.1]
    x1 = x2 = 1.0
    y = 2.0
    ws = [cr.tensor(np.float64(v), requires_grad=True) for v in w]

    def loss_of(ws):
        h = cr.sigmoid(ws[0] * x1 + ws[1] * x2)
        f = cr.sigmoid(ws[2] * h + ws[3])
        return (f - y) ** 2

    loss = loss_of(ws)
    loss.backward()
    # by hand
    z1 = w[0] * x1 + w[1] * x2
    h = _s(z1)
    z2 = w[2] * h + w[3]
    f = _s(z2)
    dl_df = 2 * (f - y)
    dl_dz2 = dl_df * f * (1 - f)
    dl_dz1 = dl_dz2 * w[2] * h * (1 - h)
    hand = [dl_dz1 * x1, dl_dz1 * x2, dl_dz2 * h, dl_dz2]
    assert math.isclose(float(loss.data), (f - y) ** 2, rel_tol=1e-12)
    for t, g in zip(ws, hand):
        assert math.isclose(float(t.grad.data), g, rel_tol=1e-10)
    with cr.no_grad():
        stepped = [cr.tensor(t.data - 0.5 * t.grad.data) for t in ws]
        assert float(loss_of(stepped).data) < float(loss.data)


def test_seed_004_single_neuron_chain():
    o_prev, t = 0.6, 0.25
    w = cr.tensor(np.float64(0.7), requires_grad=True)
    b = cr.tensor(np.float64(-0.2), requires_grad=True)
    z = w * o_prev + b
    o = cr.sigmoid(z)
    c = (o - t) ** 2
    c.backward()
    zv = 0.7 * o_prev - 0.2
    fp = _s(zv) * (1 - _s(zv))
    assert math.isclose(float(w.grad.data), o_prev * fp * 2 * (_s(zv) - t), rel_tol=1e-12)
    assert math.isclose(float(b.grad.data), fp * 2 * (_s(zv) - t), rel_tol=1e-12)


def test_seed_002_cross_entropy_and_softmax_jacobian():
    assert round(-math.log(0.8), 3) == 0.223
    q_true = cr.tensor(np.array([0.8, 0.15, 0.05]))
    loss = -cr.log(q_true[0])
    assert math.isclose(float(loss.data), 0.2231435513, rel_tol=1e-9)
    z = cr.tensor(np.array([1.0, -0.5, 2.0, 0.3]))
    q = cr.softmax(z).data
    assert_close(cr.jacobian(cr.softmax)(z), np.diag(q) - np.outer(q, q), rtol=1e-10,
                 atol=1e-12)


def test_seed_001_vjp_is_v_times_jacobian():
    def f(x):
        return cr.tanh(cr.tensor(np.array([[1.0, 2.0, 0.5], [-1.0, 0.3, 2.0]])) @ x) * x[:2]

    x = cr.tensor(np.array([0.2, -0.4, 0.9]))
    v = np.array([1.5, -2.0])
    out, vjp_fn = cr.vjp(f, x)
    (vj,) = vjp_fn(v)
    j = cr.jacobian(f)(x).data
    assert j.shape == (2, 3)
    assert_close(vj, v @ j, rtol=1e-12, atol=1e-12)
    assert_close(out, f(x))


# ----------------------------------------------------------------------------------------------
# Seed 003: f(x; w) = A(w3 * A(w1 x1 + w2 x2) + w4), A the sigmoid, x = (1, 1), y = 2
# ----------------------------------------------------------------------------------------------
X1, X2, Y = 1.0, 1.0, 2.0


def _seed003_loss(w):
    z = cr.sigmoid(w[0] * X1 + w[1] * X2)  # f1: the hidden unit
    f = cr.sigmoid(w[2] * z + w[3])  # f2: the output unit
    return (f - Y) ** 2


def _seed003_hand_gradient(w):
    """The chain rule written out by hand, back to front, as the seed explains it."""
    w1, w2, w3, w4 = w
    z = _sigmoid(w1 * X1 + w2 * X2)
    f = _sigmoid(w3 * z + w4)
    d_f = 2 * (f - Y)  # dL/df
    d_out = d_f * f * (1 - f)  # through the output sigmoid: A' = A (1 - A)
    d_z = d_out * w3  # the hidden unit's output reaches the loss through w3
    d_hidden = d_z * z * (1 - z)
    return np.array([d_hidden * X1, d_hidden * X2, d_out * z, d_out])


WEIGHTS = [[0.1, -0.2, 0.3, 0.05], [1.0, 1.0, 1.0, 1.0], [-0.5, 2.0, -1.0, 0.0]]


@pytest.mark.parametrize("w", WEIGHTS)
def test_seed003_two_unit_network_gradient_matches_hand_derivation(w):
    w_np = np.array(w, dtype=np.float64)
    params = cr.tensor(w_np, requires_grad=True)
    loss = _seed003_loss(params)
    loss.backward()
    np.testing.assert_allclose(params.grad.data, _seed003_hand_gradient(w_np), rtol=1e-12)
    # y = 2 is out of the sigmoid's reach: every weight wants the output up
    assert params.grad.data[3] < 0


def test_seed003_one_gradient_descent_step_decreases_the_loss():
    w = cr.tensor(np.array([0.1, -0.2, 0.3, 0.05]), requires_grad=True)
    before = _seed003_loss(w)
    before.backward()
    with cr.no_grad():
        w -= 0.5 * w.grad
    after = _seed003_loss(w)
    assert after.item() < before.item()
    # the seed's reasoning: raise the bias w4 and the weight w3 (z > 0), raise w1, w2 (x > 0)
    # since w3 > 0 here
    assert np.all(w.data > np.array([0.1, -0.2, 0.3, 0.05]))


# ----------------------------------------------------------------------------------------------
# Seed 004: one neuron, z = w o_prev + b, o = f(z), C = (o - t)^2
# (the seed writes f'(o^L), meaning f'(z^L))
# ----------------------------------------------------------------------------------------------
ACTIVATIONS = {
    "sigmoid": (cr.sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "tanh": (cr.tanh, lambda z: 1 - math.tanh(z) ** 2),
    "softplus": (cr.softplus, _sigmoid),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("o_prev,w0,b0,t", [(0.7, 0.4, -0.1, 1.0), (-1.2, 2.0, 0.5, -0.3)])
def test_seed004_single_neuron_chain(name, o_prev, w0, b0, t):
    f, f_prime = ACTIVATIONS[name]
    w = cr.tensor(np.float64(w0), requires_grad=True)
    b = cr.tensor(np.float64(b0), requires_grad=True)
    z = w * o_prev + b
    o = f(z)
    cost = (o - t) ** 2
    cost.backward()
    z_v = w0 * o_prev + b0
    o_v = o.item()
    np.testing.assert_allclose(w.grad.item(), o_prev * f_prime(z_v) * 2 * (o_v - t), rtol=1e-12)
    np.testing.assert_allclose(b.grad.item(), f_prime(z_v) * 2 * (o_v - t), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Seed 002: cross-entropy -y^T log(p); y = (1, 0, 0), p = (0.8, 0.1, 0.1)
# ----------------------------------------------------------------------------------------------
def test_seed002_cross_entropy_of_a_correct_guess():
    p = cr.tensor([0.8, 0.1, 0.1])
    y = cr.tensor([1.0, 0.0, 0.0])
    loss = -(y * cr.log(p)).sum()
    assert loss.item() == pytest.approx(0.223, abs=5e-4)
    assert loss.item() == pytest.approx(-math.log(0.8), rel=1e-6)


def test_seed002_cross_entropy_of_a_wrong_guess():
    p = cr.tensor([0.8, 0.1, 0.1])
    y = cr.tensor([0.0, 1.0, 0.0])
    assert (-(y * cr.log(p)).sum()).item() == pytest.approx(2.3, abs=5e-3)


def test_seed002_cross_entropy_from_logits_and_its_gradient():
    q = np.array([0.8, 0.1, 0.1])
    logits = cr.tensor(np.log(q), requires_grad=True)  # softmax(log q) = q
    loss = crF.cross_entropy(logits, 0)
    assert loss.item() == pytest.approx(-math.log(0.8), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(logits.grad.data, q - np.array([1.0, 0.0, 0.0]), atol=1e-12)


def test_seed002_average_loss_over_a_batch_has_gradient_q_minus_y_over_n():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 3))
    labels = np.array([0, 2, 1, 1, 0])
    logits = cr.tensor(z, requires_grad=True)
    crF.cross_entropy(logits, labels).backward()
    q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(logits.grad.data, (q - np.eye(3)[labels]) / 5, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Seeds 001/002: the softmax Jacobian is diag(q) - q q^T; a reverse pass is v^T J
# ----------------------------------------------------------------------------------------------
def test_seed001_chained_jacobians_multiply():
    """The Jacobian of a composition is the product of the layers' Jacobians."""
    m = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 1.0]])
    z = np.array([0.3, -0.7])

    def inner(x):
        return cr.tensor(m) @ x

    jac_outer = cr.jacobian(cr.sigmoid)(inner(cr.tensor(z)).data).data
    jac_inner = cr.jacobian(inner)(z).data
    jac_all = cr.jacobian(lambda x: cr.sigmoid(inner(x)))(z).data
    np.testing.assert_allclose(jac_all, jac_outer @ jac_inner, atol=1e-12)
