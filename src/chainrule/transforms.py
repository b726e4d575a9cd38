"""Functional transforms in the style of JAX and HIPS autograd.

Reverse mode: `grad`, `value_and_grad`, `vjp`, `jacrev` (also called `jacobian`), `hessian`, and
`gradients` (PyTorch's ``torch.autograd.grad``). Forward mode: `jvp`, `linearize`, `jacfwd`.
Second order: `hvp` (Hessian-vector products) and `make_ggnvp` (generalized Gauss-Newton-vector
products, as in HIPS autograd).

They take functions of Tensors, accept Tensors or arrays as arguments, return Tensors, and never
touch any ``.grad``. They nest: ``grad(lambda x: grad(f)(x).sum())`` is a second derivative and
``jacfwd(jacrev(f))`` a Hessian, because an inner transform records its own backward pass
whenever an outer one is watching. The function returned by `vjp` is itself differentiable, with
respect to the primals and to its cotangent.

Containers: every argument that is differentiated, every output, cotangent and tangent may be a
tuple, list, namedtuple or dict of tensors, nested (a pytree, see `chainrule.pytree`), and the
results have the same structure, as in JAX: ``grad(loss)(params)`` with ``params`` a dict returns
a dict of the same keys. A list is a container: ``[1.0, 2.0]`` is two values, not one array.

Forward mode by transposition. The table holds vector-Jacobian products only, so J v is made from
them: u -> J^T u is linear in u, so <J^T u, v> = <u, J v> and its gradient with respect to u is
J v, at every u. `jvp` records one backward pass whose cotangent is a leaf u = 0
(``create_graph=True``) and differentiates it with respect to u (the "double-VJP" trick: exact,
not an approximation, but it costs a recorded backward pass and a second walk instead of one
forward pass with tangents). `linearize` and `jacfwd` keep that recorded pass, so each further
J v is one more walk over it and f is never run again.

Complex numbers follow PyTorch's convention. For a real-valued L of z = x + iy the gradient is
the conjugate Wirtinger derivative, scaled as PyTorch scales it: 2 dL/d(conj z) = dL/dx + i dL/dy,
the direction of steepest ascent, so gradient descent on z works unchanged (for L = |z|^2 it is
2z). `grad` needs a real-valued output: a complex one raises TypeError (differentiate a real
function of it, such as ``abs(w) ** 2``). Today only the rows whose derivative is real follow the
convention (add, subtract, negative, sum, mean, reshaping and indexing, abs, multiplication by a
real value): the rows of holomorphic functions (multiplication by a complex value, matmul, exp,
sin, ...) return g f'(z) where the convention needs g conj(f'(z)), so complex gradients through
them are wrong. tests/test_transforms.py marks those cases xfail.
"""

from __future__ import annotations

import functools
import numbers
import warnings
import weakref

import numpy as np

from chainrule import autograd, ops, pytree
from chainrule.tensor import Tensor, _seed_gradient, as_array


