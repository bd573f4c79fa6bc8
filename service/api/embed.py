"""POST /embed — the native embedding route."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..embedding import check_dimensions, encode_vectors, postprocess, unit, validate_texts
from ..errors import InvalidInput
from ..schemas import INFERENCE_ERRORS, EmbedRequest, EmbedResponse, Usage
from .deps import AppState, require_api_key, state, timing_headers

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/embed", response_model=EmbedResponse, response_model_exclude_none=True, responses=INFERENCE_ERRORS)
async def embed(
    body: EmbedRequest, request: Request, response: Response, svc: AppState = Depends(state)
) -> EmbedResponse:
    request.state.model = svc.registry.metric_label(body.model)
    texts = validate_texts(body.inputs, svc.settings)
    if body.return_windows and body.truncate:
        raise InvalidInput("return_windows needs truncate false (a truncated text has one window)")
    if body.dimensions is not None:  # refused before any work is queued
        if not body.normalize:
            raise InvalidInput("dimensions needs normalize true (a truncated vector is re-normalised)")
        check_dimensions(svc.registry.get(body.model), body.dimensions, svc.settings.allow_any_dimensions)
    result = await svc.embedder.embed(
        body.model, texts, body.truncate, receive=request.receive, prompt_name=body.prompt_name
    )
    response.headers.update(timing_headers(request, result))
    vectors = postprocess(result, body.normalize, body.dimensions)
    per_window = None
    if body.return_windows:  # each window cut to `dimensions` as the pooled vector is
        cut = [unit(w[:, : body.dimensions]) if body.dimensions else w for w in result.windows]
        per_window = [encode_vectors(w, body.encoding_format, body.embedding_type, result.model) for w in cut]
    return EmbedResponse(
        model=result.model.name,
        dim=int(vectors.shape[1]),
        embeddings=encode_vectors(vectors, body.encoding_format, body.embedding_type, result.model),
        windows=per_window,
        usage=Usage(tokens=result.tokens),
    )
