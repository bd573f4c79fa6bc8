"""Step 6 of 8 (see build.py) — quantize an exported ONNX graph with onnxruntime's own tools.

Two independent switches:
- the factor table A (V×r): int4 through onnxruntime's block-quantized
  GatherBlockQuantized (MatMulNBitsQuantizer on the Gather), or int8 per row
  (Gather on int8 codes → Cast → Mul by the row's gathered scale; onnxruntime's
  quantizer has no int8 Gather, so this small rewrite is ours). Banded
  factors have two code tables; both are quantized the same way;
- the shared factor B (r×H, and its constant-folded slice for the low band)
  and a pq table's centroids: float16 in the file, cast back to float32 by a
  Cast that onnxruntime folds at load, so it costs nothing at run time; or
  int8 (symmetric, a scale per row of B and per group and coordinate of the
  centroids; Cast and Mul, folded at load the same way), a quarter of their
  fp32 bytes, which a pq table can spend on more codes per token (pq codes are
  one byte already and take no table_bits); with decode_int8 the pq decode is
  one integer product of the gathered int8 centroids by int8 B (quantize_decode);
- the encoder's MatMuls, int8 in one of two onnxruntime schemes:
  * dynamic (quantize_dynamic): weights symmetric int8 per output channel,
    activations uint8 per *tensor*, their range taken from the whole batch at
    run time — fastest, but one outlier anywhere in the batch coarsens every
    row's grid (0.993 mean cosine to fp32 for MiniLM on dev sentences);
  * block (MatMulNBits, 8 bits, accuracy level 4): weights symmetric int8 per
    block of `encoder_block` input rows, activations int8 per block of each
    *row* at run time, so no token's range depends on its batch-mates (0.9994
    on the same sentences; both figures from an exploratory run) — a float
    scale per block costs 4/block bytes per weight, and its int8 kernel ran at
    about 60% of the dynamic scheme's batch-32 speed on the machine measured;
- the position-embedding table: float16 in the file (fp16 rounding of vectors
  that are added to the token embeddings; a Cast folded at load) when
  positions_fp16 is set.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compression.config import TABLE_BITS, QuantizeConfig  # noqa: F401 (re-exported)
from compression.errors import ConfigError
from compression.onnx_graph import GraphIndex
from compression.sources.architectures import FORM

log = logging.getLogger(__name__)


def table_gathers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Gathers of the word-embedding block whose data is a float table (dense E, or factor codes)."""
    floats = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2}
    found = [
        n for n in model.graph.node if n.op_type == "Gather" and FORM.word_embeddings in n.name and n.input[0] in floats
    ]
    if not found:
        raise ConfigError("no word-embedding Gather on a float table found in the graph")
    return found


def embedding_node_names(model: onnx.ModelProto) -> list[str]:
    """Nodes of the embedding block (Gathers, the A→B MatMuls), kept out of encoder quantization."""
    return [n.name for n in model.graph.node if "/embeddings/" in n.name]


def symmetric_int8(x: np.ndarray, axis: int | tuple[int, ...], levels: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """(q, scale) with x ≈ q · scale, q in [-levels, levels], one scale per slice reduced over `axis`."""
    scale = np.maximum(np.abs(x).max(axis=axis, keepdims=True), 1e-12) / levels
    return np.clip(np.rint(x / scale), -levels, levels).astype(np.int8), scale.astype(np.float32)


def _quantize_gather_int8(model: onnx.ModelProto, gather: onnx.NodeProto) -> None:
    """Symmetric int8 per row: T_q[v] = round(T[v] / s_v), s_v = max|T[v]| / 127; dequantized after the Gather."""
    init = next(i for i in model.graph.initializer if i.name == gather.input[0])
    T_q, scale = symmetric_int8(numpy_helper.to_array(init).astype(np.float32), axis=1)
    name, indices, out = init.name, gather.input[1], gather.output[0]
    model.graph.initializer.remove(init)
    model.graph.initializer.extend(
        [numpy_helper.from_array(T_q, name + "_int8"), numpy_helper.from_array(scale, name + "_scale")]
    )
    idx = list(model.graph.node).index(gather)
    new_nodes = [
        helper.make_node("Gather", [name + "_int8", indices], [out + "_q"], name=gather.name + "_q"),
        helper.make_node("Gather", [name + "_scale", indices], [out + "_s"], name=gather.name + "_scale"),
        helper.make_node("Cast", [out + "_q"], [out + "_f"], to=onnx.TensorProto.FLOAT, name=gather.name + "_cast"),
        helper.make_node("Mul", [out + "_f", out + "_s"], [out], name=gather.name + "_dequant"),
    ]
    model.graph.node.remove(gather)
    for k, node in enumerate(new_nodes):
        model.graph.node.insert(idx + k, node)


def _quantize_tables_int4(model: onnx.ModelProto, block: int) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    # int4 initializers need opset 21; convert properly (e.g. ReduceL2's axes become an input)
    # rather than letting the quantizer just relabel the opset.
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 21:
        from onnx import version_converter

        model = version_converter.convert_version(model, 21)
    targets = table_gathers(model)
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    for g in targets:
        if shapes[g.input[0]][1] % block:
            raise ConfigError(
                f"int4 table {g.input[0]}: row length {shapes[g.input[0]][1]} is not a multiple of {block}"
            )
    keep = {g.name for g in targets}
    others = [n.name for n in model.graph.node if n.op_type in {"Gather", "MatMul"} and n.name not in keep]
    cfg = DefaultWeightOnlyQuantConfig(
        block_size=block, is_symmetric=False, bits=4, op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),)
    )
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=others, algo_config=cfg)
    quantizer.process()
    return quantizer.model.model


