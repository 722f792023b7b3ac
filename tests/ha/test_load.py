"""A busy hour in a minute: 100 concurrent CUCM calls through the whole site, every recording
compared sample for sample with the audio that was sent.

Audio was lost before while every test was green because no test loaded the site: under load the
recorder reads packets late and the mixer re-anchored on arrival time (issue 15). Here sipp plays
100 two-leg calls at once into one recorder (200 legs, 10,000 packets a second), the call-state
worker judges them and the mixer archives them. sipp plays one pcap per process, so the calls are
split over groups, each group's near and far legs playing their own random payloads: a recording
holding another group's audio, a swapped channel, a shifted or missing frame all fail the match.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from minio import Minio

from callrec.avro import codec
from callrec.avro.events import LegEnded, RecordingArchived
from callrec.avro.topics import LIFECYCLE, RECORDINGS
from callrec.eventlog import reader, topic_partitions
from callrec.infra.kafka import KafkaBroker
from callrec.infra.s3 import S3Server
from tests.ha.harness import Site, running_site
from tests.producers.harness import SIPP_DIR, leg_keys, run_sipp, write_rtp_pcap
from tests.sinks.factory import alaw_to_pcm
from tests.sinks.harness import wait_for_events, wav_channels

pytestmark = pytest.mark.slow
CALLS = 100
GROUPS = 4  # sipp processes per leg side, each with its own pcap
AUDIO_S = 20
FRAMES = AUDIO_S * 50  # 20 ms frames
RTP_PORTS = "22000-23999"  # 200 legs at once; the site's default range is 100 ports


@pytest.fixture(scope="module")
def site(kafka: KafkaBroker, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    with running_site(kafka, s3, tmp_path_factory.mktemp("load"),
                      recorder_env={"CALLREC_RECORDER_RTP_PORTS": RTP_PORTS}) as site:
        yield site


def injected_scenario(tmp: Path) -> Path:
    """The byte-exact CUCM leg (pcap_leg.xml) taking each call's refci pair from the CSV rows
    sipp injects (fields 0 and 1), so one sipp process places many calls."""
    text = (SIPP_DIR / "pcap_leg.xml").read_text()
    path = tmp / "pcap_legs.xml"
    path.write_text(text.replace("[refci]", "[field0]").replace("[farrefci]", "[field1]"))
    return path


async def final_recordings(bootstrap: str, keys: set[str], within_s: float
                           ) -> dict[str, RecordingArchived]:
    """Each call's newest recording, once every call has a whole (not partial) one.

    On a crowded machine the recorder may stand still for seconds while it has the calls
    (starved of CPU); past the recorder-lost threshold call state judges its calls lost, the
    mixer archives what it had as partial, and when the recorder resumes and publishes the rest
    the call is reopened and archived again whole (issue 17). The whole one is what must hold
    every sample; a call that never gets one fails here."""
    newest: dict[str, RecordingArchived] = {}
    wanted = {key.encode() for key in keys}
    deadline = time.monotonic() + within_s
    async with reader(bootstrap, "load-test-recordings") as consumer:
        consumer.assign(await topic_partitions(bootstrap, [RECORDINGS.name]))
        await consumer.seek_to_beginning()
        while any(k not in newest or newest[k].partial for k in keys):
            partial = [newest[k] for k in keys if k in newest and newest[k].partial]
            if time.monotonic() > deadline and partial:
                ends = await wait_for_events(bootstrap, LIFECYCLE.name,
                                             lambda e: isinstance(e, LegEnded), 2,
                                             {partial[0].call_key.encode()}, 10)
                raise AssertionError(f"{len(partial)} only partial, e.g. {partial[:1]} {ends}")
            assert time.monotonic() < deadline, (
                f"{sum(k not in newest for k in keys)} calls without a recording, "
                f"{len(partial)} only partial, e.g. {partial[:1]}")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key not in wanted:
                        continue
                    event = codec.decode(record.value or b"")
                    if isinstance(event, RecordingArchived) and (
                            event.call_key not in newest
                            or event.call_version >= newest[event.call_key].call_version):
                        newest[event.call_key] = event
    return newest


async def test_100_concurrent_calls_are_each_recorded_sample_for_sample(
    site: Site, minio_client: Minio, tmp_path: Path
) -> None:
    site.ensure_up()
    recorder = site.recorders["A"]
    scenario = injected_scenario(tmp_path)
    rng = np.random.default_rng(100)
    base = 10**8 + uuid.uuid4().int % 10**8 // 2 * 2
    sent: dict[str, tuple[bytes, bytes]] = {}  # call key -> (near payloads, far payloads)
    plays = []
    for group in range(GROUPS):
        refcis = [base + 2 * (group * (CALLS // GROUPS) + i) for i in range(CALLS // GROUPS)]
        rows = tmp_path / f"group-{group}.csv"
        rows.write_text("SEQUENTIAL\n" + "".join(f"{r};{r - 1};\n" for r in refcis))
        audio = {}
        for leg in ("x-nearend", "x-farend"):
            payloads = [rng.bytes(160) for _ in range(FRAMES)]
            audio[leg] = b"".join(payloads)
            pcap = write_rtp_pcap(tmp_path / f"group-{group}-{leg}.pcap", payloads)
            plays.append(run_sipp(
                scenario, recorder, leg_keys(leg, "0", site.cluster, pcap=str(pcap)),
                (AUDIO_S + 1) * 1000, limit_s=AUDIO_S + 60, calls=len(refcis), inject=rows))
        sent |= {f"{site.cluster}:{r}": (audio["x-nearend"], audio["x-farend"]) for r in refcis}

    results = await asyncio.gather(*plays)
    assert all(rc == 0 for rc, _ in results), [err[-2000:] for rc, err in results if rc]
    recordings = await final_recordings(site.kafka.bootstrap, set(sent), within_s=120)

    wrong = []
    for recording in recordings.values():
        body = minio_client.get_object(recording.bucket, recording.object_key,
                                       version_id=recording.version_id).read()
        rate, pcm = wav_channels(body)
        assert rate == 8000
        for channel, payloads in enumerate(sent[recording.call_key]):
            # A-law has no zero code: the leg's audio is the channel less its leading and
            # trailing silence (the legs' ACKs are some ms apart).
            if not np.array_equal(np.trim_zeros(pcm[:, channel]), alaw_to_pcm(payloads)):
                wrong.append((recording.call_key, channel))
    assert not wrong, f"{len(wrong)} channels differ from the audio sent: {wrong[:10]}"
