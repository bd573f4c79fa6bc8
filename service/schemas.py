"""Request and response shapes of the HTTP API (ARCHITECTURE.md's contract)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    inputs: str | list[str]
    model: str | None = None
    normalize: bool = True
    truncate: bool = True
    encoding_format: Literal["float", "base64"] = "float"
    prompt_name: str | None = None  # one of the model's prompts (TEI's field); None: the model's default prompt
    # compact vectors (sentence-transformers' quantize_embeddings): int8/uint8 per-dimension ranges from the
    # model's manifest, binary/ubinary signs packed eight to a byte
    embedding_type: Literal["float", "int8", "uint8", "binary", "ubinary"] = "float"
    # with truncate false: each input's window vectors too (chunk-level indexing), beside the pooled one
    return_windows: bool = False
    # the first `dimensions` coordinates, re-normalised (TEI's and OpenAI's field): only sizes the model's
    # build measured (its manifest's `dimensions`), unless EMBED_ALLOW_ANY_DIMENSIONS
    dimensions: int | None = Field(None, ge=1)


class Usage(BaseModel):
    tokens: int


class EmbedResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model: str
    dim: int
    embeddings: list[list[int]] | list[list[float]] | list[str]
    windows: list[list[list[int]] | list[list[float]] | list[str]] | None = None  # return_windows, per input
    usage: Usage


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    # token ids are strict ints: JSON true/false must not pass as ids 1/0
    input: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    prompt_name: str | None = None  # an extra field (the openai client's extra_body); None: the model's default
    embedding_type: Literal["float", "int8", "uint8", "binary", "ubinary"] = "float"  # an extra field too


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


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[int] | list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: StrictBool = False  # swap even a version the fidelity gate refuses (stored vectors need re-indexing)
    canary: str | None = None  # replaces the canary rules: 'name=candidate:share[,...]'; "" clears them


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape of every route."""

    error: ErrorDetail


def error_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI entries for the errors a route can answer, all in the one error shape."""
    meaning = {
        400: "body is not valid JSON",
        401: "missing or wrong API key",
        404: "unknown model or head",
        408: "request body stalled",
        413: "body over the cap, or text over the model's token limit with truncate false",
        422: "invalid input",
        429: "queue full; retry after Retry-After seconds",
        503: "models still loading, or inference failed for this batch",
    }
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}


INFERENCE_ERRORS = error_responses(400, 401, 404, 408, 413, 422, 429, 503)
