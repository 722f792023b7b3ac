"""GET /live/calls: server-sent events of call records as they change.

First a ``snapshot`` of the active calls, then a ``call`` event per changed call. The page
reads it with fetch() (so it can send its bearer header; EventSource cannot).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from callrec.api import present, queries
from callrec.api.deps import State, Viewer
from callrec.api.live import RESYNC
from callrec.api.routes.calls import AUTH_ERRORS

router = APIRouter(prefix="/live", tags=["live"])
KEEPALIVE_S = 15.0


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/calls", response_class=StreamingResponse, responses={
    200: {"description": "text/event-stream of `snapshot` and `call` events",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **AUTH_ERRORS,
})
async def live_calls(
    request: Request, state: State, who: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    once: Annotated[bool, Query(description="Send the snapshot and close")] = False,
) -> StreamingResponse:
    """Active calls now, then every change as it is applied to this replica's read model."""
    queue = state.hub.subscribe()

    def snapshot() -> list[dict[str, object]]:
        rows = queries.active_calls(state.db(), limit)
        return [present.summary(r).model_dump(mode="json") for r in rows]

    def changed(keys: set[str]) -> list[dict[str, object]]:
        rows = queries.summaries(state.db(), sorted(keys)[:500])
        return [present.summary(r).model_dump(mode="json") for r in rows]

    async def events() -> AsyncIterator[bytes]:
        try:
            yield _sse("snapshot", await asyncio.to_thread(snapshot))
            if once:
                return
            while not await request.is_disconnected():
                try:
                    keys = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if RESYNC in keys:
                    yield _sse("snapshot", await asyncio.to_thread(snapshot))
                    continue
                for call in await asyncio.to_thread(changed, keys):
                    yield _sse("call", call)
        finally:
            state.hub.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
