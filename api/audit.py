"""No audit, no audio: the access event is acknowledged by Kafka before any byte is sent."""

from __future__ import annotations

import asyncio

from callrec.api.errors import AuditUnavailable
from callrec.api.tokens import Principal
from callrec.avro.events import AccessAction, AccessAudited
from callrec.eventlog import EventLogUnavailable, EventPublisher

ACK_TIMEOUT_S = 5.0


def access_event(
    replica: str, who: Principal, action: AccessAction, call_key: str, *,
    client_addr: str | None, user_agent: str | None, object_key: str | None,
    version_id: str | None, byte_range: tuple[int, int] | None = None,
    outcome: str | None = None,
) -> AccessAudited:
    return AccessAudited(
        producer_id=replica, call_key=call_key, action=action, actor=who.name,
        token_id=who.token_id, role=who.role.name, client_addr=client_addr,
        user_agent=(user_agent or "")[:300] or None, object_key=object_key,
        version_id=version_id, range_start=byte_range[0] if byte_range else None,
        range_end=byte_range[1] if byte_range else None, outcome=outcome,
    )


async def record(publisher: EventPublisher, event: AccessAudited) -> None:
    """Publish and wait for acks=all; any failure refuses the access. (``asyncio.timeout``
    rather than ``wait_for``: no task per request, which a burst of seeks notices.)"""
    try:
        async with asyncio.timeout(ACK_TIMEOUT_S):
            await publisher.publish(event)
    except (EventLogUnavailable, TimeoutError) as e:
        raise AuditUnavailable(f"the access could not be audited ({e}); nothing was sent") from e
    except Exception as e:  # aiokafka raises its own errors from the ack future
        raise AuditUnavailable(f"the access could not be audited ({e!r}); nothing was sent") from e
