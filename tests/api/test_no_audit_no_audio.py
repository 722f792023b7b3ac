"""When Kafka does not acknowledge the access event, not one byte of audio leaves the server;
when the object store does not answer, the answer is 503 too.

The app runs in-process here so that its audit publisher can be a real Kafka producer that has
been closed (the broker stays up for everyone else); the request still goes through the real
ASGI stack, the real S3 server and the real read model file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx

from callrec.api.app import create_app
from callrec.api.deps import AppState
from callrec.api.live import LiveHub
from callrec.api.objects import ObjectReader, connect
from callrec.api.readmodel import Progress
from callrec.api.settings import ApiSettings
from callrec.api.tokens import Role
from callrec.eventlog import EventPublisher
from callrec.infra.procs import free_port
from tests.api.conftest import Seeded
from tests.api.harness import Replica, Site


async def test_closed_audit_log_means_503_and_no_audio(
    site: Site, seeded: Seeded, replica: Replica, tokens: dict[Role, str]
) -> None:
    publisher = EventPublisher(site.kafka.bootstrap, "test-closed-audit")
    await publisher.start()
    await publisher.stop()  # Kafka will not acknowledge anything from it
    settings = ApiSettings(s3_access_key=site.s3.access_key, s3_secret_key=site.s3.secret_key,
                           kafka_bootstrap=site.kafka.bootstrap)
    state = AppState(settings=settings, tokens=site.tokens, signing_key=b"k" * 32,
                     reader=ObjectReader(site.minio), publisher=publisher, progress=Progress(),
                     hub=LiveHub(), db_path=Path(replica.env["CALLREC_API_DATA_DIR"])
                     / "readmodel.sqlite3")
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        key = quote(seeded.key(1001), safe="")
        r = await client.get(f"/api/v1/calls/{key}/recording",
                             headers={"Authorization": f"Bearer {tokens[Role.viewer]}"})
        assert r.status_code == 503
        assert "audited" in r.json()["detail"]
        assert b"RIFF" not in r.content
        v = await client.get(f"/api/v1/calls/{key}/verify",
                             headers={"Authorization": f"Bearer {tokens[Role.auditor]}"})
        assert v.status_code == 503


async def test_an_unreachable_store_means_503(
    site: Site, seeded: Seeded, replica: Replica, tokens: dict[Role, str]
) -> None:
    """Both reading paths: a short range (read on the event loop) and the whole object (the
    SDK in a thread), against a port where no S3 server listens."""
    publisher = EventPublisher(site.kafka.bootstrap, "test-no-store")
    await publisher.start()
    try:
        settings = ApiSettings(s3_access_key=site.s3.access_key,
                               s3_secret_key=site.s3.secret_key,
                               kafka_bootstrap=site.kafka.bootstrap)
        nowhere = connect(f"127.0.0.1:{free_port()}", site.s3.access_key, site.s3.secret_key,
                          False, 4)
        state = AppState(settings=settings, tokens=site.tokens, signing_key=b"k" * 32,
                         reader=ObjectReader(nowhere), publisher=publisher,
                         progress=Progress(), hub=LiveHub(),
                         db_path=Path(replica.env["CALLREC_API_DATA_DIR"]) / "readmodel.sqlite3")
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            url = f"/api/v1/calls/{quote(seeded.key(1001), safe='')}/recording"
            for headers in ({"Range": "bytes=100-199"}, {}):
                r = await client.get(url, headers={
                    "Authorization": f"Bearer {tokens[Role.viewer]}", **headers})
                assert r.status_code == 503, (headers, r.status_code, r.text)
                assert r.headers["retry-after"] and "object store" in r.json()["detail"]
    finally:
        await publisher.stop()