def _factor_operand(node: onnx.NodeProto) -> int | None:
    """Which input of an embedding-block node is a factor to store in fp16: B of a MatMul, or the
    table of the pq centroids' Gather (named after ProductQuantizedEmbedding.centroids)."""
    if "/embeddings/" not in node.name:
        return None
    if node.op_type == "MatMul":
        return 1
    if node.op_type == "Gather" and "/centroids/" in node.name:
        return 0
    return None


def _position_operand(node: onnx.NodeProto) -> int | None:
    """The table input of the position-embedding Gather."""
    return 0 if node.op_type == "Gather" and FORM.position_embeddings in node.name else None


def _float_operands(model: onnx.ModelProto, operand) -> list[tuple[onnx.NodeProto, onnx.TensorProto]]:
    """(node, initializer) for every node whose input operand(node) is a float initializer."""
    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        slot = operand(node)
        init = inits.get(node.input[slot]) if slot is not None else None
        if init is not None and init.data_type == onnx.TensorProto.FLOAT:
            found.append((node, init))
    return found


def _restore_before(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    init: onnx.TensorProto,
    stored: list[onnx.TensorProto],
    nodes: list[onnx.NodeProto],
) -> None:
    """Replace initializer `init` by `stored` and the `nodes` that rebuild it (as init.name) before `node`."""
    model.graph.initializer.remove(init)
    model.graph.initializer.extend(stored)
    at = list(model.graph.node).index(node)
    for k, new in enumerate(nodes):
        model.graph.node.insert(at + k, new)


def _to_fp16(model: onnx.ModelProto, operand) -> int:
    """Store the float initializer that operand(node) points at as float16 + a Cast back to float32
    (onnxruntime folds the Cast at load: half the bytes on disk, none at run time); returns how many."""
    found = _float_operands(model, operand)
    for node, init in found:
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        cast = helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT, name=node.name + "_fp32")
        _restore_before(model, node, init, [half], [cast])
    return len(found)


def factors_to_fp16(model: onnx.ModelProto) -> int:
    """Every constant factor of the embedding block (B, pq centroids) in float16; returns how many."""
    return _to_fp16(model, _factor_operand)


def _pq_groups(model: onnx.ModelProto) -> int:
    """M, the number of centroid groups: the second dimensions of the code tables summed (the codes of
    every token and, tiered, the tier's codes of the frequent ones, concatenated before the Gather)."""
    codes = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.UINT8 and len(i.dims) == 2]
    if not 1 <= len(codes) <= 2:
        raise ConfigError(f"expected one or two tables of pq codes in the graph, found {len(codes)}")
    return sum(int(c.dims[1]) for c in codes)


