"""Type promotion follows PyTorch (torch.result_type): a table of operand pairs, every binary
operator and two-input function, in-place operators, and the dtypes of the gradients, each
checked against torch itself.

The rules: the result has the highest category of its operands (bool < integer < floating <
complex); its dtype comes from the dimensioned tensors when one reaches that category, else from
the 0-d tensors, else from the Python numbers and NumPy scalars (int64, float32, complex64).
"""

import numpy as np
import pytest

import chainrule as cr
from chainrule import autograd

torch = pytest.importorskip("torch")

_TORCH_DTYPES = {np.dtype(d): getattr(torch, n) for d, n in [
    (np.bool_, "bool"), (np.uint8, "uint8"), (np.int8, "int8"), (np.int16, "int16"),
    (np.int32, "int32"), (np.int64, "int64"), (np.float16, "float16"), (np.float32, "float32"),
    (np.float64, "float64"), (np.complex64, "complex64"), (np.complex128, "complex128")]}


def _values(dtype, shape):
    base = np.array([True, False, True]) if np.dtype(dtype) == np.bool_ else np.array([1, 2, 3])
    return base[: int(np.prod(shape))].reshape(shape).astype(dtype)


# An operand: ("tensor", dtype, shape), ("array", dtype, shape) (a NumPy array; in torch a
# tensor), ("number", value) (a Python number) or ("scalar", value) (a NumPy scalar).
def T(dtype, shape=(3,)):
    return ("tensor", np.dtype(dtype), shape)


def A(dtype, shape=(3,)):
    return ("array", np.dtype(dtype), shape)


def N(value):
    return ("number", value)


def S(value):
    return ("scalar", value)


def make_cr(spec, requires_grad=False):
    kind = spec[0]
    if kind == "tensor":
        return cr.tensor(_values(spec[1], spec[2]), requires_grad=requires_grad)
    if kind == "array":
        return _values(spec[1], spec[2])
    return spec[1]


def make_torch(spec, requires_grad=False):
    kind = spec[0]
    if kind in ("tensor", "array"):
        return torch.tensor(_values(spec[1], spec[2]), requires_grad=requires_grad)
    return spec[1]  # torch takes NumPy scalars as it takes Python numbers


PAIRS = [  # (x, y, the dtype PyTorch gives, why)
    (T("float32"), T("int64"), "float32", "integer with float keeps the float's dtype"),
    (T("int64"), T("float32"), "float32", "the same, reflected"),
    (T("float32"), T("float64", ()), "float32", "a 0-d tensor does not promote"),
    (T("float64", ()), T("float32"), "float32", "the same, 0-d on the left"),
    (T("float32"), T("float64"), "float64", "two dimensioned tensors promote"),
    (T("float16"), T("int64"), "float16", "any integer with float16 stays float16"),
    (T("float32"), N(2.5), "float32", "a Python float takes the tensor's dtype"),
    (T("int64"), N(2.5), "float32", "a Python float with an int tensor: the default float"),
    (T("int64"), N(2), "int64", "int tensor with a Python int stays int64"),
    (T("int32"), N(2), "int32", "a Python int takes the int tensor's dtype"),
    (T("int32"), T("int64", ()), "int32", "a 0-d int tensor does not widen"),
    (T("uint8"), T("int8"), "int16", "uint8 with int8"),
    (T("bool"), N(2), "int64", "bool with a Python int"),
    (T("bool"), T("float32"), "float32", "bool with float"),
    (T("float32"), S(np.float64(2.5)), "float32", "a NumPy scalar counts as a number"),
    (T("int64"), S(np.float64(2.5)), "float32", "the same with an int tensor"),
    (T("float16"), S(np.float32(2.0)), "float16", "a NumPy float32 scalar with float16"),
    (T("float64", ()), N(2.5), "float64", "a 0-d tensor beats a Python number"),
    (T("int64", ()), N(2.5), "float32", "0-d int with a Python float"),
    (T("float32", ()), T("float64", ()), "float64", "two 0-d tensors promote"),
    (T("int64", ()), T("float16", ()), "float16", "0-d int with 0-d float16"),
    (T("float32"), A("float64"), "float64", "a NumPy array is dimensioned like a tensor"),
    (T("float32"), A("float64", ()), "float32", "a 0-d NumPy array like a 0-d tensor"),
    (T("float32"), T("complex128", ()), "complex64", "0-d complex: complex of the tensor's float"),
    (T("float64"), N(2 + 1j), "complex128", "a Python complex with float64"),
]
IDS = [f"{x[1]}{list(x[2]) if len(x) > 2 else ''}-{y[1]}{list(y[2]) if len(y) > 2 else ''}"
       for x, y, _, _ in PAIRS]

