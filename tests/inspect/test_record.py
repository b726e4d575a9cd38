"""The Trace: one record of values, gradients and formulas that every view reads."""

import gc
import importlib
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule import autograd
from chainrule.inspect.record import layer_names, record, trace

# the module itself (the package exports the name `record` for the context manager)
rec_module = importlib.import_module("chainrule.inspect.record")


def seed003(recorded=True):
    x1, x2 = cr.tensor(1.0), cr.tensor(1.0)
    w1, w2, w3, w4 = (cr.tensor(v, requires_grad=True) for v in (0.5, -0.3, 0.8, 0.1))
    with record() if recorded else _nothing():
        z = cr.sigmoid(w1 * x1 + w2 * x2)
        f = cr.sigmoid(w3 * z + w4)
        L = (f - 2.0) ** 2
    return L, dict(x1=x1, x2=x2, w1=w1, w2=w2, w3=w3, w4=w4, z=z, f=f, L=L)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _numbers(tr):
    return [(n.id, n.name, None if n.value is None else n.value.tolist(),
             None if n.grad is None else n.grad.tolist()) for n in tr.nodes]


def test_every_node_has_its_value_and_gradient_equal_to_the_engine():
    L, v = seed003()
    tr = trace(L)
    z, f = v["z"], v["f"]
    z.retain_grad()
    f.retain_grad()
    L.backward()
    for name in ("w1", "w2", "w3", "w4"):
        assert tr[name].kind == "parameter"
        assert tr[name].grad == pytest.approx(v[name].grad.item(), abs=0)
    assert tr["z"].value == z.item() and tr["z"].grad == pytest.approx(z.grad.item(), rel=1e-6)
    assert tr["f"].grad == pytest.approx(f.grad.item(), rel=1e-6)
    assert tr.loss.name == "L" and tr.loss.value == L.item() and tr.loss.kind == "output"
    assert tr.message is None


def test_inputs_and_constants_are_leaves_with_the_users_names():
    L, _ = seed003()
    tr = trace(L)
    kinds = {n.name: n.kind for n in tr.nodes}
    assert kinds["x1"] == "input" and kinds["x2"] == "input"
    assert kinds["2"] == "constant"  # the target of (f - 2)^2
    assert not any(n.name in ("x", "y") for n in tr.nodes)


def test_before_and_after_backward_the_numbers_are_the_same():
    L, _ = seed003()
    before = _numbers(trace(L))
    L.backward()  # frees the graph's saved values; the record keeps its own
    assert _numbers(trace(L)) == before


def test_edges_carry_forward_value_gradient_and_the_local_derivative_in_user_names():
    L, v = seed003()
    tr = trace(L)
    (edge,) = [e for e in tr.edges if tr[e.source].name == "w1"]
    assert edge.value == 0.5
    assert edge.formula == "x1" and edge.local == 1.0
    L.backward()
    assert edge.grad == pytest.approx(v["w1"].grad.item(), abs=0)
    sig = [e for e in tr.edges if tr[e.target].name == "z"][0]
    assert sig.formula == "z·(1 − z)"
    z = v["z"].item()
    assert sig.local == pytest.approx(z * (1 - z), rel=1e-6)
    # w3 * z: the derivative with respect to z is w3, with its number
    (to_z,) = [e for e in tr.edges if tr[e.source].name == "z"]
    assert to_z.formula == "w3" and to_z.local == pytest.approx(0.8)


def test_chain_along_paths_multiplies_to_the_gradient():
    L, v = seed003()
    tr = trace(L)
    L.backward()
    for name in ("w1", "w3"):
        paths = tr.paths(tr[name].id)
        assert len(paths) == 1
        product = np.prod([e.local for e in paths[0]])
        assert product == pytest.approx(v[name].grad.item(), rel=1e-5)


def test_fan_out_sums_the_contributions():
    w = cr.tensor(0.7, requires_grad=True)
    with record():
        a = cr.tanh(w)
        out = a * a + cr.exp(a)
    tr = trace(out)
    uses = [e for e in tr.uses_of(tr["a"].id) if e.differentiable]
    assert len(uses) == 3
    assert sum(e.grad for e in uses) == pytest.approx(tr["a"].grad)
    out.backward()
    assert tr["w"].grad == pytest.approx(w.grad.item())


