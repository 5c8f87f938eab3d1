"""What the dashboard shows, read from Kafka itself: end offsets, committed offsets, the DLQ, the checkpoints.

End offsets come from fetching to end-of-partition, not from listed high
watermarks (wrong on Tansu 0.6). The DLQ, the retry backlog and the
checkpoint log are read incrementally: each refresh reads only what is new.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Optional

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, Message, TopicPartition

from consumer.stats import summarize
from domain.dead_letters import show_key
from runtime.checkpoints import Checkpoint, checkpoint_prefix
from runtime.clients import Clients
from domain.headers import DLQ_REASON, RETRY_DUE, header_int, header_text
from runtime.reading import partitions_of, read_to_end

Partition = tuple[str, int]
HISTORY_POINTS = 60
UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}
LAST_REASONS = 5


@dataclass
class Snapshot:
    taken_at: float
    ends: dict[str, int]
    lag: dict[str, dict[str, int]]
    processed: int
    average: Optional[float]
    average_history: list[float]
    retry_waiting: int
    next_retry_due_ms: Optional[int]
    dlq_total: int
    dlq_by_reason: dict[str, int]
    last_dead_letters: list[dict[str, str]]
    retried: int = 0  # records the main consumers sent to the retry topic, as checkpointed
    rates: dict[str, float] = field(default_factory=dict)

    def with_rates(self, previous: Optional["Snapshot"]) -> "Snapshot":
        if previous is not None and self.taken_at > previous.taken_at:
            elapsed = self.taken_at - previous.taken_at
            self.rates = {topic: (self.ends[topic] - previous.ends.get(topic, 0)) / elapsed for topic in self.ends}
        return self


class Collector:
    """Keeps read positions between refreshes; one instance per dashboard."""

    def __init__(self, clients: Clients, topics: dict[str, str], groups: dict[str, str], stats_topic: str) -> None:
        self.clients = clients
        self.topics = topics  # role -> topic name: orders, redrive, retry, dlq
        self.main_topics = [topics["orders"], topics["redrive"]]  # what the main consumer reads
        self.groups = groups  # role -> group id: main, retry, dlq
        self.stats_topic = stats_topic
        self.admin = clients.admin()
        self._watermarks = clients.consumer({}, {"group.id": "orders-dashboard", "enable.auto.commit": False})
        self._positions: dict[Partition, int] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._history: deque[float] = deque(maxlen=HISTORY_POINTS)
        self._dlq_by_reason: Counter[str] = Counter()
        self._last_dead: deque[dict[str, str]] = deque(maxlen=LAST_REASONS)

    def snapshot(self) -> Snapshot:
        topic_partitions = partitions_of(self.clients, [*self.topics.values(), self.stats_topic], missing_ok=True, timeout_s=5)
        committed = self._committed()
        retry_committed = {p: o for p, o in committed.get(self.groups["retry"], {}).items() if p[0] == self.topics["retry"]}
        starts = {p: self._listed_end(p) for p in topic_partitions}
        for partition in topic_partitions:
            if partition[0] in (self.topics["dlq"], self.stats_topic):
                starts[partition] = self._positions.get(partition, 0)
            elif partition in retry_committed:
                starts[partition] = retry_committed[partition]  # the backlog, for the next due time
        ends: dict[Partition, int] = {}
        due_times: list[int] = []
        for msg in read_to_end(self.clients, starts, on_end=ends.__setitem__):
            self._take(msg, retry_committed, due_times)
        self._positions.update({p: e for p, e in ends.items() if p[0] in (self.topics["dlq"], self.stats_topic)})
        figures = summarize(self._checkpoints, self.groups["main"], self.main_topics)
        lag = {
            group_id: {f"{t}[{p}]": max(0, ends.get((t, p), 0) - offset) for (t, p), offset in sorted(offsets.items())}
            for group_id, offsets in committed.items()
        }
        retry_ends = {p: e for p, e in ends.items() if p[0] == self.topics["retry"]}
        return Snapshot(
            taken_at=time.time(),
            ends={topic: sum(e for (t, _), e in ends.items() if t == topic) for topic in self.topics.values()},
            lag=lag,
            processed=int(figures["processed"]),  # type: ignore[arg-type]
            average=figures["average"],  # type: ignore[arg-type]
            average_history=list(self._history),
            retry_waiting=sum(max(0, e - retry_committed.get(p, 0)) for p, e in retry_ends.items()),
            next_retry_due_ms=min(due_times) if due_times else None,
            dlq_total=sum(self._dlq_by_reason.values()),
            dlq_by_reason=dict(self._dlq_by_reason),
            last_dead_letters=list(self._last_dead),
            retried=int(figures["retried"]),  # type: ignore[arg-type]
        )

    def _take(self, msg: Message, retry_committed: dict[Partition, int], due_times: list[int]) -> None:
        topic = msg.topic()
        if topic == self.stats_topic:
            checkpoint = Checkpoint.decode(msg.value())
            key = (msg.key() or b"").decode("utf-8", "replace")
            if checkpoint is not None:
                self._checkpoints[key] = checkpoint
                if any(key.startswith(checkpoint_prefix(self.groups["main"], t)) for t in self.main_topics):
                    average = summarize(self._checkpoints, self.groups["main"], self.main_topics)["average"]
                    if average is not None:
                        self._history.append(float(average))  # type: ignore[arg-type]
        elif topic == self.topics["dlq"]:
            reason = header_text(msg.headers(), DLQ_REASON) or "?"
            self._dlq_by_reason[reason] += 1
            self._last_dead.append({"key": show_key(msg.key()), "reason": reason,
                                    "error": (header_text(msg.headers(), "error") or "")[:120]})
        elif topic == self.topics["retry"] and msg.offset() >= retry_committed.get((topic, msg.partition()), 0):
            due = header_int(msg.headers(), RETRY_DUE)
            if due is not None:
                due_times.append(due)

    def _committed(self) -> dict[str, dict[Partition, int]]:
        """Each group's committed offsets (the admin API takes one group per request)."""
        committed: dict[str, dict[Partition, int]] = {}
        for group in dict.fromkeys(self.groups.values()):
            [future] = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]).values()
            try:
                result = future.result(15)
            except KafkaException as exc:
                if exc.args[0].code() in UNREACHABLE:
                    raise
                continue  # a group that does not exist yet
            offsets = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}
            if offsets:
                committed[group] = offsets
        return committed

    def _listed_end(self, partition: Partition) -> int:
        """A lower bound of the end from the listed watermark; fetching finds the real end from there."""
        _low, high = self._watermarks.get_watermark_offsets(TopicPartition(*partition), timeout=15)
        return max(0, high - 1)

    def close(self) -> None:
        self._watermarks.close()
