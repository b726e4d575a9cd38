"""What README.md states as a number is measured here, so the text cannot drift from the code."""

import importlib
import re
from pathlib import Path

from gradtools import table_rows

ROOT = Path(__file__).resolve().parents[1]

# The modules that hold rows of THE TABLE: the family tables (through chainrule.ops) and the
# modules of NumPy's other functions. A row imported into several of them is counted once.
TABLE_MODULES = ("chainrule.ops", "chainrule.elementwise", "chainrule.linalg",
                 "chainrule.contractions", "chainrule.reductions", "chainrule.shapes")


def differentiable_rows() -> dict:
    """``{id(row): row}`` for every differentiable row of every table module, each once."""
    rows = {}
    for name in TABLE_MODULES:
        for row in table_rows(importlib.import_module(name)).values():
            rows[id(row)] = row
    return rows


def test_the_readme_states_the_measured_number_of_differentiable_operations():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = re.findall(r"(\d+) differentiable operations", text)
    assert stated, "README.md should state 'N differentiable operations'"
    count = len(differentiable_rows())
    assert {int(n) for n in stated} == {count}, (
        f"README.md states {', '.join(stated)} differentiable operations; the tables hold "
        f"{count} (tests/test_readme.py counts them): update the README")


def test_the_readme_has_the_spellings_section():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "### NumPy and PyTorch spellings" in text
