"""Creates the contract's topics and keeps their configuration as avro/topics.py says.

Idempotent: a second run finds everything in place and changes nothing. A partition count that
differs is reported, never changed: adding partitions would move call keys between partitions.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from callrec.avro.topics import ALL_TOPICS, TopicSpec
from callrec.eventlog import new_admin
from callrec.infra.errors import InfraError

TOPIC_ALREADY_EXISTS = 36
"""Kafka's error code when another process created the topic first: not a failure."""


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    replication: int = 1,
    topics: tuple[TopicSpec, ...] = ALL_TOPICS,
) -> list[str]:
    """Create missing topics and fix drifted configs; returns what it changed, in words."""
    admin = new_admin(bootstrap)
    await admin.start()
    try:
        existing = {t["topic"]: t for t in await admin.describe_topics([t.name for t in topics])
                    if t["error_code"] == 0}
        changes: list[str] = []
        missing = [t for t in topics if t.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(t.name, partitions, replication, topic_configs=t.config)
                 for t in missing]
            )
            # The broker answers per topic and aiokafka raises for none of them: a refused
            # config or replication would otherwise read as "created".
            refused = [f"{topic} ({error}: {message})"
                       for topic, error, message, *_ in response.topic_errors
                       if error not in (0, TOPIC_ALREADY_EXISTS)]
            if refused:
                raise InfraError("the broker refused to create " + ", ".join(refused))
            changes += [f"created {t.name} ({partitions} partitions)" for t in missing]
        for spec in topics:
            if spec.name not in existing:
                continue
            have = len(existing[spec.name]["partitions"])
            if have != partitions:
                raise InfraError(
                    f"{spec.name} has {have} partitions, settings say {partitions}; "
                    "partitions are never changed in place (it would move call keys)"
                )
            drift = await _config_drift(admin, spec)
            if drift:
                await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, spec.name, spec.config)]
                )
                changes.append(f"reconfigured {spec.name}: {drift}")
        return changes
    finally:
        await admin.close()


async def _config_drift(admin: AIOKafkaAdminClient, spec: TopicSpec) -> dict[str, str]:
    if not spec.config:
        return {}
    [response] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, dict.fromkeys(spec.config))]
    )
    actual = {entry[0]: entry[1] for entry in response.resources[0][4]}
    return {k: v for k, v in spec.config.items() if actual.get(k) != v}


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    """Every config of a topic as the broker reports it (for status and tests)."""
    admin = new_admin(bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
        )
        return {entry[0]: entry[1] for entry in response.resources[0][4]}
    finally:
        await admin.close()
