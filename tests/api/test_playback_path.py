"""The recording's fast path answers exactly as the FastAPI route it bypasses.

``parameters`` is checked as a table (what it takes, what it leaves to FastAPI); then every
kind of answer (200, 206, 401 with its challenge, 403, 404, 416, a bad signed URL, a 422) is
asked twice of an in-process app on the real read model, S3 and Kafka: once as is (the fast
path) and once with an extra query parameter, which the fast path leaves to FastAPI (which
ignores it); both answers must be the same.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from callrec.api.playback_path import parameters
from callrec.api.tokens import Role
from tests.api.conftest import Seeded
from tests.api.harness import Replica, Site
from tests.api.test_playback_cache import cached_reader, client_of, publisher_of, state_of


@pytest.mark.parametrize(("query", "expected"), [
    (b"", {"download": False, "tid": None, "exp": None, "sig": None}),
    (b"download=1", {"download": True, "tid": None, "exp": None, "sig": None}),
    (b"download=false&tid=ab12&exp=1700000000&sig=x-Y_z",
     {"download": False, "tid": "ab12", "exp": 1700000000, "sig": "x-Y_z"}),
    (b"tid=&sig=", {"download": False, "tid": "", "exp": None, "sig": ""}),
])
def test_parameters_it_takes(query: bytes, expected: dict[str, object]) -> None:
    assert parameters(query) == expected


@pytest.mark.parametrize("query", [
    b"download=yes", b"download=1&download=0", b"exp=", b"exp=-1", b"exp=1e3",
    b"exp=%2B5", b"exp=" + str(2**62 + 1).encode(), b"tid=" + b"a" * 65,
    b"sig=" + b"s" * 129, b"other=1", b"a&&b", b"exp=\xd9\xa3",
])
def test_parameters_it_leaves_to_fastapi(query: bytes) -> None:
    assert parameters(query) is None


async def test_the_fast_path_answers_as_the_route(
    site: Site, seeded: Seeded, replica: Replica, tokens: dict[Role, str]
) -> None:
    key = quote(seeded.key(1001), safe="")
    size = len(seeded.wavs[seeded.key(1001)])
    viewer = {"Authorization": f"Bearer {tokens[Role.viewer]}"}
    cases: list[tuple[str, dict[str, str]]] = [
        (f"/api/v1/calls/{key}/recording", viewer),
        (f"/api/v1/calls/{key}/recording", {**viewer, "Range": "bytes=100-199"}),
        (f"/api/v1/calls/{key}/recording", {**viewer, "Range": f"bytes={size}-"}),
        (f"/api/v1/calls/{key}/recording", {}),
        (f"/api/v1/calls/{key}/recording", {"Authorization": "Bearer crk_nope_nope"}),
        (f"/api/v1/calls/{key}/recording?download=1", viewer),
        (f"/api/v1/calls/{quote('no:such', safe='')}/recording", viewer),
        (f"/api/v1/calls/{key}/recording?tid=ab&exp=1&sig=bad", {}),
        (f"/api/v1/calls/{key}/recording?exp=soon", viewer),
    ]
    async with publisher_of(site) as publisher, client_of(
            state_of(site, replica, cached_reader(site), publisher)) as client:
        for path, headers in cases:
            fast = await client.get(path, headers=headers)
            routed = await client.get(path + ("&" if "?" in path else "?") + "via=fastapi",
                                      headers=headers)
            assert (fast.status_code, fast.content) == (routed.status_code, routed.content), \
                path
            for name in ("content-type", "content-range", "content-length", "etag",
                         "www-authenticate", "content-disposition",
                         "content-security-policy"):
                assert fast.headers.get(name) == routed.headers.get(name), (path, name)
    assert fast.status_code == 422  # the last case, left to FastAPI both times
