"""Step 6b of 8 (see build.py) — batches without padding skip the unpadding: one If, two bodies.

serving_graph.remove_padding packs a batch's real tokens into one (T, H) matrix and pads them back
around each attention: about forty small index operators (NonZero, CumSum, a Gather per query, key
and value, a GatherND per context...). A batch of one sentence, and any batch whose texts have the
same token count, has no padding to remove, and on a 2-core CPU those operators are several percent
of a sentence's time: what kept the compressed model level with plain int8 at batch 1 although it
runs fewer operators in all.

So the served file holds the quantized graph twice under one If on "the attention mask is all ones":
the dense body is the same graph with the packing taken out (the hidden states stay (B, L, H); the
ids are flattened, which is the packing of a batch without padding), the other body is the graph as
it was. The weights are outer-scope initializers that both bodies read, so they are stored once in
the file and once in memory. Exact: the dense body runs the same kernels on the same tokens (a
dynamic quantization's range spans the same values), which `route` checks before it writes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from common import contract
from common.onnx_encoder import SessionConfig, make_session
from compression.export.serving_graph import PREFIX, UnsupportedGraph, finish, redirect
from compression.onnx_graph import GraphIndex

DENSE = PREFIX + "dense/"  # names the dense body adds
ROUTE = PREFIX + "route/"


def all_nodes(graph: onnx.GraphProto):
    """Every node of `graph`, those inside its If/Loop bodies included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)


def is_unpadded(model: onnx.ModelProto) -> bool:
    """Whether remove_padding rewrote this graph (its packing is what the dense body leaves out)."""
    return any(n.name == PREFIX + "positions" for n in model.graph.node)


