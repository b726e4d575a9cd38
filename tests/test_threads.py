"""Grad mode and anomaly mode belong to a thread, as in PyTorch.

Each test runs two threads in lock step with barriers, so that one thread is inside a mode block
exactly while the other one computes; a new thread starts with recording on and anomaly mode off.
"""

import threading

import numpy as np
import pytest

import chainrule as cr
from chainrule import autograd
from chainrule.inspect.anomaly import AnomalyError

TIMEOUT = 30  # seconds a barrier waits before the test fails instead of hanging


def _run(*targets):
    """Run each target in its own thread; re-raise the first exception any of them raised."""
    errors = []

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001  (reported in the main thread)
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]


def test_training_beside_an_inference_thread_under_no_grad_loses_no_gradient():
    steps = 300
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    w = cr.tensor([0.5, -1.0, 2.0], requires_grad=True)
    x = cr.tensor([1.0, 2.0, 3.0])
    recorded = []
    inference_outputs = []

    def train():
        for _ in range(steps):
            barrier.wait()  # the inference thread is inside no_grad from here ...
            loss = (w * x).sum()
            recorded.append(loss.requires_grad)
            if loss.requires_grad:
                loss.backward()
            barrier.wait()  # ... to here

    def infer():
        for _ in range(steps):
            with cr.no_grad():
                barrier.wait()
                inference_outputs.append((w * x).sum().requires_grad)
                barrier.wait()

    _run(train, infer)
    assert sum(recorded) == steps  # 300 of 300 losses recorded
    assert not any(inference_outputs)  # and the inference thread recorded nothing
    np.testing.assert_allclose(w.grad.data, steps * x.data)


def test_interleaved_no_grad_and_enable_grad_leave_each_thread_its_own_mode():
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    seen = {}

    def a():
        with cr.no_grad():
            barrier.wait()  # 1: a is in no_grad
            barrier.wait()  # 2: b has entered enable_grad inside its own no_grad
            seen["a inside"] = cr.is_grad_enabled()
        barrier.wait()  # 3: a has left its block first
        barrier.wait()  # 4: b has left both of its blocks
        seen["a after"] = cr.is_grad_enabled()

    def b():
        barrier.wait()  # 1
        with cr.no_grad():
            with cr.enable_grad():
                barrier.wait()  # 2
                seen["b inside"] = cr.is_grad_enabled()
                barrier.wait()  # 3
        barrier.wait()  # 4
        seen["b after"] = cr.is_grad_enabled()

    _run(a, b)
    assert seen == {"a inside": False, "b inside": True, "a after": True, "b after": True}
    assert cr.is_grad_enabled()


def test_one_no_grad_instance_entered_by_two_threads_restores_each_thread():
    shared = cr.no_grad()
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    after = {}

    def first():  # starts recording, enters first, leaves first
        with shared:
            barrier.wait()  # 1
            barrier.wait()  # 2: the other thread is inside too
        after["first"] = cr.is_grad_enabled()
        barrier.wait()  # 3

    def second():  # starts with recording off, enters second, leaves last
        with cr.set_grad_enabled(False):
            barrier.wait()  # 1
            with shared:
                barrier.wait()  # 2
                barrier.wait()  # 3
                after["second inside"] = cr.is_grad_enabled()
            after["second"] = cr.is_grad_enabled()

    _run(first, second)
    assert after == {"first": True, "second inside": False, "second": False}


def test_a_new_thread_starts_with_grad_enabled_and_anomaly_off():
    seen = []
    with cr.no_grad(), cr.detect_anomaly():
        _run(lambda: seen.append((cr.is_grad_enabled(), autograd.anomaly.enabled,
                                  autograd.anomaly.on_forward)))
        assert not cr.is_grad_enabled() and autograd.anomaly.enabled
    assert seen == [(True, False, None)]


def test_detect_anomaly_in_one_thread_does_not_check_another():
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    outcome = {}

    def checked():
        with cr.detect_anomaly():
            barrier.wait()  # 1: the other thread computes a log(0) now
            barrier.wait()  # 2
            with pytest.raises(AnomalyError, match="'log'"):
                cr.log(cr.tensor([0.0, 1.0], requires_grad=True))
            outcome["checked"] = "raised"

    def unchecked():
        barrier.wait()  # 1
        try:
            assert not autograd.anomaly.enabled
            with np.errstate(divide="ignore"):
                y = cr.log(cr.tensor([0.0, 1.0], requires_grad=True))
            outcome["unchecked"] = y.data.tolist()
        finally:
            barrier.wait()  # 2

    _run(checked, unchecked)
    assert outcome == {"checked": "raised", "unchecked": [-np.inf, 0.0]}
    assert not autograd.anomaly.enabled


def test_a_decorated_function_runs_in_no_grad_only_in_its_own_thread():
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    seen = {}

    @cr.no_grad()
    def inference():
        barrier.wait()
        barrier.wait()
        return (w * 2).requires_grad

    def training():
        barrier.wait()
        seen["training"] = (w * 2).requires_grad
        barrier.wait()

    _run(lambda: seen.setdefault("inference", inference()), training)
    assert seen == {"inference": False, "training": True}
