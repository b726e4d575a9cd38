"""`cr.compile`: trace a function of tensors once, then replay its NumPy calls.

``loss_fn = cr.compile(lambda x, y: F.cross_entropy(model(x), y))`` runs the function normally the
first time, recording every operation it applies: the forward function of each row of the table,
where its arrays come from (an argument, a parameter, an earlier result, a constant) and the
backward pass the graph would take. Later calls with arguments of the same shapes and dtypes skip
the Python around the operations (module calls, argument checks, graph nodes): they call the same
forward functions on the new arrays, and the tensor they return has one node whose backward runs
the same rules in the same order as the eager walk. The results are bit-identical to the eager
call's, and ``loss.backward()`` fills the parameters' ``.grad`` exactly as before.

A whole training step compiles too: a function that calls ``opt.zero_grad()``, computes a loss,
calls ``loss.backward()`` and ``opt.step()`` (``clip_grad_norm_`` between them, a scheduler's
``step()`` anywhere) is traced with its backward planned at the call, and a replay runs the forward
code, the backward code, adds the gradients into the leaves' ``.grad`` as the engine does and then
calls the optimizer and scheduler steps and zero_grads where the function called them. Other Python
that touches no tensor runs only when traced. Its first replay is checked against an eager step
taken from the same parameters, gradients and optimizer state (`_TrainingState`).

Array arguments arrive as tensors sharing their memory (see `_call`), so whatever the function
computes from them runs through the operations and is recorded. Random draws from the library
generator (dropout in training mode, ``cr.randn``) are recorded as draws: a replay draws fresh
numbers in the order the eager calls would, so a compiled run repeats an eager run with the same
seed. What a trace cannot see, it refuses while tracing, with an error naming it: in-place writes,
values read out of the graph (``.item()``, ``.numpy()``, ``if x:``, ``np.nonzero``), views of the
call's arrays made with NumPy on ``.data``, boolean-mask indexing (its shape depends on the
values), custom Functions, ``cr.checkpoint``, hooks on intermediate tensors, batch norm updating
its running statistics, writes to the parameters other than an optimizer's step, and in a training
step a second or retained backward, an operation after the backward, an optimizer step before it, a
step with a closure or an overridden ``step``. New argument shapes, dtypes or Python values, a
parameter of a new shape, a changed ``requires_grad``, a module switched between train and eval or
given a new attribute (a new Parameter, sub-module or ``p``) make a new trace; the old ones are
kept (32 at most), so switching back replays again. Tensors read from a closure or a global rather
than through an argument or a module are bound when traced, as JAX binds them: new values in the
same tensor are seen, a name rebound to another tensor is not (pass it as an argument). The first
replay of each trace is checked against an eager call (``check=True``), which catches a computation
done on arrays outside chainrule's operations. Backward through a compiled call cannot build a
graph (``create_graph=True``): call the function uncompiled for higher-order gradients.
"""

from __future__ import annotations

import builtins
import copy
import functools
import operator
import threading
import warnings
import weakref

import numpy as np

from chainrule import autograd, random
from chainrule.autograd import (
    _FREED,
    Node,
    ShapeError,
    _op_error,
    _topological_counts,
    unbroadcast,
)
from chainrule.pytree import flatten, unflatten
from chainrule.tensor import Tensor

_tracing_lock = threading.Lock()
builtins_compile = builtins.compile  # `compile` below is chainrule's


class CompileError(RuntimeError):
    """A function that `compile` cannot trace or replay; the message says what and why."""


def compile(fn=None, *, check: bool = True):
    """Trace ``fn`` once per argument signature and replay it afterwards (see the module doc).

    ``fn`` takes tensors, arrays and Python values (or containers of them) and returns one tensor,
    or a tuple or list of tensors of which at most one requires grad. It may be a whole training
    step (``zero_grad``, the loss, ``loss.backward()``, ``opt.step()``). Usable as
    ``@cr.compile`` or ``@cr.compile(check=False)``; ``check=False`` skips the eager comparison
    at the first replay of each trace.
    """
    if fn is None:
        return functools.partial(compile, check=check)
    if not callable(fn):
        raise TypeError(f"compile: expected a callable, got {type(fn).__name__}")
    return Compiled(fn, check)


MAX_TRACES = 32  # per compiled function; the oldest is dropped to make room for a new one