def gradients(outputs, inputs, grad_outputs=None, retain_graph=False, create_graph=False):
    """d(outputs)/d(inputs) as a list of Tensors (None for an input the outputs do not reach).

    ``outputs`` and ``inputs`` are Tensors or sequences of them; ``grad_outputs`` are the vectors
    of the vector-Jacobian product (implied ones for one-element outputs).
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"gradients: input {i} is not a tensor that requires grad")
    roots, seeds = [], []
    for out, g in zip(outputs, grad_outputs):
        if isinstance(out, Tensor) and out.requires_grad:
            roots.append(out)
            seeds.append(_seed_gradient(out, g, "gradients"))
    if not roots:
        return [None] * len(inputs)
    return autograd.backward(roots, seeds, retain_graph=retain_graph or create_graph,
                             create_graph=create_graph, inputs=inputs)


def _argnums(argnums, n_args, where):
    many = isinstance(argnums, (tuple, list))
    nums = tuple(argnums) if many else (argnums,)
    for i in nums:
        if not isinstance(i, int) or not -n_args <= i < n_args:
            raise ValueError(f"{where}: argnums {argnums!r} does not fit a call with {n_args} "
                             f"positional arguments")
    return tuple(i % n_args for i in nums), many


def _watch(args, nums, where, labels=None):
    """Copies of the arguments at ``nums`` that the graph can differentiate with respect to.

    An argument that already requires grad (an outer transform is watching it) is passed through
    an identity node, so the inner gradient stays connected to the outer graph.
    """
    args = list(args)
    nested = False
    for k, i in enumerate(nums):
        a = args[i]
        if isinstance(a, Tensor) and a.requires_grad and autograd.is_grad_enabled():
            args[i] = ops.reshape(a, a.shape)
            nested = True
        else:
            data = as_array(a)
            if data.dtype.kind not in "fc":
                what = labels[k] if labels else f"argument {i}"
                raise TypeError(f"{where}: {what} has dtype {data.dtype}; only "
                                f"floating-point arguments can be differentiated")
            args[i] = Tensor(data, requires_grad=True)
    return args, nested


# The leaves a transform made for itself, once it has returned: nothing can ask for a gradient
# with respect to them any more (a returned vjp_fn or f_jvp uses them only for its own walk), so a
# graph reaching one is no reason to record (id -> tensor; compared by identity, never by ==).
_retired = weakref.WeakValueDictionary()


def _retire(tensors):
    for t in tensors:
        if isinstance(t, Tensor) and t.grad_fn is None:
            _retired[id(t)] = t


def _depends_on_outer(out, watched) -> bool:
    """True when ``out`` also depends on a tensor that requires grad other than ``watched``.

    ``f`` may close over such a tensor (an outer transform's variable, a model parameter): the
    gradient must then be recorded, or d(grad)/d(that tensor) would silently come out as zero.
    The private leaves of transforms that have returned (`_retired`) do not count.
    """
    if not autograd.is_grad_enabled() or not isinstance(out, Tensor) or out.grad_fn is None:
        return False
    own = {id(t) for t in watched}
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        for p in node.parents:
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(p, Tensor):
                if id(p) not in own and _retired.get(id(p)) is not p:
                    return True
            else:
                stack.append(p)
    return False


class _Trees:
    """Arguments that are containers of tensors (see `chainrule.pytree`), watched leaf by leaf.

    ``leaves`` are the watched leaves of all the trees, in order; ``args`` the arguments with
    each tree rebuilt around its watched leaves (what ``f`` is called with); ``regroup`` turns
    one value per leaf (a gradient, a tangent) back into one tree per argument.
    """

    def __init__(self, args, nums, where):
        self.args, self.leaves, self.labels, self.defs = list(args), [], [], []
        self.nested = False
        for i in nums:
            leaves, paths, treedef = pytree.flatten_with_paths(args[i])
            if not leaves:
                raise TypeError(f"{where}: argument {i} holds no values to differentiate")
            labels = [f"argument {i}{p}" for p in paths]
            watched, nested = _watch(leaves, range(len(leaves)), where, labels)
            self.args[i] = pytree.unflatten(treedef, watched)
            self.leaves += watched
            self.labels += labels
            self.defs.append(treedef)
            self.nested |= nested

    def regroup(self, flat):
        trees, k = [], 0
        for treedef in self.defs:
            n = treedef.n_leaves
            trees.append(pytree.unflatten(treedef, flat[k:k + n]))
            k += n
        return trees


def _flat_like(tree, treedef, where, what):
    """The leaves of ``tree``, which must have the structure ``treedef``."""
    leaves, found = pytree.flatten(tree)
    if treedef.is_leaf and not found.is_leaf:
        raise ValueError(f"{where}: {what} is a {found.kind} but the value it goes with is one "
                         f"tensor")
    if not treedef.is_leaf and found != treedef:
        raise ValueError(f"{where}: {what} must have the structure of the value it goes with "
                         f"({treedef.kind} of {treedef.n_leaves} leaves); got a {found.kind} of "
                         f"{found.n_leaves}")
    return leaves


def _zeros_for(t):
    return Tensor._wrap(np.zeros_like(t.data))


def _call_watched(f, args, kwargs, argnums, where, check, where_args=None):
    """Run ``f`` on ``args`` with the arguments in ``argnums`` watched (recorded as leaves).

    Returns ``(out, trees, nested, many, nums)``: ``f``'s result passed through ``check``,
    the watched arguments (`_Trees`: each may be a container), whether the gradients must stay
    recorded for an outer transform, whether several argnums were asked for, and their indices.
    """
    nums, many = _argnums(argnums, len(args), where_args or where)
    trees = _Trees(args, nums, where)
    with autograd.enable_grad():
        out = check(f(*trees.args, **kwargs))
    targets = trees.leaves
    outs = pytree.flatten(out)[0] if isinstance(out, (tuple, list, dict)) else [out]
    nested = trees.nested or any(_depends_on_outer(o, targets) for o in outs)
    return out, trees, nested, many, nums


def _records(v) -> bool:
    """True when ``v`` is a Tensor whose own gradient is being recorded (an outer transform)."""
    return isinstance(v, Tensor) and v.requires_grad and autograd.is_grad_enabled()


def _output(out, where):
    """``f``'s result as a Tensor: a number or an array (it depends on nothing) is wrapped."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (numbers.Number, np.ndarray, np.generic)):
        return Tensor(as_array(out))
    raise TypeError(f"{where}: f must return a Tensor, got {type(out).__name__}")


def _outputs(out, where):
    """``f``'s result as a list of Tensors (its leaves: it may be a container), and its
    structure."""
    leaves, treedef = pytree.flatten(out)
    return [_output(o, where) for o in leaves], treedef


def _scalar_output(out, where):
    """``f``'s result as a one-element, real Tensor (what a gradient is defined for)."""
    size = out.size if isinstance(out, Tensor) else (
        np.size(out) if isinstance(out, (numbers.Number, np.ndarray, np.generic)) else None)
    if size != 1:
        raise TypeError(f"{where}: f must return a one-element Tensor, got "
                        f"{type(out).__name__} of shape {np.shape(out)}")
    out = _output(out, where)
    if out.dtype.kind == "c":
        raise TypeError(f"{where}: f returned a complex value ({out.dtype}); a gradient needs a "
                        f"real-valued output; differentiate a real function of it, such as "
                        f"abs(w) ** 2")
    return out


def _tangent(v, primal, i, where):
    """Tangent ``i`` (an index or a label such as ``argument 0['w']``) as an array (or a
    recorded Tensor) of the primal's shape and dtype."""
    if isinstance(i, str) and i.removeprefix("argument ").isdigit():
        i = int(i.removeprefix("argument "))
    what = f"tangent {i}" if isinstance(i, int) else f"the tangent of {i}"
    primal_name = f"primal {i}" if isinstance(i, int) else "its primal"
    if _records(v):
        t = v if v.dtype == primal.dtype else ops.astype(v, primal.dtype)
    else:
        t = as_array(v, primal.dtype)
    if t.shape != primal.shape:
        raise ValueError(f"{where}: {what} has shape {t.shape} but {primal_name} has shape "
                         f"{primal.shape}; they must match")
    return t


def _primals_and_tangents(primals, tangents, where):
    """``(trees, tangents, many)``: the watched primals (`_Trees`; a tuple or list is one value
    per argument of ``f``, each of which may be a container) and the tangents, one per leaf."""
    many = isinstance(primals, (tuple, list))
    ps = tuple(primals) if many else (primals,)
    ts = tuple(tangents) if many and isinstance(tangents, (tuple, list)) else (tangents,)
    if len(ts) != len(ps):
        raise ValueError(f"{where}: {len(ps)} primals but {len(ts)} tangents; pass one tangent "
                         f"per primal")
    trees = _Trees(ps, range(len(ps)), where)
    flat = []
    for i, (t, treedef) in enumerate(zip(ts, trees.defs)):
        flat += _flat_like(t, treedef, where, f"tangent {i}")
    flat = [_tangent(v, w, label, where) for v, w, label in zip(flat, trees.leaves, trees.labels)]
    return trees, flat, many


def value_and_grad(f, argnums=0):
    """A function returning ``(f(*args), d f / d args[argnums])``; ``f`` must return a scalar.

    Where ``f``'s output does not depend on an argument, its gradient is zeros of that
    argument's shape and dtype, with a warning (as HIPS autograd does). A complex output raises
    TypeError: the gradient is defined for real-valued functions (see the module's docstring).
    """

    @functools.wraps(f)
    def value_and_grad_f(*args, **kwargs):
        out, trees, nested, many, nums = _call_watched(
            f, args, kwargs, argnums, "grad", lambda o: _scalar_output(o, "grad"),
            where_args="value_and_grad")
        targets = trees.leaves
        grads = gradients(out, targets, create_graph=nested) if out.requires_grad else [None] * len(
            targets)
        unused = [label for label, g in zip(trees.labels, grads) if g is None]
        if unused:
            warnings.warn(f"grad: the output of f does not depend on {', '.join(unused)}; the "
                          f"gradient there is zero", UserWarning, stacklevel=3)
        grads = trees.regroup([_zeros_for(t) if g is None else g for g, t in zip(grads, targets)])
        value = out if nested else out.detach()
        _retire(targets)
        return value, (tuple(grads) if many else grads[0])

    return value_and_grad_f


def grad(f, argnums=0):
    """The gradient of a scalar function: ``grad(f)(x)`` is df/dx, with the shape of x."""

    @functools.wraps(f)
    def grad_f(*args, **kwargs):
        return value_and_grad(f, argnums)(*args, **kwargs)[1]

    return grad_f


def vjp(f, *primals):
    """``(f(*primals), vjp_fn)`` where ``vjp_fn(v)`` returns v^T J for each primal, as a tuple.

    ``vjp_fn`` may be called many times (the graph is kept). It is linear in ``v`` and
    differentiable: when ``v`` is a Tensor that an outer transform is watching, the backward pass
    is recorded with ``v`` in it, so d(vjp_fn(v))/dv = J (this is how `jvp` works).
    """
    trees = _Trees(primals, range(len(primals)), "vjp")
    watched = trees.leaves
    with autograd.enable_grad():
        out = _tree_output("vjp")(f(*trees.args))
    outs, out_def = pytree.flatten(out)
    nested = trees.nested or any(_depends_on_outer(o, watched) for o in outs)

    def vjp_fn(v):
        vs = _flat_like(v, out_def, "vjp", "the cotangent")
        pairs = [(o, u if isinstance(u, Tensor) or u is None else as_array(u, o.dtype))
                 for o, u in zip(outs, vs) if o.requires_grad]
        if not pairs:
            return tuple(trees.regroup([_zeros_for(t) for t in watched]))
        record = nested or any(map(_records, vs))
        grads = gradients([o for o, _ in pairs], watched, grad_outputs=[u for _, u in pairs],
                          retain_graph=True, create_graph=record)
        return tuple(trees.regroup([_zeros_for(t) if g is None else g
                                    for g, t in zip(grads, watched)]))

    _retire(watched)
    return pytree.unflatten(out_def, [o if nested else o.detach() for o in outs]), vjp_fn


class _Linearized:
    """v -> J v for the outputs ``outs`` of the watched ``targets``, by transposing a VJP.

    One backward pass is recorded with leaves ``u`` (zeros, one per output that requires grad) as
    its cotangents: ``gs[i] = sum_k J_ki^T u_k``, linear in ``u``. The gradient of
    ``sum_i <gs[i], v_i>`` with respect to ``u_k`` is ``sum_i J_ki v_i``, the JVP. Each call is one
    walk over the recorded pass (kept with retain_graph), never a new forward pass.
    """

    def __init__(self, outs, targets):
        self.outs = outs
        self.live = [k for k, o in enumerate(outs) if o.requires_grad]
        self.us = [Tensor(np.zeros(outs[k].shape, outs[k].dtype), requires_grad=True)
                   for k in self.live]
        _retire(self.us)
        self.gs = (gradients([outs[k] for k in self.live], targets, grad_outputs=self.us,
                             retain_graph=True, create_graph=True)
                   if self.live else [None] * len(targets))

    def __call__(self, tangents, create_graph=False):
        """J v for each output; ``tangents[i]`` None is a zero tangent for target i."""
        roots, seeds = [], []
        for g, v in zip(self.gs, tangents):
            if g is not None and v is not None and g.requires_grad:
                roots.append(g)
                seeds.append(v)
        found = (gradients(roots, self.us, grad_outputs=seeds, retain_graph=True,
                           create_graph=create_graph) if roots else [None] * len(self.us))
        result = [None] * len(self.outs)
        for k, jv in zip(self.live, found):
            result[k] = jv
        return [_zeros_for(o) if jv is None else jv for jv, o in zip(result, self.outs)]


def jvp(f, primals, tangents):
    """``(f(*primals), J tangents)``: the Jacobian-vector product, as ``torch.func.jvp``.

    ``primals`` is one value or a tuple (or list) of them, one per argument of ``f``;
    ``tangents`` matches it, each of its primal's shape (cast to its dtype). ``f`` returns a
    Tensor or a tuple of them; the result has the same structure. Computed by transposing a
    recorded vector-Jacobian product (see the module's docstring).
    """
    trees, ts, _ = _primals_and_tangents(primals, tangents, "jvp")
    watched = trees.leaves
    with autograd.enable_grad():
        out = f(*trees.args)
    outs, out_def = _outputs(out, "jvp")
    nested = trees.nested or any(_depends_on_outer(o, watched) for o in outs)
    tans = _Linearized(outs, watched)(ts, create_graph=nested or any(map(_records, ts)))
    values = [o if nested else o.detach() for o in outs]
    _retire(watched)
    return pytree.unflatten(out_def, values), pytree.unflatten(out_def, tans)


def linearize(f, *primals):
    """``(f(*primals), f_jvp)`` where ``f_jvp(*tangents)`` is J tangents, as ``jax.linearize``.

    ``f`` runs once; its graph and one recorded backward pass are kept, so each call of
    ``f_jvp`` costs one walk over them and never reruns ``f`` (keep ``f_jvp`` only as long as you
    need it: it holds the graph).
    """
    trees = _Trees(primals, range(len(primals)), "linearize")
    watched = trees.leaves
    with autograd.enable_grad():
        out = f(*trees.args)
    outs, out_def = _outputs(out, "linearize")
    nested = trees.nested or any(_depends_on_outer(o, watched) for o in outs)
    lin = _Linearized(outs, watched)

    def f_jvp(*tangents):
        if len(tangents) != len(trees.defs):
            raise TypeError(f"linearize: f_jvp takes {len(trees.defs)} tangents (one per "
                            f"primal), got {len(tangents)}")
        flat = []
        for i, (t, treedef) in enumerate(zip(tangents, trees.defs)):
            flat += _flat_like(t, treedef, "linearize", f"tangent {i}")
        ts = [_tangent(v, w, label, "linearize")
              for v, w, label in zip(flat, watched, trees.labels)]
        tans = lin(ts, create_graph=nested or any(map(_records, ts)))
        return pytree.unflatten(out_def, tans)

    values = [o if nested else o.detach() for o in outs]
    _retire(watched)
    return pytree.unflatten(out_def, values), f_jvp


def _tree_output(where):
    """A check for ``f``'s result: a Tensor, or a container of Tensors (see `chainrule.pytree`)."""
    def check(out):
        for o in pytree.flatten(out)[0]:
            if not isinstance(o, Tensor):
                raise TypeError(f"{where}: f must return a Tensor (or a tuple, list or dict of "
                                f"them), got {type(o).__name__}")
        return out

    return check


def _jacobians(out, trees, many, jacobian_of):
    """The Jacobians of each output leaf with respect to each watched argument, arranged as
    JAX arranges them: the outputs' structure, each leaf holding one Jacobian per argument
    (a tuple when several argnums were asked for), each with the argument's structure."""
    out_leaves, out_def = pytree.flatten(out)
    per_output = []
    for o in out_leaves:
        per_arg = trees.regroup(jacobian_of(o))
        per_output.append(tuple(per_arg) if many else per_arg[0])
    _retire(trees.leaves)
    return pytree.unflatten(out_def, per_output)


def jacrev(f, argnums=0):
    """The Jacobian by reverse mode, one VJP per output element: ``jacrev(f)(x)`` has shape
    ``f(x).shape + x.shape``. Cheaper than `jacfwd` when f has fewer outputs than inputs.
    ``x`` and ``f``'s result may be containers of tensors, arranged as in JAX."""

    @functools.wraps(f)
    def jacrev_f(*args):
        out, trees, nested, many, _ = _call_watched(f, args, {}, argnums, "jacobian",
                                                    _tree_output("jacobian"))
        targets = trees.leaves

        def jacobian_of(o):
            rows = [[] for _ in targets]
            for k in range(o.size):
                onehot = np.zeros(o.size, dtype=o.dtype)
                onehot[k] = 1
                grads = (gradients(o, targets, grad_outputs=onehot.reshape(o.shape),
                                   retain_graph=True, create_graph=nested)
                         if o.requires_grad else [None] * len(targets))
                for r, g, t in zip(rows, grads, targets):
                    r.append(_zeros_for(t) if g is None else g)
            jacs = []
            for r, t in zip(rows, targets):
                stacked = ops.stack(r) if r else Tensor._wrap(np.zeros((0,) + t.shape, t.dtype))
                jacs.append(ops.reshape(stacked, o.shape + t.shape))
            return jacs

        return _jacobians(out, trees, many, jacobian_of)

    return jacrev_f


jacobian = jacrev


def jacfwd(f, argnums=0):
    """The Jacobian by forward mode, one JVP per input element: the same shape as `jacrev`,
    ``f(x).shape + x.shape``. ``f`` runs once and its VJP is recorded once (`linearize`)."""

    @functools.wraps(f)
    def jacfwd_f(*args):
        out, trees, nested, many, _ = _call_watched(f, args, {}, argnums, "jacfwd",
                                                    _tree_output("jacfwd"))
        targets = trees.leaves

        def jacobian_of(o):
            lin = _Linearized([o], targets)
            jacs = []
            for j, t in enumerate(targets):
                columns = []
                for k in range(t.size):
                    onehot = np.zeros(t.size, dtype=t.dtype)
                    onehot[k] = 1
                    tangents = [None] * len(targets)
                    tangents[j] = onehot.reshape(t.shape)
                    columns.append(lin(tangents, create_graph=nested)[0])
                if columns:
                    jacs.append(ops.reshape(ops.stack(columns, axis=o.ndim), o.shape + t.shape))
                else:
                    jacs.append(Tensor._wrap(np.zeros(o.shape + t.shape, o.dtype)))
            return jacs

        return _jacobians(out, trees, many, jacobian_of)

    return jacfwd_f


def hessian(f, argnums=0):
    """The matrix of second derivatives of a scalar function: ``jacobian(grad(f))``."""
    return jacobian(grad(f, argnums), argnums)


def hvp(f, primals, tangents, *, mode="reverse"):
    """``(f(*primals), H tangents)``: a Hessian-vector product of a scalar ``f``, without forming H.

    Called as ``torch.autograd.functional.hvp``: ``primals`` and ``tangents`` are one value or
    tuples of them (one per argument of ``f``); the product has the same structure, its part i
    being ``sum_j (d^2 f / dx_i dx_j) v_j``. ``mode="reverse"`` (the default) differentiates
    <grad f(x), v> (reverse over reverse, using that H is symmetric); ``mode="forward"`` takes
    the JVP of ``grad f`` (forward over reverse, by transposition here). Both are exact; reverse
    is the faster of the two here (benchmarks/bench_hvp.py).
    """
    if mode not in ("reverse", "forward"):
        raise ValueError(f"hvp: mode must be 'reverse' or 'forward', not {mode!r}")
    trees, ts, many = _primals_and_tangents(primals, tangents, "hvp")
    watched = trees.leaves
    with autograd.enable_grad():
        out = _scalar_output(f(*trees.args), "hvp")
    nested = trees.nested or _depends_on_outer(out, watched)
    record = nested or any(map(_records, ts))
    n = len(watched)
    gs = gradients(out, watched, create_graph=True) if out.requires_grad else [None] * n
    if mode == "reverse":
        pairs = [(g, v) for g, v in zip(gs, ts) if g is not None and g.requires_grad]
        hv = (gradients([g for g, _ in pairs], watched, grad_outputs=[v for _, v in pairs],
                        create_graph=record) if pairs else [None] * n)
    else:
        live = [i for i, g in enumerate(gs) if g is not None]
        hv = [None] * n
        for i, h in zip(live, _Linearized([gs[i] for i in live], watched)(ts, record)):
            hv[i] = h
    hv = trees.regroup([_zeros_for(w) if h is None else h for h, w in zip(hv, watched)])
    value = out if nested else out.detach()
    _retire(watched)
    return value, (tuple(hv) if many else hv[0])


def _half_squared_norm(y):
    return (y * y).sum() * 0.5


def make_ggnvp(f, g=None, f_argnum=0):
    """Generalized Gauss-Newton-vector products, as HIPS autograd's ``make_ggnvp``.

    For ``f`` from parameters to outputs and a scalar loss ``g`` of the outputs (by default
    ``0.5 * sum(y ** 2)``, which makes the product J^T J v), ``make_ggnvp(f, g)(*args)`` runs
    ``f`` once at ``args`` and returns ``ggnvp(v) = J^T H_g J v``, J the Jacobian of ``f`` with
    respect to ``args[f_argnum]`` and H_g the Hessian of ``g`` at ``f(*args)``. The graphs are
    kept, so each call of ``ggnvp`` is three walks (J v by transposition, H_g w, J^T w) and
    neither ``f`` nor ``g`` runs again. Unlike the Hessian of ``g(f(x))`` it leaves out the
    curvature of ``f``, and it is positive semi-definite whenever ``g`` is convex.
    """
    loss = _half_squared_norm if g is None else g

    def ggnvp_maker(*args):
        if not isinstance(f_argnum, int):
            raise ValueError(f"make_ggnvp: f_argnum must be one int, not {f_argnum!r}")
        (i,), _ = _argnums(f_argnum, len(args), "make_ggnvp")
        watched, nested = _watch(args, (i,), "make_ggnvp")
        x = watched[i]
        with autograd.enable_grad():
            y = _output(f(*watched), "make_ggnvp")
        nested = nested or _depends_on_outer(y, [x])
        lin = _Linearized([y], [x])
        if nested:  # keep d(ggnvp)/d(outer variables) through y
            (y_in,), _ = _watch([y], (0,), "make_ggnvp")
        else:  # a fresh leaf: the walks for H_g stop at it
            y_in = Tensor(y.data, requires_grad=True)
        with autograd.enable_grad():
            gy = _scalar_output(loss(y_in), "make_ggnvp: g")
        (grad_g,) = gradients(gy, [y_in], create_graph=True) if gy.requires_grad else [None]

        def ggnvp(v):
            record = nested or _records(v)
            v = _tangent(v, x, 0, "ggnvp")
            (jv,) = lin([v], create_graph=record)
            hjv = None
            if grad_g is not None and grad_g.requires_grad:
                (hjv,) = gradients(grad_g, [y_in], grad_outputs=jv, retain_graph=True,
                                   create_graph=record)
            if hjv is None or not y.requires_grad:
                return _zeros_for(x)
            (out,) = gradients(y, [x], grad_outputs=hjv, retain_graph=True, create_graph=record)
            return _zeros_for(x) if out is None else out

        _retire([x, y_in])
        return ggnvp

    return ggnvp_maker
