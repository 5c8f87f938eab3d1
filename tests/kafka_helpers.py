"""Helpers for tests against a real broker: scripts as subprocesses, topic reads, polling waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, TopicMetadata

from devbroker import BrokerError
from runtime.topics import RETRY_TOPIC_CONFIG

ROOT = Path(__file__).resolve().parent.parent
DEV_PROPERTIES = ROOT / "dev.properties"


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)  # poll


def engine_unavailable(engine: str, error: BrokerError) -> None:
    """In CI a broker that cannot start fails the test; on a developer's machine it skips it, saying why."""
    message = f"the {engine} broker cannot start: {error}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class Topics:
    orders: str
    redrive: str
    retry: str
    dlq: str
    stats: str

    @classmethod
    def unique(cls) -> "Topics":
        suffix = uuid.uuid4().hex[:8]
        return cls(f"orders_{suffix}", f"orders_redrive_{suffix}", f"orders_retry_{suffix}", f"orders_dlq_{suffix}",
                   f"orders_stats_{suffix}")

    def pipeline(self) -> list[str]:
        """The topics the scripts read and write (the stats topic is the consumers' own)."""
        return [self.orders, self.redrive, self.retry, self.dlq]

    def env(self) -> dict[str, str]:
        """Topics and consumer groups of one test, shared by nothing else."""
        suffix = self.orders.rsplit("_", 1)[1]
        return {
            "ORDERS_TOPIC": self.orders, "REDRIVE_TOPIC": self.redrive, "RETRY_TOPIC": self.retry, "DLQ_TOPIC": self.dlq, "STATS_TOPIC": self.stats,
            "MAIN_GROUP_ID": f"orders-main-{suffix}", "RETRY_GROUP_ID": f"orders-retry-{suffix}",
            "DLQ_GROUP_ID": f"orders-dlq-{suffix}",
        }


Connection = Union[str, dict[str, str]]


def client_config(connection: Connection) -> dict[str, str]:
    """The settings of a test's own client: a bootstrap address, or a whole config (a secured cluster's admin)."""
    return {"bootstrap.servers": connection} if isinstance(connection, str) else dict(connection)


def create_topics(bootstrap: Connection, names: list[str], partitions: int = 3) -> None:
    """Create topics first, so that consumers find them at once; replication factor: the broker's default."""
    admin = AdminClient(client_config(bootstrap))
    configs = {name: RETRY_TOPIC_CONFIG for name in names if "_retry_" in name}  # as the scripts create it
    for future in admin.create_topics([NewTopic(name, partitions, config=configs.get(name, {})) for name in names]).values():
        future.result(30)


@dataclass
class Script:
    """One of the project's scripts, running as a subprocess with its output in a file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log_file: Any = field(repr=False)
    stopped: bool = False  # stopped on purpose, as opposed to exited by itself
    finite: bool = False  # expected to exit by itself (a producer with --count)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.stopped = True
        if self.running():
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait for the clean shutdown; SIGKILL if it hangs (and fail loudly later)."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout_s} s after SIGTERM:\n{self.output()[-3000:]}")

    def exited_by_itself(self) -> bool:
        """Ended without being asked to, other than a finite script finishing cleanly."""
        return not self.running() and not self.stopped and not (self.finite and self.process.returncode == 0)

    def kill(self) -> None:
        """SIGKILL it; fails if it had already ended by itself (a crash that a restart would hide)."""
        if self.exited_by_itself():
            raise AssertionError(f"{self.name} exited with {self.process.returncode} before it was killed:\n"
                                 f"{self.output()[-4000:]}")
        self.terminate()

    def terminate(self) -> None:
        self.stopped = True
        if self.running():
            self.process.kill()
            self.process.wait()


class ScriptRunner:
    """Starts scripts with a shared environment; kills leftovers at teardown."""

    def __init__(self, bootstrap: str, log_dir: Path, extra_env: Optional[dict[str, str]] = None) -> None:
        self.bootstrap = bootstrap
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.scripts: list[Script] = []

    def env(self, overrides: Optional[dict[str, str]] = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ORDERS_", "RETRY_", "DLQ_", "STATS_", "MAIN_GROUP", "METRICS_"))}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "KAFKA_CONFIG_FILE": str(DEV_PROPERTIES),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides or {})
        return env

    def start(
        self, module: str, *args: str, env: Optional[dict[str, str]] = None, name: Optional[str] = None,
        finite: bool = False,
    ) -> Script:
        name = name or module.rsplit(".", 1)[-1]
        log_path = self.log_dir / f"{name}-{len(self.scripts)}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=ROOT, env=self.env(env),
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        script = Script(name, process, log_path, log_file, finite=finite)
        self.scripts.append(script)
        return script

    def run(self, module: str, *args: str, env: Optional[dict[str, str]] = None, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args], cwd=ROOT, env=self.env(env), capture_output=True, text=True,
            timeout=timeout_s, stdin=subprocess.DEVNULL,
        )

    def wait_until(self, predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 1.0) -> Any:
        """Like :func:`wait_until`, failing at once if a started script exits by itself."""

        def check() -> Any:
            for script in self.scripts:
                if script.exited_by_itself():
                    raise AssertionError(f"{script.name} exited with {script.process.returncode}:\n{script.output()[-4000:]}")
            return predicate()

        return wait_until(check, timeout_s, interval_s, what)

    def assert_healthy(self) -> None:
        """No script of this run ended by itself or printed a traceback, killed ones included."""
        for script in self.scripts:
            assert not script.exited_by_itself(), f"{script.name} exited with {script.process.returncode}:\n" \
                f"{script.output()[-4000:]}"
            output = script.output()
            assert "Traceback" not in output, f"{script.name} printed a traceback:\n{output[output.index('Traceback'):][:4000]}"

    def cleanup(self) -> None:
        for script in self.scripts:
            script.terminate()
            script._log_file.close()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: list[tuple[str, bytes]]
    timestamp_ms: int

    def header(self, name: str) -> Optional[str]:
        values = [v for k, v in self.headers if k == name]
        return values[-1].decode("utf-8", "replace") if values and values[-1] is not None else None


def read_all(bootstrap: Connection, topic: str, timeout_s: float = 60.0) -> list[Record]:
    """Every record now in ``topic``, read up to end-of-partition on each partition."""
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        partitions = list(topic_metadata(consumer, topic, deadline).partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        unfinished = set(partitions)
        records: list[Record] = []
        while unfinished:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout_s} s")
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        unfinished.discard(msg.partition())
                    continue
                records.append(
                    Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                           list(msg.headers() or []), msg.timestamp()[1])
                )
        return records
    finally:
        consumer.close()


def topic_metadata(client: Union[Consumer, AdminClient], topic: str, deadline: float) -> TopicMetadata:
    """``topic``'s partitions and their leaders; a node restarted by a fault test may fail the first metadata
    requests, so they are asked again until ``deadline``."""
    while True:
        try:
            return client.list_topics(topic, timeout=10).topics[topic]
        except KafkaException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)  # poll the metadata again


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def scrape(port: int) -> dict[str, float]:
    """Samples of a metrics endpoint: 'name{labels}' -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
