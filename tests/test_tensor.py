"""The Tensor class: construction and dtypes, NumPy interop, repr, detach, flags."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import chainrule as cr


def test_python_floats_and_lists_become_float32():
    assert cr.tensor(1.5).dtype == np.float32
    assert cr.tensor([1.0, 2.0]).dtype == np.float32
    assert cr.tensor([[1, 2.5]]).dtype == np.float32


def test_numpy_arrays_keep_their_dtype():
    for dtype in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_):
        assert cr.tensor(np.zeros(2, dtype)).dtype == dtype


def test_explicit_dtype_wins():
    assert cr.tensor([1, 2], dtype=cr.float64).dtype == np.float64
    assert cr.Tensor([1.0], dtype=np.float16).dtype == np.float16


def test_tensor_copies_but_from_numpy_shares():
    a = np.array([1.0, 2.0])
    t, s = cr.tensor(a), cr.from_numpy(a)
    a[0] = 9.0
    assert t.data[0] == 1.0 and s.data[0] == 9.0


def test_object_data_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"cr.tensor: cannot make a tensor of dtype object"):
        cr.tensor([{"a": 1}])


@pytest.mark.parametrize("data,dtype", [("abc", "<U3"), (["a", "b"], "<U1"), ([b"x"], "|S1"),
                                        (np.array(["x", "yz"]), "<U2"), ([1, "a"], "<U21")])
def test_strings_do_not_make_tensors(data, dtype):
    with pytest.raises(TypeError, match=rf"cannot make a tensor of dtype {re.escape(dtype)} "
                                        r"\((text|bytes)\).*holds numbers"):
        cr.tensor(data)
    with pytest.raises(TypeError, match="cannot make a tensor"):
        cr.Tensor(data)


@pytest.mark.parametrize("data,where", [
    ([[1, 2], [3]], r"data\[0\] has 2 elements but data\[1\] has 1 element"),
    ([1.0, [2.0, 3.0]], r"data\[0\] has a single number but data\[1\] has 2 elements"),
    ([[[1, 2], [3, 4]], [[1, 2], [3]]], r"data\[0\]\[0\] has 2 elements but data\[1\]\[1\] has 1"),
])
def test_ragged_lists_are_a_clear_value_error(data, where):
    message = r"cr.tensor: the nested lists have different lengths \(ragged\): " + where
    with pytest.raises(ValueError, match=message):
        cr.tensor(data)
    with pytest.raises(ValueError, match=message):
        cr.tensor(data, dtype=cr.float64)


def test_array_facts():
    t = cr.tensor(np.zeros((2, 3, 4)))
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.size == 24 and len(t) == 2
    assert t.T.shape == (4, 3, 2)
    with pytest.raises(TypeError, match="0-d"):
        len(cr.tensor(1.0))


def test_np_asarray_gives_the_data():
    t = cr.tensor([1.0, 2.0], requires_grad=True)
    a = np.asarray(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, [1.0, 2.0])
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert t.numpy() is t.data


def test_ndarray_on_the_left_gives_a_tensor():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    a = np.array([3.0, 4.0], dtype=np.float32)
    for out in (a * x, a + x, a - x, a / x, a ** x):
        assert isinstance(out, cr.Tensor) and out.requires_grad
    out = a * x
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.data, a)
    m = np.ones((2, 2), np.float32) @ x
    assert isinstance(m, cr.Tensor) and m.requires_grad


def test_numpy_scalar_on_the_left_gives_a_tensor():
    x = cr.tensor([1.0, 2.0])
    out = np.float32(2.0) * x
    assert isinstance(out, cr.Tensor) and out.dtype == np.float32


def test_repr_shows_data_dtype_and_grad_info():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], dtype=float32, requires_grad=True)"
    assert repr(x * 2) == "tensor([2., 4.], dtype=float32, grad_fn=<MultiplyBackward>)"
    assert repr(cr.tensor(np.array([1, 2]))) == "tensor([1, 2], dtype=int64)"
    big = repr(cr.zeros(100, 100))
    assert "..." in big and len(big) < 1000


def test_detach_shares_data_and_leaves_the_graph():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.grad_fn is None and not d.requires_grad
    assert np.shares_memory(d.data, y.data)
    assert d._version is y._version  # an in-place write through d is seen by y's users
    (d * y).sum().backward()
    np.testing.assert_array_equal(x.grad.data, 2 * d.data)


def test_requires_grad_flags():
    x = cr.tensor([1.0])
    assert not x.requires_grad and x.is_leaf
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    y = cr.tensor([1.0], requires_grad=True) * 2
    assert not y.is_leaf
    with pytest.raises(RuntimeError, match="non-leaf"):
        y.requires_grad_(False)


def test_item_float_int_bool():
    assert cr.tensor([2.5]).item() == 2.5
    assert float(cr.tensor(1.5)) == 1.5 and int(cr.tensor(np.array(3))) == 3
    assert bool(cr.tensor(1.0)) and not bool(cr.tensor(0.0))
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        cr.tensor([1.0, 2.0]).item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(cr.tensor([1.0, 2.0]))


def test_integer_tensor_works_as_index():
    i = cr.tensor(np.array(2))
    assert [10, 20, 30][i] == 30
    with pytest.raises(TypeError):
        [1, 2][cr.tensor(1.0)]


def test_iteration_yields_rows_that_keep_the_graph():
    x = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    rows = list(x)
    assert len(rows) == 2 and rows[1].shape == (2,)
    (rows[0] * rows[1]).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[3.0, 4.0], [1.0, 2.0]])


def test_hash_is_identity_and_eq_is_elementwise():
    a, b = cr.tensor([1.0]), cr.tensor([1.0])
    assert len({a, b}) == 2
    assert (a == b).data.tolist() == [True]


def test_zero_fill_copy_under_no_grad_bump_version():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.no_grad():
        x.fill_(3.0)
        x.copy_(np.array([5.0, 6.0]))
        x.zero_()
    assert x._version[0] == 3
    np.testing.assert_array_equal(x.data, [0.0, 0.0])


def test_in_place_without_grad_keeps_dtype_and_array():
    x = cr.tensor([1.0, 2.0])
    data = x.data
    x += 1.5
    x *= 2
    assert x.data is data and x.dtype == np.float32
    np.testing.assert_array_equal(x.data, [5.0, 7.0])
    assert x._version[0] == 2


def test_clone_is_a_copy_with_gradient():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert not np.shares_memory(c.data, x.data)
    (c * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])


def test_view_ops_share_memory_like_torch():
    x = cr.tensor(np.arange(6.0))
    assert np.shares_memory(x.reshape(2, 3).data, x.data)
    assert np.shares_memory(x[1:4].data, x.data)
    assert not np.shares_memory(x[[0, 1]].data, x.data)  # advanced indexing copies


def test_methods_match_functions():
    a = np.random.default_rng(0).standard_normal((3, 4))
    x, t = cr.tensor(a), torch.from_numpy(a)
    pairs = [
        (x.sum(1), t.sum(1)), (x.mean(), t.mean()), (x.max(0), t.amax(0)),
        (x.min(), t.min()), (x.std(1), t.std(1, correction=0)), (x.abs(), t.abs()),
        (x.tanh(), t.tanh()), (x.sigmoid(), t.sigmoid()), (x.relu(), t.relu()),
        (x.softmax(0), t.softmax(0)), (x.reshape((4, 3)), t.reshape(4, 3)),
        (x.transpose(), t.T), (x.transpose(1, 0), t.permute(1, 0)),
        (x.unsqueeze(0), t.unsqueeze(0)), (x.expand_dims(-1), t.unsqueeze(-1)),
        (x.broadcast_to((2, 3, 4)), t.broadcast_to(2, 3, 4)), (x.swapaxes(0, 1), t.T),
        (x.copy(), t), (x.cos(), t.cos()), (x.sin(), t.sin()),
    ]
    for got, want in pairs:
        np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-12)
