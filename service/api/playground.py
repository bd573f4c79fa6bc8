"""GET / — the playground page (service/static/: plain HTML, CSS and JavaScript, no build step). The
page is public like /healthz; what it shows comes from /models, /metrics and /embed, which keep
their own API-key check (the page asks for the key when the service needs one)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
