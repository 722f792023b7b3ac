"""Process wiring: sippy's event loop in the main thread, the recorder's asyncio loop beside it.

sippy's dispatcher is a process-wide singleton bound to the thread that imported it and owns
signal handling, so it keeps the main thread; the recorder (RTP, chunking, Kafka) runs in a
second thread with its own asyncio loop. They meet only through ``Recorder.submit`` (SIP facts
in), ``Vitals.health`` (an immutable value out) and ``SipLink`` (hang-ups posted to sippy's
loop); the recorder thread hands its loop over once, as a ``RecorderLoop`` through a Future.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sippy.Core.EventDispatcher import ED2

from callrec.eventlog import EventPublisher
from callrec.producers.leg import RecorderIdentity
from callrec.producers.media import PortPool
from callrec.producers.outbox import Outbox
from callrec.producers.recorder import Recorder
from callrec.producers.settings import RecorderSettings
from callrec.producers.sip_uas import SipUas
from callrec.producers.spool import Spool
from callrec.producers.vitals import Vitals

log = logging.getLogger("callrec.producers")
# An idempotent batch in flight is retried with the same sequence numbers until this long; a
# broker away longer makes the outbox resend from the spool (see outbox.py).
KAFKA_REQUEST_TIMEOUT_MS = 120_000
# aiokafka sends one produce request per broker at a time, so throughput is batch size per round
# trip: 16 KB batches (the default) cap a recorder near 500 calls; 512 KB lifts that cap.
KAFKA_BATCH_BYTES = 512 * 1024


@dataclass(frozen=True)
class RecorderLoop:
    """What the recorder thread hands the main thread once its loop runs."""

    recorder: Recorder
    vitals: Vitals
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event


class SipLink:
    """The recorder's requests to the SIP thread, posted to sippy's loop.

    The UAS is built after the recorder (it answers with the recorder's health), so it is
    attached once it listens. A hang-up before that is a wiring error and raises, rather than
    silently sending no BYE.
    """

    def __init__(self) -> None:
        self._uas: SipUas | None = None

    def attach(self, uas: SipUas) -> None:
        self._uas = uas

    def hang_up(self, leg_id: str) -> None:
        if self._uas is None:
            raise RuntimeError(f"hang-up of {leg_id} before the SIP side is attached")
        ED2.callFromThread(self._uas.hang_up, leg_id)

    def stats(self) -> dict[str, int]:
        return {} if self._uas is None else dict(self._uas.stats)


def run_recorder(settings: RecorderSettings) -> int:
    """Run until SIGTERM / SIGINT, then drain; returns the process exit code."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    identity = RecorderIdentity(settings.id, uuid.uuid4().hex)
    ports = PortPool(settings.rtp_bind_host, settings.rtp_port_range)
    spool = Spool(
        settings.data_dir / "spool",
        settings.spool_max_bytes,
        memory_bytes=settings.disk_full_memory_bytes,
    )
    link = SipLink()
    started: Future[RecorderLoop] = Future()
    failed = threading.Event()

    async def record() -> None:
        loop = asyncio.get_running_loop()
        outbox = Outbox(
            spool,
            lambda: EventPublisher(
                settings.kafka_bootstrap,
                f"recorder-{settings.id}",
                request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
                max_batch_size=KAFKA_BATCH_BYTES,
            ),
            producer_id=settings.id,
        )
        recorder = Recorder(settings, outbox, ports, identity, loop, link)
        vitals = Vitals(recorder)
        stop = asyncio.Event()
        started.set_result(RecorderLoop(recorder, vitals, loop, stop))
        await vitals.run(stop, settings.drain_timeout_s)

    def recorder_thread() -> None:
        try:
            asyncio.run(record())
        except Exception:
            log.exception("recorder loop failed")
            failed.set()
        finally:
            if not started.done():
                started.set_exception(RuntimeError("the recorder loop ended before it ran"))
            ED2.callFromThread(ED2.breakLoop)

    thread = threading.Thread(target=recorder_thread, name="recorder", daemon=True)
    thread.start()
    try:
        running = started.result()
    except Exception:
        thread.join()
        return 1
    recorder, vitals = running.recorder, running.vitals

    def request_stop(*_: Any) -> None:
        log.info("stop requested; draining")
        vitals.begin_drain()
        running.loop.call_soon_threadsafe(running.stop.set)

    sip = SipUas(settings, ports, health=lambda: vitals.health, submit=recorder.submit)
    try:
        sip.start()
    except OSError as e:
        log.error("cannot listen for SIP on %s:%d: %s", settings.sip_host, settings.sip_port, e)
        request_stop()
        thread.join()
        return 1
    link.attach(sip)
    ED2.regSignal(signal.SIGTERM, request_stop)
    ED2.regSignal(signal.SIGINT, request_stop)
    log.info(
        "recorder %s listening on udp+tcp:%s:%d, RTP %s, peers %s",
        settings.id,
        settings.sip_host,
        settings.sip_port,
        settings.rtp_ports,
        settings.allow,
    )
    if thread.is_alive():
        ED2.loop()
    thread.join()
    return 1 if failed.is_set() else 0
