"""Pure parts of the API, without servers: ranges, cursors, signatures, tokens, the
newest-wins rule of the read model, manifest checks and waveform peaks."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from callrec.api import peaks, queries, ranges, signing, verify
from callrec.api.rows import CallFilter, Cursor, call_row
from callrec.api.tokens import Role, TokenStore
from callrec.avro.events import CallStatus
from callrec.sinks.manifests import ManifestEntry, manifest_key, public_pem, render_manifest
from tests.api.harness import call_record, make_wav


@given(size=st.integers(1, 10_000), first=st.integers(0, 20_000), span=st.integers(0, 20_000))
def test_a_satisfiable_range_stays_inside_the_object(size: int, first: int, span: int) -> None:
    try:
        part = ranges.choose(f"bytes={first}-{first + span}", None, '"e"', size)
    except ranges.Unsatisfiable:
        assert first >= size
        return
    assert 0 <= part.start <= part.end < size
    assert part.length == min(first + span, size - 1) - first + 1


@pytest.mark.parametrize(("header", "if_range", "expected"), [
    (None, None, (0, 99, False)),
    ("bytes=-10", None, (90, 99, True)),
    ("bytes=-1000", None, (0, 99, True)),
    ("bytes=5-", '"e"', (5, 99, True)),
    ("bytes=5-", '"old"', (0, 99, False)),
    ("bytes=1-2,4-5", None, (0, 99, False)),
])
def test_range_choices(header: str | None, if_range: str | None,
                       expected: tuple[int, int, bool]) -> None:
    part = ranges.choose(header, if_range, '"e"', 100)
    assert (part.start, part.end, part.partial) == expected


@given(st.integers(0, 2**62), st.text(max_size=40))
def test_cursor_round_trips(started: int, key: str) -> None:
    assert Cursor.decode(Cursor(started, key).encode()) == Cursor(started, key)


@pytest.mark.parametrize("text", ["", "!!", "bnVsbA", "WzEsMl0", "WyJhIiwiYiJd"])
def test_foreign_cursors_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Cursor.decode(text)


def test_signature_binds_call_user_purpose_and_expiry() -> None:
    key, now = b"k" * 32, 1_000_000.0
    sig = signing.sign(key, "C:1", "tok1", "play", 1_000_300)
    assert signing.valid(key, "C:1", "tok1", "play", 1_000_300, sig, now)
    for args in [("C:2", "tok1", "play", 1_000_300), ("C:1", "tok2", "play", 1_000_300),
                 ("C:1", "tok1", "download", 1_000_300), ("C:1", "tok1", "play", 1_000_301)]:
        assert not signing.valid(key, *args, sig, now)
    assert not signing.valid(key, "C:1", "tok1", "play", 1_000_300, sig, 1_000_301.0)
    assert not signing.valid(b"x" * 32, "C:1", "tok1", "play", 1_000_300, sig, now)


def test_tokens_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.add("alice", Role.auditor)
    secret = token.rsplit("_", 1)[1]
    assert secret not in (tmp_path / "tokens.json").read_text()
    assert (tmp_path / "tokens.json").stat().st_mode & 0o077 == 0
    who = store.authenticate(token)
    assert who is not None and (who.name, who.role) == ("alice", Role.auditor)
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    other = TokenStore(tmp_path / "tokens.json")  # another replica
    other.revoke(who.token_id)
    assert store.authenticate(token) is None
    assert store.principal(who.token_id) is None


def test_newest_call_version_and_recording_win_in_any_order() -> None:
    conn = queries.connect(":memory:")
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    v1 = call_record("C:1", near="1", far="2", started=t0, status=CallStatus.ACTIVE, version=1)
    v2 = call_record("C:1", near="1", far="2", started=t0, status=CallStatus.COMPLETED,
                     version=2)
    later = v2.model_copy(update={"event_time": v2.event_time + timedelta(seconds=1),
                                  "far_end_addr": "3"})
    for order in ([v1, v2, later], [later, v2, v1], [v2, later, v1]):
        conn.execute("DELETE FROM calls")
        for call in order:
            queries.apply_batch(conn, [call_row(call)], [], [], {("t", 0): 1})
        row = queries.get_call(conn, "C:1")
        assert row is not None and (row["version"], row["far_end_addr"]) == (2, "3")


def test_offsets_commit_with_their_rows() -> None:
    conn = queries.connect(":memory:")
    call = call_record("C:1", near="1", far="2", started=datetime.now(UTC),
                       status=CallStatus.ACTIVE)
    with pytest.raises(sqlite3.Error):  # a bad row: nothing of the batch is kept, offsets included
        queries.apply_batch(conn, [call_row(call)], [("broken",)], [], {("t", 0): 7})
    assert queries.stored_offsets(conn) == {}
    assert queries.count_calls(conn, CallFilter()) == 0


def test_manifest_checks() -> None:
    key = Ed25519PrivateKey.generate()
    obj = "recordings/2026/12/01/C%3A1.wav"
    digest = hashlib.sha256(b"audio").hexdigest()
    manifest = render_manifest([ManifestEntry(obj, digest)])
    pem = public_pem(key)
    good = verify.manifest_checks(obj, digest, manifest, key.sign(manifest), pem)
    assert [c.ok for c in good] == [True, True]
    forged = verify.manifest_checks(obj, digest, manifest + b"x", key.sign(manifest), pem)
    assert forged[0].ok is False
    other = verify.manifest_checks(obj, "1" * 64, manifest, key.sign(manifest), pem)
    assert [c.ok for c in other] == [True, False]
    assert [c.ok for c in verify.manifest_checks(obj, digest, None, None, pem)] == [None, None]
    assert verify.day_of(obj) == date(2026, 12, 1)
    assert manifest_key(date(2026, 12, 1)) in good[0].detail
    assert verify.hash_check(digest, None).ok is False
    assert verify.hash_check(digest, digest).ok is True


def test_peaks_follow_loudness() -> None:
    quiet_then_loud = np.zeros((8000, 2), dtype=np.int16)
    quiet_then_loud[4000:, 0] = 32767
    grid = peaks.peaks(quiet_then_loud, 4)
    assert grid.shape == (2, 4)
    assert list(grid[0]) == [0, 0, 255, 255] and list(grid[1]) == [0, 0, 0, 0]
    assert peaks.peaks(np.zeros((0, 1), dtype=np.int16), 4).shape == (1, 4)


def test_peaks_stream_a_recording_without_seeking() -> None:
    """A reader that can only read forward, as an S3 body is; the grid is the same as the
    whole-array one."""
    wav = make_wav(3.0)

    class Forward:
        def __init__(self) -> None:
            self.at = 0

        def read(self, size: int = -1, /) -> bytes:
            n = 4096 if size < 0 else min(size, 4096)  # short reads, as a network body gives
            out = wav[self.at:self.at + n]
            self.at += len(out)
            return out

    streamed = peaks.stream_peaks(Forward(), 100, 3000)
    whole = peaks.peaks(np.frombuffer(wav[44:], dtype=np.int16).reshape(-1, 2), 100)
    assert streamed.shape == (2, 100) and streamed.any()
    assert (streamed == whole).all()


def test_peaks_of_frames_arriving_in_pieces_match_the_whole() -> None:
    rng = np.random.default_rng(7)
    samples = rng.integers(-32768, 32767, size=(10_007, 2), dtype=np.int16)
    grid = peaks.PeakGrid(2, 37, len(samples))
    for start in range(0, len(samples), 333):
        grid.add(samples[start:start + 333])
    assert (grid.grid == peaks.peaks(samples, 37)).all()


def test_party_search_follows_the_newest_snapshot() -> None:
    """A transfer changes the far end: the old number no longer finds the call."""
    conn = queries.connect(":memory:")
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    v1 = call_record("C:1", near="1001", far="2002", started=t0, status=CallStatus.ACTIVE,
                     version=1)
    v2 = v1.model_copy(update={"version": 2, "far_end_addr": "3003"})
    queries.apply_batch(conn, [call_row(v1)], [], [], {})
    queries.apply_batch(conn, [call_row(v2)], [], [], {})

    def found(party: str) -> int:
        return queries.count_calls(conn, CallFilter(party=party, started_from=t0,
                                                    started_to=t0 + timedelta(hours=1)))

    assert (found("1001"), found("2002"), found("3003"), found("30")) == (1, 0, 1, 1)


def test_a_call_between_equal_numbers_is_indexed_once() -> None:
    conn = queries.connect(":memory:")
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    call = call_record("C:2", near="1001", far="1001", started=t0, status=CallStatus.ACTIVE)
    queries.apply_batch(conn, [call_row(call)], [], [], {})
    queries.apply_batch(conn, [call_row(call.model_copy(update={"version": 9}))], [], [], {})
    assert queries.count_calls(conn, CallFilter(party="1001")) == 1


def test_concurrent_adds_lose_no_token(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = TokenStore(tmp_path / "tokens.json")
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda n: store.add(f"u{n}", Role.viewer), range(40)))
    fresh = TokenStore(tmp_path / "tokens.json")
    assert all(fresh.authenticate(token) is not None for token in made)