OPS = {  # name: (chainrule, torch)
    "add": (lambda x, y: x + y, lambda x, y: x + y),
    "sub": (lambda x, y: x - y, lambda x, y: x - y),
    "mul": (lambda x, y: x * y, lambda x, y: x * y),
    "truediv": (lambda x, y: x / y, lambda x, y: x / y),
    "pow": (lambda x, y: x ** y, lambda x, y: x ** y),
    "lt": (lambda x, y: x < y, lambda x, y: x < y),
    "eq": (lambda x, y: x == y, lambda x, y: x == y),
    "maximum": (cr.maximum, torch.maximum),
    "minimum": (cr.minimum, torch.minimum),
    "where": (lambda x, y: cr.where(cr.tensor([True, False, True]), x, y),
              lambda x, y: torch.where(torch.tensor([True, False, True]), x, y)),
}


def _torch_can_take(name, x, y):
    """torch.maximum/minimum take tensors only; the operators and torch.where take numbers."""
    return name not in ("maximum", "minimum") or all(isinstance(v, torch.Tensor) for v in (x, y))


@pytest.mark.parametrize("x_spec,y_spec,expected,why", PAIRS, ids=IDS)
def test_result_type_is_torch_result_type(x_spec, y_spec, expected, why):
    cx, cy = make_cr(x_spec), make_cr(y_spec)
    tx, ty = make_torch(x_spec), make_torch(y_spec)
    if isinstance(tx, torch.Tensor) or isinstance(ty, torch.Tensor):
        assert _TORCH_DTYPES[np.dtype(expected)] == torch.result_type(tx, ty), why
    assert autograd.result_type(cx, cy) == np.dtype(expected), why


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("x_spec,y_spec,expected,why", PAIRS, ids=IDS)
def test_operators_and_functions_give_torchs_dtype_and_values(name, x_spec, y_spec, expected,
                                                              why):
    cr_op, torch_op = OPS[name]
    cx, cy = make_cr(x_spec), make_cr(y_spec)
    tx, ty = make_torch(x_spec), make_torch(y_spec)
    if not isinstance(cx, cr.Tensor) and not isinstance(cy, cr.Tensor):
        cx = cr.tensor(cx)  # a NumPy array on the left: the tensor is on the right
    if name in ("lt", "maximum", "minimum") and "c" in (np.dtype(expected).kind,):
        # torch does not order complex numbers; chainrule orders them as NumPy does
        assert cr_op(cx, cy).dtype == (np.dtype(bool) if name == "lt" else np.dtype(expected))
        return
    if not _torch_can_take(name, tx, ty):
        # torch.maximum takes tensors only: a number becomes a 0-d tensor of the result type
        dtype = torch.result_type(tx, ty)
        tx, ty = (v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype)
                  for v in (tx, ty))
    try:
        want = torch_op(tx, ty)
    except RuntimeError:  # torch refuses a bool tensor in subtraction; chainrule computes it
        assert (name, x_spec[1]) == ("sub", np.dtype(bool))  # in the promoted dtype
        assert cr_op(cx, cy).dtype == np.dtype(expected)
        return
    got = cr_op(cx, cy)
    assert _TORCH_DTYPES[got.dtype] == want.dtype, why
    np.testing.assert_allclose(got.data.astype(np.complex128),
                               want.numpy().astype(np.complex128), rtol=1e-3)


@pytest.mark.parametrize("x_spec,y_spec,expected,why", [p for p in PAIRS if p[0][0] == "tensor"
                                                        and len(p[0][2]) and p[1][0] in (
                                                            "tensor", "array")
                                                        and len(p[1][2])], ids=lambda v: str(v))
