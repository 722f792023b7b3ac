"""The worker's adapter core: raw Kafka records in, state changes and Kafka sends out.

decode -> apply/tick -> persist -> emit, with no Kafka client in it: the worker loop (app.py)
hands it batches and recovered changelog entries and gives it an emitter; the benchmark drives
it the same way. Bad records are dead-lettered with the reason and the worker goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from callrec.avro import codec
from callrec.avro.errors import ContractError
from callrec.avro.events import CallStatus, DeadLetter, MetricSample
from callrec.avro.skim import SkimmedChunk
from callrec.deadletters import SourceRecord, dead_letter_for
from callrec.streams.admission import is_leg_event, refusal
from callrec.streams.errors import InvariantViolated, LateEvent
from callrec.streams.fold import apply, event_micros
from callrec.streams.metrics import add, audio_tallies, gauge_tallies, samples, window_at
from callrec.streams.model import CallState, SourcePosition
from callrec.streams.outputs import AudioAdded, Evict, Snapshot, Tally
from callrec.streams.projection import call_recorder
from callrec.streams.recorders import RecordersView, up_gauges
from callrec.streams.rules import Rules
from callrec.streams.snapshot_codec import encode_snapshot
from callrec.streams.state_codec import UnreadableState, decode_state, encode_state
from callrec.streams.verdict import tick

log = logging.getLogger(__name__)
TICK_GAP_US = 3_000_000
"""Ticks come every second; a longer gap means the worker was cut off (broker, takeover)."""


class Record(SourceRecord, Protocol):
    """One consumed record as the processor reads it: aiokafka's ``ConsumerRecord`` as it is
    (the worker hands its records over without copying them), or an ``Incoming``."""

    @property
    def timestamp(self) -> int | None:
        """The record's Kafka timestamp in milliseconds (the producer's clock when it sent
        it)."""


class Incoming(NamedTuple):
    """A record made by hand (tests, bench, replay), with what the processor reads of one."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None
    """Kafka's timestamp, in milliseconds."""


Highwaters = Callable[[int], Mapping[str, "int | None"]]
"""partition -> {topic: next offset the broker will assign (None: not known yet)}."""


class Emitter(Protocol):
    """Where the processor's results go (the worker's Kafka producer)."""

    def snapshot(self, partition: int, key: bytes, value: bytes) -> None:
        """A CallRecord, already encoded (snapshot_codec.py)."""
    def dead_letter(self, letter: DeadLetter) -> None: ...
    def changelog(self, partition: int, key: bytes, value: bytes | None) -> None: ...


