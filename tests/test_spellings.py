"""PyTorch's spellings against torch itself, the NumPy/PyTorch clashes that must raise, and the
NumPy spellings that must keep their meaning (README, "NumPy and PyTorch spellings").

Most cases are one lambda run on both libraries: the spelling is the same, so the test checks
that it means the same (value, and gradient through float64 weights).
"""

import copy
import pickle

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import optim
from helpers import check_against_torch

X23 = [np.arange(6.0).reshape(2, 3) * 0.7 - 1.3]
X234 = [np.random.default_rng(3).standard_normal((2, 3, 4))]

# --- dim= and keepdim=: the same call on both libraries ----------------------------------------
SAME = {
    "sum_dim": (lambda x: x.sum(dim=1), X234),
    "sum_dim_tuple_keepdim": (lambda x: x.sum(dim=(0, 2), keepdim=True), X234),
    "mean_dim_keepdim": (lambda x: x.mean(dim=-1, keepdim=True), X234),
    "logsumexp_dim": (lambda x: x.logsumexp(dim=1), X234),
    "logsumexp_dim_keepdim": (lambda x: x.logsumexp(dim=0, keepdim=True), X234),
    "var_dim_default_unbiased": (lambda x: x.var(dim=1), X234),
    "var_dim_correction0": (lambda x: x.var(dim=1, correction=0), X234),
    "var_dim_unbiased_false": (lambda x: x.var(dim=(0, 2), unbiased=False, keepdim=True), X234),
    "std_dim_default_unbiased": (lambda x: x.std(dim=2), X234),
    "std_dim_correction2": (lambda x: x.std(dim=2, correction=2), X234),
    "softmax_dim": (lambda x: x.softmax(dim=1), X234),
    "log_softmax_dim": (lambda x: x.log_softmax(dim=0), X234),
    "squeeze_dim": (lambda x: x.reshape(2, 1, 3, 4).squeeze(dim=1), X234),
    "squeeze_dim_not_one": (lambda x: x.squeeze(dim=1), X234),  # torch: left alone
    "squeeze_dim_tuple": (lambda x: x.reshape(1, 2, 1, 12).squeeze(dim=(0, 1, 2)), X234),
    "unsqueeze_dim": (lambda x: x.unsqueeze(dim=-1), X234),
    "unsqueeze_positional": (lambda x: x.unsqueeze(1), X234),
    "max_dim_values": (lambda x: x.max(dim=1).values, X234),
    "max_dim_index0": (lambda x: x.max(dim=2, keepdim=True)[0], X234),
    "min_dim_values": (lambda x: x.min(dim=0).values, X234),
    "max_dim_ties": (lambda x: (x * 0).max(dim=1).values + x.sum(dim=1), X234),
    "permute": (lambda x: x.permute(2, 0, 1), X234),
    "permute_tuple": (lambda x: x.permute((1, 2, 0)), X234),
    "view": (lambda x: x.view(4, -1), X234),
    "view_tuple": (lambda x: x.view((6, 4)), X234),
    "transpose_3d_swap": (lambda x: x.transpose(0, 2), X234),
    "transpose_3d_swap_negative": (lambda x: x.transpose(-1, 1), X234),
    "transpose_2d_10": (lambda x: x.transpose(1, 0), X23),
    "transpose_2d_same_axis": (lambda x: x.transpose(1, 1), X23),
    "transpose_dim0_dim1": (lambda x: x.transpose(dim0=0, dim1=1), X23),
    "swapdims": (lambda x: x.swapdims(0, 2), X234),
    "swapaxes": (lambda x: x.swapaxes(1, 2), X234),
    "T": (lambda x: x.T, X23),
    "expand": (lambda x: x[:, :1].expand(2, 5), X23),
    "expand_minus_one": (lambda x: x[None].expand(3, -1, -1), X23),
    "expand_tuple": (lambda x: x[:1].expand((4, 3)), X23),
    "clamp": (lambda x: x.clamp(-0.5, 1.0), X23),
    "clamp_min_only": (lambda x: x.clamp(min=0.1), X23),
    "clamp_max_only": (lambda x: x.clamp(max=0.1), X23),
    "clone": (lambda x: x.clone() * 2, X23),
    "double": (lambda x: x.double() * 3, X23),
    "float_back": (lambda x: x.float().double() * 3, X23),
    "to_dtype": (lambda x: x.to(x.dtype) * 2, X23),
}