def test_matmul_and_concatenate_promote_as_result_type(x_spec, y_spec, expected, why):
    """torch.matmul refuses mixed dtypes; chainrule promotes by torch.result_type instead.
    torch.cat promotes like an operator."""
    x = make_cr(("tensor", x_spec[1], (3,)))
    y = make_cr((y_spec[0], y_spec[1], (3,)))
    if x.dtype == np.bool_ and np.dtype(y_spec[1]) == np.bool_:
        pytest.skip("bool @ bool")
    want = torch.result_type(make_torch(x_spec), make_torch(y_spec))
    product = x @ y
    assert _TORCH_DTYPES[product.dtype] == want, why
    assert _TORCH_DTYPES[cr.matmul(cr.stack([x, x]), cr.stack([y, y]).T).dtype] == want
    joined = torch.cat([make_torch(x_spec), make_torch(y_spec)])
    assert _TORCH_DTYPES[cr.concatenate([x, y]).dtype] == joined.dtype


def test_the_reported_upcasts():
    x = cr.tensor([1.0, 2.0, 3.0])
    assert (x * cr.tensor([1, 2, 3])).dtype == np.float32
    assert (x + cr.tensor(np.float64(2.0))).dtype == np.float32
    assert (cr.tensor(np.float64(2.0)) * x).dtype == np.float32
    assert (x + cr.tensor([1.0, 2.0, 3.0], dtype=cr.float64)).dtype == np.float64
    assert (cr.tensor([1, 2]) * 0.5).dtype == np.float32
    assert (cr.tensor([1, 2]) + 1).dtype == np.int64
    assert (cr.tensor([1, 2]) / 2).dtype == np.float32
    assert cr.where(cr.tensor([True, False]), 1.0, 0.0).dtype == np.float32


INPLACE = [  # (x, y, op); torch's result, or the error it raises
    (T("float32"), T("float64"), "+="),
    (T("float32"), T("float64", ()), "+="),
    (T("float32"), N(2.5), "*="),
    (T("float16"), T("float64"), "-="),
    (T("int64"), T("int32"), "+="),
    (T("int32"), T("int64"), "*="),
    (T("int64"), N(1.5), "+="),
    (T("int64"), T("float32"), "*="),
    (T("int64"), N(2), "/="),
    (T("bool"), N(1), "+="),
    (T("float32"), T("complex64"), "+="),
]


def _apply_inplace(x, y, op):
    if op == "+=":
        x += y
    elif op == "-=":
        x -= y
    elif op == "*=":
        x *= y
    else:
        x /= y
    return x


@pytest.mark.parametrize("recording", [False, True])
@pytest.mark.parametrize("x_spec,y_spec,op", INPLACE, ids=lambda v: str(v))
def test_in_place_operators_keep_the_dtype_or_raise_like_torch(x_spec, y_spec, op, recording):
    tx, ty = make_torch(x_spec), make_torch(y_spec)
    float_x = x_spec[1].kind == "f" and recording
    cx = make_cr(x_spec, requires_grad=float_x)
    cy = make_cr(y_spec)
    if float_x:  # an intermediate (a leaf that requires grad refuses in-place writes)
        cx = cx * 1
        tx = tx.clone().requires_grad_() * 1
    try:
        want = _apply_inplace(tx, ty, op)
    except RuntimeError:
        with pytest.raises(TypeError, match="cannot be written in place"):
            _apply_inplace(cx, cy, op)
        return
    got = _apply_inplace(cx, cy, op)
    assert _TORCH_DTYPES[got.dtype] == want.dtype
    np.testing.assert_allclose(got.data.astype(np.float64),
                               want.detach().numpy().astype(np.float64), rtol=1e-3)
    if float_x:
        got.sum().backward()
        assert got.grad_fn is not None


GRAD_PAIRS = [  # floating pairs where both require grad
    (T("float32"), T("float64", ())),
    (T("float64", ()), T("float32")),
    (T("float32"), T("float64")),
    (T("float16"), T("float32", ())),
    (T("float32", ()), T("float64", ())),
]
GRAD_OPS = ["add", "sub", "mul", "truediv", "pow", "maximum", "minimum", "where"]


@pytest.mark.parametrize("name", GRAD_OPS)
@pytest.mark.parametrize("x_spec,y_spec", GRAD_PAIRS, ids=lambda v: str(v))
def test_each_gradient_comes_back_in_its_inputs_dtype(name, x_spec, y_spec):
    cr_op, torch_op = OPS[name]
    cx, cy = make_cr(x_spec, True), make_cr(y_spec, True)
    tx, ty = make_torch(x_spec, True), make_torch(y_spec, True)
    out, want = cr_op(cx, cy), torch_op(tx, ty)
    assert _TORCH_DTYPES[out.dtype] == want.dtype
    out.sum().backward()
    want.sum().backward()
    for c, t in ((cx, tx), (cy, ty)):
        assert _TORCH_DTYPES[c.grad.dtype] == t.grad.dtype == t.dtype
        np.testing.assert_allclose(c.grad.data.astype(np.float64),
                                   t.grad.numpy().astype(np.float64), rtol=2e-3)


