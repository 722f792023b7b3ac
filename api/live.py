"""Fan-out of changed call keys to the live feed's subscribers.

A slow subscriber never holds the read model back: its queue is bounded and, when full, it is
told to resynchronise (it re-reads the active calls) instead of receiving every change.
"""

from __future__ import annotations

import asyncio

RESYNC = "*"


class LiveHub:
    def __init__(self, depth: int = 256) -> None:
        self.depth = depth
        self.subscribers: set[asyncio.Queue[set[str]]] = set()

    def subscribe(self) -> asyncio.Queue[set[str]]:
        queue: asyncio.Queue[set[str]] = asyncio.Queue(self.depth)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[set[str]]) -> None:
        self.subscribers.discard(queue)

    def publish(self, keys: set[str]) -> None:
        """Called on the event loop after a batch is committed."""
        for queue in self.subscribers:
            try:
                queue.put_nowait(set(keys))
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({RESYNC})
