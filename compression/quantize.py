"""Step 4 — quantize an exported ONNX graph with onnxruntime's own tools.

Two independent switches:
- the factor table A (V×r): int4 through onnxruntime's block-quantized
  GatherBlockQuantized (MatMulNBitsQuantizer on the Gather), or int8 per row
  (Gather on int8 codes → Cast → Mul by the row's gathered scale; onnxruntime's
  quantizer has no int8 Gather, so this small rewrite is ours);
- the encoder's MatMuls: onnxruntime dynamic int8, weights per output channel
  (symmetric int8), activations per tensor (uint8) at run time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ConfigError

log = logging.getLogger(__name__)

TABLE_BITS = (None, 8, 4)


@dataclass(frozen=True)
class QuantizeConfig:
    table_bits: int | None = None  # None keeps the (factor) table fp32
    table_block: int = 64  # int4 only: elements per scale along the row
    encoder_int8: bool = False  # onnxruntime dynamic int8 of the encoder's MatMuls
    per_channel: bool = True  # per-output-channel weight scales (much better fidelity than per-tensor)

    def __post_init__(self) -> None:
        if self.table_bits not in TABLE_BITS:
            raise ConfigError(f"table_bits must be one of {TABLE_BITS}, got {self.table_bits}")
        if self.table_block < 16 or self.table_block & (self.table_block - 1):
            raise ConfigError(f"table_block must be a power of two ≥ 16, got {self.table_block}")

    @property
    def label(self) -> str:
        parts = []
        if self.table_bits:
            parts.append(f"table-int{self.table_bits}")
        if self.encoder_int8:
            parts.append("encoder-int8" + ("-per-channel" if self.per_channel else ""))
        return "+".join(parts) or "fp32"


def word_embedding_gather(model: onnx.ModelProto) -> onnx.NodeProto:
    """The Gather whose data is the word (or factor A) table: the one fed by input_ids."""
    inits = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[1] == "input_ids" and node.input[0] in inits:
            return node
    raise ConfigError("no Gather on input_ids with a constant table found in the graph")


def embedding_node_names(model: onnx.ModelProto) -> list[str]:
    """Nodes of the embedding block (Gathers and the A→B MatMul), kept out of encoder quantization."""
    return [n.name for n in model.graph.node if "/embeddings/" in n.name or n.name.startswith("/embeddings")]


def _quantize_table_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Symmetric int8 per row: A_q[v] = round(A[v] / s_v), s_v = max|A[v]| / 127."""
    gather = word_embedding_gather(model)
    init = next(i for i in model.graph.initializer if i.name == gather.input[0])
    A = numpy_helper.to_array(init).astype(np.float32)
    scale = np.maximum(np.abs(A).max(axis=1, keepdims=True), 1e-12) / 127.0
    A_q = np.clip(np.rint(A / scale), -127, 127).astype(np.int8)
    name = init.name
    model.graph.initializer.remove(init)
    model.graph.initializer.extend([
        numpy_helper.from_array(A_q, name + "_int8"),
        numpy_helper.from_array(scale.astype(np.float32), name + "_scale"),
    ])
    out = gather.output[0]
    idx = list(model.graph.node).index(gather)
    new_nodes = [
        helper.make_node("Gather", [name + "_int8", "input_ids"], [out + "_q"], name=gather.name + "_q"),
        helper.make_node("Gather", [name + "_scale", "input_ids"], [out + "_s"], name=gather.name + "_scale"),
        helper.make_node("Cast", [out + "_q"], [out + "_f"], to=onnx.TensorProto.FLOAT, name=gather.name + "_cast"),
        helper.make_node("Mul", [out + "_f", out + "_s"], [out], name=gather.name + "_dequant"),
    ]
    model.graph.node.remove(gather)
    for k, node in enumerate(new_nodes):
        model.graph.node.insert(idx + k, node)
    return model


def _quantize_table_int4(model: onnx.ModelProto, block: int) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    gather = word_embedding_gather(model)
    cols = next(numpy_helper.to_array(i).shape[1] for i in model.graph.initializer if i.name == gather.input[0])
    if cols % block:
        raise ConfigError(f"int4 table: row length {cols} is not a multiple of block {block}")
    others = [n.name for n in model.graph.node if n.op_type in {"Gather", "MatMul"} and n.name != gather.name]
    cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=False, bits=4,
                                       op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),))
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=others, algo_config=cfg)
    quantizer.process()
    return quantizer.model.model


def quantize_table(src: Path, dst: Path, bits: int, block: int) -> None:
    model = onnx.load(str(src))
    model = _quantize_table_int8(model) if bits == 8 else _quantize_table_int4(model, block)
    onnx.save(model, str(dst))


def quantize_encoder(src: Path, dst: Path, per_channel: bool = True) -> None:
    """onnxruntime dynamic int8 on every MatMul with a constant weight, embeddings excluded."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    quantize_dynamic(
        str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"], nodes_to_exclude=embedding_node_names(model),
        extra_options={"MatMulConstBOnly": True},
    )


def apply(config: QuantizeConfig, src: Path, dst: Path) -> None:
    """Run the configured quantizations src → dst (dst may equal src only when nothing is done)."""
    current = src
    if config.table_bits:
        step = dst.with_suffix(".table.onnx")
        quantize_table(current, step, config.table_bits, config.table_block)
        current = step
    if config.encoder_int8:
        step = dst.with_suffix(".encoder.onnx")
        quantize_encoder(current, step, config.per_channel)
        if current != src:
            current.unlink()
        current = step
    if current == src:
        dst.write_bytes(src.read_bytes())
    else:
        current.replace(dst)
