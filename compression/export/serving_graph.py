"""Step 5b of 8 (see build.py) — rewrite the exported fp32 graph for serving: fused attention, no padding.

The rewrites are exact in fp32 and run before quantization, so the export's parity check against
torch (padded batches included) proves them, and the int8 quantizer sees the same projections:

0. fold_constant_rows: a Gather of a constant table by constant indices (the token types of a single
   sentence, all 0) is the one row it reads, added by broadcast: two operators fewer per run.
1. fuse_attention: each self-attention's core — the head reshapes and transposes, Q·Kᵀ, its scale,
   the additive padding mask, softmax, ·V and the reshape back — becomes one onnxruntime
   MultiHeadAttention node (com.microsoft) on the projected query, key and value, with the attention
   mask as its key-padding mask. The projections stay plain MatMuls (smoothed and int8 as before).
   At batch 1 most of an int8 MiniLM's non-product time is those small operators.
2. remove_padding: between the embedding LayerNorm and the last LayerNorm every operator but
   attention works on each token alone (MatMuls by a weight, bias adds, GELU, smoothing scales,
   LayerNorm over the hidden axis). So the graph gathers the batch's real tokens into one (T, H)
   matrix after the embeddings, runs those operators on it, and pads back to (B, L, H) only for
   each attention's query, key and value and for the pooling. A batch of sentences of mixed lengths
   then costs what its tokens cost: a padded batch of 32 STS-B sentences is 41% padding. (Padding
   rows are filled with a copy of a real row; the pooling's mask ignores them.) Where the embedding
   block is BERT's (word table by input_ids, constant rows, position table by arange(L)), the token
   ids are packed instead of the embeddings: the table then decodes, and the embedding LayerNorm
   normalizes, the real tokens only.
   The attention then needs no mask either: onnxruntime's CPU MultiHeadAttention takes its fast
   (flash) path only without one. Each head's query gains a coordinate that is always 1 and its key
   one that is 0 (a zero weight column and a bias of 1 or 0: exact under per-column int8), and the
   padding positions of the keys are gathered from one extra row whose extra coordinates are -1e9,
   so every real query scores every padding key at about -1e8: a softmax weight of exactly 0.

A graph whose attention does not match the BERT pattern raises UnsupportedGraph; the build then
keeps the plain graph and says so in its log and manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from common import contract
from compression import onnx_graph
from compression.config import GraphConfig
from compression.onnx_graph import GraphShapeError

PREFIX = "/serving/"  # names of the nodes and tensors these rewrites add
MASK_INT32 = PREFIX + "mask_int32"
MS_DOMAIN = "com.microsoft"

# Operators that act on each token's vector alone, given constant operands of rank ≤ 1 (a MatMul's
# weight: rank 2): what remove_padding lets run on the packed (T, H) tokens.
TOKENWISE = {
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Relu",
    "Pow",
    "Sqrt",
    "LayerNormalization",
    "Gelu",
    "FastGelu",
    "BiasGelu",
    "Identity",
    "Cast",
}


class UnsupportedGraph(GraphShapeError):
    """The graph does not have the structure a rewrite needs; the plain graph stays."""


class GraphIndex(onnx_graph.GraphIndex):
    error = UnsupportedGraph


@dataclass(frozen=True)
class RewriteReport:
    """What was done to the graph, for the manifest."""

    fused_attention: int = 0  # attention blocks now one MultiHeadAttention each
    padding_removed: bool = False
    dense_route: bool = False  # batches without padding skip the unpadding (dense_route.py, after quantization)
    skipped: str | None = None  # why a requested rewrite was not applied


@dataclass(frozen=True)
class _Attention:
    q: str  # projected query, key and value, (B, L, H) each
    k: str
    v: str
    context: str  # the heads merged back, (B, L, H): what the output projection reads
    context_node: onnx.NodeProto  # the Reshape that produces it
    scale: float


HEADS = (0, 2, 1, 3)  # (B, L, N, d) → (B, N, L, d)
KEYS_T = (0, 2, 3, 1)  # (B, L, N, d) → (B, N, d, L)


def _heads_input(g: GraphIndex, tensor: str, perm: tuple[int, ...]) -> str:
    """The (B, L, H) tensor that Reshape → Transpose(perm) splits into heads to give `tensor`."""
    return g.made_by(g.made_by(tensor, "Transpose", perm).input[0], "Reshape").input[0]


def _match_attention(g: GraphIndex, softmax: onnx.NodeProto) -> _Attention:
    """The BERT attention core around one Softmax: softmax(Q·Kᵀ·scale + mask)·V, heads merged."""
    add = g.made_by(softmax.input[0], "Add")
    for scores, mask in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):  # noqa: B007 (mask: after)
        scaled = g.producer.get(scores)
        if scaled is not None and scaled.op_type in ("Mul", "Div"):
            break
    else:
        raise UnsupportedGraph(f"{add.name}: no scaled scores among its inputs")
    if g.graph_inputs_behind(mask) != {contract.ATTENTION_MASK}:
        raise UnsupportedGraph(f"{add.name}: the additive mask is not computed from attention_mask alone")
    c = g.const(scaled.input[1])
    if c is None or c.size != 1:
        raise UnsupportedGraph(f"{scaled.name}: the score scale is not a scalar constant")
    scale = float(c.reshape(())) if scaled.op_type == "Mul" else 1.0 / float(c.reshape(()))
    qk = g.made_by(scaled.input[0], "MatMul")
    pv = g.sole_consumer(softmax.output[0], "MatMul")
    merged = g.sole_consumer(pv.output[0], "Transpose", HEADS)
    context = g.sole_consumer(merged.output[0], "Reshape")
    return _Attention(
        q=_heads_input(g, qk.input[0], HEADS),
        k=_heads_input(g, qk.input[1], KEYS_T),
        v=_heads_input(g, pv.input[1], HEADS),
        context=context.output[0],
        context_node=context,
        scale=scale,
    )


def finish(model: onnx.ModelProto) -> None:
    """Topological order, then drop the nodes and initializers nothing reads any more; shapes that
    the exporter recorded for intermediate tensors may no longer hold, so they go too."""
    g = model.graph
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, order = list(g.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                order.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise UnsupportedGraph(f"rewrite left a node without its inputs: {rest[0].name}")
        pending = rest
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(order):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    used = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(used)
    del g.value_info[:]
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


def redirect(old: str, new: str, readers: list[onnx.NodeProto]) -> None:
    """Every input `old` of `readers` now reads `new`."""
    for n in readers:
        for slot, i in enumerate(n.input):
            if i == old:
                n.input[slot] = new


def fold_constant_rows(model: onnx.ModelProto) -> int:
    """Replace each Gather of a constant table by constant indices (ConstantOfShape: BERT's token types,
    all 0 for one sentence) that only Adds read by the one row it gathers, broadcast by the Add: the
    same sums, two operators fewer per run. In place; returns how many."""
    g = GraphIndex(model)
    folded = 0
    for node in list(g.graph.node):
        source = g.producer.get(node.input[1]) if node.op_type == "Gather" and len(node.input) > 1 else None
        table = g.const(node.input[0]) if source is not None and source.op_type == "ConstantOfShape" else None
        readers = g.consumers.get(node.output[0], [])
        if table is None or table.ndim != 2 or not readers or any(r.op_type != "Add" for r in readers):
            continue
        value = next((numpy_helper.to_array(a.t).reshape(-1)[0] for a in source.attribute if a.name == "value"), 0)
        row = node.output[0] + "_row"
        g.graph.initializer.append(numpy_helper.from_array(table[int(value)].copy(), row))
        redirect(node.output[0], row, readers)  # the other operand of each Add is the full (B, L, H) sum
        folded += 1
    finish(model)
    return folded


def fuse_attention(model: onnx.ModelProto, num_heads: int) -> int:
    """Replace every attention core by a MultiHeadAttention node, in place; returns how many."""
    g = GraphIndex(model)
    softmaxes = [n for n in g.graph.node if n.op_type == "Softmax"]
    if not softmaxes:
        raise UnsupportedGraph("no attention (Softmax) in the graph")
    blocks = [_match_attention(g, s) for s in softmaxes]  # all or nothing: match every one first
    if contract.ATTENTION_MASK not in g.inputs:
        raise UnsupportedGraph("the graph has no attention_mask input")
    g.graph.node.append(
        helper.make_node("Cast", [contract.ATTENTION_MASK], [MASK_INT32], to=onnx.TensorProto.INT32, name=MASK_INT32)
    )
    for k, b in enumerate(blocks):
        where = b.context_node.name.rsplit("/", 1)[0] if "/" in b.context_node.name else f"{PREFIX}attention_{k}"
        g.graph.node.remove(b.context_node)
        g.graph.node.append(
            helper.make_node(
                "MultiHeadAttention",
                [b.q, b.k, b.v, "", MASK_INT32],
                [b.context],
                domain=MS_DOMAIN,
                num_heads=num_heads,
                scale=b.scale,
                name=where + "/MultiHeadAttention",
            )
        )
    finish(model)
    return len(blocks)


def _projection(g: GraphIndex, tensor: str) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(input, weight, bias) when `tensor` is x·W + b with constant W (2-D) and b (1-D); else None."""
    add = g.producer.get(tensor)
    if add is None or add.op_type != "Add":
        return None
    for product, bias in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        matmul, b = g.producer.get(product), g.const(bias)
        if matmul is not None and matmul.op_type == "MatMul" and b is not None and b.ndim == 1:
            w = g.const(matmul.input[1])
            if w is not None and w.ndim == 2 and w.shape[1] == b.shape[0]:
                return matmul.input[0], w, b
    return None


