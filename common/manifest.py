"""The manifest.json schema: written by the pipeline, read by the service."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from . import contract


class Params(BaseModel):
    embedding: int
    encoder: int
    total: int


class Bytes(BaseModel):
    file: int
    embedding: int  # bytes of the word-embedding part (table or factors, scales, residual rows)


class Quality(BaseModel):
    model_config = ConfigDict(extra="allow")
    stsb_spearman: float | None = None  # STS-B test Spearman ×100
    fidelity_mean: float | None = None  # cosine to the baseline's embedding, mean over eval sentences
    fidelity_p1: float | None = None  # ... and its 1st percentile
    heldout_fidelity_mean: float | None = None  # fidelity on the corpus's held-out slice (never trained on)
    heldout_fidelity_p1: float | None = None
    heads: dict[str, dict[str, float]] = Field(default_factory=dict)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    name: str
    base_model: str
    baseline: str | None
    method: str
    rank: int | None
    quantization: str
    dim: int
    max_seq_length: int
    params: Params
    bytes: Bytes
    sha256: str
    quality: Quality
    recipe: dict[str, Any]
    versions: dict[str, str]
    heads: list[str] = Field(default_factory=list)
    pooling: str = "mean"  # how the graph pools token states (mean, cls, max, mean_sqrt_len)
    normalized: bool = True  # the graph ends in L2 normalisation (a source without a Normalize module does not)
    source: dict[str, Any] = Field(default_factory=dict)  # what was compressed: path, kind, shape
    evaluations: dict[str, dict[str, Any]] = Field(default_factory=dict)  # which ran, on which data, how many texts
    machine: dict[str, Any] = Field(default_factory=dict)  # CPU model and int8 features the figures were measured on
    probe: dict[str, Any] = Field(default_factory=dict)  # the probe set's file, size and fidelity where it was built
    # compress --diagnose: held-out fidelity with parts made exact (compression/evaluation/diagnose.py); empty without
    diagnosis: list[dict[str, Any]] = Field(default_factory=list)
    # serving changes of the graph: fused attention, padding removed (compression/export/serving_graph.py), the
    # dense route (compression/export/dense_route.py), and
    # tanh_gelu: how many exact GELUs the tanh approximation replaced (compression/encoder/activation.py)
    graph: dict[str, Any] = Field(default_factory=dict)
    # compress --min-fidelity: the target and each table size tried (codes, ratio, held-out fidelity)
    sizing: dict[str, Any] = Field(default_factory=dict)
    # sentence-transformers' named prompts ({"query": "query: ", …}) and the one applied when a caller names
    # none: the prompt every figure here was measured with (the source's default, else its "query" prompt)
    prompts: dict[str, str] = Field(default_factory=dict)
    default_prompt_name: str | None = None
    # each build step's wall time and the process's peak resident memory so far (compression/steps.py)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    # --eval: per language, the pairs, STS (this model's and the baseline's) and fidelity beside int8's
    # (compression/evaluation/languages.py)
    languages: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # --trim-vocab: rows kept of the full table, how many the corpus produced and the scripts kept whole
    vocabulary: dict[str, Any] = Field(default_factory=dict)
    # the shorter output vectors (OpenAI's `dimensions`) this model supports, with what each measured
    # (compression/evaluation/dimensions.py); the service refuses any other
    dimensions: dict[str, Any] = Field(default_factory=dict)
    # compact output types: int8/uint8 ranges calibrated on the probe set, and recall@10 and STS-B per
    # type against float (compression/evaluation/output_types.py)
    output_types: dict[str, Any] = Field(default_factory=dict)

    @property
    def supported_dimensions(self) -> list[int]:
        return [int(d) for d in self.dimensions.get("supported", [])]

    @property
    def default_prompt(self) -> str:
        """The text put before every input a caller sends without naming a prompt ("" for none)."""
        return self.prompts.get(self.default_prompt_name, "") if self.default_prompt_name else ""

    @classmethod
    def read(cls, model_dir: Path) -> "Manifest":
        return cls.model_validate_json((Path(model_dir) / contract.MANIFEST_FILE).read_text())

    def write(self, model_dir: Path) -> None:
        """Atomic: a reader sees the old manifest or the new one, never half of one."""
        path = Path(model_dir) / contract.MANIFEST_FILE
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
