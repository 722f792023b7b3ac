"""`callrec up --demo`: recorded calls through the emulator, followed until they are archived.

It shows the whole stack working from one command: CUCM's INVITE pairs reach the recorder, the
call state worker closes each call and the mixer archives it to S3, which keeps it on the NAS.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.avro import codec
from callrec.avro.events import RecordingArchived
from callrec.avro.topics import RECORDINGS
from callrec.emulator.cucm import Cucm
from callrec.emulator.errors import DemoFailed
from callrec.emulator.model import Destination
from callrec.infra.stack import StackSettings

CALLS = 3
SECONDS = 8.0
WITHIN_S = 60.0
"""How long each call may take from its end to its RecordingArchived."""


async def run_demo(settings: StackSettings, echo: Callable[[str], None]) -> list[RecordingArchived]:
    """Place the calls against the stack's recorder and wait for each RecordingArchived."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{settings.kafka_port}", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await _from_the_end(consumer, settings.partitions)  # before the calls: none is missed
        recorder = Destination(
            name="recorder", host=settings.recorder_sip_host, port=settings.recorder_sip_port
        )
        echo(f"placing {CALLS} recorded calls of {SECONDS:.0f} s through the CUCM emulator ...")
        async with Cucm([recorder]) as cucm:
            reports = await cucm.place_calls(CALLS, SECONDS)
        for report in reports:
            echo(report.summary())
        lost = [r.call_key for r in reports if None in r.recorders]
        if lost:
            raise DemoFailed(f"the recorder did not take every leg of {lost}; see its log")
        archived = await _archived(consumer, {r.call_key for r in reports}, WITHIN_S)
    finally:
        await consumer.stop()
    for event in archived:
        echo(
            f"{event.call_key}  {event.call_status}  s3://{event.bucket}/{event.object_key}  "
            f"NAS {settings.nas.resolve() / event.bucket / event.object_key}"
        )
    return archived


async def _from_the_end(consumer: AIOKafkaConsumer, count: int) -> None:
    partitions = [TopicPartition(RECORDINGS.name, p) for p in range(count)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)


async def _archived(
    consumer: AIOKafkaConsumer, keys: set[str], within_s: float
) -> list[RecordingArchived]:
    found: dict[str, RecordingArchived] = {}
    deadline = time.monotonic() + within_s
    while set(found) != keys:
        if time.monotonic() > deadline:
            missing = sorted(keys - set(found))
            raise DemoFailed(
                f"not archived within {within_s:.0f} s: {missing}; see var/streams and "
                "var/mixer logs (`./run status`)"
            )
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                event = codec.decode(record.value or b"")
                if isinstance(event, RecordingArchived) and event.call_key in keys:
                    found[event.call_key] = event
    return [found[key] for key in sorted(keys)]
