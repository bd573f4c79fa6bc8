"""POST /admin/reload — rescan the models folder (service/reload.py), optionally forcing swaps the
fidelity gate refuses and replacing the canary rules. Behind the API key when one is set; 404 when
EMBED_ADMIN_ROUTES is false."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends

from ..canary import parse_canary
from ..errors import InvalidInput, NotReady, UnknownRoute
from ..schemas import ReloadRequest, error_responses
from .deps import AppState, require_api_key, state

router = APIRouter(dependencies=[Depends(require_api_key)])


async def admin_enabled(svc: AppState = Depends(state)) -> None:
    if not svc.settings.admin_routes:
        raise UnknownRoute("admin routes are disabled (EMBED_ADMIN_ROUTES=false)")


@router.post("/admin/reload", dependencies=[Depends(admin_enabled)], responses=error_responses(400, 401, 404, 422, 503))
async def reload(body: ReloadRequest | None = Body(None), svc: AppState = Depends(state)) -> dict:
    body = body or ReloadRequest()
    if not svc.registry.ready:
        raise NotReady("the first load has not finished; retry shortly", headers={"Retry-After": "1"})
    rules = None
    if body.canary is not None:
        try:
            rules = parse_canary(body.canary)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    report = await svc.reloader.reload(force=body.force)
    if rules is not None:
        missing = sorted({r.candidate for r in rules.values()} - set(svc.registry.models))
        if missing:
            raise InvalidInput(
                f"canary candidates not loaded: {missing}; the reload itself was applied: {report.to_dict()}"
            )
        svc.embedder.canary = rules
        svc.reloader.published()
    return {
        **report.to_dict(),
        "canary": {r.name: {"candidate": r.candidate, "share": r.share} for r in svc.embedder.canary.values()},
    }
