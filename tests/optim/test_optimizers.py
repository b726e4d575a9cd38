"""Optimizers against torch.optim: same start, same loss, same trajectory."""

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import optim

STEPS = 20


def _problem(dtype):
    rng = np.random.default_rng(1)
    return {
        "w": rng.standard_normal((4, 3)).astype(dtype),
        "b": rng.standard_normal(3).astype(dtype),
        "x": rng.standard_normal((8, 4)).astype(dtype),
        "y": rng.standard_normal((8, 3)).astype(dtype),
    }


def _loss(w, b, x, y, lib):
    h = lib.tanh(x @ w + b)
    return ((h - y) ** 2).mean() + 0.1 * (w**2).sum()


def _run_chainrule(cls, kwargs, dtype, steps=STEPS, sparse_b=False):
    d = _problem(dtype)
    w = cr.tensor(d["w"], requires_grad=True)
    b = cr.tensor(d["b"], requires_grad=True)
    x, y = cr.tensor(d["x"]), cr.tensor(d["y"])
    opt = cls([w, b], **kwargs)
    for i in range(steps):
        opt.zero_grad()
        _loss(w, b, x, y, cr).backward()
        if sparse_b and i % 3 == 0:
            b.grad = None  # a parameter without a gradient this step is skipped
        opt.step()
    return w.data, b.data, opt


def _run_torch(cls, kwargs, dtype, steps=STEPS, sparse_b=False):
    d = _problem(dtype)
    w = torch.tensor(d["w"], requires_grad=True)
    b = torch.tensor(d["b"], requires_grad=True)
    x, y = torch.tensor(d["x"]), torch.tensor(d["y"])
    opt = cls([w, b], **kwargs)
    for i in range(steps):
        opt.zero_grad()
        _loss(w, b, x, y, torch).backward()
        if sparse_b and i % 3 == 0:
            b.grad = None
        opt.step()
    return w.detach().numpy(), b.detach().numpy()


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.8, weight_decay=0.05, nesterov=True)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), eps=1e-3, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, alpha=0.6, eps=1e-4, centered=True, momentum=0.5,
                     weight_decay=0.01)),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_trajectory_matches_torch_float64(name, kwargs):
    w, b, _ = _run_chainrule(getattr(optim, name), kwargs, np.float64)
    tw, tb = _run_torch(getattr(torch.optim, name), kwargs, np.float64)
    assert w.dtype == np.float64 and b.dtype == np.float64
    np.testing.assert_allclose(w, tw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, tb, rtol=1e-10, atol=1e-12)
    assert not np.allclose(w, _problem(np.float64)["w"])  # the optimizer did move the weights


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_trajectory_matches_torch_float32(name, kwargs):
    """float32 agrees with torch's float32 to ~1e-6 relative, plus twice torch's own
    float32-vs-float64 distance: each library rounds intermediate steps its own way (torch fuses
    some multiply-adds), and some updates (centered RMSprop divides by a difference of nearly
    equal numbers) amplify that rounding."""
    ours = _run_chainrule(getattr(optim, name), kwargs, np.float32)[:2]
    theirs = _run_torch(getattr(torch.optim, name), kwargs, np.float32)
    exact = _run_torch(getattr(torch.optim, name), kwargs, np.float64)
    for mine, ref, ref64 in zip(ours, theirs, exact):
        assert mine.dtype == np.float32
        allowed = 2e-6 * np.abs(ref) + 1e-7 + 2 * np.abs(ref - ref64)
        assert np.all(np.abs(mine - ref) <= allowed), np.max(np.abs(mine - ref) - allowed)


@pytest.mark.parametrize("name,kwargs", [CASES[1], CASES[8], CASES[16]])
def test_params_without_grad_are_skipped_like_torch(name, kwargs):
    w, b, _ = _run_chainrule(getattr(optim, name), kwargs, np.float64, sparse_b=True)
    tw, tb = _run_torch(getattr(torch.optim, name), kwargs, np.float64, sparse_b=True)
    np.testing.assert_allclose(w, tw, rtol=1e-10)
    np.testing.assert_allclose(b, tb, rtol=1e-10)


@pytest.mark.parametrize("name,kwargs", CASES[::3], ids=[n for n, _ in CASES[::3]])
def test_float32_state_stays_float32(name, kwargs):
    _, _, opt = _run_chainrule(getattr(optim, name), kwargs, np.float32, steps=3)
    for group in opt.param_groups:
        for p in group["params"]:
            assert p.data.dtype == np.float32
            for value in opt.state.get(p, {}).values():
                if isinstance(value, np.ndarray):
                    assert value.dtype == np.float32