class Compiled:
    """A compiled function: call it like ``fn`` (which ``.fn`` holds, uncompiled). ``traces``
    counts the traces made so far, ``replays`` the calls that replayed one. Other attributes
    are ``fn``'s, so a compiled module still has its ``parameters()``, ``train()`` and
    ``state_dict()``; on a class, it compiles the method of each instance separately."""

    def __init__(self, fn, check):
        self.fn = fn
        self.check = check
        self.traces = 0
        self.replays = 0
        self._cache = {}
        self._bound = weakref.WeakKeyDictionary()  # instance -> its compiled method
        self._warned = False  # about dropping traces
        functools.update_wrapper(self, fn, updated=())

    def __repr__(self):
        return f"<compiled {_name(self.fn)}: {sum(map(len, self._cache.values()))} traces>"

    def __getattr__(self, name):  # only for names Compiled lacks: those of the function
        if name == "fn":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        try:
            bound = self._bound.get(instance)
        except TypeError:  # not weakly referable: compiled afresh, traced at every call
            return Compiled(self.fn.__get__(instance, owner), self.check)
        if bound is None:
            bound = self._bound[instance] = Compiled(self.fn.__get__(instance, owner),
                                                     self.check)
        return bound

    def __call__(self, *args, **kwargs):
        if autograd._tracer is not None or autograd.anomaly.enabled:  # inside another trace, or
            leaves, treedef = flatten((args, kwargs))  # checking for anomalies: run as written
            return _call(self.fn, leaves, treedef)
        key = _flat_key(args) if not kwargs else None
        if key is not None:  # the usual call: no containers
            leaves, treedef = args, None
        else:
            leaves, treedef = flatten((args, kwargs))
            key = (treedef, autograd.is_grad_enabled(), *map(_signature, leaves))
        traces = self._cache.get(key, ())
        for i, trace in enumerate(traces):  # one per train/eval mode, parameter shape, ...
            if trace.still_valid():
                if i:  # the one in use is tried first next time
                    traces.insert(0, traces.pop(i))
                self.replays += 1
                if trace.unchecked:  # the eager run below must draw the numbers the replay drew
                    before = random.get_rng_state()
                    state = (_TrainingState(trace, leaves)  # the eager check repeats its
                             if trace.stepped or trace.before_backward else None)  # effects
                out = trace.replay(leaves)
                if trace.unchecked:
                    self._compare(trace, out, key, leaves, treedef, before, state)
                return out
        out, trace = _Trace.run(self.fn, leaves, treedef)
        if trace is None:
            return out
        trace.unchecked = self.check
        if sum(map(len, self._cache.values())) >= MAX_TRACES:  # drop the oldest
            if not self._warned:
                self._warned = True
                warnings.warn(f"compile: {_name(self.fn)} has needed {MAX_TRACES} traces (new "
                              f"argument shapes, dtypes or Python values at most calls); older "
                              f"ones are dropped, and compiling it may gain nothing",
                              RuntimeWarning, stacklevel=2)
            oldest = next(iter(self._cache))
            self._cache[oldest].pop()  # (its least recently used)
            if not self._cache[oldest]:
                del self._cache[oldest]
        self._cache.setdefault(key, []).append(trace)
        self.traces += 1
        return out

    def _compare(self, trace, out, key, leaves, treedef, rng_state, state):
        """Run the call eagerly after its first replay and compare: the outputs, and for a
        training step the parameters, gradients and optimizer state it left (the step is run
        from the state the replay started from, which is then the eager run's)."""
        after = random.get_rng_state()
        random.set_rng_state(rng_state)
        replayed = None
        try:
            if state is None:
                with autograd.no_grad():
                    expected = _call(self.fn, leaves, treedef)
            else:
                replayed = state.taken()
                state.restore()
                expected = _call(self.fn, leaves, treedef)
        finally:
            random.set_rng_state(after)
        got = out if isinstance(out, (tuple, list)) else () if out is None else (out,)
        want = (expected if isinstance(expected, (tuple, list)) else () if expected is None
                else (expected,))
        pairs = [(f"output {i}", a.data, b.data) for i, (a, b) in enumerate(zip(got, want))]
        if state is not None:
            now = state.taken()
            if [what for what, _ in replayed] != [what for what, _ in now]:
                replayed, now = [("the optimizer state", None)], [("", np.zeros(0))]
            pairs += [(what, a, b) for (what, a), (_, b) in zip(replayed, now)]
        for what, a, b in pairs:
            if a is None or b is None:
                same = a is b
            else:
                same = a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
                    a, b, equal_nan=True)
            if not same:
                self._cache[key].remove(trace)  # the next call traces again
                spelled = "None" if a is None else f"{a.dtype}{a.shape}"
                wanted = "None" if b is None else f"{b.dtype}{b.shape}"
                raise CompileError(
                    f"compile: replaying the trace of {_name(self.fn)} gave {what} unlike "
                    f"running it ({spelled} vs {wanted}); it computes something from its inputs "
                    f"outside chainrule's operations (reading .data, NumPy on an array, Python "
                    f"control flow on a value), which a replay cannot repeat. Call it "
                    f"uncompiled.")
        trace.unchecked = False


