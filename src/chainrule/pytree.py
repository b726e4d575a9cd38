"""Containers of tensors (pytrees, as JAX and HIPS autograd call them) for the transforms.

A tree is a leaf (a Tensor, an array or a number) or a tuple, list, namedtuple or dict of trees,
nested to any depth; ``None`` is an empty tree. ``flatten`` gives the leaves in order (a dict's in
its keys' insertion order) and a `TreeDef` that ``unflatten`` fills back, so
``cr.grad(loss)(params)`` can take a dict of parameters and return a dict of gradients of the same
shape. A list is a container, as in JAX: ``[1.0, 2.0]`` is two leaves, not one array (pass
``np.array([1.0, 2.0])`` for that).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

_LEAF = "leaf"


@dataclass(frozen=True)
class TreeDef:
    """The shape of a tree without its leaves: ``kind`` (leaf, tuple, list, namedtuple, dict,
    none), the container's type and keys, and the children's TreeDefs."""

    kind: str
    children: tuple = ()
    keys: tuple = ()
    type_: type | None = None

    @property
    def n_leaves(self) -> int:
        count, stack = 0, [self]
        while stack:
            node = stack.pop()
            if node.kind == _LEAF:
                count += 1
            stack.extend(node.children)
        return count

    @property
    def is_leaf(self) -> bool:
        return self.kind == _LEAF


def _split(tree):
    """(kind, keys, children, type) of one level of ``tree``."""
    if tree is None:
        return "none", (), (), None
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return "namedtuple", tuple(tree._fields), tuple(tree), type(tree)
    if isinstance(tree, tuple):
        return "tuple", (), tree, tuple
    if isinstance(tree, list):
        return "list", (), tuple(tree), list
    if isinstance(tree, dict):  # rebuilt as the same type where that type takes pairs
        type_ = type(tree) if type(tree) in (dict, OrderedDict) else dict
        return "dict", tuple(tree), tuple(tree.values()), type_
    return _LEAF, (), (), None


def flatten(tree):
    """``(leaves, treedef)``; the leaves in order, ``unflatten(treedef, leaves)`` rebuilds it."""
    leaves, paths = [], []
    treedef = _flatten_into(tree, leaves, paths, "")
    return leaves, treedef


def flatten_with_paths(tree):
    """``(leaves, paths, treedef)``; each path a string such as ``['w'][0]`` for messages."""
    leaves, paths = [], []
    treedef = _flatten_into(tree, leaves, paths, "")
    return leaves, paths, treedef


def _flatten_into(tree, leaves, paths, path):
    kind, keys, children, type_ = _split(tree)
    if kind == _LEAF:
        leaves.append(tree)
        paths.append(path)
        return TreeDef(_LEAF)
    if kind == "dict":
        labels = [f"[{k!r}]" for k in keys]
    elif kind == "namedtuple":
        labels = [f".{k}" for k in keys]
    else:
        labels = [f"[{i}]" for i in range(len(children))]
    subs = tuple(_flatten_into(c, leaves, paths, path + lab) for c, lab in zip(children, labels))
    return TreeDef(kind, subs, keys, type_)


def unflatten(treedef: TreeDef, leaves):
    """The tree of ``treedef`` with ``leaves`` in its places (as many as it has)."""
    leaves = list(leaves)
    if len(leaves) != treedef.n_leaves:
        raise ValueError(f"unflatten: the tree has {treedef.n_leaves} leaves, got {len(leaves)}")
    it = iter(leaves)
    return _build(treedef, it)


def _build(treedef, it):
    kind = treedef.kind
    if kind == _LEAF:
        return next(it)
    children = [_build(c, it) for c in treedef.children]
    if kind == "none":
        return None
    if kind == "namedtuple":
        return treedef.type_(*children)
    if kind == "dict":
        return treedef.type_(zip(treedef.keys, children))
    return treedef.type_(children)

