"""The seed examples, worked by hand and checked against the engine."""

from __future__ import annotations

import math

import numpy as np

import chainrule as cr
from gradtools import assert_close


def _s(z):
    return 1 / (1 + math.exp(-z))


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