@pytest.mark.parametrize("name", sorted(SAME))
def test_pytorch_spelling_means_what_torch_means(name):
    fn, arrays = SAME[name]
    check_against_torch(fn, fn, arrays, rtol=1e-6, atol=1e-9)


TORCH_FUNCTIONS = {
    "sum": (lambda m, x: m.sum(x, dim=1, keepdim=True), X234),
    "mean": (lambda m, x: m.mean(x, dim=(1, 2)), X234),
    "var": (lambda m, x: m.var(x, dim=2), X234),
    "std": (lambda m, x: m.std(x, dim=2, correction=0), X234),
    "logsumexp": (lambda m, x: m.logsumexp(x, dim=1), X234),
    "softmax": (lambda m, x: m.softmax(x, dim=0), X234),
    "log_softmax": (lambda m, x: m.log_softmax(x, dim=1), X234),
    "max": (lambda m, x: m.max(x, dim=1).values, X234),
    "min": (lambda m, x: m.min(x, dim=0, keepdim=True)[0], X234),
    "squeeze": (lambda m, x: m.squeeze(m.unsqueeze(x, dim=0), dim=0), X234),
    "cat": (lambda m, x: m.cat([x, x * 2], dim=1), X234),
    "cat_default": (lambda m, x: m.cat([x, x * 2]), X234),
    "concat": (lambda m, x: m.concat([x, x * 2], dim=-1), X234),
    "stack": (lambda m, x: m.stack([x, x * 2], dim=2), X234),
    "concatenate_dim": (lambda m, x: (m.concatenate if m is cr else m.cat)([x, x], dim=2), X234),
    "split_size": (lambda m, x: m.split(x, 3, dim=2)[1], X234),  # torch: pieces of size 3
    "split_sizes": (lambda m, x: m.split(x, [1, 3], dim=2)[1] * 2, X234),
}


@pytest.mark.parametrize("name", sorted(TORCH_FUNCTIONS))
def test_pytorch_function_spellings(name):
    fn, arrays = TORCH_FUNCTIONS[name]
    check_against_torch(lambda x: fn(cr, x), lambda x: fn(torch, x), arrays, rtol=1e-6)


def test_max_min_with_dim_return_values_and_indices_as_torch():
    x = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 0.0, 5.0], [0.0, -4.0, -4.0, 0.0]])
    for name in ("max", "min"):
        for dim, keepdim in ((0, False), (1, False), (1, True), (-1, True)):
            ours = getattr(cr.tensor(x), name)(dim=dim, keepdim=keepdim)
            theirs = getattr(torch.tensor(x), name)(dim=dim, keepdim=keepdim)
            values, indices = ours  # unpacks as torch's namedtuple does
            assert ours._fields == ("values", "indices")
            np.testing.assert_array_equal(values.data, theirs.values.numpy())
            np.testing.assert_array_equal(indices.data, theirs.indices.numpy())
            assert indices.dtype == np.int64
            by_function = getattr(cr, name)(cr.tensor(x), dim=dim, keepdim=keepdim)
            np.testing.assert_array_equal(by_function.indices.data, theirs.indices.numpy())
    # ties: the gradient goes to the element at the index, as torch's, not shared
    ours, theirs = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours.max(dim=1).values.sum().backward()
    theirs.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(ours.grad.data, theirs.grad.numpy())