class _TrainingState:
    """What a compiled training step changes (parameters and their gradients, optimizer state),
    saved before its first replay so the eager check can run from the same point."""

    def __init__(self, trace, leaves):
        tensors, optimizers, schedulers = {}, {}, {}
        for fn, args in trace.before_backward + trace.after_backward:
            owner = getattr(fn, "__self__", None)  # an optimizer, a module, a learning-rate
            if hasattr(owner, "optimizer") and hasattr(owner, "state_dict"):  # scheduler, or
                schedulers[id(owner)] = owner  # None (clipping)
                owner = owner.optimizer
            if hasattr(owner, "param_groups"):
                optimizers[id(owner)] = owner
                params = [p for group in owner.param_groups for p in group["params"]]
            elif owner is not None:
                params = list(owner.parameters())
            else:
                params = [t for a in args if isinstance(a, list) for t in a
                          if isinstance(t, Tensor)]
            tensors.update((id(p), p) for p in params)
        for source in trace.parents:
            t = trace._resolve(source, leaves)
            tensors[id(t)] = t
        self.tensors = list(tensors.values())
        self.optimizers = list(optimizers.values())
        self.schedulers = list(schedulers.values())
        self.saved = [(t.data.copy(), t.grad, None if t.grad is None else t.grad.data.copy(),
                       t._version[0]) for t in self.tensors]
        self.states = [self._copy(opt.state) for opt in self.optimizers]
        self.options = [self._options(opt) for opt in self.optimizers]  # lr and the rest
        self.schedules = [copy.deepcopy(sched.state_dict()) for sched in self.schedulers]

    @staticmethod
    def _options(opt):
        return [{k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
                for group in opt.param_groups]

    @staticmethod
    def _copy(state):
        return {p: {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in s.items()}
                for p, s in state.items()}

    def restore(self):
        for t, (data, grad, grad_data, version) in zip(self.tensors, self.saved):
            t.data[...] = data
            t.grad = grad
            if grad is not None:
                grad.data[...] = grad_data
            t._version[0] = version
        for opt, state, options in zip(self.optimizers, self.states, self.options):
            opt.state.clear()
            opt.state.update(self._copy(state))
            for group, values in zip(opt.param_groups, options):
                group.update(copy.deepcopy(values))
        for sched, schedule in zip(self.schedulers, self.schedules):
            sched.load_state_dict(copy.deepcopy(schedule))

    def taken(self):
        """(what, array) for everything the step left: each tensor's value and gradient, and
        every array and number of the optimizer state."""
        out = []
        for i, t in enumerate(self.tensors):
            name = f"tensor {i} of the step ({t.shape})"
            out.append((f"the value of {name}", t.data.copy()))
            out.append((f"the gradient of {name}", None if t.grad is None else
                        t.grad.data.copy()))
        for opt in self.optimizers:
            for i, p in enumerate(self.tensors):
                for k, v in sorted(opt.state.get(p, {}).items()):
                    out.append((f"{type(opt).__name__} state {k!r} of tensor {i}",
                                np.array(v)))
            for i, group in enumerate(opt.param_groups):
                out.append((f"the lr of {type(opt).__name__}'s group {i}",
                            np.array(group["lr"])))
        return out


def _call(fn, leaves, treedef):
    """``fn`` on the arguments with every array made a tensor sharing its memory.

    As JAX's jit hands a function tracers, a compiled function sees its array arguments as
    tensors: what it computes from them runs through chainrule's operations (recorded, so a
    replay repeats it) or is refused (``if``, ``float()``, ``np.asarray``), never baked into the
    trace as a constant. Traced, replayed, checked or run as written, it sees the same types."""
    leaves = [Tensor._wrap(a) if type(a) is np.ndarray else a for a in leaves]
    if treedef is None:
        return fn(*leaves)
    args, kwargs = unflatten(treedef, leaves)
    return fn(*args, **kwargs)


_FLAT = {Tensor, np.ndarray, int, float, bool, complex, str, type(None)}


def _name(fn):
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _flat_key(args):
    """The cache key of a call whose arguments are all leaves, or None if one is a container."""
    key = [len(args), autograd.is_grad_enabled()]
    for a in args:
        kind = type(a)
        if kind is Tensor:  # _signature's first case, spelled out: this runs at every call
            d = a.data
            key.append((Tensor, d.shape, d.dtype, a._requires_grad))
        elif kind in _FLAT:
            key.append(_signature(a))
        else:
            return None
    return tuple(key)


def _signature(leaf):
    """What a trace is specialised on, for one argument leaf."""
    if isinstance(leaf, Tensor):
        return (Tensor, leaf.data.shape, leaf.data.dtype, leaf._requires_grad)
    if type(leaf) is np.ndarray:
        return (np.ndarray, leaf.shape, leaf.dtype)
    if leaf is None or isinstance(leaf, (bool, int, float, complex, str, np.generic)):
        return (type(leaf), leaf)
    subclass = " (an ndarray subclass: pass np.asarray of it)" if isinstance(
        leaf, np.ndarray) else ""
    raise TypeError(f"compile: cannot take an argument of type {type(leaf).__name__}"
                    f"{subclass}; pass tensors, arrays, Python numbers or strings (or tuples, "
                    f"lists and dicts of them)")


class _Trace:
    """One recorded call: the forward tape, the backward plan, and what they depend on."""

    def __init__(self):
        self.thread = threading.get_ident()
        self.values = []  # a slot per array the call sees; constants filled in
        self.slot_of = {}  # id(array) -> slot, for arrays alive during the trace
        self.alive = []  # every array seen, so that no id is reused while tracing
        self.inputs = []  # (leaf position, slot) of the array arguments
        self.externals = []  # tensors read from outside the call (parameters, buffers)
        self.external_slots = []
        self.external_signature = []
        self.tensor_of_slot = {}  # slot -> the argument or external Tensor it came from
        self.source_of_slot = {}  # slot -> ("L", argument leaf position, is a Tensor) or ("E", k)
        self.modules = {}  # id(object) -> (object, its _trace_key() when traced)
        # (forward, getter, arity, params, substitutions, out slot, input slots, name)
        self.tape = []
        self.entry_of_node = {}  # id(node) -> tape index
        self.nodes = []  # the nodes made while tracing (alive until the plan is built)
        self.unchecked = False
        # A training step: loss.backward() inside the function (the tensor and its seed), and
        # the optimizer steps and zero_grads around it, called again at every replay.
        self.step_root = None
        self.step_seed = None
        self.before_backward = []  # (fn, args)
        self.after_backward = []
        self.paused = False  # while the traced backward runs: its rules are not the call's

    # --- recording ---------------------------------------------------------------------------
    @classmethod
    def run(cls, fn, leaves, treedef):
        trace = cls()
        trace.fn_name = _name(fn)
        for position, leaf in enumerate(leaves):
            if isinstance(leaf, Tensor | np.ndarray):
                is_tensor = isinstance(leaf, Tensor)
                slot = trace._new_slot(leaf.data if is_tensor else leaf)
                if is_tensor:
                    trace.tensor_of_slot[slot] = leaf
                trace.source_of_slot[slot] = ("L", position, is_tensor)
                trace.inputs.append((position, slot, is_tensor))
        with _tracing_lock:
            if autograd._tracer is not None:  # another thread is tracing: run this call as is
                return _call(fn, leaves, treedef), None
            autograd._tracer = trace
        try:
            out = _call(fn, leaves, treedef)
        finally:
            autograd._tracer = None
        trace._finish(fn, out)
        return out, trace

    def _new_slot(self, array, constant=False):
        slot = len(self.values)
        self.values.append(array if constant else None)
        if isinstance(array, np.ndarray):
            self.slot_of[id(array)] = slot
            self.alive.append(array)
        return slot

    def _ours(self):
        return threading.get_ident() == self.thread and not self.paused

    def refuse(self, what):
        if self._ours():
            raise CompileError(f"compile: the traced function uses {what}, which a replay cannot "
                               f"repeat; call it uncompiled (or change what it does)")

    def note_module(self, module):
        if self._ours():
            self.modules[id(module)] = (module, module._trace_key())

    def _slot(self, array, source=None):
        """The slot an operation's input comes from, made a constant or an external if new."""
        slot = self.slot_of.get(id(array)) if isinstance(array, np.ndarray) else None
        if slot is not None:
            return slot
        self._refuse_views(array, "an input")
        if isinstance(source, Tensor) and source.data is array:
            slot = self._new_slot(array)
            self.tensor_of_slot[slot] = source
            self.source_of_slot[slot] = ("E", len(self.externals), True)
            self.externals.append(source)
            self.external_slots.append(slot)
            self.external_signature.append((array.shape, array.dtype, source._requires_grad))
            return slot
        return self._new_slot(array, constant=True)

    def _append(self, name, forward, slots, params, out):
        if self.step_root is not None:
            raise CompileError(
                f"compile: {name} runs after loss.backward() in the traced training step; a "
                f"replay computes the whole forward pass before the backward, so compute what "
                f"the step returns before calling backward (or call it uncompiled)")
        getter = operator.itemgetter(*slots) if slots else _no_arguments
        if isinstance(out, tuple):
            out_slot = (self._new_slot(out[0]), self._new_slot(out[1]))
        else:
            out_slot = None if out is None else self._new_slot(out)
        self.tape.append((forward, getter, len(slots), params, self._substitutions(params),
                          out_slot, tuple(slots), name))

    def _refuse_views(self, array, what):
        """A new array that is a view of one of this call's (an argument's, a result's) was made
        outside the operations: a replay would read the traced values. Refuse it by name."""
        base = array.base if isinstance(array, np.ndarray) else None
        while isinstance(base, np.ndarray):
            slot = self.slot_of.get(id(base))
            if slot is not None and self.values[slot] is None:
                raise CompileError(
                    f"compile: {what} is a view of an array of the traced call made outside "
                    f"chainrule's operations (NumPy on .data: a slice, .T, .reshape), which a "
                    f"replay would not remake; use the tensor operations, or call it uncompiled")
            base = base.base

    def _substitutions(self, params):
        """Parameters that are arrays of this call (an index, labels): (name, slot, position)."""
        subs = []
        for name, value in params.items():
            for j, item in enumerate(value) if isinstance(value, tuple) else ((None, value),):
                if not isinstance(item, np.ndarray):
                    continue
                slot = self.slot_of.get(id(item))
                if slot is None:
                    self._refuse_views(item, f"the parameter {name!r}")
                elif self.values[slot] is None:
                    subs.append((name, slot, j))
        return tuple(subs)

    def record(self, op, args, arrays, params, result, residual=None):
        if not self._ours():
            return
        slots = []
        for i, array in enumerate(arrays):
            source = args[i] if i < len(args) else None
            slot = self._slot(array, source)
            if isinstance(source, Tensor) and source.grad_fn is not None:
                known = self.tensor_of_slot.get(slot)
                entry = self.entry_of_node.get(id(source.grad_fn))
                if entry is None and known is not source:
                    raise CompileError(
                        f"compile: {op.name} takes a tensor made by {source.grad_fn.name} "
                        f"outside the traced operations; call the function uncompiled")
            slots.append(slot)
        if op.residual:  # forward gives (output, residual): two slots
            self._append(op.name, op.forward, slots, params, (result.data, residual))
        else:
            self._append(op.name, op.forward, slots, params, result.data)
        if result.grad_fn is not None:
            self.entry_of_node[id(result.grad_fn)] = len(self.tape) - 1
            self.nodes.append(result.grad_fn)

    def aliased(self, tensor):
        """``tensor.detach()``: the alias shares ``tensor``'s array, so its slot must be
        ``tensor``'s (an external read afresh at every replay), never the alias's own."""
        if self._ours() and isinstance(tensor.data, np.ndarray):
            self._slot(tensor.data, tensor)

    def derive(self, fn, array, args, out):
        if self._ours():
            self._append(_name(fn), lambda a: fn(a, *args), [self._slot(array)], {}, out)

    def draw(self, fn, args, out):
        if self._ours():
            self._append(_name(args[0] if args and callable(args[0]) else fn),
                         lambda: fn(*args), [], {}, out)

    def check(self, check, args):
        if self._ours():
            slots = [self._slot(a) if isinstance(a, np.ndarray) else self._new_slot(a, True)
                     for a in args]
            self._append(_name(check), check, slots, {}, None)

    # --- a whole training step -------------------------------------------------------------
    def take_backward(self, roots, seeds, retain_graph, create_graph, inputs):
        """``loss.backward()`` in the traced function: plan the walk now (the eager walk that
        follows frees what the nodes saved); it then runs unrecorded until `resume`."""
        if not self._ours():
            return False

        def refuse(what):
            raise CompileError(f"compile: the traced training step calls {what}, which a replay "
                               f"cannot repeat; call it uncompiled (or change what it does)")

        if self.step_root is not None:
            refuse("a backward pass a second time")
        if create_graph or inputs is not None:
            refuse("a backward pass with create_graph=True or inputs= (cr.grad of a function "
                   "whose gradient is not recorded: compile the loss and call backward on its "
                   "result)")
        if retain_graph:
            refuse("a backward pass with retain_graph=True")
        if len(roots) != 1:
            refuse("a backward pass from several tensors at once")
        root, seed = roots[0], seeds[0]
        if root.grad_fn is None or id(root.grad_fn) not in self.entry_of_node:
            refuse("a backward pass from a tensor the traced operations did not make")
        seed = seed.data if isinstance(seed, Tensor) else seed
        slot = self.slot_of.get(id(seed))
        if slot is not None and self.values[slot] is None:  # computed or given: replayed
            self.seed_slot, seed = slot, None
        else:  # implied (ones) or made afresh from constants: the same at every call
            self.seed_slot, seed = None, np.array(seed)
        self._plan(root.grad_fn, leaves_only=True)
        self.step_root, self.step_seed = root, seed
        self.paused = True
        return True

    def resume(self):
        self.paused = False

    def effect(self, what, fn, args):
        if not self._ours():
            return
        if self.step_root is None and what in ("an optimizer step", "clip_grad_norm_"):
            self.refuse(f"{what} before loss.backward() (they read the gradients it fills)")
        (self.after_backward if self.step_root is not None else self.before_backward).append(
            (fn, args))

    # --- the plan ------------------------------------------------------------------------------
    def _finish(self, fn, out):
        if out is None and self.step_root is not None:  # a training step that returns nothing
            outputs, self.out_type = (), type(None)
        else:
            outputs = out if isinstance(out, (tuple, list)) else (out,)
            self.out_type = type(out) if isinstance(out, (tuple, list)) else None
        self.out_slots = []
        grad_outputs = []
        for i, t in enumerate(outputs):
            if not isinstance(t, Tensor):
                raise CompileError(f"compile: {_name(fn)} must return a tensor or a tuple or "
                                   f"list of tensors; output {i} is {type(t).__name__}")
            slot = self.slot_of.get(id(t.data))
            if slot is None:
                raise CompileError(f"compile: output {i} of {_name(fn)} was not made by the "
                                   f"traced operations")
            self.out_slots.append(slot)
            if t._requires_grad:
                grad_outputs.append(i)
        if len(grad_outputs) > 1:
            raise CompileError(f"compile: outputs {grad_outputs} of {_name(fn)} require grad; a "
                               f"compiled function differentiates one output (return the others "
                               f".detach()ed)")
        self.grad_output = grad_outputs[0] if grad_outputs else None
        root = None if self.grad_output is None else outputs[self.grad_output].grad_fn
        self.stepped = self.step_root is not None
        self.root_is_source = False
        if self.stepped:  # planned at loss.backward(); the outputs' graph is spent
            del self.step_root
        elif root is None or self.tensor_of_slot.get(self.out_slots[self.grad_output]):
            self.root_is_source = root is not None  # fn returned an argument or a parameter
            self.plan, self.parents, self.kept = [], [], []
        else:
            self._plan(root)
        self.output_sources = [self.source_of_slot.get(slot) for slot in self.out_slots]
        self.epoch = autograd.trace_epoch[0]
        self.guard = _generate_guard(self)
        self.forward_code, self.backward_code = _generate(self)
        del self.slot_of, self.alive, self.nodes, self.entry_of_node, self.tensor_of_slot

    def _plan(self, root, leaves_only=False):
        """The backward walk the eager engine would take from ``root``, as a fixed list.

        The order is the engine's (its ready stack popped in the same sequence), so every
        gradient is summed in the same order and the replay's results are bit-identical.
        ``leaves_only``: a training step's walk, which must end at leaves (it fills .grad)."""
        self.plan = []
        self.parents = []  # where the tensors come from whose gradient the node passes on
        self.kept = []  # the slots the backward rules read
        deps = _topological_counts([root])
        index = {id(root): 0}
        kept_index = {}
        parent_index = {}

        def keep(slot):
            if slot not in kept_index:
                kept_index[slot] = len(self.kept)
                self.kept.append(slot)
            return kept_index[slot]

        ready = [root]
        while ready:
            node = ready.pop()
            entry = self.entry_of_node.get(id(node))
            if entry is None or node.hooks:
                what = "has a hook (register_hook, retain_grad)" if node.hooks else \
                    "was made outside the traced operations"
                raise CompileError(f"compile: the graph node {node.name} {what}; call the "
                                   f"function uncompiled")
            _, _, _, params, subs, out_slot, slots, _ = self.tape[entry]
            op = node.op
            saved = node.saved or (None,) * len(node.parents)
            inputs = tuple(keep(slots[i]) if s is not None else -1 for i, s in enumerate(saved))
            if node.ans is None:
                ans = -1
            else:
                ans = keep(out_slot[1] if isinstance(out_slot, tuple) else out_slot)
            rules = tuple(rule if p is not None and rule else None
                          for rule, p in zip(op.vjps, node.parents)) if op.vjp_all is None \
                else op.vjp_all
            targets = []
            for i, p in enumerate(node.parents):
                if p is None:
                    targets.append(None)
                elif type(p) is Node and id(p) in self.entry_of_node:
                    if id(p) not in index:
                        index[id(p)] = len(index)
                    targets.append(index[id(p)])
                    deps[p] -= 1
                    if deps[p] == 0:
                        ready.append(p)
                else:
                    source = self.tensor_of_slot.get(slots[i])
                    if source is None or (source.grad_fn or source) is not p:
                        raise CompileError(f"compile: {node.name} passes a gradient to a "
                                           f"tensor made outside the traced operations")
                    if leaves_only and source.grad_fn is not None:
                        raise CompileError(
                            f"compile: the traced training step's backward reaches a tensor "
                            f"made by {source.grad_fn.name} outside the call; pass a leaf "
                            f"(x.detach()) or call the step uncompiled")
                    if id(source) not in parent_index:
                        parent_index[id(source)] = len(self.parents)
                        self.parents.append(self.source_of_slot[slots[i]])
                    targets.append(~parent_index[id(source)])
            self.plan.append((index[id(node)], node.name, rules, inputs, ans, params, subs,
                              tuple(targets), node.shapes, len(node.parents), entry))
        self.n_nodes = len(index)
        self.row = _CompiledRow(self, self.fn_name)

    # --- replaying -----------------------------------------------------------------------------
    def still_valid(self):
        if not self.guard(self.externals):  # shapes, dtypes and requires_grad of what it read
            return False
        if self.epoch != autograd.trace_epoch[0]:  # some module changed since the last check
            for module, key in self.modules.values():
                if module._trace_key() != key:
                    return False
            self.epoch = autograd.trace_epoch[0]
        return True

    def replay(self, leaves):
        for fn, args in self.before_backward:
            fn(*args)
        try:
            outputs, backward = self.forward_code(leaves, self.externals)
        except Exception:
            self._replay_slowly(leaves)  # raises the same error, named as the eager call names it
            raise
        if self.stepped:
            self._step(backward)
        if self.out_type is None:
            return self._output(0, outputs[0], leaves, backward)
        if self.out_type is type(None):
            return None
        return self.out_type([self._output(i, value, leaves, backward)
                              for i, value in enumerate(outputs)])

    def _step(self, backward):
        """A training step's loss.backward() and what followed it: the traced walk's gradients
        added into the leaves' .grad as the engine adds them, then the optimizer steps."""
        kept, parents, params_used, seed = backward
        if seed is None:
            seed = self.step_seed
        for p in parents:
            if p.grad_fn is not None:
                raise CompileError(
                    f"compile: the compiled training step's backward reaches an argument made by "
                    f"{p.grad_fn.name}; pass a leaf (x.detach()) or call the step uncompiled")
        grads = self.backward_code(seed, kept, params_used)
        leaf_grads = {p: g for p, g in zip(parents, grads) if g is not None}
        recording = autograd._mode.enabled
        if recording:  # the hooks of the leaves run as in an eager backward: not recorded
            autograd._switch_grad_mode(False)
        try:
            autograd.fill_grads(leaf_grads, (seed,))
        finally:
            if recording:
                autograd._switch_grad_mode(True)
        for fn, args in self.after_backward:
            fn(*args)

    def _replay_slowly(self, leaves):
        """The tape run one entry at a time, to name the operation that fails."""
        values = self.values[:]
        for position, slot, is_tensor in self.inputs:
            values[slot] = leaves[position].data if is_tensor else leaves[position]
        for t, slot in zip(self.externals, self.external_slots):
            values[slot] = t.data
        for forward, getter, arity, params, subs, out, _, name in self.tape:
            if subs:
                params = _substitute(params, subs, [values[slot] for _, slot, _ in subs])
            try:
                r = forward(*_args(getter, arity, values), **params)
            except ShapeError as exc:
                raise ShapeError(f"{name}: {exc}") from None
            except (ValueError, IndexError, TypeError) as exc:
                if out is None:  # a check (bad labels): its own message says it all
                    raise
                raise _op_error(_Named(name), _args(getter, arity, values), exc) from None
            if isinstance(out, tuple):
                values[out[0]], values[out[1]] = r
            elif out is not None:
                values[out] = r

    def _resolve(self, source, leaves):
        kind, k, _ = source
        return leaves[k] if kind == "L" else self.externals[k]

    def _output(self, i, value, leaves, backward):
        source = self.output_sources[i]
        if source is not None:  # fn returned an argument or a parameter itself
            return self._resolve(source, leaves) if source[2] else Tensor._wrap(value)
        t = Tensor._wrap(value)
        if i == self.grad_output and self.stepped:  # its graph was walked, and is spent
            t.grad_fn = Node(self.row, backward[1], _FREED, None, None, None, {}, None)
            t._requires_grad = True
        elif i == self.grad_output and backward is not None:
            kept, versions, parents, params_used = backward
            t.grad_fn = Node(self.row, parents, kept or None, versions or None, None, None,
                             {"params_used": params_used}, None)
            t._requires_grad = True
        return t


def _no_arguments(values):
    return ()


def _substitute(params, subs, values):
    """``params`` with this call's arrays put in: ``values[k]`` goes where ``subs[k]`` says."""
    params = dict(params)
    for (name, _, position), value in zip(subs, values):
        if position is None:
            params[name] = value
        else:
            items = list(params[name])
            items[position] = value
            params[name] = tuple(items)
    return params


def _generate(trace):
    """The tape and the plan written out as two Python functions, one line per NumPy call.

    Replaying them costs what the hand-written NumPy would: no loop over the tape, no lookups,
    each array a local variable that is dropped after its last use (unless backward reads it).
    """
    names = {"_ndarray": np.ndarray, "_asarray": np.asarray, "_substitute": _substitute,
             "_unbroadcast": unbroadcast}
    kept_slots = set(trace.kept)
    last_use = {}
    for i, entry in enumerate(trace.tape):
        for slot in entry[6]:
            last_use[slot] = i
    sources = trace.source_of_slot

    def value(slot):  # how the generated forward spells a slot: a constant, or a local
        if slot not in sources and (trace.values[slot] is not None or slot not in produced):
            names[f"K{slot}"] = trace.values[slot]
            return f"K{slot}"
        return f"v{slot}"

    produced = set()
    for entry in trace.tape:
        produced.update(entry[5] if isinstance(entry[5], tuple) else (entry[5],))
    lines = ["def forward(L, E):"]
    for slot, (kind, k, is_tensor) in sources.items():
        where = f"L[{k}]" if kind == "L" else f"E[{k}]"
        lines.append(f"    v{slot} = {where}.data" if is_tensor else f"    v{slot} = {where}")
    params_used = []
    keep_to_end = kept_slots | set(trace.out_slots) | set(sources)
    seed_slot = getattr(trace, "seed_slot", None)
    if seed_slot is not None:
        keep_to_end.add(seed_slot)
    for i, (forward, _, _, params, subs, out, slots, _) in enumerate(trace.tape):
        names[f"F{i}"] = forward
        call_args = [value(slot) for slot in slots]
        if subs:
            names[f"P{i}"], names[f"S{i}"] = params, subs
            lines.append(f"    p{i} = _substitute(P{i}, S{i}, "
                         f"({''.join(value(slot) + ', ' for _, slot, _ in subs)}))")
            call_args.append(f"**p{i}")
            params_used.append(i)
        elif params:
            names[f"P{i}"] = params
            call_args.append(f"**P{i}")
        call = f"F{i}({', '.join(call_args)})"
        if out is None:
            lines.append(f"    {call}")
        elif isinstance(out, tuple):  # output and residual
            lines.append(f"    v{out[0]}, v{out[1]} = {call}")
            lines.append(f"    if type(v{out[0]}) is not _ndarray: v{out[0]} = _asarray(v{out[0]})")
        else:
            lines.append(f"    v{out} = {call}")
            lines.append(f"    if type(v{out}) is not _ndarray: v{out} = _asarray(v{out})")
        dead = [slot for slot in slots if last_use.get(slot) == i and slot not in keep_to_end
                and value(slot).startswith("v")]
        if dead:
            lines.append(f"    del {', '.join(f'v{slot}' for slot in sorted(set(dead)))}")
    kept = []
    for slot in trace.kept:
        source = sources.get(slot)
        if trace.stepped:  # its backward follows at once: nothing can write in between
            kept.append(value(slot))
        elif source is not None and source[2]:  # a tensor: saved as such, checked for in-place
            kept.append(f"L[{source[1]}]" if source[0] == "L" else f"E[{source[1]}]")
        else:
            kept.append(value(slot))
    outputs = f"({''.join(value(s) + ', ' for s in trace.out_slots)})"
    if trace.plan and trace.stepped:  # what the step's backward reads, the leaves it fills
        parents = [f"{kind}[{k}]" for kind, k, _ in trace.parents]
        seed = "None" if seed_slot is None else value(seed_slot)
        lines.append(f"    return {outputs}, (({''.join(k + ', ' for k in kept)}), "
                     f"({''.join(p + ', ' for p in parents)}), "
                     f"{{{', '.join(f'{i}: p{i}' for i in params_used)}}}, {seed})")
    elif trace.plan:  # what the compiled node saves, the version of each tensor, its parents
        versions = [f"{k}._version[0]" if k[0] in "LE" else "0" for k in kept]
        parents = [f"{where}.grad_fn or {where}" for where in
                   (f"{kind}[{k}]" for kind, k, _ in trace.parents)]
        lines.append(f"    return {outputs}, (({''.join(k + ', ' for k in kept)}), "
                     f"({''.join(v + ', ' for v in versions)}), "
                     f"({''.join(f'({p}), ' for p in parents)}), "
                     f"{{{', '.join(f'{i}: p{i}' for i in params_used)}}})")
    else:
        lines.append(f"    return {outputs}, None")
    forward_code = _define(lines, names, "forward")
    backward_code = _generate_backward(trace) if trace.plan else None
    return forward_code, backward_code


def _generate_guard(trace):
    """``guard(E)``: whether the tensors read from outside still have the traced shapes, dtypes
    and requires_grad, as one function with no loop."""
    names, lines = {}, ["def guard(E):"]
    for k, (shape, dtype, requires_grad) in enumerate(trace.external_signature):
        names[f"S{k}"], names[f"D{k}"] = shape, dtype
        lines += [f"    d = E[{k}].data",
                  f"    if d.shape != S{k} or d.dtype != D{k} or "
                  f"E[{k}]._requires_grad is not {requires_grad!r}: return False"]
    lines.append("    return True")
    return _define(lines, names, "guard")


def _generate_backward(trace):
    names = {"_unbroadcast": unbroadcast}
    n_kept = len(trace.kept)
    lines = ["def backward(g0, I, PU):",
             f"    ({''.join(f's{k}, ' for k in range(n_kept))}) = I" if n_kept else "    pass",
             "    node = None"]
    lines += [f"    g{k} = None" for k in range(1, trace.n_nodes)]
    lines += [f"    q{k} = None" for k in range(len(trace.parents))]
    lines.append("    try:")
    for k, name, rules, ins, ans_k, params, subs, targets, shapes, n, entry in trace.plan:
        body = [f"node = {name!r}"]
        ans = f"s{ans_k}" if ans_k >= 0 else "None"
        args = ", ".join(f"s{j}" if j >= 0 else "None" for j in ins)
        if subs:
            kwargs = f", **PU[{entry}]"
        elif params:
            names[f"P{entry}"] = params
            kwargs = f", **P{entry}"
        else:
            kwargs = ""
        if type(rules) is not tuple:
            names[f"A{k}"] = rules
            body.append(f"gs = A{k}(g{k}, {ans}, {n}{kwargs})")
        for i, target in enumerate(targets):
            if target is None:
                continue
            if type(rules) is tuple:
                if rules[i] is None:
                    continue
                names[f"R{k}_{i}"] = rules[i]
                body.append(f"t = R{k}_{i}(g{k}, {ans}{', ' + args if args else ''}{kwargs})")
            else:
                body.append(f"t = gs[{i}]")
            body.append("if t is not None:")
            if shapes is not None:
                names[f"H{k}_{i}"] = shapes[i]
                body.append(f"    if t.shape != H{k}_{i}: t = _unbroadcast(t, H{k}_{i})")
            acc = f"g{target}" if target >= 0 else f"q{~target}"
            body.append(f"    {acc} = t if {acc} is None else {acc} + t")
        body.append(f"g{k} = None")
        lines.append(f"        if g{k} is not None:")
        lines += [f"            {line}" for line in body]
    lines += ["    except Exception as exc:",
              "        raise type(exc)(f'{node}: the backward rule failed: {exc}') from exc",
              f"    return ({''.join(f'q{k}, ' for k in range(len(trace.parents)))})"]
    return _define(lines, names, "backward")


def _define(lines, names, name):
    namespace = dict(names)
    exec(builtins_compile("\n".join(lines) + "\n", f"<chainrule.compile {name}>", "exec"),
         namespace)
    return namespace[name]


def _args(getter, arity, values):
    return (getter(values),) if arity == 1 else getter(values)


class _Named:  # what _op_error reads of an operation
    def __init__(self, name):
        self.name = name


class _CompiledRow:
    """The single graph node of a replayed call: its VJP runs the traced backward plan."""

    formulas = ("the traced backward pass",)
    broadcasts = False
    view = False

    def __init__(self, trace, fn_name):
        self.trace = trace
        self.name = f"cr.compile({fn_name})"  # what a drawing or trace calls the one node
        self.node_name = "CompiledBackward"

    @property
    def freed_message(self):
        if self.trace.stepped:
            return (f"{self.name} is a whole training step, whose loss.backward() already ran "
                    f"inside the call; its graph is spent")
        return None

    def vjp(self, node, grad, inputs, ans):
        if isinstance(grad, Tensor):  # a walk with create_graph=True hands tensors
            raise CompileError("cr.compile: a compiled call's backward cannot be recorded "
                               "(create_graph=True); call its .fn, the function uncompiled, to "
                               "see or differentiate each step")
        return self.trace.backward_code(grad, inputs, node.params["params_used"])
