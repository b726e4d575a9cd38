"""chainrule: backpropagation you can see, trust and train with.

``import chainrule as cr``; ``x = cr.tensor([1.0, 2.0], requires_grad=True)``; build a scalar
from it with the operators and functions below; ``loss.backward()`` fills ``x.grad``.
"""

from numpy import bool_, float16, float32, float64, int32, int64  # noqa: F401

from chainrule import data, distributed, inspect, linalg, nn, optim  # noqa: F401
from chainrule.autograd import (  # noqa: F401
    ShapeError,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from chainrule.checkpoint import checkpoint  # noqa: F401
from chainrule.contractions import *  # noqa: F401, F403 - (replace with explicit names)
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
from chainrule.inspect import (  # noqa: F401
    AnomalyError,
    GradcheckError,
    detect_anomaly,
    draw,
    explain,
    gradcheck,
)
from chainrule.io import load, load_checkpoint, save, save_checkpoint  # noqa: F401
from chainrule.ops import (  # noqa: F401
    abs,
    add,
    argmax,
    argmin,
    astype,
    broadcast_to,
    clip,
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
from chainrule.reductions import *  # noqa: F401, F403 - (replace with explicit names)
from chainrule.shapes import *  # noqa: F401, F403 - (replace with explicit names)
from chainrule.tensor import Tensor, from_numpy, is_tensor, tensor  # noqa: F401
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
