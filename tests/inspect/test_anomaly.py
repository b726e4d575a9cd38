import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import autograd
from chainrule.inspect.anomaly import AnomalyError

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero", "ignore:invalid value")


def test_forward_names_log_and_the_calling_line():
    x = cr.tensor([1.0, 0.0, 2.0], requires_grad=True)
    with pytest.raises(AnomalyError) as info:
        with cr.detect_anomaly():
            y = cr.exp(x)
            cr.log(x - 1.0 + 1.0) + y  # log(0) = -inf
    text = str(info.value)
    assert "forward of 'log'" in text and "-inf" in text and "index (1,)" in text
    assert "test_anomaly.py" in text and "cr.log(x - 1.0 + 1.0)" in text
    assert "chainrule/autograd.py" not in text  # internal frames are trimmed


def test_backward_only_infinity_names_sqrt_and_where_it_was_created():
    x = cr.tensor([0.0, 4.0], requires_grad=True)
    with cr.detect_anomaly():
        y = cr.sqrt(x)  # forward is fine: sqrt(0) = 0
        loss = (y * 3.0).sum()
        with pytest.raises(AnomalyError) as info:
            loss.backward()
    text = str(info.value)
    assert "backward of 'sqrt'" in text and "SqrtBackward" in text and "inf" in text
    assert "grad / (2 sqrt(x))" in text
    assert "y = cr.sqrt(x)" in text and "test_anomaly.py" in text


def test_custom_function_forward_is_checked():
    class Recip(cr.Function):
        @staticmethod
        def forward(ctx, a):
            return 1.0 / a.data  # plain NumPy: only the Function itself is checked

        @staticmethod
        def backward(ctx, grad):
            return grad

    with np.errstate(divide="ignore"), pytest.raises(AnomalyError, match="forward of 'Recip'"):
        with cr.detect_anomaly():
            Recip.apply(cr.tensor([0.0], requires_grad=True))


def test_nesting_restores_previous_state_and_off_costs_nothing():
    assert autograd.anomaly.enabled is False
    x = cr.tensor([1.0], requires_grad=True)
    assert (x * 2).grad_fn.trace is None  # off: no trace is stored
    with cr.detect_anomaly():
        assert (x * 2).grad_fn.trace is not None
        with cr.detect_anomaly(False):
            assert autograd.anomaly.enabled is False
            assert cr.log(cr.tensor([0.0])).data[0] == -np.inf  # not checked inside
        assert autograd.anomaly.enabled is True
        with pytest.raises(AnomalyError):
            cr.log(cr.tensor([0.0]))
    assert autograd.anomaly.enabled is False
    assert cr.log(cr.tensor([0.0])).data[0] == -np.inf


def test_decorator_form():
    @cr.detect_anomaly()
    def bad(t):
        return cr.log(t)

    with pytest.raises(AnomalyError, match="log"):
        bad(cr.tensor([-1.0]))
    assert autograd.anomaly.enabled is False
    assert np.isfinite(bad(cr.tensor([1.0])).data).all()


def test_no_numpy_warning_leaks_beside_the_anomaly_error():
    x = cr.tensor([0.0, 1.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would replace the AnomalyError
        with pytest.raises(AnomalyError, match="forward of 'log'"):
            with cr.detect_anomaly():
                cr.log(x)
        with pytest.raises(AnomalyError, match="backward of 'sqrt'"):
            with cr.detect_anomaly():
                cr.sqrt(x).sum().backward()
        with pytest.raises(AnomalyError, match="forward of 'divide'"):
            with cr.detect_anomaly():
                cr.tensor([1.0], requires_grad=True) / cr.tensor([0.0])


def test_the_users_own_numpy_code_still_warns_inside_detect_anomaly():
    with cr.detect_anomaly():
        with pytest.warns(RuntimeWarning, match="divide by zero"):
            np.log(np.zeros(1))
    with pytest.warns(RuntimeWarning, match="divide by zero"):  # and the engine outside it
        cr.log(cr.tensor([0.0]))
