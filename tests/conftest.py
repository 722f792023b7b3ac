"""Real servers for the whole test session: one Kafka broker and one S3 server on free ports.

Started by the session, stopped by it (by PID). Tests share them and isolate themselves with
unique call keys, consumer groups and buckets.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from minio import Minio

from callrec.infra.kafka import KafkaBroker, ensure_kafka_jars
from callrec.infra.procs import free_port
from callrec.infra.s3 import S3Server, ensure_versitygw
from callrec.infra.topics import ensure_topics
from tests.disks import SmallDisk

TEST_PARTITIONS = 6
T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def cache_dir() -> Path:
    return Path(os.environ.get("CALLREC_CACHE_DIR", Path.home() / ".cache" / "callrec"))


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(
        libs=ensure_kafka_jars(cache_dir()),
        data_dir=tmp_path_factory.mktemp("kafka"),
        port=free_port(),
        controller_port=free_port(),
    )
    broker.start()
    try:
        run_sync(ensure_topics(broker.bootstrap, TEST_PARTITIONS))
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(
        binary=ensure_versitygw(cache_dir()),
        data_dir=tmp_path_factory.mktemp("nas"),
        state_dir=tmp_path_factory.mktemp("s3"),
        access_key="test-" + secrets.token_hex(8),
        secret_key=secrets.token_hex(16),
        port=free_port(),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def minio_client(s3: S3Server) -> Minio:
    return Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """``small_disk(size_bytes)``: a tmpfs of that size mounted under tmp_path (we run as root;
    skipped where mounting is not allowed), unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size_bytes: int) -> Path:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace')}")
        mounted.append(path)
        return path

    try:
        yield mount
    finally:
        for path in mounted:
            subprocess.run(["umount", "--lazy", str(path)], check=True)
