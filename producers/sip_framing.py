"""Cutting a SIP-over-TCP byte stream into messages (RFC 3261 18.3: Content-Length frames them)."""

from __future__ import annotations

import re

from callrec.producers.errors import BadSipInput

MAX_MESSAGE_BYTES = 64 * 1024
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)


def split_stream(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole messages at the head of ``buffer`` and the incomplete rest.

    Blank lines between messages are keep-alives (RFC 5626 3.5.1) and are skipped. A header block
    without a Content-Length, or a message over 64 KB, cannot be framed: BadSipInput, and the
    caller closes the connection, since nothing after it can be trusted to start a message.
    """
    messages: list[bytes] = []
    while True:
        buffer = buffer.lstrip(b"\r\n")
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_MESSAGE_BYTES:
                raise BadSipInput("SIP header block over 64 KB")
            return messages, buffer
        found = _CONTENT_LENGTH.search(buffer, 0, end + 2)
        if found is None:
            raise BadSipInput("SIP message over TCP without Content-Length")
        total = end + 4 + int(found.group(1))
        if total > MAX_MESSAGE_BYTES:
            raise BadSipInput(f"SIP message of {total} bytes is over 64 KB")
        if len(buffer) < total:
            return messages, buffer
        messages.append(buffer[:total])
        buffer = buffer[total:]
