"""GET /api/v1/calls/{key}/recording without FastAPI's routing and parameter solving.

A burst of seeks is CPU-bound in the replica, and measured in-process most of a cached range's
CPU was the framework's, not ours: the router tries every route's pattern in turn, and the
dependency solver validates the four query parameters through pydantic on every request. This
ASGI middleware recognises the one path players hit at a rate, parses its few parameters itself
and calls the same handler as the FastAPI route (``routes.recording.serve``): the same
authorization, plan, audit and answer. Anything it is not sure of (another parameter, a
repeated one, a value the route's validation might refuse) goes to FastAPI unchanged, so the
documented route stays the reference for every 4xx shape.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from callrec.api.deps import AppState
from callrec.api.errors import (
    AuditUnavailable,
    MissingObject,
    RecordingUnavailable,
    TokenStoreError,
)
from callrec.api.routes.recording import serve

PATH = re.compile(r"/api/v1/calls/([^/]+)/recording")
TRUE, FALSE = frozenset({"1", "true"}), frozenset({"0", "false"})
MAX_EXPIRY = 2**62
MAX_LENGTH = {"tid": 64, "sig": 128}


def parameters(query_string: bytes) -> dict[str, Any] | None:
    """``download``, ``tid``, ``exp`` and ``sig`` as the route would take them; None when the
    query holds anything else or anything the route might answer with a 422."""
    out: dict[str, Any] = {"download": False, "tid": None, "exp": None, "sig": None}
    seen: set[str] = set()
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True,
                          strict_parsing=bool(query_string))
    except ValueError:
        return None
    for name, value in pairs:
        if name in seen or name not in out:
            return None
        seen.add(name)
        if name == "download":
            if value not in TRUE | FALSE:
                return None
            out[name] = value in TRUE
        elif name == "exp":
            if not value.isascii() or not value.isdigit() or int(value) > MAX_EXPIRY:
                return None
            out[name] = int(value)
        elif len(value) > MAX_LENGTH[name]:
            return None
        else:
            out[name] = value
    return out


UNAVAILABLE = (AuditUnavailable, RecordingUnavailable, TokenStoreError)
"""503 with Retry-After: asking again later may work."""


def error_response(error: Exception) -> Response | None:
    """The answer to ``error``, here and in the app's exception handlers (None: not one of
    ours, so the server's 500)."""
    if isinstance(error, HTTPException):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                            headers=error.headers)
    if isinstance(error, MissingObject):
        return JSONResponse({"detail": str(error)}, status_code=404)
    if isinstance(error, UNAVAILABLE):
        return JSONResponse({"detail": str(error)}, status_code=503,
                            headers={"Retry-After": "5"})
    return None


class PlaybackPath:
    """Pure ASGI middleware in front of the router (inside the security headers)."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = (PATH.fullmatch(scope["path"])
                 if scope["type"] == "http" and scope["method"] == "GET" else None)
        params = parameters(scope["query_string"]) if match else None
        if match is None or params is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await serve(match.group(1), Request(scope, receive), self.state,
                                   **params)
        except Exception as e:
            translated = error_response(e)
            if translated is None:
                raise
            response = translated
        await response(scope, receive, send)
