"""Small helpers the format loaders share: safe path components, unique names, tree decoration."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from analyzers.summary import LayerNode

_TORCH_BOILERPLATE = "(Could this error message be improved?"


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's text (its class name when empty), for one-sentence errors."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = line.split(_TORCH_BOILERPLATE, 1)[0].strip()
    return line[:limit].rstrip(".") or type(exc).__name__


def safe_component(name: object) -> str:
    """A path component without dots (they would nest the tree), never empty."""
    text = str(name).strip().replace(".", "_")
    return text or "_"


def unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_1`, `name_2` ... whichever is not in `taken`; the result is added to `taken`."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def decorate_tree(
    root: LayerNode,
    *,
    attributes: Mapping[str, Mapping[str, object]] | None = None,
    output_shapes: Mapping[str, tuple] | None = None,
    flops: Mapping[str, int] | None = None,
) -> LayerNode:
    """A copy of the tree with attributes merged in and output shapes and FLOPs set, all by path (bottom-up,
    no recursion)."""
    attributes = attributes or {}
    output_shapes = output_shapes or {}
    flops = flops or {}
    if not attributes and not output_shapes and not flops:
        return root
    order: list[LayerNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    rebuilt: dict[int, LayerNode] = {}
    for node in reversed(order):
        changes: dict[str, object] = {"children": tuple(rebuilt[id(c)] for c in node.children)}
        if node.path in attributes:
            changes["attributes"] = {**node.attributes, **attributes[node.path]}
        if node.path in output_shapes:
            changes["output_shape"] = output_shapes[node.path]
        if node.path in flops:
            changes["flops"] = flops[node.path]
        rebuilt[id(node)] = dataclasses.replace(node, **changes)
    return rebuilt[id(root)]
