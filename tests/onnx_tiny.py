"""A torch-free model directory for service tests: a BERT-shaped ONNX graph made with onnx.helper
(token table → mask-weighted mean over the sequence → L2 normalisation, the model contract's inputs
and output), the tiny WordPiece tokenizer and a manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import contract
from common.manifest import Manifest, sha256_file
from tests.tiny import tiny_vocab, write_tokenizer


def make_graph(vocab_size: int, dim: int, seed: int = 0) -> onnx.ModelProto:
    table = np.random.default_rng(seed).standard_normal((vocab_size, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", contract.INPUT_IDS], ["tokens"]),  # (b, s, dim)
        helper.make_node("Cast", [contract.ATTENTION_MASK], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),  # (b, s, 1)
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),  # (b, dim)
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),  # (b, 1)
        helper.make_node("Max", ["count", "one"], ["count1"]),  # an all-padding row divides by 1
        helper.make_node("Div", ["total", "count1"], ["mean"]),
        helper.make_node("LpNormalization", ["mean"], [contract.OUTPUT_EMBEDDING], axis=1, p=2),
    ]
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([2], np.int64), "axis2"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one")]
    graph = helper.make_graph(
        nodes, "tiny-mean-pool",
        [helper.make_tensor_value_info(contract.INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info(contract.ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info(contract.OUTPUT_EMBEDDING, TensorProto.FLOAT, ["batch", dim])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", contract.OPSET)])


def make_model_dir(path: Path, name: str = "tiny", dim: int = 16, max_seq_length: int = 48,
                   baseline: str | None = None, seed: int = 0) -> Path:
    """A complete model directory the service loads, built without torch."""
    vocab = tiny_vocab()
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(make_graph(len(vocab), dim, seed), path / contract.MODEL_FILE)
    write_tokenizer(path / contract.TOKENIZER_FILE, vocab)
    size = (path / contract.MODEL_FILE).stat().st_size
    Manifest.model_validate({
        "name": name, "base_model": "onnx-helper", "baseline": baseline, "method": "none", "rank": None,
        "quantization": "fp32", "dim": dim, "max_seq_length": max_seq_length,
        "params": {"embedding": len(vocab) * dim, "encoder": 0, "total": len(vocab) * dim},
        "bytes": {"file": size, "embedding": len(vocab) * dim * 4}, "sha256": sha256_file(path / contract.MODEL_FILE),
        "quality": {}, "recipe": {}, "versions": {}}).write(path)
    return path
