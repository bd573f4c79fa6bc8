"""Names fixed by ARCHITECTURE.md's model-directory contract, declared once."""

from __future__ import annotations

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
HEADS_DIR = "heads"

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
OUTPUT_EMBEDDING = "embedding"
# The pooled vector before L2 normalisation: a second output, present when the source normalises
# (without Normalize, `embedding` is the pooled vector already). The service returns it for normalize=false.
OUTPUT_POOLED = "pooled"
OUTPUTS = (OUTPUT_EMBEDDING, OUTPUT_POOLED)
# Dynamic axes: both batch and sequence length vary per call.
DYNAMIC_AXES = {
    INPUT_IDS: {0: "batch", 1: "sequence"},
    ATTENTION_MASK: {0: "batch", 1: "sequence"},
    OUTPUT_EMBEDDING: {0: "batch"},
    OUTPUT_POOLED: {0: "batch"},
}
OPSET = 17
