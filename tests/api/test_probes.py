"""/readyz is 503 until the replica has caught up once; /healthz always answers with the lag."""

from __future__ import annotations

from pathlib import Path

import httpx
from aiokafka import TopicPartition

from callrec.api.app import create_app
from callrec.api.deps import AppState
from callrec.api.live import LiveHub
from callrec.api.objects import ObjectReader
from callrec.api.readmodel import Progress
from callrec.api.settings import ApiSettings
from callrec.api.tokens import TokenStore
from callrec.eventlog import EventPublisher


async def test_ready_only_once_caught_up(tmp_path: Path) -> None:
    progress = Progress()
    tp = TopicPartition("rec.calls.v1", 0)
    progress.ends, progress.positions = {tp: 10}, {tp: 4}
    settings = ApiSettings(s3_access_key="probe-access", s3_secret_key="probe-secret-key")
    state = AppState(settings=settings, tokens=TokenStore(tmp_path / "t.json"),
                     signing_key=b"k" * 32, reader=ObjectReader(None),  # type: ignore[arg-type]
                     publisher=EventPublisher("127.0.0.1:1", "probe"), progress=progress,
                     hub=LiveHub(), db_path=tmp_path / "db.sqlite3")
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/readyz")).status_code == 503
        health = (await client.get("/healthz")).json()
        assert health["lag"] == 6 and health["ready"] is False
        progress.positions[tp] = 10
        progress.caught_up_once = True
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/healthz")).json()["lag"] == 0
    await state.publisher.stop()  # never started; closes what aiokafka made