class CallProcessor:
    """Folds batches of records into the calls of this worker's partitions."""

    def __init__(
        self,
        *,
        worker_id: str,
        rules: Rules,
        emitter: Emitter,
        recorders: Callable[[], RecordersView],
        clock: Callable[[], int],
        metrics_window_s: float = 10.0,
    ) -> None:
        self.worker_id = worker_id
        self.rules = rules
        self.emitter = emitter
        self.recorders = recorders
        self.clock = clock
        self.states: dict[bytes, CallState] = {}
        """The calls of this worker's partitions; the changelog holds them encoded."""
        self.unsaved: dict[bytes, int] = {}
        """Calls changed (or evicted: no state) since the last ``save``, and their partition."""
        self.snapshots_due: dict[str, CallState] = {}
        """Call key -> the latest state due to be published, projected and sent at ``save``."""
        self.partition_of: dict[bytes, int] = {}
        self.synced: set[int] = set()
        self.read_to: dict[tuple[str, int], tuple[int, int | None]] = {}
        """(topic, partition) -> (next offset to fold, Kafka timestamp of the last one folded)."""
        self.window = window_at(clock(), rules.us(metrics_window_s))
        self.folded = 0
        self.rejected = 0
        self.ticks_deferred = 0
        self.last_tick_at: dict[int, int] = {}
        self.heard_since: dict[int, int] = {}
        """partition -> start of the current stretch of ticks without a gap (see verdict.tick)."""

    # --- folding -------------------------------------------------------------------------------

    def fold_batch(
        self, batch: Sequence[Record], tick_topic: str | None = None,
        highwaters: Highwaters | None = None,
    ) -> None:
        """Fold a batch into the calls; ``save`` writes the changed ones to the changelog."""
        touched: dict[bytes, CallState | None] = {}
        ticked: set[int] = set()
        tallies: list[Tally] = []
        audio: list[AudioAdded] = []
        last: dict[tuple[str, int], Record] = {}
        for record in batch:
            if record.topic == tick_topic:
                ticked.add(record.partition)
                continue
            last[record.topic, record.partition] = record
            self._fold_record(record, touched, tallies, audio)
        for record in last.values():
            self._advance(record)
        self._persist(touched)
        for partition in sorted(ticked):
            self.tick_partition(partition, highwaters(partition) if highwaters else None)
        if tallies or audio:
            self.window = add(self.window, tallies + audio_tallies(audio))

    def _fold_record(
        self, record: Record, touched: dict[bytes, CallState | None], tallies: list[Tally],
        audio: list[AudioAdded],
    ) -> None:
        try:
            event = codec.decode_skimming(record.value or b"")
            key = event.kafka_key
            state = touched[key] if key in touched else self.get(key)
            refused = refusal(state, event, record.key)
            if refused is not None:
                raise refused
            assert type(event) is SkimmedChunk or is_leg_event(event)
            if state is None:
                age = self.clock() - event_micros(event)
                if age > self.rules.us(self.rules.terminal_retention_s):
                    raise LateEvent(
                        f"event {age / 1e6:.0f} s old for a call not in the table: it ended "
                        f"and was evicted (retention {self.rules.terminal_retention_s:.0f} s)"
                    )
            position = SourcePosition(record.topic, record.partition, record.offset)
            new, outputs = apply(state, event, position)
        except (ContractError, InvariantViolated, LateEvent) as e:
            self._reject(record, e)
            return
        self.folded += 1
        if new is not state:
            touched[key] = new
            self.partition_of[key] = record.partition
        for output in outputs:
            if type(output) is AudioAdded:
                audio.append(output)
            elif type(output) is Tally:
                tallies.append(output)

    def _persist(self, touched: dict[bytes, CallState | None]) -> None:
        for key, state in touched.items():
            if state is None:
                continue
            old = self.states.get(key)
            self.put(key, state)
            if old is None or state.version != old.version:
                self._publish(state)

    # --- ticking -------------------------------------------------------------------------------

    def tick_partition(
        self, partition: int, highwaters: Mapping[str, int | None] | None = None
    ) -> None:
        """Apply the time rules to every call of a partition this worker owns.

        With ``highwaters`` the rules judge as of the time up to which this worker has folded
        the partition, not the wall clock: a worker behind on its input (just after taking the
        partition from a dead worker, or overloaded) would otherwise see silence in audio that
        is only waiting in Kafka, and end live calls as MEDIA_TIMEOUT.
        """
        self._ensure_synced(partition)
        now = self.clock()
        previous = self.last_tick_at.get(partition)
        if previous is None or now - previous > TICK_GAP_US:
            self.heard_since[partition] = now  # first tick here, or the first after a gap
        self.last_tick_at[partition] = now
        heard_since = self.heard_since[partition]
        if highwaters is not None:
            folded_until = self.folded_until(partition, highwaters)
            if folded_until is None:
                self.ticks_deferred += 1
                return
            now = min(now, folded_until)
        view = self.recorders()
        tallies: list[Tally] = []
        for key in [k for k, p in self.partition_of.items() if p == partition]:
            state = self.get(key)
            if state is None:
                continue
            new, outputs = tick(state, now, view, self.rules, heard_since)
            tallies.extend(o for o in outputs if isinstance(o, Tally))
            if any(isinstance(o, Snapshot) for o in outputs) and new is not None:
                self.put(key, new)
                self._publish(new)
            elif new is not None and new != state:
                self.put(key, new)
            if any(isinstance(o, Evict) for o in outputs):
                self.delete(key)
        if tallies:
            self.window = add(self.window, tallies)

    def _advance(self, record: Record) -> None:
        """Once per partition and batch, with its last record (a partition's records come in
        offset order)."""
        where = (record.topic, record.partition)
        known = self.read_to.get(where)
        if known is None or record.offset >= known[0]:
            sent_at = None if record.timestamp is None else record.timestamp * 1000
            self.read_to[where] = (record.offset + 1, sent_at)

    def start_positions(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Where this worker starts reading partitions just assigned (the group's commits)."""
        for where, offset in positions.items():
            known = self.read_to.get(where)
            if known is None or known[0] < offset:
                self.read_to[where] = (offset, None)

    def folded_until(self, partition: int, highwaters: Mapping[str, int | None]) -> int | None:
        """Wall time up to which every record of the partition is folded; None if unknown.

        Caught up on every topic: now. Behind on one: the Kafka timestamp of the last record
        folded from it (what follows was sent later). Nothing folded yet and records waiting,
        or no high-water mark yet: unknown, so no time rule may fire.
        """
        until = self.clock()
        for topic, highwater in highwaters.items():
            position = self.read_to.get((topic, partition))
            if highwater is None or position is None:
                return None
            next_offset, last_sent_at = position
            if next_offset >= highwater:
                continue
            if last_sent_at is None:
                return None
            until = min(until, last_sent_at)
        return until

    def adopt(self, entries: Mapping[bytes, bytes]) -> None:
        """Take the calls recovered from the changelog of partitions just assigned."""
        for key, value in entries.items():
            try:
                state = decode_state(value)
            except UnreadableState as e:
                log.error("dropping unreadable state of %r: %s", key, e)
                continue
            if state.partition is not None:
                self.states[key] = state
                self.partition_of[key] = state.partition

    def _ensure_synced(self, partition: int) -> None:
        """On the first tick after taking a partition, republish its calls' snapshots.

        The changelog write and the snapshot are separate sends: a crash between them can leave
        a state whose snapshot never reached rec.calls.v1. Republishing the current version
        (same id, same version) closes that gap.
        """
        if partition in self.synced:
            return
        for key, owner in self.partition_of.items():
            held = self.states.get(key)
            if owner == partition and held is not None and held.version > 0:
                self._publish(held)
        self.synced.add(partition)

    def keep_only(self, partitions: Iterable[int]) -> None:
        """Forget the calls of every other partition (their owner recovers them).

        The eager rebalance protocol revokes every partition, but the calls of the ones this
        worker gets back are kept, not re-read, unless another worker owned them meanwhile.
        """
        kept = set(partitions)
        gone = [k for k, p in self.partition_of.items() if p not in kept]
        for key in gone:
            self.partition_of.pop(key, None)
            self.states.pop(key, None)
        self.unsaved = {k: p for k, p in self.unsaved.items() if p in kept}
        self.snapshots_due = {k: s for k, s in self.snapshots_due.items() if _partition(s) in kept}
        self.synced &= kept
        self.read_to = {where: at for where, at in self.read_to.items() if where[1] in kept}
        self.last_tick_at = {p: at for p, at in self.last_tick_at.items() if p in kept}
        self.heard_since = {p: at for p, at in self.heard_since.items() if p in kept}
        log.info("keeping the calls of partitions %s; forgot %d calls of others",
                 sorted(kept), len(gone))

    # --- metrics -------------------------------------------------------------------------------

    def metrics_due(self) -> list[MetricSample]:
        """The closed window's samples once the clock passed its end, else nothing."""
        now = self.clock()
        if now < self.window.end:
            return []
        active: dict[str, int] = {}
        for state in self.states.values():
            if state.status == CallStatus.ACTIVE and state.has_start:
                recorder = call_recorder(state)
                active[recorder] = active.get(recorder, 0) + 1
        closed = self.window
        self.window = window_at(now, closed.length)
        gauges = gauge_tallies("calls_active", active) + gauge_tallies(
            "recorder_up", up_gauges(self.recorders(), now, self.rules))
        due: list[MetricSample] = samples(closed, gauges, self.worker_id)
        return due

    # --- the calls -----------------------------------------------------------------------------

    def get(self, key: bytes) -> CallState | None:
        return self.states.get(key)

    def put(self, key: bytes, state: CallState) -> None:
        self.states[key] = state
        partition = state.partition if state.partition is not None else self.partition_of[key]
        self.partition_of[key] = partition
        self.unsaved[key] = partition

    def delete(self, key: bytes) -> None:
        self.unsaved[key] = self.partition_of.pop(key)
        self.states.pop(key, None)

    def save(self) -> None:
        """Send the snapshots due and write every call changed since the last save to the
        changelog, once each.

        The worker saves before it commits offsets, not per batch: a call gets several events
        per second, and encoding its state once per commit instead of once per batch is most of
        what a batch costs under load. Snapshots likewise: the sends wait for the commit anyway,
        so a call published several times meanwhile (its legs starting, its first audio, a
        tick's throttled progress) is projected and encoded once, at its latest version.
        """
        for due in self.snapshots_due.values():
            self.emitter.snapshot(_partition(due), due.call_key.encode(),
                                  encode_snapshot(due, self.worker_id))
        self.snapshots_due = {}
        for key, partition in self.unsaved.items():
            state = self.states.get(key)
            self.emitter.changelog(partition, key, None if state is None else encode_state(state))
        self.unsaved = {}

    def _publish(self, state: CallState) -> None:
        self.snapshots_due[state.call_key] = state

    def _reject(self, record: Record, error: Exception) -> None:
        self.rejected += 1
        self.window = add(self.window, [Tally("deadletters_total", (), 1)])
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition,
                    record.offset, error)
        self.emitter.dead_letter(dead_letter_for(record, error, self.worker_id))


def _partition(state: CallState) -> int:
    return state.partition if state.partition is not None else 0