def factors_to_int8(model: onnx.ModelProto) -> int:
    """B (per row) and pq centroids (per group and coordinate) in int8; returns how many. The
    centroid table (M·K, d) is viewed as (M, K, d): the groups hold different directions, so each
    gets its own scale per coordinate. Dequantized by Cast → Mul (→ Reshape), all folded at load."""
    found = _float_operands(model, _factor_operand)
    for node, init in found:
        x = numpy_helper.to_array(init).astype(np.float32)
        name = init.name
        cast = helper.make_node(
            "Cast", [name + "_int8"], [name + "_f"], to=onnx.TensorProto.FLOAT, name=node.name + "_cast"
        )
        if node.op_type == "Gather":  # the centroids
            M = _pq_groups(model)
            q, scale = symmetric_int8(x.reshape(M, x.shape[0] // M, x.shape[1]), axis=1)
            shapes = [
                numpy_helper.from_array(np.array(s, np.int64), f"{name}_shape{k}")
                for k, s in enumerate((q.shape, x.shape))
            ]
            nodes = [
                cast,  # (M·K, d) → (M, K, d), times the (M, 1, d) scales, → (M·K, d)
                helper.make_node("Reshape", [name + "_f", shapes[0].name], [name + "_g"], name=node.name + "_groups"),
                helper.make_node("Mul", [name + "_g", name + "_scale"], [name + "_m"], name=node.name + "_dequant"),
                helper.make_node("Reshape", [name + "_m", shapes[1].name], [name], name=node.name + "_table"),
            ]
        else:  # B: one scale per row (per basis direction)
            q, scale = symmetric_int8(x, axis=1)
            shapes = []
            nodes = [cast, helper.make_node("Mul", [name + "_f", name + "_scale"], [name], name=node.name + "_dequant")]
        stored = [
            numpy_helper.from_array(q.reshape(x.shape), name + "_int8"),
            numpy_helper.from_array(scale, name + "_scale"),
            *shapes,
        ]
        _restore_before(model, node, init, stored, nodes)
    return len(found)


def quantize_table(
    src: Path,
    dst: Path,
    bits: int | None,
    block: int,
    b_fp16: bool = False,
    positions_fp16: bool = False,
    factors_int8: bool = False,
    decode_int8: bool = False,
) -> None:
    model = onnx.load(str(src))
    if b_fp16 and not factors_to_fp16(model):
        raise ConfigError("b_fp16: the graph has no factor B (a MatMul on a constant in the embedding block)")
    if decode_int8:  # the int8 factors, as one integer product
        quantize_decode(model)
    elif factors_int8 and not factors_to_int8(model):
        raise ConfigError("factors_int8: the graph has no factor B (a MatMul on a constant in the embedding block)")
    if positions_fp16 and not _to_fp16(model, _position_operand):
        raise ConfigError("positions_fp16: the graph has no position-embedding Gather on a float table")
    if bits == 8:
        for gather in table_gathers(model):
            _quantize_gather_int8(model, gather)
    elif bits == 4:
        model = _quantize_tables_int4(model, block)
    onnx.save(model, str(dst))


def merge_common_subexpressions(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-ir's common-subexpression elimination: the exporter writes one node per module call, so the
    query, key and value each multiply the same input by a shared smoothing scale; merged, that input is
    then quantized once (it also merges the exporter's repeated shape arithmetic)."""
    import onnx_ir as ir
    from onnx_ir.passes.common import CommonSubexpressionEliminationPass

    return ir.to_proto(CommonSubexpressionEliminationPass()(ir.from_proto(model)).model)


def _row_added_to(model: onnx.ModelProto, tensor: str, width: int) -> tuple[onnx.NodeProto, str] | None:
    """(the Add, the row's name) when `tensor`'s only reader adds a constant vector of `width` to it."""
    readers = [n for n in model.graph.node if tensor in n.input]
    if len(readers) != 1 or readers[0].op_type != "Add":
        return None
    other = next((i for i in readers[0].input if i != tensor), None)
    init = next((i for i in model.graph.initializer if i.name == other), None)
    if init is None or list(init.dims) != [width] or init.data_type != onnx.TensorProto.FLOAT:
        return None
    return readers[0], other


DECODE_WEIGHT_LEVELS = 64  # B of the int8 decode: 7-bit, as reduce_range (see quantize_decode)


def quantize_decode(model: onnx.ModelProto) -> str:
    """The pq decode (centroid Gather → Flatten → MatMul by B) as one int8 product, in place.

    The centroids are stored as int8 codes q with a scale s per group and coordinate (as
    factors_to_int8), and the gathered codes feed onnxruntime's MatMulIntegerToFloat as they are:
    Σ q·s·B = Σ q·(s·B), so s folds into B's rows, and (s·B) is quantized per column. No activation is
    quantized at run time: the decode is as exact as the stored centroids and int8 B, and costs one
    Gather of bytes and one integer product. The codes are stored as uint8 q + 128 (zero point 128):
    onnxruntime's x86 kernels are u8×s8. B keeps 7-bit weights (±64) so that AVX2's pairwise int16 sums
    (255·64·2 < 2¹⁵) cannot saturate: the same result on AVX2 and AVX-512 VNNI. Returns the node's name."""
    found = _float_operands(model, _factor_operand)
    gathers = [(n, i) for n, i in found if n.op_type == "Gather"]
    matmuls = [(n, i) for n, i in found if n.op_type == "MatMul"]
    if len(gathers) != 1 or len(matmuls) != 1:
        raise ConfigError(
            "decode_int8 needs a pq table: one centroid Gather and one product by B in fp32, "
            f"found {len(gathers)} and {len(matmuls)}"
        )
    (gather, c_init), (matmul, b_init) = gathers[0], matmuls[0]
    producers = GraphIndex(model).producer
    link, chain = matmul.input[0], {matmul.input[0]}
    while link != gather.output[0] and link in producers and producers[link].op_type in ("Flatten", "Reshape"):
        link = producers[link].input[0]
        chain.add(link)
    if link != gather.output[0]:  # the codes must reach the product unchanged (they become uint8 bytes)
        raise ConfigError("decode_int8: the product by B does not read the centroid Gather through reshapes only")
    C, B = numpy_helper.to_array(c_init).astype(np.float32), numpy_helper.to_array(b_init).astype(np.float32)
    M = _pq_groups(model)
    K, d = C.shape[0] // M, C.shape[1]
    if B.shape[0] != M * d:
        raise ConfigError(f"decode_int8: B has {B.shape[0]} rows, the pq groups decode {M}×{d} coordinates")
    q, s = symmetric_int8(C.reshape(M, K, d), axis=1)  # s: (M, 1, d)
    B_q, b_scale = symmetric_int8(B * s.reshape(-1, 1), axis=0, levels=DECODE_WEIGHT_LEVELS)
    name, H = matmul.name, B.shape[1]
    stored = {
        c_init.name + "_u8": (q.astype(np.int16) + 128).astype(np.uint8).reshape(C.shape),
        name + ".B_quantized": B_q,
        name + ".B_scale": b_scale.reshape(H),
        name + ".B_zero_point": np.zeros(H, np.int8),
        name + ".codes_scale": np.array(1.0, np.float32),
        name + ".codes_zero_point": np.array(128, np.uint8),
    }
    model.graph.initializer.remove(c_init)
    model.graph.initializer.remove(b_init)
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in stored.items())
    gather.input[0] = c_init.name + "_u8"
    stale = [v for v in model.graph.value_info if v.name in chain]  # recorded as float; bytes now
    for v in stale:
        model.graph.value_info.remove(v)
    inputs = [
        matmul.input[0],
        name + ".B_quantized",
        name + ".codes_scale",
        name + ".B_scale",
        name + ".codes_zero_point",
        name + ".B_zero_point",
    ]
    outputs, drop = list(matmul.output), [matmul]
    bias = _row_added_to(model, matmul.output[0], H)
    if bias is not None:  # a constant row added to every decoded vector (the token type's): the product's bias
        add, row = bias
        inputs.append(row)
        outputs, drop = list(add.output), [matmul, add]
    product = helper.make_node("MatMulIntegerToFloat", inputs, outputs, domain="com.microsoft", name=name)
    at = list(model.graph.node).index(matmul)
    for node in drop:
        model.graph.node.remove(node)
    model.graph.node.insert(at, product)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return name


def quantize_encoder(
    src: Path, dst: Path, per_channel: bool = True, block: int | None = None, reduce_range: bool = False
) -> None:
    """int8 on every MatMul with a constant weight, embeddings excluded: onnxruntime's dynamic
    quantization (reduce_range: weights within ±64), or with `block` its MatMulNBits (8-bit weights,
    int8 compute)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    excluded = embedding_node_names(model)
    if block is not None:
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        # accuracy_level 4: activations quantized to int8 per block of each row, int8 dot products
        cfg = DefaultWeightOnlyQuantConfig(
            block_size=block, is_symmetric=True, accuracy_level=4, bits=8, op_types_to_quantize=("MatMul",)
        )
        quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=excluded, algo_config=cfg)
        quantizer.process()
        onnx.save(quantizer.model.model, str(dst))
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process is logged on the root logger, every run
    try:
        quantize_dynamic(
            merge_common_subexpressions(model),
            str(dst),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=excluded,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def apply(config: QuantizeConfig, src: Path, dst: Path) -> None:
    """Run the configured quantizations src → dst. The encoder goes first: onnxruntime's
    dynamic quantizer needs shape inference, which stops at contrib ops like GatherBlockQuantized."""
    current = src
    if config.encoder_int8:
        step = dst.with_suffix(".encoder.onnx")
        quantize_encoder(current, step, config.per_channel, config.encoder_block, config.reduce_range)
        current = step
    if config.table_bits or config.b_fp16 or config.positions_fp16 or config.factors_int8:
        step = dst.with_suffix(".table.onnx")
        quantize_table(
            current,
            step,
            config.table_bits,
            config.table_block,
            config.b_fp16,
            config.positions_fp16,
            config.factors_int8,
            config.decode_int8,
        )
        if current != src:
            current.unlink()
        current = step
    if current == src:
        dst.write_bytes(src.read_bytes())
    else:
        current.replace(dst)


PLAIN_INT8 = QuantizeConfig(table_bits=8, encoder_int8=True)  # what a user gets from onnxruntime alone


def plain_int8(src: Path, dst: Path) -> None:
    """onnxruntime's plain dynamic int8 of an fp32 export (encoder per channel, table per row): the
    reference every compressed variant is held to."""
    apply(PLAIN_INT8, src, dst)