def test_argmax_argmin_dim_keepdim():
    x = X234[0]
    for name in ("argmax", "argmin"):
        for kwargs in (dict(dim=1), dict(dim=-1, keepdim=True), dict()):
            ours = getattr(cr.tensor(x), name)(**kwargs)
            theirs = getattr(torch.tensor(x), name)(**kwargs)
            np.testing.assert_array_equal(ours.data, theirs.numpy())
            np.testing.assert_array_equal(getattr(cr, name)(cr.tensor(x), **kwargs).data,
                                          theirs.numpy())


def test_size_is_numpys_int_and_torchs_method():
    x = cr.tensor(np.zeros((2, 3)))
    assert x.size == 6 and isinstance(x.size, int) and x.size + 1 == 7
    assert list(range(x.size)) == list(range(6)) and f"{x.size}" == "6"
    assert x.size() == (2, 3) and type(x.size()) is tuple
    assert x.size(1) == 3 and x.size(-2) == 2
    assert x.size() == tuple(torch.zeros(2, 3).size())
    with pytest.raises(IndexError, match="out of range"):
        x.size(2)
    assert x.shape == (2, 3) and type(x.shape) is tuple
    for kept in (copy.deepcopy(x.size), pickle.loads(pickle.dumps(x.size))):
        assert kept == 6 and kept() == (2, 3)
    assert x.numel() == 6 and x.dim() == 2 and cr.tensor(1.0).dim() == 0


def test_casts():
    x = cr.tensor([1.7, -2.2], requires_grad=True)
    for method, dtype in (("float", np.float32), ("double", np.float64), ("half", np.float16),
                          ("long", np.int64), ("int", np.int32)):
        out = getattr(x, method)()
        assert out.dtype == dtype
        expected = getattr(torch.tensor([1.7, -2.2]), method)().numpy()
        np.testing.assert_array_equal(out.data, expected.astype(dtype))
    assert int(cr.tensor(3.9)) == 3  # Python's int(x) is unchanged by the int() method
    x.double().sum().backward()
    assert x.grad.dtype == np.float32


def test_to_and_device():
    x = cr.tensor([1.0, 2.0])
    assert x.to("cpu") is x and x.to(cr.device("cpu")) is x and x.to(cr.float32) is x
    assert x.to("cpu:0") is x and x.to(device="cpu") is x
    assert x.to(cr.float64).dtype == np.float64
    assert x.to("cpu", cr.float64).dtype == np.float64
    assert x.to(dtype=np.float16).dtype == np.float16
    assert x.to(cr.tensor([1], dtype=np.int64)).dtype == np.int64
    copy = x.to("cpu", copy=True)
    assert copy is not x and copy.data is not x.data
    assert x.device == cr.device("cpu") and x.device.type == "cpu" and str(x.device) == "cpu"
    assert repr(cr.device("cpu")) == "device(type='cpu')"
    assert cr.device("cpu:0").index == 0 and str(cr.device("cpu", 0)) == "cpu:0"
    assert cr.device(cr.device("cpu")) == cr.device("cpu")
    assert len({cr.device("cpu"), cr.device("cpu")}) == 1
    for name in ("cuda", "cuda:0", "mps"):
        with pytest.raises(RuntimeError, match="chainrule runs on the CPU"):
            cr.device(name)
        with pytest.raises(RuntimeError, match="chainrule runs on the CPU"):
            x.to(name)
    with pytest.raises(RuntimeError, match="not a device type"):
        cr.device("gpu")
    with pytest.raises(TypeError, match="neither a dtype, a device nor a tensor"):
        x.to("gpu")
    with pytest.raises(TypeError, match="neither"):
        x.to(None)
    with pytest.raises(TypeError, match="more than one dtype"):
        x.to(cr.float64, dtype=cr.float16)


