"""Two replicas, each with its own SQLite read model: the same answers; kill -9 one and the
other still answers; the restarted one resumes from its stored offsets instead of re-reading."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callrec.api.tokens import Role
from callrec.avro.events import CallStatus
from tests.api.conftest import Seeded
from tests.api.harness import Replica, Site, call_record, get_json, wait_for
from tests.conftest import run_sync
from tests.sinks.harness import publish


def answers(replica: Replica, seeded: Seeded, token: str) -> list[Any]:
    out = []
    for path in (f"/api/v1/calls?cluster={seeded.cluster}",
                 f"/api/v1/calls?cluster={seeded.cluster}&party=1001",
                 f"/api/v1/calls/{seeded.key(1002)}"):
        status, body = get_json(replica.url + path, token)
        assert status == 200, (path, body)
        out.append(body)
    return out


@pytest.mark.slow
def test_kill_one_replica_the_other_answers_the_restarted_resumes(
    site: Site, seeded: Seeded, replica: Replica, tokens: dict[Role, str]
) -> None:
    token = tokens[Role.viewer]
    b = site.replica("api-b")
    b.start()
    try:
        wait_for(lambda: answers(b, seeded, token)[0]["count"] == 5, 30, "replica b caught up")
        assert answers(b, seeded, token) == answers(replica, seeded, token)

        b.kill()  # kill -9: no chance to flush anything
        assert get_json(b.url + "/healthz")[0] == 0
        assert answers(replica, seeded, token)[0]["count"] == 5

        # A call of its own cluster, so the package's seeded set stays as the other tests expect.
        late = call_record(f"{seeded.cluster}late:1009", near="1009", far="2009",
                           started=datetime.now(UTC), status=CallStatus.COMPLETED)
        run_sync(publish(site.kafka.bootstrap, [late]))
        late_url = f"/api/v1/calls/{late.call_key}"
        wait_for(lambda: get_json(replica.url + late_url, token)[0] == 200, 30, "a sees it")

        b.start()
        health = b.health()[1]
        assert health["resumed_from"] > 0, health  # offsets stored before the kill
        wait_for(lambda: get_json(b.url + late_url, token)[0] == 200, 30, "b sees it")
        assert answers(b, seeded, token) == answers(replica, seeded, token)
        assert get_json(b.url + late_url, token) == get_json(replica.url + late_url, token)
        applied = b.health()[1]["applied"]
        # Only what came after the kill is read again, not the topics from the beginning.
        assert 1 <= applied < health["resumed_from"], (applied, health)
    finally:
        b.stop()
