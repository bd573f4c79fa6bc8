"""Producer/consumer indexes over an ONNX graph and the edits built on them: what the serving
rewrites (serving_graph.py), the dense route (dense_route.py), the quantizer (quantize.py) and the ONNX
import (compression/sources/onnx_import.py) each need to walk a graph. Rebuild an index after a
structural change."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from compression.errors import PipelineError


class GraphShapeError(PipelineError):
    """The graph is not shaped as a walk expected (a producer, a sole consumer)."""


class GraphIndex:
    """Producer/consumer indexes over a ModelProto's graph (rebuilt after each structural change)."""

    error: type[Exception] = GraphShapeError  # what made_by and sole_consumer raise (a subclass's own)

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.graph.node:
            for i in n.input:
                self.consumers[i].append(n)
        self.inits = {i.name: i for i in self.graph.initializer}
        self.inputs = {i.name for i in self.graph.input}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
        if node is not None and node.op_type == "Identity":  # the exporter's alias of an equal initializer
            return self.const(node.input[0])
        return None

    def made_by(self, tensor: str, op: str, perm: tuple[int, ...] | None = None) -> onnx.NodeProto:
        node = self.producer.get(tensor)
        if node is None or node.op_type != op or (perm is not None and perm_of(node) != perm):
            found = "a graph input or initializer" if node is None else f"{node.op_type} {node.name}"
            raise self.error(f"expected {op}{perm or ''} to produce {tensor!r}, found {found}")
        return node

    def sole_consumer(self, tensor: str, op: str, perm: tuple[int, ...] | None = None) -> onnx.NodeProto:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or users[0].op_type != op or (perm is not None and perm_of(users[0]) != perm):
            raise self.error(f"expected {tensor!r} to feed one {op}{perm or ''}, found {[u.op_type for u in users]}")
        return users[0]

    def downstream(self, tensor: str) -> set[str]:
        """Every tensor computed from `tensor`."""
        seen, stack = set(), [tensor]
        while stack:
            for n in self.consumers.get(stack.pop(), []):
                for o in n.output:
                    if o not in seen:
                        seen.add(o)
                        stack.append(o)
        return seen

    def upstream(self, tensor: str, through_shapes: bool = True) -> set[str]:
        """Every tensor whose value reaches `tensor`; without through_shapes the walk stops at Shape
        nodes (a tensor whose shape alone is read does not count)."""
        seen, stack = set(), [tensor]
        while stack:
            node = self.producer.get(stack.pop())
            if node is None or (node.op_type == "Shape" and not through_shapes):
                continue
            for i in node.input:
                if i and i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def graph_inputs_behind(self, tensor: str) -> set[str]:
        """Graph inputs whose values (not only shapes) reach `tensor`."""
        return (self.upstream(tensor, through_shapes=False) | {tensor}) & self.inputs


def perm_of(node: onnx.NodeProto) -> tuple[int, ...] | None:
    return next((tuple(a.ints) for a in node.attribute if a.name == "perm"), None)
