"""Apache Kafka in KRaft combined mode (one node: broker + controller), from Maven Central jars.

The jars are fetched once with Maven into the user cache, so every clone on the machine reuses
them; the broker's data lives wherever the caller says.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from callrec.eventlog import new_admin
from callrec.infra.errors import StartFailed
from callrec.infra.procs import ManagedProcess, ensure_port_free, require_tool

KAFKA_VERSION = "4.3.1"
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>callrec</groupId><artifactId>kafka-dist</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{SLF4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="out" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="out"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


def kafka_libs_dir(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_kafka_jars(cache_dir: Path) -> Path:
    """Directory of Kafka's runtime jars, downloaded with Maven on first use."""
    libs = kafka_libs_dir(cache_dir)
    if (libs / ".complete").exists():
        return libs
    mvn = require_tool("mvn", "install Maven (apt-get install maven); ./run does this for you")
    require_tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "pom.xml").write_text(POM)
        result = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={staging}"],
            cwd=work, capture_output=True, text=True, check=False,
        )
    if result.returncode != 0:
        raise StartFailed(f"Maven could not fetch Kafka {KAFKA_VERSION}:\n{result.stdout[-3000:]}"
                          f"{result.stderr[-2000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / ".complete").write_text(KAFKA_VERSION)
    return libs


@dataclass
class KafkaBroker:
    """One KRaft node on loopback whose data and logs live under ``data_dir``."""

    libs: Path
    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    host: str = "127.0.0.1"
    heap: str = "768m"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess("kafka", self.data_dir)

    def _write_config(self) -> Path:
        config = self.data_dir / "server.properties"
        log_dir = self.data_dir / "log"
        config.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                f"listeners=PLAINTEXT://{self.host}:{self.port},"
                f"CONTROLLER://{self.host}:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={log_dir}",
                "num.partitions=6",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=6",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                # a single node flushes through the page cache; acks=all means "this node".
                "min.insync.replicas=1",
                "",
            ])
        )
        (self.data_dir / "log4j2.xml").write_text(LOG4J2_XML)
        return config

    def _java(self, main: str, *args: str) -> list[str]:
        java = require_tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre)")
        return [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def _format_once(self, config: Path) -> None:
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().hex[:22]
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StartFailed(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 90.0) -> None:
        """Start (formatting storage on first start) and wait until the broker serves metadata."""
        if self.process.pid() is not None:
            return
        ensure_port_free(self.host, self.port, "Kafka")
        ensure_port_free(self.host, self.controller_port, "Kafka's controller")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.data_dir.resolve()
        config = self._write_config()
        self._format_once(config)
        self.process.start(self._java("kafka.Kafka", str(config)))
        self.process.wait_healthy(self.healthy, timeout)

    def stop(self) -> bool:
        return self.process.stop(timeout=30)

    def healthy(self) -> bool:
        # In a thread: callers may be inside a running event loop (async tests, the CLI).
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, broker_answers(self.bootstrap)).result()


async def broker_answers(bootstrap: str, timeout_ms: int = 3000) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request."""
    admin = new_admin(bootstrap, request_timeout_ms=timeout_ms)
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # a refused connection is the answer here, not news
    try:
        await asyncio.wait_for(admin.start(), timeout_ms / 1000)
        await asyncio.wait_for(admin.list_topics(), timeout_ms / 1000)
        return True
    except (KafkaError, TimeoutError, OSError):
        return False
    finally:
        await admin.close()
        client_log.setLevel(level)