# --- clashes: a spelling with two meanings raises, naming both ----------------------------------
def test_transpose_0_1_on_a_2d_tensor_is_ambiguous():
    x = cr.tensor(X23[0])
    for axes in ((0, 1), (0, -1), (-2, 1), (-2, -1)):
        with pytest.raises(TypeError, match=r"ambiguous.*x\.T.*swapaxes.*permute.*transpose\("):
            x.transpose(*axes)
    # NumPy's spellings keep NumPy's meaning
    np.testing.assert_array_equal(x.transpose((0, 1)).data, X23[0])
    np.testing.assert_array_equal(x.transpose([0, 1]).data, X23[0])
    np.testing.assert_array_equal(x.transpose().data, X23[0].T)
    x3 = cr.tensor(X234[0])
    np.testing.assert_array_equal(x3.transpose().data, X234[0].transpose())
    np.testing.assert_array_equal(x3.transpose(2, 0, 1).data, X234[0].transpose(2, 0, 1))
    np.testing.assert_array_equal(x3.transpose((1, 0, 2)).data, X234[0].transpose(1, 0, 2))
    np.testing.assert_array_equal(cr.tensor([1.0, 2.0]).transpose(0).data, [1.0, 2.0])


def test_view_dtype_is_refused_with_a_hint():
    x = cr.tensor([1.0, 2.0])
    for dtype in (np.int32, "int32", np.dtype(np.float32)):
        with pytest.raises(TypeError, match=r"astype\(dtype\).*numpy\(\)\.view"):
            x.view(dtype)


def test_both_spellings_of_one_argument_is_an_error():
    x = cr.tensor(X234[0])
    calls = [
        lambda: x.sum(axis=1, dim=1), lambda: cr.sum(x, 1, dim=1),
        lambda: x.mean(keepdims=True, keepdim=True), lambda: x.max(axis=0, dim=0),
        lambda: x.min(1, keepdims=True, dim=0, keepdim=True), lambda: x.argmax(axis=0, dim=0),
        lambda: x.var(ddof=1, correction=1), lambda: x.std(unbiased=True, correction=1),
        lambda: cr.var(x, 0, False, 0, unbiased=False), lambda: x.softmax(axis=0, dim=0),
        lambda: x.squeeze(axis=0, dim=0), lambda: x.unsqueeze(axis=0, dim=0),
        lambda: cr.concatenate([x, x], axis=0, dim=0), lambda: cr.stack([x], axis=0, dim=0),
        lambda: cr.split(x, 2, axis=0, dim=0), lambda: x.logsumexp(axis=0, dim=0),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="pass one"):
            call()


def test_other_errors_are_clear():
    x = cr.tensor(X234[0])
    with pytest.raises(TypeError, match="axis must be an int"):
        x.max(dim=(0, 1))  # as torch: max with dim takes one axis (amax-like is axis=)
    with pytest.raises(ValueError, match="leading axis"):
        x.expand(-1, 2, 3, 4)
    with pytest.raises(ValueError, match="add up to 4"):
        cr.split(x, [1, 2], dim=2)
    with pytest.raises(TypeError, match="missing the axis"):
        cr.expand_dims(x)


