"""The FastAPI application: /api/v1 routers, probes, the page, and the headers every response
carries (a strict Content-Security-Policy: the page loads nothing but its own files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from callrec.api.deps import AppState
from callrec.api.errors import (
    AuditUnavailable,
    MissingObject,
    RecordingUnavailable,
    TokenStoreError,
)
from callrec.api.playback_path import PlaybackPath, error_response
from callrec.api.routes import audit, calls, live, recording, system, tokens

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers without buffering streamed bodies."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(
        title="callrec", version="1", docs_url=None, redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        description="Find any recorded call, listen to it, and prove who listened.",
    )
    app.state.callrec = state
    api = APIRouter(prefix="/api/v1")
    for module in (calls, recording, live, audit, tokens, system):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(system.probes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.exception_handler(MissingObject)
    @app.exception_handler(AuditUnavailable)
    @app.exception_handler(RecordingUnavailable)
    @app.exception_handler(TokenStoreError)
    async def translate(request: Request, e: Exception) -> Response:
        response = error_response(e)
        assert response is not None, e
        return response

    app.add_middleware(PlaybackPath, state=state)
    app.add_middleware(SecurityHeaders)
    return app
