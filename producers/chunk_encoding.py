"""AudioChunk bytes straight from a closed chunk, without building pydantic models.

AudioChunk is the recorder's hottest event (five per leg per second, ~10 packets each); building
its pydantic model and dumping it again cost more CPU than receiving the RTP. This writes the
same Avro single-object encoding from a plain dict with the contract's own schema and
fingerprint; tests/producers/test_chunk_encoding.py proves the bytes decode to the model.
"""

from __future__ import annotations

import io
import os
import uuid

import fastavro

from callrec.avro import codec
from callrec.avro.events import AudioChunk
from callrec.avro.topics import TOPIC_OF
from callrec.producers.chunker import ClosedChunk
from callrec.producers.leg import LegState

AUDIO_TOPIC = TOPIC_OF[AudioChunk].name
_SCHEMA = codec.load_schema(codec.SCHEMA_DIR / "AudioChunk.avsc")
_PARSED = fastavro.parse_schema(_SCHEMA, named_schemas={})
_HEADER = codec.MARKER + codec.schema_fingerprint(_SCHEMA)


def encode_chunk(leg: LegState, chunk: ClosedChunk) -> bytes:
    """The contract's AudioChunk encoding of one closed chunk of the leg."""
    record = {
        "event_id": str(uuid.UUID(bytes=os.urandom(16), version=4)),
        "event_time": chunk.closed_at_us,
        "producer_id": leg.identity.recorder_id,
        "call_key": leg.call_key,
        "leg": leg.opened.meta.leg.value,
        "leg_id": leg.leg_id,
        "chunk_seq": chunk.chunk_seq,
        "codec": chunk.codec.name,
        "payload_type": chunk.codec.payload_type,
        "clock_rate": chunk.codec.clock_rate,
        "packets": [
            {
                "rtp_seq": p.seq,
                "rtp_timestamp": p.timestamp,
                "ssrc": p.ssrc,
                "payload_type": p.payload_type,
                "marker": p.marker,
                "arrival_time_us": p.arrival_time_us,
                "payload": p.payload,
            }
            for p in chunk.packets
        ],
        "packets_lost": chunk.packets_lost,
        "packets_reordered": chunk.packets_reordered,
        "packets_duplicated": chunk.packets_duplicated,
        "ssrc_changes": chunk.ssrc_changes,
    }
    out = io.BytesIO()
    out.write(_HEADER)
    fastavro.schemaless_writer(out, _PARSED, record)
    return out.getvalue()
