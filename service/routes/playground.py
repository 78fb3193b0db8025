"""The playground: one static page at `/` that tries every model through the public API.

The page (service/playground/: index.html, app.js, style.css) is plain HTML, CSS and JavaScript with no build step
and nothing loaded from another host. It holds no secret: `/` and `/playground/*` are open without an API key
(service/security.py), and the page sends the key the user types with each API call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

PLAYGROUND_DIR = Path(__file__).resolve().parent.parent / "playground"
ASSETS_URL = "/playground"
# The only files served under ASSETS_URL: a fixed list, so no request can name another file.
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
# The page is small and changes with the service: browsers revalidate it (ETag) instead of keeping a stale copy.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def playground() -> FileResponse:
    return FileResponse(PLAYGROUND_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get(ASSETS_URL + "/{name}")
def playground_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no playground file {name!r}")
    return FileResponse(PLAYGROUND_DIR / name, media_type=media_type, headers=HEADERS)
