"""POST /embed — the native embedding route."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..embedding import encode_vectors, postprocess, validate_texts
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
    result = await svc.embedder.embed(
        body.model, texts, body.truncate, receive=request.receive, prompt_name=body.prompt_name
    )
    response.headers.update(timing_headers(request, result))
    vectors = postprocess(result, body.normalize)
    if body.return_windows and body.truncate:
        raise InvalidInput("return_windows needs truncate false (a truncated text has one window)")
    per_window = None
    if body.return_windows:
        per_window = [
            encode_vectors(w, body.encoding_format, body.embedding_type, result.model) for w in result.windows
        ]
    return EmbedResponse(
        model=result.model.name,
        dim=int(vectors.shape[1]),
        embeddings=encode_vectors(vectors, body.encoding_format, body.embedding_type, result.model),
        windows=per_window,
        usage=Usage(tokens=result.tokens),
    )