PAD_SCORE = -1e9  # a padding key's extra coordinate; times the query's 1 and the score scale: weight 0


def _with_extra_coordinate(w: np.ndarray, b: np.ndarray, heads: int, extra: float) -> tuple[np.ndarray, np.ndarray]:
    """W, b of a projection with one more output coordinate at the end of each head: weight 0 and
    bias `extra`, so that coordinate is exactly `extra` for every token (int8 per column too)."""
    if w.shape[1] % heads:
        raise UnsupportedGraph(f"projection width {w.shape[1]} is not a multiple of {heads} heads")
    d = w.shape[1] // heads
    w_ext = np.concatenate([w.reshape(w.shape[0], heads, d), np.zeros((w.shape[0], heads, 1), w.dtype)], axis=2)
    b_ext = np.concatenate([b.reshape(heads, d), np.full((heads, 1), extra, b.dtype)], axis=1)
    return w_ext.reshape(w.shape[0], -1), b_ext.reshape(-1)


def _linear(g: GraphIndex, x: str, w: np.ndarray, b: np.ndarray, tag: str, new: list[onnx.NodeProto]) -> str:
    """x·w + b as a MatMul and an Add on new initializers named after `tag`."""
    g.graph.initializer.extend([numpy_helper.from_array(w, tag + ".weight"), numpy_helper.from_array(b, tag + ".bias")])
    new.append(helper.make_node("MatMul", [x, tag + ".weight"], [tag + "/MatMul_output_0"], name=tag + "/MatMul"))
    new.append(
        helper.make_node("Add", [tag + "/MatMul_output_0", tag + ".bias"], [tag + "/Add_output_0"], name=tag + "/Add")
    )
    return tag + "/Add_output_0"


