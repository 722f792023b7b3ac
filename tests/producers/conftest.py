"""Fixtures the recorder's tests share: the event tap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callrec.infra.kafka import KafkaBroker
from tests.producers.harness import EventTap


@pytest.fixture
async def tap(kafka: KafkaBroker) -> AsyncIterator[EventTap]:
    """The contract topics from their current end, for one test."""
    async with EventTap(kafka.bootstrap) as tap:
        yield tap
