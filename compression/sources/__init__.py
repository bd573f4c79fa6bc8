"""Stage 1: what a user brings in — a sentence-transformers or Hugging Face folder, or an ONNX
export — loaded into torch with its tokenizer, pooling and architecture layout (architectures.py)."""