def _token_region(g: GraphIndex, entry: str, exit_: str) -> list[onnx.NodeProto]:
    """Nodes on a path from entry to exit_, checked to act on each token alone (attention aside)."""
    tensors = (g.downstream(entry) & g.upstream(exit_)) | {exit_}
    region = [n for n in g.graph.node if any(o in tensors for o in n.output)]
    inside = tensors | {entry}
    for n in region:
        if n.op_type == "MultiHeadAttention":
            continue
        if n.op_type not in TOKENWISE:
            raise UnsupportedGraph(
                f"{n.name}: {n.op_type} between the embeddings and the last LayerNorm may mix tokens"
            )
        if n.op_type == "LayerNormalization" and any(a.name == "axis" and a.i != -1 for a in n.attribute):
            raise UnsupportedGraph(f"{n.name}: LayerNormalization over an axis other than the last")
        for slot, i in enumerate(n.input):
            if not i or i in inside:
                continue
            c = g.const(i)
            rank_ok = 2 if (n.op_type == "MatMul" and slot == 1) else 1
            if c is None or c.ndim > rank_ok:
                raise UnsupportedGraph(f"{n.name}: input {i!r} is not a per-token constant")
    names = {n.name for n in region}
    for t in inside - {exit_}:
        outside = [u for u in g.consumers.get(t, []) if u.name not in names]
        if outside:
            raise UnsupportedGraph(f"{outside[0].name} reads the token stream {t!r} from outside it")
    return region