def dense_body(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an unpadded graph that keeps the batch dense: valid only when no row has padding."""
    model = copy.deepcopy(model)
    g = model.graph
    index = GraphIndex(model)
    producer = index.producer

    def readers(tensor: str) -> list[onnx.NodeProto]:
        return [n for n in g.node if tensor in n.input]  # the graph as edited so far, not the index

    consts = {DENSE + "flat": np.array([-1], np.int64), DENSE + "one": np.array(1, np.int64)}
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    new = []
    ids = next((n for n in g.node if n.name == PREFIX + "ids"), None)
    if ids is not None:  # packed token ids: without padding they are the flattened input_ids
        ids.CopyFrom(helper.make_node("Reshape", [contract.INPUT_IDS, DENSE + "flat"], [ids.output[0]], name=ids.name))
        column = next((n for n in g.node if n.name == PREFIX + "column"), None)
        if column is not None:  # each token's position: its index in its row
            new += [
                helper.make_node(
                    "CumSum", [contract.ATTENTION_MASK, DENSE + "one"], [DENSE + "cumsum"], name=DENSE + "cumsum"
                ),
                helper.make_node("Sub", [DENSE + "cumsum", DENSE + "one"], [DENSE + "rank"], name=DENSE + "rank"),
                helper.make_node(
                    "Reshape", [DENSE + "rank", DENSE + "flat"], [DENSE + "column"], name=DENSE + "column"
                ),
            ]
            redirect(column.output[0], DENSE + "column", readers(column.output[0]))
        # the embeddings come out (B·L, H); the encoder takes them as (B, L, H)
        entry = next(n for n in g.node if n.op_type == "LayerNormalization").output[0]
        new += [
            helper.make_node("Shape", [contract.ATTENTION_MASK], [DENSE + "batch_len"], name=DENSE + "batch_len"),
            helper.make_node(
                "Concat", [DENSE + "batch_len", DENSE + "flat"], [DENSE + "shape"], axis=0, name=DENSE + "shape"
            ),
            helper.make_node("Reshape", [entry, DENSE + "shape"], [DENSE + "embeddings"], name=DENSE + "embeddings"),
        ]
        redirect(entry, DENSE + "embeddings", readers(entry))
    for node in list(g.node):
        if not node.name.startswith(PREFIX):
            continue
        if node.op_type == "GatherND" and node.name.endswith("/packed"):  # (B, L, H) → (T, H): now the same
            redirect(node.output[0], node.input[0], readers(node.output[0]))
        elif node.op_type == "Gather" and node.name.endswith("/padded"):  # (T, H) → (B, L, H): the same
            source = producer.get(node.input[0])
            data = source.input[0] if source is not None and source.name.endswith("/with_pad") else node.input[0]
            redirect(node.output[0], data, readers(node.output[0]))
    g.node.extend(new)
    finish(model)
    return model


def as_branch(graph: onnx.GraphProto, tag: str) -> onnx.GraphProto:
    """`graph`'s nodes as an If branch: values it computes renamed under `tag` (names are unique
    across a model's subgraphs), inputs and initializers read from the outer scope."""
    renamed = {o: tag + o for n in graph.node for o in n.output if o}
    nodes = []
    for n in graph.node:
        node = copy.deepcopy(n)
        node.name = tag + n.name if n.name else ""  # unnamed nodes stay unnamed (names must be unique)
        del node.input[:], node.output[:]
        node.input.extend(renamed.get(i, i) for i in n.input)
        node.output.extend(renamed.get(o, o) for o in n.output)
        nodes.append(node)
    outputs = []
    for o in graph.output:
        out = copy.deepcopy(o)
        out.name = renamed.get(o.name, o.name)
        outputs.append(out)
    return helper.make_graph(nodes, tag.strip("/").replace("/", "_"), [], outputs)


def routed(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` (unpadded) as one If: the dense body when the attention mask is all ones, else itself."""
    dense = dense_body(model)
    inits = {i.name: i for i in model.graph.initializer}
    for i in dense.graph.initializer:
        inits.setdefault(i.name, i)
    if any(o.name in (contract.INPUT_IDS, contract.ATTENTION_MASK) for o in model.graph.output):
        raise UnsupportedGraph("a graph input is also an output")
    nodes = [
        helper.make_node("ReduceMin", [contract.ATTENTION_MASK], [ROUTE + "min"], keepdims=0, name=ROUTE + "min"),
        helper.make_node(
            "Cast", [ROUTE + "min"], [ROUTE + "no_padding"], to=onnx.TensorProto.BOOL, name=ROUTE + "no_padding"
        ),
        helper.make_node(
            "If",
            [ROUTE + "no_padding"],
            [o.name for o in model.graph.output],
            name=ROUTE + "if",
            then_branch=as_branch(dense.graph, "dense/"),
            else_branch=as_branch(model.graph, "packed/"),
        ),
    ]
    graph = helper.make_graph(
        nodes, model.graph.name, list(model.graph.input), list(model.graph.output), list(inits.values())
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name=model.producer_name)
    out.ir_version = model.ir_version
    out.metadata_props.extend(model.metadata_props)
    return out


def _outputs(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The embeddings of `feeds` from the file at `path`, in a session like the service's."""
    session = make_session(path, SessionConfig(threads=1))
    inputs = {i.name for i in session.get_inputs()}
    return [session.run([contract.OUTPUT_EMBEDDING], {k: v for k, v in f.items() if k in inputs})[0] for f in feeds]


def check_feeds(vocab_size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Batches for the check: one row; two rows of one length (both dense); two of different lengths."""
    rng = np.random.default_rng(seed)
    feeds = []
    for rows, length, pad in ((1, 12, 0), (2, 9, 0), (2, 11, 4)):
        ids = rng.integers(1, vocab_size, (rows, length), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[-1, length - pad :] = 0
        ids[mask == 0] = 0
        feeds.append({contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask})
    return feeds


def route(path: Path, vocab_size: int) -> bool:
    """Rewrite the unpadded ONNX file at `path` in place into the routed one, if it gives the same
    embeddings on dense and padded batches; False (file unchanged) if it is not an unpadded graph."""
    model = onnx.load(str(path))
    if not is_unpadded(model):
        return False
    candidate = path.with_name(path.stem + ".routed.onnx")
    try:
        onnx.save(routed(model), str(candidate))
        feeds = check_feeds(vocab_size)
        for before, after in zip(_outputs(path, feeds), _outputs(candidate, feeds)):
            if before.shape != after.shape or not np.allclose(before, after, atol=1e-6, rtol=0):
                raise UnsupportedGraph("the dense body's embeddings differ from the unpadded graph's")
        candidate.replace(path)
    finally:
        candidate.unlink(missing_ok=True)
    return True
