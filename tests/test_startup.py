"""chainrule.threads (the one BLAS-thread policy) and what `import chainrule` loads."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

import chainrule as cr
from chainrule import threads


def _blas_threads():
    return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


def test_num_threads_sets_and_restores_the_blas_thread_count():
    before = cr.get_num_threads()
    assert before == _blas_threads()
    with cr.num_threads(1):
        assert cr.get_num_threads() == 1 == _blas_threads()
    assert cr.get_num_threads() == before
    with cr.num_threads(None):
        assert cr.get_num_threads() == before


def test_set_num_threads_is_process_wide():
    before = cr.get_num_threads()
    try:
        cr.set_num_threads(1)
        assert _blas_threads() == 1
    finally:
        cr.set_num_threads(before)
    assert cr.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError, match="positive int"):
        cr.set_num_threads(bad)
    with pytest.raises(ValueError, match="positive int"):
        with cr.num_threads(bad):
            pass


def test_small_models_train_on_one_thread_large_ones_on_the_default():
    assert threads.threads_for_model(10_000, 64) == 1
    assert threads.threads_for_model(10_000_000, 64) is None
    assert threads.threads_for_model(10_000, 64, requested=2) == 2


def test_importing_chainrule_leaves_the_thread_count_alone():
    import subprocess
    import sys

    code = ("from threadpoolctl import threadpool_info as i; import numpy;"
            "a = [p['num_threads'] for p in i() if p['user_api'] == 'blas'];"
            "import chainrule;"
            "b = [p['num_threads'] for p in i() if p['user_api'] == 'blas'];"
            "print(a == b)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_importing_chainrule_loads_the_engine_only():
    """The training stack and the inspection tools load on first use (`cr.nn`, `cr.draw`)."""
    import subprocess
    import sys

    code = ("import sys, chainrule as cr; first = set(sys.modules); cr.nn.Linear; cr.draw;"
            "print(sorted(m for m in first if m.split('.')[:2] in (['chainrule', 'nn'],"
            "['chainrule', 'inspect'], ['chainrule', 'data'], ['chainrule', 'io'],"
            "['chainrule', 'optim'], ['chainrule', 'distributed']) or m == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
