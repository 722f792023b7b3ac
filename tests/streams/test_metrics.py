"""Windowed metrics: a batch's chunks are summed per recorder before they reach the window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callrec.streams.metrics import AUDIO_METRICS, add, audio_tallies, window_at
from callrec.streams.outputs import AudioAdded, Tally

ADDED = st.builds(AudioAdded, st.sampled_from(["rec-a", "rec-b", "rec-c"]),
                  st.integers(0, 10_000), st.integers(0, 50), st.integers(0, 50))


def test_chunks_are_summed_per_recorder() -> None:
    # given the chunks of a batch from two recorders
    added = [AudioAdded("rec-a", 1600, 10, 0), AudioAdded("rec-b", 800, 5, 2),
             AudioAdded("rec-a", 1440, 9, 1)]
    # when they are turned into tallies
    tallies = audio_tallies(added)
    # then each recorder has one tally per audio counter, with the sums
    a, b = (("recorder", "rec-a"),), (("recorder", "rec-b"),)
    assert sorted(tallies, key=lambda t: (t.labels, t.metric)) == [
        Tally("audio_bytes_total", a, 3040), Tally("audio_packets_lost_total", a, 1),
        Tally("audio_packets_total", a, 19),
        Tally("audio_bytes_total", b, 800), Tally("audio_packets_lost_total", b, 2),
        Tally("audio_packets_total", b, 5),
    ]


@given(st.lists(ADDED, max_size=30))
def test_a_window_sums_the_same_as_three_tallies_per_chunk(added: list[AudioAdded]) -> None:
    # given any chunks, counted as they once were: three tallies each
    window = window_at(0, 10_000_000)
    one_by_one = add(window, [
        Tally(metric, (("recorder", chunk.recorder),), value) for chunk in added
        for metric, value in zip(AUDIO_METRICS, chunk[1:], strict=True)])
    # when they are summed per batch first
    summed = add(window, audio_tallies(added))
    # then the window holds the same sums, per recorder and overall
    assert summed.sums == one_by_one.sums
