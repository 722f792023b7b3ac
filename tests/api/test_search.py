"""GET /calls and /calls/{key} over a replica that read real Kafka topics."""

from __future__ import annotations

from callrec.api.tokens import Role
from tests.api.conftest import Seeded
from tests.api.harness import Replica, get_json


def keys(body: dict[str, object]) -> list[str]:
    return [c["call_key"] for c in body["data"]]  # type: ignore[attr-defined, index]


def test_newest_first_with_total_count(replica: Replica, seeded: Seeded,
                                       tokens: dict[Role, str]) -> None:
    status, body = get_json(f"{replica.url}/api/v1/calls?cluster={seeded.cluster}",
                            tokens[Role.viewer])
    assert status == 200
    assert body["count"] == 5
    assert keys(body) == [seeded.key(n) for n in (1003, 1001, 1002, 1004, 1005)]