def test_intermediate_gradients_keep_their_dtype():
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)  # float32 (3,)
    y0 = cr.tensor(np.array([0.5, 0.25]), requires_grad=True)  # float64 (2,)
    y = (y0 * 3).sum()  # a float64 0-d intermediate
    y.retain_grad()
    z = x * y  # float32: the 0-d y does not promote
    assert z.dtype == np.float32
    (z * z).sum().backward()

    tx = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    ty0 = torch.tensor([0.5, 0.25], dtype=torch.float64, requires_grad=True)
    ty = (ty0 * 3).sum()
    ty.retain_grad()
    tz = tx * ty
    assert tz.dtype == torch.float32
    (tz * tz).sum().backward()
    for c, t in ((x, tx), (y, ty), (y0, ty0)):
        assert _TORCH_DTYPES[c.grad.dtype] == t.grad.dtype
        np.testing.assert_allclose(c.grad.data, t.grad.numpy(), rtol=1e-6)


def test_matmul_gradients_keep_their_dtypes():
    rng = np.random.default_rng(0)
    a = cr.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    b = cr.tensor(rng.standard_normal((3, 2)), requires_grad=True)  # float64
    out = a @ b
    assert out.dtype == np.float64  # two dimensioned tensors: the wider dtype
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    ta = torch.tensor(a.data.astype(np.float64), requires_grad=True)
    tb = torch.tensor(b.data, requires_grad=True)
    (ta @ tb).sum().backward()
    np.testing.assert_allclose(a.grad.data, ta.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.grad.data, tb.grad.numpy(), rtol=1e-6)


def test_an_integer_input_takes_the_float_dtype_and_its_partner_keeps_its_gradient():
    w = cr.tensor([0.5, 1.5, -2.0], requires_grad=True)
    counts = cr.tensor([1, 2, 3])
    out = (w * counts).sum()
    assert out.dtype == np.float32
    out.backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad.data, [1, 2, 3])


def test_second_order_gradients_through_a_promoted_cast():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    s = cr.tensor(np.float64(3.0), requires_grad=True)
    (g,) = cr.gradients((x * s * x).sum(), [x], create_graph=True)  # 2 s x
    assert g.dtype == np.float32
    g.sum().backward()  # d/ds sum(2 s x) = 2 (1 + 2)
    assert s.grad.dtype == np.float64 and float(s.grad.data) == pytest.approx(6.0)

    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    ts = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    (tg,) = torch.autograd.grad((tx * ts * tx).sum(), [tx], create_graph=True)
    tg.sum().backward()
    assert tg.dtype == torch.float32 and ts.grad.dtype == torch.float64
    np.testing.assert_allclose(g.data, tg.detach().numpy())



UNARY_FLOAT_VALUED = ["exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "tan", "sinh",
                      "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arctanh", "log2",
                      "log10", "log1p", "expm1", "exp2", "deg2rad", "rad2deg"]
UNARY_DTYPE_KEEPING = ["abs", "negative", "square", "sign", "relu"]
_TORCH_NAMES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh",
                "arctanh": "atanh", "negative": "neg", "deg2rad": "deg2rad",
                "rad2deg": "rad2deg"}


@pytest.mark.parametrize("name", UNARY_FLOAT_VALUED + UNARY_DTYPE_KEEPING)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_unary_ops_on_integer_and_bool_tensors_take_torchs_dtype(name, dtype):
    values = np.array([0, 1, 1], dtype=dtype)
    if name in UNARY_DTYPE_KEEPING and dtype is np.bool_:
        pytest.skip("torch refuses most of these on bool (square gives int64, NumPy int8)")
    theirs = getattr(torch, _TORCH_NAMES.get(name, name))(torch.tensor(values))
    ours = getattr(cr, name)(cr.tensor(values))
    assert ours.dtype == np.dtype(str(theirs.dtype).removeprefix("torch.")), name
    if ours.dtype.kind == "f":
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)


def test_unary_ops_on_plain_integer_arrays_stay_numpys():
    assert cr.exp(np.array([1, 2])).dtype == np.float64  # NumPy in, NumPy out