def _is_arange_slice(g: GraphIndex, tensor: str) -> bool:
    """True when `tensor` is Slice(arange(n) along its last axis, from 0, step 1): BERT's position ids."""
    node = g.producer.get(tensor)
    if node is None or node.op_type != "Slice" or len(node.input) < 3:
        return False
    data = g.const(node.input[0])
    if data is None or data.size == 0 or not np.array_equal(data.reshape(-1), np.arange(data.size)):
        return False
    if data.shape[-1] != data.size:  # (n,) or (1, n)
        return False
    starts, axes, steps = (g.const(node.input[k]) if len(node.input) > k and node.input[k] else None for k in (1, 3, 4))
    return (
        starts is not None
        and not starts.any()
        and (axes is None or np.all(axes % data.ndim == data.ndim - 1))
        and (steps is None or np.all(steps == 1))
    )


def _distinct_ids(g: GraphIndex, gather: onnx.NodeProto) -> str | None:
    """For a word-embedding Gather: "" if it reads a constant table by input_ids (a dense table); the
    distinct ids (Unique's first output) if it gathers back rows decoded from them alone (Unique →
    decode → Gather by the inverse indices reshaped like input_ids); None if it is neither."""
    ids = contract.INPUT_IDS
    if any(a.name == "axis" and a.i != 0 for a in gather.attribute):
        return None
    if gather.input[1] == ids:
        return "" if gather.input[0] in g.inits else None
    reshape = g.producer.get(gather.input[1])
    unique = g.producer.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
    if (
        unique is None
        or unique.op_type != "Unique"
        or any(a.name == "axis" for a in unique.attribute)
        or unique.input[0] != ids
        or len(unique.output) < 3
        or reshape.input[0] != unique.output[2]
    ):
        return None
    behind = g.upstream(gather.input[0]) | {gather.input[0]}  # the decoded rows: from the distinct ids alone
    if (
        unique.output[0] not in behind
        or behind & set(unique.output[1:])
        or g.graph_inputs_behind(gather.input[0]) - {ids}
        or any(not set(u.output) & behind for u in g.consumers[unique.output[0]])
    ):
        return None  # (and the distinct ids feed nothing else)
    return unique.output[0]


