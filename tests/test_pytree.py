"""chainrule.pytree: flatten and unflatten containers of tensors."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np
import pytest

from chainrule import pytree


def test_round_trip_keeps_containers_keys_and_order():
    Pair = namedtuple("Pair", "a b")
    tree = {"z": [1.0, (2.0, None)], "a": Pair(np.ones(2), {"k": 3.0}), "o": OrderedDict(x=4.0)}
    leaves, treedef = pytree.flatten(tree)
    assert leaves[:3] == [1.0, 2.0, leaves[2]] and leaves[-2:] == [3.0, 4.0]
    assert treedef.n_leaves == 5
    rebuilt = pytree.unflatten(treedef, [10 * np.asarray(v) for v in leaves])
    assert list(rebuilt) == ["z", "a", "o"]
    assert isinstance(rebuilt["a"], Pair) and isinstance(rebuilt["o"], OrderedDict)
    assert rebuilt["z"][1][1] is None and rebuilt["z"][0] == 10.0


def test_paths_name_each_leaf():
    _, paths, _ = pytree.flatten_with_paths({"w": [1.0, 2.0], "b": 3.0})
    assert paths == ["['w'][0]", "['w'][1]", "['b']"]


def test_a_leaf_is_its_own_tree_and_structures_compare():
    leaves, treedef = pytree.flatten(np.ones(3))
    assert treedef.is_leaf and len(leaves) == 1
    assert pytree.flatten([1.0, 2.0])[1] == pytree.flatten([3.0, 4.0])[1]
    assert pytree.flatten([1.0, 2.0])[1] != pytree.flatten((3.0, 4.0))[1]


def test_unflatten_with_the_wrong_number_of_leaves_raises():
    _, treedef = pytree.flatten({"a": 1.0, "b": 2.0})
    with pytest.raises(ValueError, match="has 2 leaves, got 3"):
        pytree.unflatten(treedef, [1, 2, 3])
