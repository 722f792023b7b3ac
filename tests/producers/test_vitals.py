"""The recorder's health rule (pure) and its status record on a disk that has no room."""

import json
from dataclasses import replace

import pytest

from callrec.avro.events import RecorderHealth
from callrec.producers.vitals import Load, assess, write_status
from tests.disks import SmallDisk, fill_disk

FINE = Load(
    draining=False, kafka_reachable=True, spool_bytes=0, spool_unhealthy_bytes=100,
    live_legs=0, max_legs=2, lost_recently=False, disk_problem=None,
)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "state", "reasons"),
    [
        ({}, RecorderHealth.HEALTHY, ()),
        ({"kafka_reachable": False}, RecorderHealth.UNAVAILABLE, ("Kafka unreachable",)),
        ({"disk_problem": "disk full"}, RecorderHealth.UNAVAILABLE, ("disk full",)),
        ({"spool_bytes": 101}, RecorderHealth.UNAVAILABLE, ("spool above its threshold",)),
        ({"live_legs": 2}, RecorderHealth.UNAVAILABLE, ("at capacity",)),
        ({"lost_recently": True}, RecorderHealth.UNAVAILABLE, ("spool full or not writable",)),
        (
            {"disk_problem": "disk failing (EIO)", "live_legs": 2},
            RecorderHealth.UNAVAILABLE,
            ("disk failing (EIO)", "at capacity"),
        ),
        ({"draining": True, "disk_problem": "disk full"}, RecorderHealth.DRAINING, ("draining",)),
    ],
)
def test_health_names_every_reason_to_refuse_calls(
    change: dict[str, object], state: RecorderHealth, reasons: tuple[str, ...]
) -> None:
    health = assess(replace(FINE, **change))  # type: ignore[arg-type]
    assert (health.state, health.reasons) == (state, reasons)
    assert health.accepting is (state is RecorderHealth.HEALTHY)


def test_status_is_rewritten_in_place_when_the_disk_is_full(small_disk: SmallDisk) -> None:
    disk = small_disk(64 * 1024)
    path = disk / "status.json"
    assert write_status(path, "running", health="HEALTHY")
    fill_disk(disk)
    with pytest.raises(OSError):
        (disk / "probe").write_text("x")  # the disk is full indeed
    assert write_status(path, "unavailable", health="UNAVAILABLE", reasons=["disk full"])
    status = json.loads(path.read_text())
    assert (status["state"], status["reasons"]) == ("unavailable", ["disk full"])