def test_param_groups_with_own_options_match_torch():
    d = _problem(np.float64)
    w = cr.tensor(d["w"], requires_grad=True)
    b = cr.tensor(d["b"], requires_grad=True)
    tw = torch.tensor(d["w"], requires_grad=True)
    tb = torch.tensor(d["b"], requires_grad=True)
    opt = optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.5, "momentum": 0.5}], lr=0.1)
    topt = torch.optim.SGD([{"params": [tw]}, {"params": [tb], "lr": 0.5, "momentum": 0.5}],
                           lr=0.1)
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[0]["momentum"] == 0
    for _ in range(5):
        opt.zero_grad()
        topt.zero_grad()
        _loss(w, b, cr.tensor(d["x"]), cr.tensor(d["y"]), cr).backward()
        _loss(tw, tb, torch.tensor(d["x"]), torch.tensor(d["y"]), torch).backward()
        opt.step()
        topt.step()
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(b.data, tb.detach().numpy(), rtol=1e-10)


def test_add_param_group():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    b = cr.tensor([3.0], requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [w]})


def test_step_updates_in_place_and_bumps_version():
    w = cr.tensor([1.0, -2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.5, momentum=0.9)
    array, version = w.data, w._version[0]
    (w * w).sum().backward()
    opt.step()
    assert w.data is array
    assert w._version[0] == version + 1
    np.testing.assert_allclose(w.data, [0.0, 0.0])


def test_stale_graph_is_detected_after_step():
    w = cr.tensor([1.0, -2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_zero_grad():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    (w * 3).sum().backward()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad.data, [0.0, 0.0])
    opt.zero_grad()
    assert w.grad is None


def test_step_with_closure_returns_loss():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    np.testing.assert_allclose(w.data, [0.8, 1.6], rtol=1e-6)


@pytest.mark.parametrize("make,message", [
    (lambda w: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda w: optim.SGD([w * 2], lr=0.1), "not a leaf"),
    (lambda w: optim.SGD(w, lr=0.1), "single Tensor"),
    (lambda w: optim.SGD([w, w], lr=0.1), "more than one"),
    (lambda w: optim.SGD([w], lr=-1.0), "SGD: invalid lr -1.0"),
    (lambda w: optim.SGD([w], lr=0.1, momentum=-0.5), "SGD: invalid momentum"),
    (lambda w: optim.SGD([w], lr=0.1, nesterov=True), "nesterov"),
    (lambda w: optim.Adam([w], betas=(1.0, 0.999)), r"Adam: invalid beta1"),
    (lambda w: optim.Adam([w], betas=(0.9, -0.1)), r"Adam: invalid beta2"),
    (lambda w: optim.Adam([w], betas=0.9), r"Adam: invalid betas"),
    (lambda w: optim.AdamW([w], eps=-1e-8), r"AdamW: invalid eps"),
    (lambda w: optim.Adam([w], lr=float("nan")), r"Adam: invalid lr"),
    (lambda w: optim.RMSprop([w], alpha=1.5), r"RMSprop: invalid alpha"),
    (lambda w: optim.RMSprop([w], weight_decay=-1), r"RMSprop: invalid weight_decay"),
    (lambda w: optim.SGD([{"params": [w], "lr": 0.1, "momentun": 0.9}]), "unknown option"),
])
def test_bad_input_is_a_clear_error(make, message):
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises((ValueError, TypeError), match=message):
        make(w)


@pytest.mark.parametrize("name,kwargs", [CASES[2], CASES[9], CASES[11], CASES[16]])
def test_state_dict_round_trip_is_exact(name, kwargs):
    cls = getattr(optim, name)
    d = _problem(np.float32)
    x, y = cr.tensor(d["x"]), cr.tensor(d["y"])

    def train(w, b, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            _loss(w, b, x, y, cr).backward()
            opt.step()

    w = cr.tensor(d["w"], requires_grad=True)
    b = cr.tensor(d["b"], requires_grad=True)
    opt = cls([w, b], **kwargs)
    train(w, b, opt, 5)
    saved = opt.state_dict()
    saved_w, saved_b = w.data.copy(), b.data.copy()
    train(w, b, opt, 5)

    w2 = cr.tensor(saved_w, requires_grad=True)
    b2 = cr.tensor(saved_b, requires_grad=True)
    opt2 = cls([w2, b2], lr=123.0)  # hyper-parameters come back from the state dict
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    train(w2, b2, opt2, 5)
    assert np.array_equal(w.data, w2.data) and np.array_equal(b.data, b2.data)


def test_state_dict_is_a_copy_and_load_checks_shapes():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    (w * w).sum().backward()
    opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 1
    before = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)
    other = optim.Adam([cr.tensor([1.0, 2.0, 3.0], requires_grad=True)])
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(sd)
    two = optim.Adam([{"params": [cr.tensor([1.0], requires_grad=True)]},
                      {"params": [cr.tensor([1.0], requires_grad=True)]}])
    with pytest.raises(ValueError, match="parameter groups"):
        two.load_state_dict(sd)
