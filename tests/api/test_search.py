"""GET /calls and /calls/{key} over a replica that read real Kafka topics."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest

from callrec.api.tokens import Role
from tests.api.conftest import Seeded
from tests.api.harness import Replica, get_json


def search(replica: Replica, seeded: Seeded, token: str, **params: Any) -> tuple[int, Any]:
    query = urlencode({"cluster": seeded.cluster, **params})
    return get_json(f"{replica.url}/api/v1/calls?{query}", token)


def keys(body: Any) -> list[str]:
    return [c["call_key"] for c in body["data"]]


def test_newest_first_with_total_count(replica: Replica, seeded: Seeded,
                                       tokens: dict[Role, str]) -> None:
    status, body = search(replica, seeded, tokens[Role.viewer])
    assert status == 200
    assert body["count"] == 5
    assert keys(body) == [seeded.key(n) for n in (1003, 1001, 1002, 1004, 1005)]


@pytest.mark.parametrize(("params", "expected"), [
    ({"party": "1001"}, [1001, 1004]),  # near end of one, far end of the other
    ({"party": "555"}, [1002]),
    ({"party": "9"}, []),
    ({"status": "ABNORMAL"}, [1002]),
    ({"abnormal_reason": "RECORDER_LOST"}, [1002]),
    ({"recorder": "rec-2"}, [1002]),
    ({"recorder": "rec"}, []),  # a recorder id, not a prefix
    ({"has_recording": "true"}, [1001, 1002, 1005]),
    ({"has_recording": "false"}, [1003, 1004]),
    ({"device": "GW-1"}, [1003, 1001, 1002, 1004, 1005]),
    ({"status": "ACTIVE", "party": "1003"}, [1003]),
])
def test_filters(replica: Replica, seeded: Seeded, tokens: dict[Role, str],
                 params: dict[str, str], expected: list[int]) -> None:
    status, body = search(replica, seeded, tokens[Role.viewer], **params)
    assert status == 200, body
    assert keys(body) == [seeded.key(n) for n in expected]
    assert body["count"] == len(expected)


def test_time_range_is_half_open_and_utc(replica: Replica, seeded: Seeded,
                                         tokens: dict[Role, str]) -> None:
    call = seeded.calls[seeded.key(1002)]
    start = call.started_at.isoformat()
    _, body = search(replica, seeded, tokens[Role.viewer], started_from=start,
                     started_to=seeded.calls[seeded.key(1001)].started_at.isoformat())
    assert keys(body) == [seeded.key(1002)]
    naive = call.started_at.replace(tzinfo=None).isoformat()  # no offset: taken as UTC
    _, same = search(replica, seeded, tokens[Role.viewer], started_from=naive,
                     started_to=seeded.calls[seeded.key(1001)].started_at.isoformat())
    assert keys(same) == keys(body)


def test_cursor_pages_cover_everything_once(replica: Replica, seeded: Seeded,
                                            tokens: dict[Role, str]) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        status, body = search(replica, seeded, tokens[Role.viewer], **params)
        assert status == 200 and body["count"] == 5
        seen += keys(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [seeded.key(n) for n in (1003, 1001, 1002, 1004, 1005)]


def test_call_detail(replica: Replica, seeded: Seeded, tokens: dict[Role, str]) -> None:
    key = seeded.key(1002)
    status, body = get_json(f"{replica.url}/api/v1/calls/{quote(key)}", tokens[Role.viewer])
    assert status == 200
    rec = seeded.recordings[key]
    assert body["status"] == "ABNORMAL" and body["abnormal_reason"] == "RECORDER_LOST"
    assert [p["number"] for p in body["parties"]] == ["1002", "5550100"]
    assert [leg["leg"] for leg in body["legs"]] == ["NEAR_END", "FAR_END"]
    assert body["started_at"].endswith("Z")
    r = body["recording"]
    assert (r["sha256"], r["size_bytes"], r["partial"], r["format"], r["content_type"]) == (
        rec.sha256, rec.size_bytes, True, "wav", "audio/wav")
    assert r["version_id"] == rec.version_id
    assert r["gaps"] == [{"leg": "FAR_END", "start_ms": 1000, "duration_ms": 400,
                          "cause": "LOST_PACKETS"}]


def test_newest_version_wins_whatever_the_order(replica: Replica, seeded: Seeded,
                                                tokens: dict[Role, str]) -> None:
    """1005's stale snapshot (v1, ACTIVE) and stale recording came after the newer ones."""
    key = seeded.key(1005)
    _, body = get_json(f"{replica.url}/api/v1/calls/{quote(key)}", tokens[Role.viewer])
    assert body["version"] == 3 and body["status"] == "COMPLETED"
    assert body["recording"]["sha256"] == seeded.recordings[key].sha256


def test_unknown_call_is_404(replica: Replica, tokens: dict[Role, str]) -> None:
    status, body = get_json(f"{replica.url}/api/v1/calls/nope%3A1", tokens[Role.viewer])
    assert status == 404 and "nope:1" in body["detail"]


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "DONE"}, "status"),
    ({"limit": "0"}, "limit"),
    ({"limit": "100000"}, "limit"),
    ({"started_from": "yesterday"}, "started_from"),
    ({"started_from": "2026-12-02T00:00:00Z", "started_to": "2026-12-01T00:00:00Z"},
     "started_to"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"party": "x" * 65}, "party"),
    ({"has_recording": "maybe"}, "has_recording"),
    ({"abnormal_reason": "'; DROP TABLE calls; --"}, "abnormal_reason"),
])
def test_bad_filters_are_422_naming_the_field(replica: Replica, seeded: Seeded,
                                              tokens: dict[Role, str],
                                              params: dict[str, str], field: str) -> None:
    status, body = search(replica, seeded, tokens[Role.viewer], **params)
    assert status == 422, body
    assert [d["loc"][-1] for d in body["detail"]] == [field]
    assert body["detail"][0]["msg"]


@pytest.mark.parametrize("party", ["%", "_", "'", "\"; --", "1001' OR '1'='1", "\\", "\u202e",
                                   "\uff10\uff11", "🙂", "*"])
def test_hostile_party_values_match_literally(replica: Replica, seeded: Seeded,
                                              tokens: dict[Role, str], party: str) -> None:
    status, body = search(replica, seeded, tokens[Role.viewer], party=party)
    assert status == 200
    assert body["count"] == 0 and body["data"] == []
