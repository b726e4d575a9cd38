import numpy as np
import pytest

import chainrule as cr

# Seed 002: dL/db = [0.45, -0.30, ..., 1.2, 0.20, 0.00, ..., 0.55] (b_j = 1.2, b_{j+2} = 0.00)
SEED_GRAD = np.array([0.45, -0.30, 0.10, 1.2, 0.20, 0.00, -0.05, 0.55], dtype=np.float32)


def _bias_after_backward():
    b = cr.zeros(8, requires_grad=True)
    b.name = "b"
    x = cr.tensor(SEED_GRAD)
    loss = (b * x).sum()  # dL/db = x
    loss.backward()
    return b


def test_seed_002_statements():
    table = cr.inspect.sensitivity(_bias_after_backward())
    b1, b2, b_j2 = table.row(0), table.row(1), table.row(5)
    assert b1["direction"] == "decrease"  # True: move in the direction of decreasing b1
    assert b2["direction"] == "increase"  # True: move in the direction of increasing b2
    assert b1["relative"] > b2["relative"]  # True: larger step along b1 than along b2
    assert b_j2["grad"] == 0.0 and b_j2["negligible"]  # True: b_{j+2} barely affects the loss
    assert not b1["negligible"] and not b2["negligible"]
    assert table.row(3)["relative"] == pytest.approx(1.0)  # 1.2 is the largest
    assert b1["relative"] == pytest.approx(0.45 / 1.2)


def test_renderings_and_top_k():
    b = _bias_after_backward()
    text = str(cr.inspect.sensitivity(b))
    assert "b[0]" in text and "decrease" in text and "barely affects the loss" in text
    top = cr.inspect.sensitivity(b, top_k=3)
    assert [r["index"] for r in top.rows] == [(3,), (7,), (0,)]
    md = top.to_markdown()
    assert md.count("\n") == 4 and md.startswith("| element") and "| b[3] |" in md
    with pytest.raises(KeyError, match="top_k"):
        top.row(5)


def test_threshold_on_a_real_model_and_errors():
    w = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    loss = (w @ cr.tensor([1.0, 1e-4])).sum()
    loss.backward()
    rows = cr.inspect.sensitivity(w, name="W").rows
    assert [r["negligible"] for r in rows] == [False, True, False, True]
    assert rows[1]["label"] == "W[0, 1]"
    with pytest.raises(ValueError, match="has no gradient"):
        cr.inspect.sensitivity(cr.zeros(3, requires_grad=True))
    with pytest.raises(ValueError, match="top_k"):
        cr.inspect.sensitivity(w, top_k=0)