def test_steps_follow_the_engines_visiting_order():
    L, v = seed003()
    tr = trace(L)
    visited = []
    nodes = {}
    for n in cr.inspect.graph.walk(L).nodes:
        n.hooks = {"order": (lambda node: lambda g: visited.append(node))(n)}
        nodes[n] = n
    L.backward()
    names = [s.op for s in tr.steps]
    assert names == [n.op.name for n in visited]
    assert [s.order for s in tr.steps] == list(range(len(visited)))


def test_operations_are_numbered_in_the_order_the_user_wrote_them():
    L, _ = seed003()
    tr = trace(L)
    first = tr["multiply #1"]
    (w1_edge,) = [e for e in tr.edges if tr[e.source].name == "w1"]
    assert w1_edge.target == first.id  # w1 * x1 was written first


def test_without_record_values_are_missing_and_said_so():
    L, v = seed003(recorded=False)
    tr = trace(L)  # before backward: gradients come from the saved values
    assert tr["w1"].grad == pytest.approx(-0.12605274, rel=1e-5)
    unknown = [n for n in tr.nodes if n.value is None]
    assert unknown and all("record" in n.missing for n in unknown)  # add keeps no value
    L.backward()
    after = trace(L)
    assert after.message is not None and "freed" in after.message
    assert after["w1"].grad == pytest.approx(v["w1"].grad.item())  # from .grad


def test_record_keeps_nothing_outside_its_block():
    w = cr.tensor(np.ones(3), requires_grad=True)
    out = (w * 2).sum()
    assert not rec_module.is_recorded(out.grad_fn)
    assert autograd.anomaly.enabled is False

    def recorded_in_a_function():
        with record():
            inner = (w * 3).sum()
        assert rec_module.is_recorded(inner.grad_fn)
        assert autograd.anomaly.enabled is False
        return weakref.ref(inner.grad_fn), len(rec_module._recorded)

    node, size = recorded_in_a_function()
    gc.collect()
    assert node() is None and len(rec_module._recorded) < size  # the record goes with it


def test_record_chains_to_detect_anomaly():
    w = cr.tensor(-1.0, requires_grad=True)
    with pytest.raises(cr.inspect.AnomalyError, match="sqrt"), cr.detect_anomaly(), \
            record() as rec, np.errstate(invalid="ignore"):
        cr.sqrt(w)  # nan in the forward pass: recorded, then detect_anomaly still speaks
    assert rec.last is not None and rec_module.is_recorded(rec.last)
    assert autograd.anomaly.enabled is False


def test_float32_stays_float32():
    x = cr.tensor(np.ones((2, 3), np.float32))
    w = cr.tensor(np.full((3, 4), 0.5, np.float32), requires_grad=True)
    with record():
        out = cr.tanh(x @ w).sum()
    tr = trace(out)
    assert all(n.dtype in ("float32", "") or n.kind == "constant" for n in tr.nodes)
    assert tr["w"].grad.dtype == np.float32 and tr["w"].grad.shape == (3, 4)
    out.backward()
    np.testing.assert_array_equal(tr["w"].grad, w.grad.data)


def test_tensor_edges_give_the_rule_when_no_local_factor_exists():
    x = cr.tensor(np.arange(6.0).reshape(2, 3))
    W = cr.tensor(np.full((3, 2), 0.1), requires_grad=True)
    with record():
        h = x @ W
        loss = h.sum()
    tr = trace(loss)
    (edge,) = [e for e in tr.edges if tr[e.source].name == "W"]
    assert edge.formula is None and edge.local is None
    assert edge.vjp == "xᵀ @ ∂loss/∂h" and edge.grad.shape == (3, 2)


def test_names_override_and_model_parameter_paths():
    model = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.ReLU(), cr.nn.Linear(4, 2))
    x = cr.tensor(np.ones((1, 3), np.float32))
    with record():
        loss = cr.nn.functional.cross_entropy(model(x), np.array([1]))
    tr = trace(loss)
    names = {n.name for n in tr.nodes}
    assert {"fc1.weight", "fc1.bias", "fc2.weight", "x"} <= names  # readable, not "0.weight"
    assert layer_names(model) == {"0": "fc1", "2": "fc2"}
    labelled = trace(loss, names={"input": x})
    assert "input" in {n.name for n in labelled.nodes}
    boxes = trace(loss, collapse=model)
    modules = [n for n in boxes.nodes if n.kind == "module"]
    assert [m.name for m in modules] == ["fc2 (Linear)", "fc1 (Linear)"]
    assert not any(n.kind == "parameter" for n in boxes.nodes)
    loss.backward()
    fc1 = modules[1]
    grads = dict((name, g) for name, _, g in fc1.members)
    np.testing.assert_allclose(grads["fc1.weight"], model[0].weight.grad.data)


