"""POST /v1/embeddings and GET /v1/models — the OpenAI embeddings API, so the official client works unchanged."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..embedding import check_dimensions, encode_vectors, postprocess, validate_texts
from ..errors import InvalidInput
from ..schemas import (
    INFERENCE_ERRORS,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    error_responses,
)
from .deps import AppState, require_api_key, state, timing_headers

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def _split_input(raw, svc: AppState) -> tuple[list[str] | None, list[list[int]] | None]:
    """The API takes a string, strings, a token array or token arrays."""
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return None, [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, list) for x in raw):
        if len(raw) > svc.settings.max_inputs:
            raise InvalidInput(f"{len(raw)} inputs is over the limit of {svc.settings.max_inputs} per request")
        return None, raw
    return validate_texts(raw, svc.settings), None


@router.post("/embeddings", response_model=OpenAIEmbeddingResponse, responses=INFERENCE_ERRORS)
async def embeddings(
    body: OpenAIEmbeddingRequest, request: Request, response: Response, svc: AppState = Depends(state)
) -> dict:
    request.state.model = svc.registry.metric_label(body.model)
    texts, ids = _split_input(body.input, svc)
    if body.dimensions is not None:  # refused before any work is queued
        check_dimensions(svc.registry.get(body.model), body.dimensions, svc.settings.allow_any_dimensions)
    truncate = svc.settings.openai_long_inputs == "truncate"  # its clients cannot send the field
    result = await svc.embedder.embed(
        body.model, texts, truncate, token_ids=ids, receive=request.receive, prompt_name=body.prompt_name
    )
    response.headers.update(timing_headers(request, result))
    vectors = postprocess(result, True, body.dimensions)
    data = [
        {"object": "embedding", "index": i, "embedding": e}
        for i, e in enumerate(encode_vectors(vectors, body.encoding_format, body.embedding_type, result.model))
    ]
    return {
        "object": "list",
        "data": data,
        "model": result.model.name,
        "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
    }


@router.get("/models", responses=error_responses(401))
async def list_models(svc: AppState = Depends(state)) -> dict:
    from .models import describe

    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "owned_by": "compressed-embeddings", **describe(m)}
            for name, m in sorted(svc.registry.models.items())
        ],
    }
