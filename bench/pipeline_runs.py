"""Our scripts, run as subprocesses against the benchmark's broker, measured from the outside.

Rates come from facts the scripts leave in Kafka or in their summary file
(record timestamps, summary writes), never from their log lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.limits import FAST_PRODUCER, STEADY_FROM
from domain.headers import RETRY_COUNT, RETRY_DUE

ROOT = Path(__file__).resolve().parent.parent
DEV_PROPERTIES = ROOT / "dev.properties"


@dataclass
class Topics:
    orders: str
    redrive: str
    retry: str
    dlq: str
    stats: str

    @classmethod
    def fresh(cls, label: str) -> "Topics":
        suffix = f"{label}_{uuid.uuid4().hex[:6]}"
        return cls(f"orders_{suffix}", f"redrive_{suffix}", f"retry_{suffix}", f"dlq_{suffix}", f"stats_{suffix}")

    def env(self) -> dict[str, str]:
        return {"ORDERS_TOPIC": self.orders, "REDRIVE_TOPIC": self.redrive, "RETRY_TOPIC": self.retry,
                "DLQ_TOPIC": self.dlq, "STATS_TOPIC": self.stats}


@dataclass
class Script:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    peak_rss_mb: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)

    def sample_rss(self, progress: float) -> None:
        """RSS now and peak RSS so far (VmHWM) of the script with its child processes (the main
        consumer's children, if any), added up: the peak is then an upper bound."""
        if self.process.poll() is not None:
            return  # finished (the producer ends before the consumers)
        rss = peak = 0.0
        for pid in [self.process.pid, *children_of(self.process.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
            peak += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
        self.peak_rss_mb = max(self.peak_rss_mb, peak)
        self.rss_samples.append((progress, rss))

    def wait_for_assignment(self, timeout_s: float = 60) -> None:
        """Poll the script's log until its consumer owns partitions."""
        deadline = time.monotonic() + timeout_s
        while "Assigned" not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} got no partitions; see {self.log_path}")
            time.sleep(0.1)  # poll the log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def start(module: str, bootstrap: str, topics: Topics, *args: str, log_dir: Path, name: str = "") -> Script:
    env = {**os.environ, **topics.env(), "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_CONFIG_FILE": str(DEV_PROPERTIES),
           "LOG_LEVEL": "INFO"}
    log_path = log_dir / f"{module}-{topics.orders}{'-' + name if name else ''}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Script(module, process, log_path)


def timestamps(bootstrap: str, topic: str, partitions: int, count: int, timeout_s: float = 300) -> list[int]:
    """CreateTime of the first ``count`` records of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False,
                         "fetch.max.bytes": 104_857_600, "max.partition.fetch.bytes": 10_485_760})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    found: list[int] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if not msg.error():
                    found.append(msg.timestamp()[1])
    finally:
        consumer.close()
    if len(found) < count:
        raise RuntimeError(f"only {len(found)} of {count} records in {topic}")
    return found


def read_json_quietly(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def rate_from_timestamps(stamps: list[int]) -> float:
    span_s = (max(stamps) - min(stamps)) / 1000
    return (len(stamps) - 1) / span_s if span_s > 0 else float("inf")


def wait_handled(summary_path: Path, target: int, fields: tuple[str, ...], timeout_s: float) -> dict:
    """Poll the summary file until ``fields`` add up to ``target``; return that summary."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        summary = read_json_quietly(summary_path) or {}
        if sum(int(summary.get(name) or 0) for name in fields) >= target:
            return summary
        time.sleep(0.2)  # poll the summary file
    raise RuntimeError(f"{summary_path} did not reach {target}")


def drain_rate(summary_path: Path, target: int, fields: tuple[str, ...], timeout_s: float = 600) -> float:
    """Orders/s in steady state, as the limits are timed: between the first figures past the STEADY_FROM mark
    and the last ones before ``target``, each at the time it stands as of (the summary's ``as_of``: the
    checkpoint it comes from; a write's own time would add the wait for the next checkpoint)."""
    first: Optional[tuple[float, int]] = None
    last: Optional[tuple[float, int]] = None
    deadline = time.monotonic() + timeout_s
    seen_as_of = None
    while time.monotonic() < deadline:
        summary = read_json_quietly(summary_path)
        if summary is not None and summary.get("as_of") not in (None, seen_as_of):
            seen_as_of = as_of = float(summary["as_of"])
            handled = sum(int(summary.get(name) or 0) for name in fields)
            if handled >= target:
                break
            if handled >= target * STEADY_FROM and first is None:
                first = (as_of, handled)
            elif first is not None:
                last = (as_of, handled)
        time.sleep(0.02)  # poll the summary file
    else:
        raise RuntimeError(f"{summary_path} did not reach {target}")
    if first is None or last is None or last[0] <= first[0]:
        raise RuntimeError("the run was too short to measure; raise --orders")
    return (last[1] - first[1]) / (last[0] - first[0])


def produce_retry_records(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], due_ms: list[int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **FAST_PRODUCER})
    for (key, value), due in zip(records, due_ms):
        while True:
            try:
                producer.produce(topic, value, key, headers=[(RETRY_COUNT, b"1"), (RETRY_DUE, str(due).encode())])
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("records not delivered")


def redrive_lateness(bootstrap: str, topic: str, partitions: int, count: int) -> list[int]:
    """Re-drive time minus due time (ms) of the first ``count`` re-driven records."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    lateness: list[int] = []
    deadline = time.monotonic() + 300
    try:
        while len(lateness) < count and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    continue
                due = dict(msg.headers() or []).get(RETRY_DUE)
                if due is not None:
                    lateness.append(msg.timestamp()[1] - int(due))
    finally:
        consumer.close()
    return lateness
