"""How fast the recorder's outbox takes its spool to Kafka, as a ratio to a bare aiokafka producer.

Run by hand: ``.venv/bin/python bench/outbox_ceiling.py --records 50000`` (~1 min with the broker
it starts, or ``--bootstrap``); ``recorder_load.py`` runs the same two phases before the recorder.
The ceiling is a bare ``AIOKafkaProducer`` with the recorder's settings (``new_producer`` with
``main.py``'s batch size and request timeout) sending the same records, AudioChunks of ten 20 ms
G.711 packets keyed by ``--calls`` call keys, as fast as aiokafka takes them. The outbox phase
appends the same records to a fresh spool, then times the outbox from its start until Kafka has
acknowledged them all: a recorder catching up after an outage, and the most it can sustain. Both
print records/s (wall) and this process's CPU µs per record.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rtp_ceiling import cpu_seconds, machine_load, payload_of, with_broker

from callrec.avro import codec
from callrec.avro.events import AudioChunk, Leg, RtpPacket
from callrec.avro.topics import AUDIO
from callrec.eventlog import EVENT_TYPE_HEADER, EventPublisher, new_producer
from callrec.producers.main import KAFKA_BATCH_BYTES, KAFKA_REQUEST_TIMEOUT_MS
from callrec.producers.outbox import Outbox
from callrec.producers.spool import Spool

Record = tuple[bytes, bytes]
"""(key, value) of one AudioChunk."""


@dataclass(frozen=True)
class Rate:
    records: int
    wall_s: float
    cpu_s: float
    broker_cpu_s: float | None = None

    @property
    def per_s(self) -> float:
        return self.records / self.wall_s

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.records * 1e6

    def __str__(self) -> str:
        broker = ("" if self.broker_cpu_s is None else
                  f", the broker {self.broker_cpu_s / self.wall_s:.2f} cores")  # fmt: skip
        return (f"{self.per_s:,.0f} records/s ({self.records:,} in {self.wall_s:.1f} s), "
                f"{self.cpu_us:.1f} CPU µs/record{broker}")  # fmt: skip


class Clock:
    """Wall, this process's CPU and (given its pid) the broker's CPU since it was made."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.t0, self.c0 = time.monotonic(), time.process_time()
        self.b0 = cpu_seconds(broker_pid) if broker_pid else 0.0

    def rate(self, records: int) -> Rate:
        broker = cpu_seconds(self.broker_pid) - self.b0 if self.broker_pid else None
        return Rate(records, time.monotonic() - self.t0, time.process_time() - self.c0, broker)


def audio_records(calls: int, count: int) -> list[Record]:
    """``count`` AudioChunks as the recorder writes them (10 packets of 160 bytes), round-robin
    over the legs of ``calls`` calls."""
    now_us = time.time_ns() // 1000
    chunks = []
    for n in range(calls * 2):
        call_key = f"BENCH:{10**7 + n // 2}"
        chunk = AudioChunk(
            producer_id="bench", call_key=call_key, leg=Leg.NEAR_END if n % 2 else Leg.FAR_END,
            leg_id=f"bench:{n:032x}-x-nearend:t{n:032x}:{n:08x}", chunk_seq=n, codec="PCMA",
            payload_type=8, clock_rate=8000, packets_lost=0, packets_reordered=0,
            packets_duplicated=0, ssrc_changes=0,
            packets=[RtpPacket(rtp_seq=s, rtp_timestamp=s * 160, ssrc=1000 + n, payload_type=8,
                               marker=False, arrival_time_us=now_us + s * 20_000,
                               payload=payload_of(s)) for s in range(10)],
        )  # fmt: skip
        chunks.append((call_key.encode(), codec.encode(chunk)))
    return [chunks[i % len(chunks)] for i in range(count)]


def recorder_publisher(bootstrap: str) -> EventPublisher:
    """The publisher ``main.py`` gives the recorder's outbox."""
    return EventPublisher(bootstrap, "bench-outbox", request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
                          max_batch_size=KAFKA_BATCH_BYTES)  # fmt: skip


async def bare_producer(bootstrap: str, records: list[Record],
                        broker_pid: int | None = None) -> Rate:  # fmt: skip
    """The ceiling: every record handed to one producer with the recorder's settings, then
    every acknowledgement awaited."""
    producer = new_producer(bootstrap, "bench-bare", request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
                            max_batch_size=KAFKA_BATCH_BYTES)  # fmt: skip
    await producer.start()
    headers = [(EVENT_TYPE_HEADER, AudioChunk.avro_name.encode())]
    try:
        clock = Clock(broker_pid)
        futures = [await producer.send(AUDIO.name, value=value, key=key, headers=headers)
                   for key, value in records]  # fmt: skip
        await asyncio.gather(*futures)
        return clock.rate(len(records))
    finally:
        await producer.stop()


async def outbox_drain(bootstrap: str, records: list[Record], directory: Path,
                       profile: cProfile.Profile | None = None,
                       broker_pid: int | None = None) -> Rate:  # fmt: skip
    """The outbox taking a spool of ``records`` to Kafka, from its start to the last ack."""
    spool = Spool(directory, max_bytes=1 << 40)
    outbox = Outbox(spool, lambda: recorder_publisher(bootstrap), producer_id="bench")
    for key, value in records:
        outbox.put_encoded(AUDIO.name, key, AudioChunk.avro_name, value)
    target = spool.next_seq - 1
    clock = Clock(broker_pid)
    if profile is not None:
        profile.enable()
    outbox.start()
    try:
        while spool.acked_seq < target:  # noqa: ASYNC110 - the outbox's own tasks move it
            await asyncio.sleep(0.005)
        return clock.rate(len(records))
    finally:
        if profile is not None:
            profile.disable()
        await outbox.close()


async def kafka_ceiling(bootstrap: str, calls: int, count: int,
                        profile: cProfile.Profile | None = None,
                        broker_pid: int | None = None) -> tuple[Rate, Rate]:  # fmt: skip
    """(bare producer, outbox) sending the same ``count`` records, one after the other."""
    records = audio_records(calls, count)
    bare = await bare_producer(bootstrap, records, broker_pid)
    print(f"bare aiokafka producer (recorder's settings): {bare}", flush=True)
    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as tmp:
        outbox = await outbox_drain(bootstrap, records, Path(tmp), profile, broker_pid)
    print(f"outbox draining its spool: {outbox} = {outbox.per_s / bare.per_s:.2f} of the bare "
          f"producer's rate, {outbox.cpu_us / bare.cpu_us:.2f}x its CPU per record; "
          f"{len(records[0][1]):,} bytes per record", flush=True)  # fmt: skip
    return bare, outbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500, help="call keys the records spread over")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1, help="bare/outbox pairs, alternating")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--profile", action="store_true", help="cProfile the outbox's phase")
    parser.add_argument("--broker-pid", type=int, help="with --bootstrap: print its CPU too")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None

    async def run(bootstrap: str, _: Path) -> None:
        print(machine_load(), flush=True)
        for _round in range(args.rounds):
            await kafka_ceiling(bootstrap, args.calls, args.records, profile, args.broker_pid)
        print(machine_load())
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(18)

    with_broker(args.bootstrap, "outbox-bench-", run)


if __name__ == "__main__":
    main()