# --- NumPy's spellings are unchanged ------------------------------------------------------------
def test_numpy_spellings_keep_numpys_meaning():
    a = X234[0]
    x = cr.tensor(a)
    np.testing.assert_allclose(x.var(1).data, a.var(1))  # ddof 0, not torch's 1
    np.testing.assert_allclose(x.std(axis=(0, 2)).data, a.std(axis=(0, 2)))
    np.testing.assert_allclose(x.var(1, ddof=1).data, a.var(1, ddof=1))
    np.testing.assert_allclose(x.var(axis=1, correction=1).data, a.var(1, ddof=1))
    np.testing.assert_allclose(x.std(unbiased=True).data, a.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(x.var().data, a.var())
    assert isinstance(x.max(1), cr.Tensor)  # NumPy's max(axis): the values, not a pair
    np.testing.assert_array_equal(x.max(1).data, a.max(1))
    np.testing.assert_array_equal(cr.min(x, axis=2, keepdims=True).data, a.min(2, keepdims=True))
    np.testing.assert_array_equal(x.sum(axis=1, keepdims=True).data, a.sum(1, keepdims=True))
    assert [p.shape for p in cr.split(x, 2, axis=2)] == [(2, 3, 2)] * 2  # 2 sections
    assert [p.shape for p in cr.split(x, [1], axis=2)] == [(2, 3, 1), (2, 3, 3)]  # split points
    with pytest.raises(ValueError, match="not 1"):
        x.squeeze(0)  # NumPy refuses an axis that is not of size 1
    assert cr.concatenate([x, x], 1).shape == (2, 6, 4)
    assert cr.stack([x, x], 1).shape == (2, 2, 3, 4)
    assert x.unsqueeze(0).shape == (1, 2, 3, 4) and cr.expand_dims(x, axis=3).shape == (2, 3, 4, 1)
    assert x.softmax().shape == (2, 3, 4) and cr.log_softmax(x, 0).shape == (2, 3, 4)
    assert x.argmax(axis=1).shape == (2, 4) and x.size == 24


# --- nn.Module.to ---------------------------------------------------------------------------------
def test_module_to():
    m = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.BatchNorm1d(4))
    assert m.to("cpu") is m and m.to(cr.device("cpu")) is m and m.to(device="cpu") is m
    assert m[0].weight.dtype == np.float32
    assert m.to(cr.float64) is m
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[1].running_mean.dtype == np.float64
    assert m[1].num_batches_tracked.dtype.kind == "i"  # integer buffers are not cast, as torch
    m.to("cpu", cr.float32)
    assert all(p.dtype == np.float32 for p in m.parameters())
    m.to(cr.tensor([1.0], dtype=np.float64))
    assert m[0].bias.dtype == np.float64
    assert m(cr.tensor(np.ones((2, 3)))).dtype == np.float64
    for bad in ("cuda", cr.nn.Linear):
        with pytest.raises((RuntimeError, TypeError)):
            m.to(bad)
    with pytest.raises(RuntimeError, match="chainrule runs on the CPU"):
        m.to("cuda:0")
    with pytest.raises(TypeError, match="only floating-point"):
        m.to(cr.int64)


# --- frozen parameters in every optimizer, against torch ---------------------------------------
OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("Adam", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
]


def _frozen_trajectory(lib, nn, name, kwargs):
    rng = np.random.default_rng(5)
    w1, w2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    p1, p2 = (lib.tensor(w) for w in (w1, w2))
    p1.requires_grad_(False)  # frozen when the optimizer is made
    p2.requires_grad_(True)
    opt = getattr(nn, name)([p1, p2], **kwargs)
    x, y = lib.tensor(x), lib.tensor(y)
    history = []
    for step in range(8):
        if step == 4:
            p1.requires_grad_(True)  # unfrozen: updated from now on
        if step == 6:
            p2.requires_grad_(False)  # frozen again, its state kept
        opt.zero_grad()
        loss = ((lib.tanh(x @ p1) @ p2 - y) ** 2).mean()
        loss.backward()
        opt.step()
        history.append([np.array(p.detach().numpy()) for p in (p1, p2)])
    return history


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in
                                                         enumerate(OPTIMIZERS)])
def test_optimizers_accept_and_skip_frozen_parameters_as_torch(name, kwargs):
    ours = _frozen_trajectory(cr, optim, name, kwargs)
    theirs = _frozen_trajectory(torch, torch.optim, name, kwargs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for i in range(2):
            np.testing.assert_allclose(a[i], b[i], rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name}: parameter {i} after step {step}")
    assert np.array_equal(ours[3][0], ours[0][0])  # frozen for the first four steps
    assert not np.array_equal(ours[5][0], ours[3][0])


def test_optimizer_over_a_frozen_module():
    m = cr.nn.Linear(2, 1)
    m.requires_grad_(False)
    opt = optim.SGD(m.parameters(), lr=0.1)  # accepted, as torch
    before = m.weight.data.copy()
    opt.zero_grad()
    opt.step()
    np.testing.assert_array_equal(m.weight.data, before)
