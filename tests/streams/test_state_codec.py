"""The table's changelog format: any state folded from any call reads back equal."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from callrec.streams.state_codec import UnreadableState, decode_state, encode_state
from callrec.streams.verdict import tick
from tests.streams.core import RULES, fold_positioned, live_view
from tests.streams.strategies import SEGMENT_US, reordered


@settings(max_examples=100, deadline=None)
@given(reordered())
def test_every_state_reads_back_equal(case: tuple) -> None:  # type: ignore[type-arg]
    call, _, shuffled = case
    state = fold_positioned(shuffled)
    assert decode_state(encode_state(state)) == state
    now = call.t0 + 4 * SEGMENT_US
    ticked, _ = tick(state, now, live_view(now), RULES)
    assert ticked is not None
    assert decode_state(encode_state(ticked)) == ticked


@settings(max_examples=25, deadline=None)
@given(reordered())
def test_states_written_by_the_standard_json_encoder_read_back_equal(case: tuple) -> None:  # type: ignore[type-arg]
    # given a state as the changelog held it before orjson (json.dumps, non-ASCII escaped)
    state = fold_positioned(case[2])
    written_before = json.dumps(json.loads(encode_state(state)), separators=(",", ":")).encode()
    # then it reads back equal
    assert decode_state(written_before) == state


@pytest.mark.parametrize("data", [b"{}", b"not json", b'{"f": 99}'])
def test_unreadable_state_is_refused(data: bytes) -> None:
    with pytest.raises(UnreadableState):
        decode_state(data)