def test_updates_show_the_gradient_descent_step():
    L, v = seed003()
    tr = trace(L)
    L.backward()
    for p, _value, _grad, new in tr.updates(0.5):
        assert new == pytest.approx(v[p.name].item() - 0.5 * v[p.name].grad.item())


def test_record_trace_defaults_to_the_last_operation_and_to_dict_is_json():
    import json

    w = cr.tensor([1.0, 2.0], requires_grad=True)
    with record() as rec:
        y = (w * w).sum()
    tr = rec.trace()
    assert tr.loss.value == 5.0 and tr["w"].grad.tolist() == [2.0, 4.0]
    data = json.loads(json.dumps(tr.to_dict()))
    assert data["output"] == "op0" and len(data["edges"]) == 3  # w twice into w * w
    del y


def test_values_are_those_of_the_forward_pass_even_after_an_update():
    w = cr.tensor(1.5, requires_grad=True)
    with record():
        y = w * w
    y.backward()
    with cr.no_grad():
        w -= 0.1 * w.grad
    tr = trace(y)
    (edge, _) = tr.edges
    assert edge.value == 1.5 and tr["w"].grad == pytest.approx(3.0)


_OPS = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "sub": lambda a, b: a - b,
        "tanh": lambda a, b: cr.tanh(a), "sigmoid": lambda a, b: cr.sigmoid(a),
        "exp_neg": lambda a, b: cr.exp(-a * 0.3)}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["add", "mul", "tanh", "sigmoid", "exp_neg", "sub"]),
                min_size=1, max_size=12),
       st.lists(st.floats(-2, 2), min_size=3, max_size=3))
def test_random_graphs_trace_gradients_match_the_engine(ops, start):
    leaves = [cr.tensor(np.array(v), requires_grad=True) for v in start]
    with record():
        pool = list(leaves)
        for k, op in enumerate(ops):
            a, b = pool[k % len(pool)], pool[(k * 7 + 1) % len(pool)]
            pool.append(_OPS[op](a, b))
        out = sum(pool[3:], pool[0] * 0.5)
    tr = trace(out)
    out.backward()
    by_tensor = {id(n.tensor): n for n in tr.parameters}
    for leaf in leaves:
        if leaf.grad is not None and id(leaf) in by_tensor:
            np.testing.assert_allclose(by_tensor[id(leaf)].grad, leaf.grad.data, rtol=1e-12)


def test_node_of_finds_the_box_of_a_tensor():
    L, v = seed003()
    tr = trace(L)
    assert tr.node_of(v["z"]).name == "z" and tr.node_of(v["w1"]).kind == "parameter"
    assert tr.node_of(v["x1"]).kind == "input" and tr.node_of(L) is tr.loss
    with pytest.raises(KeyError, match="not part"):
        tr.node_of(cr.tensor(1.0))


def test_formulas_use_the_users_names_only():
    x = cr.tensor(np.ones((2, 3), np.float32))
    layer = cr.nn.Linear(3, 4)
    with record():
        h = layer(x)
        C = cr.nn.functional.cross_entropy(h, np.array([0, 1]))
    tr = trace(C)
    rules = " ".join(e.vjp for e in tr.edges)
    assert "(∂C/∂h)ᵀ @ x" in rules and "onehot([0, 1])" in rules  # the labels, by value
    assert not rules.startswith("∂C/∂C")  # at the output the upstream gradient is 1
    for table_name in (" W", " w ", "grad", "labels", "onehot(y)"):
        assert table_name not in rules
    assert {"layer.weight", "layer.bias"} <= {n.name for n in tr.nodes}


def test_collapsed_formulas_name_the_layer_boxes():
    model = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.ReLU(), cr.nn.Linear(4, 2))
    x = cr.tensor(np.ones((1, 3), np.float32))
    with record():
        loss = cr.nn.functional.cross_entropy(model(x), np.array([1]))
    tr = trace(loss, collapse=model)
    texts = [t for e in tr.edges for t in (e.formula or "", e.vjp)]
    assert "[fc1 > 0]" in texts and "(softmax(fc2) − onehot(1)) / N" in texts
    assert not any("linear #" in t for t in texts)
    assert len(tr.uses_of(tr["fc1 (Linear)"].id)) == 1 and len(tr.inputs_of(tr.output)) == 2
