"""Every topic on the broker takes what every producer may send, and a topic created before the
limits were aligned (the broker's 1 MiB default) is reconfigured in place by the bootstrap."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from callrec.avro.topics import ALL_TOPICS, MAX_RECORD_BYTES, TopicSpec
from callrec.eventlog import EventLogUnavailable, topic_partitions
from callrec.infra.errors import InfraError
from callrec.infra.kafka import KafkaBroker
from callrec.infra.topics import ensure_topics, topic_configs

LIMIT = {"max.message.bytes": str(MAX_RECORD_BYTES)}


async def described(bootstrap: str, topic: str) -> None:
    """Wait until the new topic has a leader (before, the bootstrap takes it for missing)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await topic_partitions(bootstrap, [topic])
            return
        except EventLogUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_every_contract_topic_takes_the_producers_largest_record(kafka: KafkaBroker) -> None:
    for spec in ALL_TOPICS:
        configs = await topic_configs(kafka.bootstrap, spec.name)
        assert configs["max.message.bytes"] == str(MAX_RECORD_BYTES), spec.name


async def test_a_topic_with_the_old_limit_is_realigned(kafka: KafkaBroker) -> None:
    name = f"limits-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap, 1, topics=(TopicSpec(name, {"retention.ms": "60000"}),))
    await described(kafka.bootstrap, name)
    old = await topic_configs(kafka.bootstrap, name)
    assert old.get("max.message.bytes") != str(MAX_RECORD_BYTES)  # the broker's default
    changes = await ensure_topics(kafka.bootstrap, 1,
                                  topics=(TopicSpec(name, {"retention.ms": "60000", **LIMIT}),))
    assert changes == [f"reconfigured {name}: {LIMIT}"]
    assert (await topic_configs(kafka.bootstrap, name))["max.message.bytes"] == str(
        MAX_RECORD_BYTES)


async def test_a_topic_the_broker_refuses_to_create_is_an_error_not_created(
    kafka: KafkaBroker
) -> None:
    name = f"refused-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InfraError, match=f"refused to create {name}"):
        await ensure_topics(kafka.bootstrap, 1,
                            topics=(TopicSpec(name, {"max.message.bytes": "not-a-number"}),))
