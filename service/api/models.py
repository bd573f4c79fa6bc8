"""GET /models — what is loaded, with each manifest's size and quality figures, and what was refused."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends

from common.machine import cpu_info

from ..registry import LoadedModel
from ..schemas import error_responses
from .deps import AppState, require_api_key, state

router = APIRouter(dependencies=[Depends(require_api_key)])


def describe(model: LoadedModel) -> dict:
    m = model.manifest
    if m is None:
        return {"dim": model.backend.dim, "version": model.version}
    return {
        "version": model.version,
        "dim": m.dim,
        "baseline": m.baseline,
        "method": m.method,
        "rank": m.rank,
        "quantization": m.quantization,
        "max_seq_length": m.max_seq_length,
        "params": m.params.model_dump(),
        "bytes": m.bytes.model_dump(),
        "prompts": m.prompts,
        "default_prompt_name": m.default_prompt_name,
        "quality": m.quality.model_dump(),
        # per-language STS and fidelity beside int8's (compress --eval), and the worst language's name
        "languages": m.languages or None,
        "worst_language": min(m.languages, key=lambda k: m.languages[k]["fidelity_mean"]) if m.languages else None,
        "vocabulary": m.vocabulary or None,
        "dimensions": m.dimensions.get("supported", []),  # besides the full size (OpenAI's `dimensions`)
        # what each embedding_type costs against float: recall@10 and STS-B
        "embedding_types": m.output_types.get("quality") or None,
        "graph": m.graph or None,  # serving rewrites: fused attention, padding removed (or why not)
        "heads": {n: {"labels": h.labels, **h.metrics} for n, h in model.heads.items()},
        "resident_bytes": model.resident_bytes,
        # fidelity on this host's CPU beside the figure measured where the model was built
        "host_fidelity": dataclasses.asdict(model.host_fidelity) if model.host_fidelity else None,
        "built_on": m.machine or None,
    }


@router.get("/models", responses=error_responses(401))
async def models(svc: AppState = Depends(state)) -> dict:
    return {
        "default": svc.registry.default_model,
        "ready": svc.registry.ready,
        "host": cpu_info(),
        "models": {name: describe(m) for name, m in sorted(svc.registry.models.items())},
        "failed": svc.registry.failed,
        # a reload that kept a model's serving version says why (the fidelity gate, or a failed load)
        "refused_updates": svc.registry.refused_updates,
        "canary": {r.name: {"candidate": r.candidate, "share": r.share} for r in svc.embedder.canary.values()},
    }
