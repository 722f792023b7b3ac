"""A bad record as large as the audio topic takes, against the real mixer: it becomes a small
dead letter (first 64 KiB, size, SHA-256) and the call after it is archived. Before, the dead
letter copied the whole record and Kafka refused it for good, which the mixer could not get past."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from callrec.avro.events import CallStatus
from callrec.avro.topics import AUDIO, MAX_RECORD_BYTES
from callrec.deadletters import DEAD_LETTER_PAYLOAD_BYTES
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.sinks.factory import simple_call
from tests.sinks.harness import (
    archived,
    dead_letters,
    mixer_env,
    new_cluster,
    publish,
    publish_raw,
    running,
    settings_from,
)


async def test_a_2_mib_bad_audio_record_makes_a_small_dead_letter_and_the_mixer_goes_on(
    kafka: KafkaBroker, s3: S3Server, tmp_path: Path
) -> None:
    cluster = new_cluster()
    settings = settings_from(mixer_env(kafka, s3, tmp_path, cluster))
    key = f"{cluster}:2097152"
    headers = [("event-type", b"AudioChunk")]
    junk = os.urandom(MAX_RECORD_BYTES - 8 - DefaultRecordBatchBuilder.estimate_size_in_bytes(
        key.encode(), b"", headers))  # as large as the producer and the topic take
    near, far, done = simple_call(key, packets=20)
    async with running(settings):
        await publish_raw(kafka.bootstrap, AUDIO.name, key, junk)
        await publish(kafka.bootstrap, [*near, *far, done])
        [event] = await archived(kafka.bootstrap, {key})
        [letter] = await dead_letters(kafka.bootstrap, key)
    assert event.call_status == CallStatus.COMPLETED
    assert letter.error_type == "UndecodableEvent"
    assert letter.payload == junk[:DEAD_LETTER_PAYLOAD_BYTES] and letter.payload_size == len(junk)
    assert letter.payload_sha256 == hashlib.sha256(junk).hexdigest()