def _pack_ids(g: GraphIndex, norm: onnx.NodeProto, positions: str, column: str, new: list[onnx.NodeProto]) -> bool:
    """Pack the batch's token ids, not its embeddings, when the embedding block is BERT's: a word table
    read by input_ids (directly, or each distinct id once), constant rows and a position table read by
    arange(L), summed, then the LayerNorm `norm`. Each real token's id and its column (`column`: the
    column index of each row of `positions`) then give its embedding directly: the table decodes and
    the LayerNorm normalizes T rows, not B·L, and no GatherND of the embeddings is needed. A table that
    decodes each distinct id once decodes the T ids instead (at batch 1 its Unique and the Gather back
    cost more than the repeats it saves; at batch 32 the two measured the same). Exact: the same rows
    are summed. Returns False, changing nothing, for any other embedding block."""
    if any(a.name == "axis" and a.i != -1 for a in norm.attribute):
        return False
    leaves, stack, tree = [], [norm.input[0]], [norm.input[0]]
    while stack:
        t = stack.pop()
        node = g.producer.get(t)
        if node is not None and node.op_type == "Add" and g.const(t) is None:
            stack.extend(node.input)
            tree.extend(node.input)
        else:
            leaves.append(t)
    word = position = distinct = None
    for t in leaves:
        node = g.producer.get(t)
        const = g.const(t) if node is None or node.op_type in ("Constant", "Identity") else None
        if const is not None:
            if const.ndim > 1:  # only a row broadcast to every token sums the same when packed
                return False
            continue
        if node is None or node.op_type != "Gather":
            return False
        if position is None and node.input[0] in g.inits and _is_arange_slice(g, node.input[1]):
            position = node
        elif word is None and (distinct := _distinct_ids(g, node)) is not None:
            word = node
        else:
            return False
    if word is None or any(len(g.consumers.get(t, [])) != 1 for t in tree if g.const(t) is None):
        return False  # every partial sum must feed only the next one
    # Nothing else changes what it reads: whatever else reads input_ids still sees the padded batch
    # (and _token_region keeps any such (B, L) tensor out of the token stream).
    p = PREFIX
    new.append(helper.make_node("GatherND", [contract.INPUT_IDS, positions], [p + "ids"], name=p + "ids"))
    if distinct:  # the decode reads the packed ids themselves: no Unique, no Gather back
        redirect(distinct, p + "ids", list(g.consumers[distinct]))
        redirect(word.output[0], word.input[0], list(g.consumers[word.output[0]]))
    else:
        word.input[1] = p + "ids"
    if position is not None:
        position.input[1] = column
    return True


