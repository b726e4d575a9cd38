"""Learning-rate schedules against torch.optim.lr_scheduler."""

import json
import math

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import optim


def _pair(lrs=(0.1, 0.03)):
    ours = optim.SGD([{"params": [cr.tensor([1.0], requires_grad=True)], "lr": lr}
                      for lr in lrs], lr=lrs[0], momentum=0.9)
    theirs = torch.optim.SGD([{"params": [torch.ones(1, requires_grad=True)], "lr": lr}
                              for lr in lrs], lr=lrs[0], momentum=0.9)
    return ours, theirs


@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", dict(step_size=3)),
    ("StepLR", dict(step_size=2, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=7)),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=0.001)),
])
def test_same_lr_sequence_as_torch(name, kwargs):
    ours, theirs = _pair()
    sched = getattr(optim, name)(ours, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs)
    assert sched.get_last_lr() == tsched.get_last_lr()
    for _ in range(25):  # past T_max: the cosine turns back up, as torch's does
        ours.step()
        theirs.step()
        sched.step()
        tsched.step()
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12, abs=1e-15)
        assert [g["lr"] for g in ours.param_groups] == sched.get_last_lr()
    assert sched.get_last_lr() != [0.1, 0.03]


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(mode="max", factor=0.5, patience=2),
    dict(patience=1, threshold=0.1, threshold_mode="abs", cooldown=2, min_lr=[0.01, 0.02]),
    dict(mode="max", patience=0, threshold=0.05, factor=0.3, min_lr=0.005),
])
def test_reduce_on_plateau_matches_torch(kwargs):
    ours, theirs = _pair()
    sched = optim.ReduceLROnPlateau(ours, **kwargs)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs)
    metrics = np.random.default_rng(0).standard_normal(40).cumsum() * 0.1 + 1
    metrics[10:30] = metrics[10]  # a long plateau
    for m in metrics:
        sched.step(float(m))
        tsched.step(float(m))
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
    assert sched.get_last_lr() != [0.1, 0.03]  # it did reduce at some point


def test_reduce_on_plateau_accepts_a_tensor_metric():
    ours, _ = _pair()
    sched = optim.ReduceLROnPlateau(ours, patience=0)
    sched.step(cr.tensor(1.0))
    sched.step(cr.tensor(2.0))
    assert sched.get_last_lr() == pytest.approx([0.01, 0.003])


@pytest.mark.parametrize("make", [
    lambda opt: optim.StepLR(opt, step_size=2, gamma=0.5),
    lambda opt: optim.CosineAnnealingLR(opt, T_max=6, eta_min=0.01),
    lambda opt: optim.ReduceLROnPlateau(opt, patience=1, cooldown=1),
])
def test_state_dict_round_trip(make):
    ours, _ = _pair()
    sched = make(ours)
    metric = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5])

    def advance(s):
        if isinstance(s, optim.ReduceLROnPlateau):
            s.step(next(metric))
        else:
            s.step()

    for _ in range(4):
        advance(sched)
    saved = json.loads(json.dumps(sched.state_dict()))  # plain JSON-able values
    opt_saved = ours.state_dict()
    for _ in range(4):
        advance(sched)
    expected = sched.get_last_lr()

    ours2, _ = _pair()
    sched2 = make(ours2)
    ours2.load_state_dict(opt_saved)
    sched2.load_state_dict(saved)
    metric = iter([2.8, 2.9, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5])
    for _ in range(4):
        advance(sched2)
    assert sched2.get_last_lr() == expected


@pytest.mark.parametrize("make,message", [
    (lambda o: optim.StepLR(o, step_size=0), "StepLR: step_size"),
    (lambda o: optim.StepLR(o, step_size=2, gamma=-1), "StepLR: invalid gamma"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=0), "CosineAnnealingLR: T_max"),
    (lambda o: optim.ReduceLROnPlateau(o, mode="up"), "mode"),
    (lambda o: optim.ReduceLROnPlateau(o, factor=1.0), "invalid factor"),
    (lambda o: optim.ReduceLROnPlateau(o, min_lr=[0.1]), "min_lr"),
    (lambda o: optim.StepLR("sgd", step_size=1), "expected an Optimizer"),
])
def test_bad_arguments(make, message):
    ours, _ = _pair()
    with pytest.raises((ValueError, TypeError), match=message):
        make(ours)


def test_cosine_reaches_eta_min_at_t_max():
    ours, _ = _pair((1.0,))
    sched = optim.CosineAnnealingLR(ours, T_max=4, eta_min=0.1)
    for _ in range(4):
        sched.step()
    assert math.isclose(sched.get_last_lr()[0], 0.1, rel_tol=1e-12)
