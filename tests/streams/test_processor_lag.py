"""A worker behind on its input judges calls as of what it has folded, not the wall clock."""

from __future__ import annotations

from callrec.avro import codec
from callrec.avro.events import CallStatus, Event, Leg
from callrec.avro.topics import AUDIO, LIFECYCLE
from callrec.streams.processor import CallProcessor, Incoming
from tests.streams.core import RULES, alive
from tests.streams.factory import SECOND, Call


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Sent:
    def __init__(self) -> None:
        self.records: list[object] = []

    def snapshot(self, partition: int, key: bytes, value: bytes) -> None:
        self.records.append(codec.decode(value))

    def dead_letter(self, letter: object) -> None: ...
    def changelog(self, partition: int, key: bytes, value: bytes | None) -> None: ...


def incoming(events: list[Event], first_offset: int = 0) -> list[Incoming]:
    """Records as Kafka gives them: sent when they happened, one partition per topic."""
    return [
        Incoming(LIFECYCLE.name if type(e).__name__.startswith("Leg") else AUDIO.name, 0,
                 first_offset + n, e.kafka_key, codec.encode(e),
                 int(e.event_time.timestamp() * 1e3))
        for n, e in enumerate(events)
    ]


def test_a_lagging_partition_does_not_time_out_audio_still_in_kafka() -> None:
    call = Call()
    clock = Clock(call.t0)
    sent = Sent()
    processor = CallProcessor(worker_id="w", rules=RULES, emitter=sent,  # type: ignore[arg-type]
                              recorders=lambda: alive("rec-a", "inc-1", clock.now),
                              clock=clock)
    start = incoming([call.started(Leg.NEAR_END), call.started(Leg.FAR_END, 10_000)])
    audio = incoming([call.chunk(side, seq) for seq in range(5) for side in Leg])
    processor.start_positions({(LIFECYCLE.name, 0): 0, (AUDIO.name, 0): 0})
    processor.fold_batch(start + audio[:2])

    # 30 s later (a failover, a stall) the worker ticks with 8 chunks still waiting in Kafka.
    clock.now = call.t0 + 30 * SECOND
    behind = {LIFECYCLE.name: 2, AUDIO.name: len(audio)}
    processor.tick_partition(0, behind)
    state = processor.get(call.key.encode())
    assert state is not None and state.status == CallStatus.ACTIVE

    # Nothing folded yet from a partition with a backlog: no time rule at all.
    fresh = CallProcessor(worker_id="w2", rules=RULES, emitter=sent,  # type: ignore[arg-type]
                          recorders=lambda: alive("rec-a", "inc-1", clock.now), clock=clock)
    fresh.start_positions({(LIFECYCLE.name, 0): 2, (AUDIO.name, 0): 2})
    assert fresh.folded_until(0, behind) is None
    assert fresh.folded_until(0, {LIFECYCLE.name: 2, AUDIO.name: None}) is None

    # Caught up: the wall clock rules again, and the silence is real.
    processor.fold_batch(audio[2:])
    caught_up = {LIFECYCLE.name: 2, AUDIO.name: len(audio)}
    assert processor.folded_until(0, caught_up) == clock.now
    processor.tick_partition(0, caught_up)
    state = processor.get(call.key.encode())
    assert state is not None and state.status == CallStatus.ACTIVE, "silence counts from now"
    for _ in range(int(RULES.media_timeout_s)):
        clock.now += SECOND
        processor.tick_partition(0, caught_up)
    state = processor.get(call.key.encode())
    assert state is not None and state.status == CallStatus.ABNORMAL
