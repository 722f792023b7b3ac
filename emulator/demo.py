"""`callrec up --demo`: recorded calls through the emulator, followed until they are archived.

It shows the whole stack working from one command: CUCM's INVITE pairs reach the recorder, the
call state worker closes each call and the mixer archives it to S3, which keeps it on the NAS.
One call is put on hold for longer than the segment window, as a contact-centre agent would: CUCM
ends both legs and resumes with a new INVITE pair, the call reopens, and its final recording (a
new version of the first) holds both segments with the hold between them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from callrec.avro import codec, topics
from callrec.avro.events import CallRecord, CallStatus, RecordingArchived
from callrec.emulator.cucm import Cucm
from callrec.emulator.errors import DemoFailed
from callrec.emulator.model import CallReport, Destination
from callrec.eventlog import new_consumer
from callrec.infra.stack import StackSettings

CALL_COUNT = 3
SECONDS = 8.0
HOLD_S = 10.0
"""One of the calls is put on hold this long: longer than the segment window, so it reopens."""
WITHIN_S = 90.0
"""How long the calls may take, from the last one's end to every final RecordingArchived."""


async def run_demo(settings: StackSettings, echo: Callable[[str], None]) -> list[RecordingArchived]:
    """Place the calls (the last one held for ``HOLD_S``) against the stack's recorder and wait
    for each call's final recording."""
    consumer = new_consumer(f"127.0.0.1:{settings.kafka_port}", "callrec-demo")
    await consumer.start()
    try:
        await _from_the_end(consumer, settings.partitions)  # before the calls: none is missed
        recorder = Destination(
            name="recorder", host=settings.recorder_sip_host, port=settings.recorder_sip_port
        )
        echo(f"placing {CALL_COUNT} recorded calls of {SECONDS:.0f} s through the CUCM emulator, "
             f"one of them put on hold for {HOLD_S:.0f} s ...")
        async with Cucm([recorder]) as cucm:
            plain, held = await asyncio.gather(
                cucm.place_calls(CALL_COUNT - 1, SECONDS),
                cucm.place_held_call(SECONDS, HOLD_S),
            )
        reports: list[CallReport] = [*plain, *held]
        for report in reports:
            echo(report.summary())
        lost = [r.call_key for r in reports if None in r.recorders]
        if lost:
            raise DemoFailed(f"the recorder did not take every leg of {lost}; see its log")
        settled = await _settled(consumer, {r.call_key for r in reports}, WITHIN_S)
    finally:
        await consumer.stop()
    for record, event in settled:
        echo(
            f"{event.call_key}  {event.call_status}  segments={record.segments}  "
            f"s3://{event.bucket}/{event.object_key}  "
            f"NAS {settings.nas.resolve() / event.bucket / event.object_key}"
        )
    return [event for _, event in settled]


async def _from_the_end(consumer: AIOKafkaConsumer, count: int) -> None:
    partitions = [TopicPartition(topic, p) for topic in (topics.CALLS.name, topics.RECORDINGS.name)
                  for p in range(count)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)


async def _settled(
    consumer: AIOKafkaConsumer, keys: set[str], within_s: float
) -> list[tuple[CallRecord, RecordingArchived]]:
    """Each call's newest record once it has ended, with the recording mixed from it: a call
    that reopened after a hold is followed to its last version, not its first."""
    records: dict[str, CallRecord] = {}
    recordings: dict[str, RecordingArchived] = {}

    def done(key: str) -> bool:
        record, recording = records.get(key), recordings.get(key)
        return (record is not None and record.status != CallStatus.ACTIVE
                and recording is not None and recording.call_version == record.version)

    deadline = time.monotonic() + within_s
    while not all(done(key) for key in keys):
        if time.monotonic() > deadline:
            missing = sorted(key for key in keys if not done(key))
            raise DemoFailed(
                f"not archived within {within_s:.0f} s: {missing}; see var/streams and "
                "var/mixer logs (`./run status`)"
            )
        batches = await consumer.getmany(timeout_ms=500)
        for batch in batches.values():
            for raw in batch:
                event = codec.decode(raw.value or b"")
                if isinstance(event, CallRecord) and event.call_key in keys:
                    if event.call_key not in records or (
                            event.version > records[event.call_key].version):
                        records[event.call_key] = event
                elif isinstance(event, RecordingArchived) and event.call_key in keys:
                    known = recordings.get(event.call_key)
                    if known is None or event.call_version >= known.call_version:
                        recordings[event.call_key] = event
    return [(records[key], recordings[key]) for key in sorted(keys)]
