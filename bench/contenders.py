"""The things compared: ONNX model directories (through onnxruntime, as the service runs
them) and sentence-transformers' `encode` on the source model (PyTorch on the CPU, what
users run without a server). Each becomes a function texts -> embeddings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

Encode = Callable[[list[str]], np.ndarray]
ST_NAME = "sentence-transformers"


@dataclass(frozen=True)
class Contender:
    name: str
    kind: str  # "onnx" (a model directory the pipeline built) or "st" (a sentence-transformers directory)
    path: Path

    def manifest(self) -> dict | None:
        f = self.path / "manifest.json"
        return json.loads(f.read_text()) if self.kind == "onnx" and f.is_file() else None


def load(contender: Contender, threads: int = 0) -> Encode:
    """Load a contender; the returned function tokenizes and runs a batch, as served."""
    if contender.kind == "onnx":
        from common.manifest import Manifest
        from common.onnx_encoder import SERVING
        from service.runtime import OnnxBackend

        # the service's own backend and session settings, so the in-process ceiling and the memory are
        # the service's minus HTTP and batching: the same tokenizer calls, padding and onnxruntime run
        max_length = Manifest.read(contender.path).max_seq_length
        backend = OnnxBackend(contender.path, max_length, replace(SERVING, threads=threads))

        def encode(texts: list[str]) -> np.ndarray:
            return backend.run(backend.tokenize(texts, truncate=True))

        return encode
    if contender.kind == "st":
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        model = SentenceTransformer(str(contender.path), device="cpu")

        def encode(texts: list[str]) -> np.ndarray:
            return model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)

        return encode
    raise ValueError(f"unknown contender kind {contender.kind!r}")


def discover(models_dir: Path, names: list[str], st_model: Path | None) -> list[Contender]:
    """The named model directories (missing ones are an error), then sentence-transformers if given."""
    out = []
    for name in names:
        if not (models_dir / name / "manifest.json").is_file():
            raise SystemExit(f"model {name!r} is not built in {models_dir} (run: make models)")
        out.append(Contender(name, "onnx", models_dir / name))
    if st_model is not None:
        out.append(Contender(ST_NAME, "st", st_model))
    return out
