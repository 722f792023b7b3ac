"""What a sipp run says about one INVITE, and destinations as given on the command line."""

from __future__ import annotations

import pytest

from callrec.emulator.calls import classify
from callrec.emulator.errors import BadDestination
from callrec.emulator.model import AttemptResult, Destination

REFUSED_503 = (
    "Aborting call on unexpected message for Call-Id '1-10228@127.0.0.1': while expecting '100' "
    "(index 1), received 'SIP/2.0 503 Service Unavailable\nVia: SIP/2.0/UDP 127.0.0.1:15071"
)
NO_ANSWER = (
    "Call-Id: 1-10232@127.0.0.1, receive timeout on message cucm recording leg:1 without label "
    "to jump to (ontimeout attribute): aborting call"
)


@pytest.mark.parametrize(
    ("exit_code", "answered", "errors", "expected"),
    [
        (0, True, "", (AttemptResult.COMPLETED, None)),
        (1, False, REFUSED_503, (AttemptResult.REFUSED, 503)),
        (1, False, REFUSED_503.replace("503 Service Unavailable", "486 Busy"),
         (AttemptResult.REFUSED, 486)),
        (1, False, NO_ANSWER, (AttemptResult.TIMEOUT, None)),
        (1, True, NO_ANSWER, (AttemptResult.FAILED_AFTER_ANSWER, None)),  # e.g. BYE unanswered
        (255, False, "Unable to connect a TCP socket", (AttemptResult.FAILED, None)),
    ],
)  # fmt: skip
def test_an_attempt_is_classified_from_sipp_s_exit_code_and_logs(
    exit_code: int, answered: bool, errors: str, expected: tuple[AttemptResult, int | None]
) -> None:
    assert classify(exit_code, answered, errors) == expected


def test_only_unanswered_attempts_are_routed_on() -> None:
    assert {r for r in AttemptResult if r.answered} == {
        AttemptResult.COMPLETED,
        AttemptResult.FAILED_AFTER_ANSWER,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=127.0.0.1:5060", Destination(name="A", host="127.0.0.1", port=5060)),
        ("rec-2=10.0.0.2:5080", Destination(name="rec-2", host="10.0.0.2", port=5080)),
        ("B=recorder.example", Destination(name="B", host="recorder.example", port=5060)),
        ("A=10.9.1.1:5060@10.9.1.2",
         Destination(name="A", host="10.9.1.1", port=5060, local_ip="10.9.1.2")),
    ],
)
def test_destinations_parse(text: str, expected: Destination) -> None:
    assert Destination.parse(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:5060", "=1.2.3.4:5060", "A=", "A=h:port"])
def test_bad_destinations_are_refused(text: str) -> None:
    with pytest.raises(BadDestination):
        Destination.parse(text)
