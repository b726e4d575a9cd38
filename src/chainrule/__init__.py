"""chainrule: backpropagation you can see, trust and train with.

``import chainrule as cr``; ``x = cr.tensor([1.0, 2.0], requires_grad=True)``; build a scalar
from it with the operators and functions below; ``loss.backward()`` fills ``x.grad``.
"""

from numpy import bool_, float16, float32, float64, int32, int64  # noqa: F401

import chainrule.tensor  # noqa: F401 - first: tensor.py imports the tables in their order

# isort: split
from chainrule import linalg  # noqa: F401
from chainrule.autograd import (  # noqa: F401
    ShapeError,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from chainrule.checkpoint import checkpoint  # noqa: F401
from chainrule.contractions import (  # noqa: F401
    diag,
    diagonal,
    dot,
    einsum,
    inner,
    kron,
    outer,
    tensordot,
    trace,
    tril,
    triu,
)
from chainrule.creation import (  # noqa: F401
    arange,
    eye,
    full,
    linspace,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    zeros,
    zeros_like,
)
from chainrule.elementwise import (  # noqa: F401 - cr.sign stays ops.sign (no gradient)
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctan2,
    arctanh,
    cbrt,
    ceil,
    cosh,
    deg2rad,
    exp2,
    expm1,
    floor,
    fmax,
    fmin,
    fmod,
    hypot,
    log1p,
    log2,
    log10,
    logaddexp,
    logaddexp2,
    mod,
    rad2deg,
    reciprocal,
    remainder,
    round,
    sinc,
    sinh,
    square,
    tan,
)
from chainrule.function import Function, FunctionCtx  # noqa: F401
from chainrule.ops import (  # noqa: F401
    abs,
    add,
    argmax,
    argmin,
    astype,
    broadcast_to,
    cat,
    clip,
    concat,
    concatenate,
    cos,
    divide,
    equal,
    erf,
    exp,
    expand_dims,
    flatten,
    gelu,
    getitem,
    greater,
    greater_equal,
    isfinite,
    isnan,
    leaky_relu,
    less,
    less_equal,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    multiply,
    negative,
    not_equal,
    power,
    relu,
    reshape,
    sigmoid,
    sign,
    sin,
    softmax,
    softplus,
    split,
    sqrt,
    squeeze,
    stack,
    std,
    subtract,
    sum,
    swapaxes,
    tanh,
    transpose,
    unsqueeze,
    var,
    where,
)
from chainrule.random import get_rng_state, manual_seed, set_rng_state  # noqa: F401
from chainrule.reductions import (  # noqa: F401
    amax,
    amin,
    argsort,
    average,
    cumprod,
    cumsum,
    median,
    nancumprod,
    nancumsum,
    nanmax,
    nanmean,
    nanmin,
    nanprod,
    nansum,
    prod,
    ptp,
    sort,
)
from chainrule.shapes import (  # noqa: F401
    array_split,
    atleast_1d,
    atleast_2d,
    atleast_3d,
    column_stack,
    dsplit,
    dstack,
    flip,
    fliplr,
    flipud,
    hsplit,
    hstack,
    moveaxis,
    pad,
    ravel,
    repeat,
    roll,
    rot90,
    select,
    take,
    take_along_axis,
    tile,
    vsplit,
    vstack,
)
from chainrule.tensor import Tensor, device, from_numpy, is_tensor, tensor  # noqa: F401
from chainrule.threads import get_num_threads, num_threads, set_num_threads  # noqa: F401
from chainrule.transforms import (  # noqa: F401
    grad,
    gradients,
    hessian,
    hvp,
    jacfwd,
    jacobian,
    jacrev,
    jvp,
    linearize,
    make_ggnvp,
    value_and_grad,
    vjp,
)

__version__ = "0.1.0"

# The training stack and the inspection tools load on first use (`cr.nn`, `cr.draw`, ...), so
# `import chainrule` costs little more than NumPy. Each entry: a name -> (module, attribute);
# an attribute of None is the module itself.
_LAZY = {
    "data": ("chainrule.data", None), "distributed": ("chainrule.distributed", None),
    "inspect": ("chainrule.inspect", None), "nn": ("chainrule.nn", None),
    "optim": ("chainrule.optim", None),
    "AnomalyError": ("chainrule.inspect", "AnomalyError"),
    "GradcheckError": ("chainrule.inspect", "GradcheckError"),
    "detect_anomaly": ("chainrule.inspect", "detect_anomaly"),
    "draw": ("chainrule.inspect", "draw"), "explain": ("chainrule.inspect", "explain"),
    "gradcheck": ("chainrule.inspect", "gradcheck"),
    "compile": ("chainrule.replay", "compile"),
    "CompileError": ("chainrule.replay", "CompileError"),
    "load": ("chainrule.io", "load"), "save": ("chainrule.io", "save"),
    "load_checkpoint": ("chainrule.io", "load_checkpoint"),
    "save_checkpoint": ("chainrule.io", "save_checkpoint"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'chainrule' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
