"""Request and response shapes of the HTTP API (ARCHITECTURE.md's contract)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    inputs: str | list[str]
    model: str | None = None
    normalize: bool = True
    truncate: bool = True
    encoding_format: Literal["float", "base64"] = "float"


class Usage(BaseModel):
    tokens: int


class EmbedResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model: str
    dim: int
    embeddings: list[list[float]] | list[str]
    usage: Usage


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    inputs: str | list[str]
    model: str | None = None
    head: str | None = None
    labels: list[str] | None = None
    hypothesis_template: str = "This text is about {}."
    top_k: int | None = Field(None, ge=1)
    truncate: bool = True


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    label: str
    score: float
    scores: list[LabelScore]


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model: str
    head: str | None
    predictions: list[Prediction]
    usage: Usage
