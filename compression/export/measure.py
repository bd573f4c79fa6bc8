"""Size figures read from an exported graph: what a user actually downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from compression.export.dense_route import all_nodes
from compression.sources.architectures import FORM


def _init_bytes(init: onnx.TensorProto) -> int:
    if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (int(np.prod(init.dims)) + 1) // 2
    return int(numpy_helper.to_array(init).nbytes)


def embedding_bytes(model_path: Path) -> int:
    """Bytes of the initializers read by the word-embedding nodes (table or factors, scales, residual)."""
    model = onnx.load(str(model_path))
    inits = {i.name: i for i in model.graph.initializer}
    used = {name for n in all_nodes(model.graph) if FORM.word_embeddings in n.name for name in n.input if name in inits}
    return sum(_init_bytes(inits[name]) for name in used)