def remove_padding(model: onnx.ModelProto) -> None:
    """Run the token-wise part of a fused-attention graph on the batch's real tokens only, in place."""
    g = GraphIndex(model)
    attentions = [n for n in g.graph.node if n.op_type == "MultiHeadAttention"]
    norms = [n for n in g.graph.node if n.op_type == "LayerNormalization"]
    if not attentions or len(norms) < 2:
        raise UnsupportedGraph("remove_padding needs fused attention between two LayerNorms")
    entry, exit_ = norms[0].output[0], norms[-1].output[0]
    region = _token_region(g, entry, exit_)
    if not {n.name for n in attentions} <= {n.name for n in region}:
        raise UnsupportedGraph("an attention lies outside the embeddings-to-last-LayerNorm span")

    p = PREFIX
    consts = {p + "flat": np.array([-1], np.int64), p + "zero": np.array(0, np.int64), p + "one": np.array(1, np.int64)}
    g.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    new = [  # positions: (b, l) of each real token, (T, 2); pad_idx: for each (b, l), its token's row in
        # the packed (T, H) matrix, (B, L) (padding: row 0; any real row will do)
        helper.make_node("NonZero", [contract.ATTENTION_MASK], [p + "nonzero"], name=p + "nonzero"),
        helper.make_node("Transpose", [p + "nonzero"], [p + "positions"], perm=[1, 0], name=p + "positions"),
        helper.make_node("Reshape", [contract.ATTENTION_MASK, p + "flat"], [p + "mask_flat"], name=p + "mask_flat"),
        helper.make_node("CumSum", [p + "mask_flat", p + "zero"], [p + "cumsum"], name=p + "cumsum"),
        helper.make_node("Sub", [p + "cumsum", p + "one"], [p + "rank"], name=p + "rank"),
        helper.make_node("Mul", [p + "rank", p + "mask_flat"], [p + "pad_idx_flat"], name=p + "pad_idx_flat"),
        helper.make_node("Shape", [contract.ATTENTION_MASK], [p + "batch_len"], name=p + "batch_len"),
        helper.make_node("Reshape", [p + "pad_idx_flat", p + "batch_len"], [p + "pad_idx"], name=p + "pad_idx"),
        # the keys' indices: padding positions read row T (the padding key appended after the T tokens)
        helper.make_node("ReduceSum", [p + "mask_flat"], [p + "tokens"], keepdims=0, name=p + "tokens"),
        helper.make_node("Sub", [p + "one", p + "mask_flat"], [p + "is_pad"], name=p + "is_pad"),
        helper.make_node("Mul", [p + "is_pad", p + "tokens"], [p + "pad_row"], name=p + "pad_row"),
        helper.make_node("Add", [p + "pad_idx_flat", p + "pad_row"], [p + "key_idx_flat"], name=p + "key_idx_flat"),
        helper.make_node("Reshape", [p + "key_idx_flat", p + "batch_len"], [p + "key_idx"], name=p + "key_idx"),
        # each real token's column: its position id in BERT's arange(L)
        helper.make_node("Gather", [p + "positions", p + "one"], [p + "column"], axis=1, name=p + "column"),
    ]

    def pack(tensor: str, tag: str) -> str:  # (B, L, H) → (T, H): one GatherND, no reshape
        new.append(helper.make_node("GatherND", [tensor, p + "positions"], [tag + "/packed"], name=tag + "/packed"))
        return tag + "/packed"

    def unpack(tensor: str, tag: str, rows: str = p + "pad_idx") -> str:  # (T, H) → (B, L, H): a Gather
        new.append(helper.make_node("Gather", [tensor, rows], [tag + "/padded"], axis=0, name=tag + "/padded"))
        return tag + "/padded"  # by the (B, L) row indices

    if not _pack_ids(g, norms[0], p + "positions", p + "column", new):
        redirect(entry, pack(entry, p + "embeddings"), list(g.consumers[entry]))
    for layer, mha in enumerate(attentions):
        tag = f"{p}layer{layer}/"
        heads = next(a.i for a in mha.attribute if a.name == "num_heads")
        q, k = (_projection(g, t) for t in mha.input[:2])
        if q is None or k is None:
            raise UnsupportedGraph(f"{mha.name}: query or key is not a projection x·W + b by constants")
        wq, bq = _with_extra_coordinate(q[1], q[2], heads, 1.0)
        wk, bk = _with_extra_coordinate(k[1], k[2], heads, 0.0)
        # the keys gain a last row whose extra coordinates are PAD_SCORE; padding positions read it
        pad_key = np.zeros((1, wk.shape[1]), np.float32)
        pad_key[0, wk.shape[1] // heads - 1 :: wk.shape[1] // heads] = PAD_SCORE
        g.graph.initializer.append(numpy_helper.from_array(pad_key, tag + "key.pad_row"))
        key = _linear(g, k[0], wk, bk, tag + "key", new)
        new.append(
            helper.make_node(
                "Concat", [key, tag + "key.pad_row"], [tag + "key/with_pad"], axis=0, name=tag + "key/with_pad"
            )
        )
        parts = [
            unpack(_linear(g, q[0], wq, bq, tag + "query", new), tag + "query"),
            unpack(tag + "key/with_pad", tag + "key", rows=p + "key_idx"),
            unpack(mha.input[2], tag + "value"),
        ]
        del mha.input[:]  # no bias and no mask: the padding keys score about -1e8 on their own
        mha.input.extend(parts)
        context = mha.output[0]
        readers = list(g.consumers[context])
        redirect(context, pack(context, tag + "context"), readers)
    inside = {n.name for n in region}
    readers = [u for u in g.consumers[exit_] if u.name not in inside]
    redirect(exit_, unpack(exit_, p + "hidden"), readers)
    g.graph.node.extend(new)
    finish(model)


def rewrite(path: Path, config: GraphConfig, num_heads: int) -> RewriteReport:
    """Apply the configured rewrites to the ONNX file at `path` in place (all or none)."""
    if not config.fuse_attention:
        return RewriteReport()
    model = onnx.load(str(path))
    try:
        fold_constant_rows(model)
        fused = fuse_attention(model, num_heads)
        if config.remove_padding:
            remove_padding(model)
    except UnsupportedGraph as exc:
        return RewriteReport(skipped=str(exc))
    onnx.save(model, str(path))
    return RewriteReport(fused_attention=fused, padding_removed=config.remove_padding)
