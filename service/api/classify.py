"""POST /classify — trained heads (from a model's heads/) or zero-shot labels.

Zero-shot: each label is embedded through the hypothesis template and kept in a
bounded LRU cache (service/label_cache.py); an input's scores are softmax(cos(input, label) / T) with T
the `zero_shot_temperature` setting (0.05 by default: cosines of related
sentences differ by a few hundredths, so a small T is needed to separate them).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from common.heads import softmax

from ..embedding import unit, validate_texts
from ..errors import InvalidInput, UnknownHead
from ..schemas import (
    INFERENCE_ERRORS,
    ClassifyRequest,
    ClassifyResponse,
    LabelScore,
    Prediction,
    Usage,
)
from .deps import AppState, require_api_key, state, timing_headers

router = APIRouter(dependencies=[Depends(require_api_key)])


async def _label_vectors(svc: AppState, model_name: str, labels: list[str], template: str) -> np.ndarray:
    found = {lab: svc.label_cache.get((model_name, template, lab)) for lab in labels}
    missing = [lab for lab, vec in found.items() if vec is None]
    if missing:
        # the model that embedded the inputs, not a canary stand-in: both sides must be one model's vectors
        result = await svc.embedder.embed(model_name, [template.replace("{}", lab) for lab in missing], route=False)
        for lab, vec in zip(missing, unit(result.vectors)):
            found[lab] = vec
            svc.label_cache.put((model_name, template, lab), vec)
    return np.stack([found[lab] for lab in labels])


def _predictions(probs: np.ndarray, labels: list[str], top_k: int | None) -> list[Prediction]:
    k = min(top_k or len(labels), len(labels))
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:k]
        scores = [LabelScore(label=labels[i], score=float(row[i])) for i in order]
        out.append(Prediction(label=scores[0].label, score=scores[0].score, scores=scores))
    return out


async def _with_head(
    body: ClassifyRequest, request: Request, response: Response, svc: AppState, texts: list[str]
) -> ClassifyResponse:
    """A trained head: softmax(embedding · Wᵀ + b); `head` defaults to the model's first head."""
    model = svc.registry.get(body.model)
    names = list(model.heads)
    name = body.head or (names[0] if names else None)
    if name is None:
        raise InvalidInput(f"model {model.name!r} has no trained heads; send zero-shot labels")
    if name not in model.heads:
        raise UnknownHead(f"head {name!r} is not available for model {model.name!r}; heads: {names}")
    result = await svc.embedder.embed(model.name, texts, body.truncate, receive=request.receive)
    response.headers.update(timing_headers(request, result))
    # a canary candidate that answered applies its own head of that name where it has one
    head = result.model.heads.get(name, model.heads[name])
    predictions = _predictions(head.probabilities(result.vectors), head.labels, body.top_k)
    for p in predictions:
        svc.metrics.labels.labels(model.name, name, p.label).inc()
    return ClassifyResponse(model=model.name, head=name, predictions=predictions, usage=Usage(tokens=result.tokens))


@router.post("/classify", response_model=ClassifyResponse, responses=INFERENCE_ERRORS)
async def classify(
    body: ClassifyRequest, request: Request, response: Response, svc: AppState = Depends(state)
) -> ClassifyResponse:
    request.state.model = svc.registry.metric_label(body.model)
    texts = validate_texts(body.inputs, svc.settings)
    if body.head is not None and body.labels is not None:
        raise InvalidInput("give either head (a trained head) or labels (zero-shot), not both")
    if body.labels is None:
        return await _with_head(body, request, response, svc, texts)
    labels, limits = body.labels, svc.settings
    if len(labels) < 2:
        raise InvalidInput("zero-shot classification needs at least two labels")
    if len(labels) > limits.max_labels:
        raise InvalidInput(f"{len(labels)} labels is over the limit of {limits.max_labels} per request")
    too_long = next((lab for lab in [*labels, body.hypothesis_template] if len(lab) > limits.max_label_chars), None)
    if too_long is not None:
        raise InvalidInput(
            f"a label or the hypothesis_template has {len(too_long)} characters, over the limit of "
            f"{limits.max_label_chars}"
        )
    if any(not isinstance(lab, str) or not lab.strip() for lab in labels):
        raise InvalidInput("labels must be non-empty strings")
    if len(set(labels)) != len(labels):
        raise InvalidInput("labels must be distinct")
    if "{}" not in body.hypothesis_template:
        raise InvalidInput("hypothesis_template must contain '{}' where the label goes")
    result = await svc.embedder.embed(body.model, texts, body.truncate, receive=request.receive)
    response.headers.update(timing_headers(request, result))
    label_vecs = await _label_vectors(svc, result.model.name, labels, body.hypothesis_template)
    probs = softmax((unit(result.vectors) @ label_vecs.T) / svc.settings.zero_shot_temperature)
    predictions = _predictions(probs, labels, body.top_k)
    # User-chosen labels would make unbounded series; zero-shot predictions are counted as one.
    svc.metrics.labels.labels(result.model.name, "zero-shot", "any").inc(len(predictions))
    return ClassifyResponse(
        model=result.model.name, head=None, predictions=predictions, usage=Usage(tokens=result.tokens)
    )
