"""The main consumer's state: a running average per partition, checkpointed, restored and reported.

:class:`AverageState` is the main consumer's :class:`pipeline.checkpointed.PartitionRole`:
each partition's sum and count travel in its checkpoint, so a restart or a
rebalance resumes the average exactly where the last checkpoint left it. The
figures it reports say what they cover: this instance's partitions, or the
whole group (the other partitions as last checkpointed, at most a few seconds old).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline import metrics
from pipeline.checkpoints import Checkpoint, partition_checkpoints
from pipeline.offsets import OffsetTracker, Partition
from pipeline.summary import write_json_atomic


@dataclass
class PartitionStats:
    """What one partition contributed: the running average's sum and count, and routing counts."""

    processed: int = 0
    total: float = 0.0
    retried: int = 0
    dead_lettered: int = 0

    @classmethod
    def of(cls, checkpoint: Optional[Checkpoint]) -> "PartitionStats":
        if checkpoint is None:
            return cls()
        return cls(checkpoint.processed, checkpoint.sum, checkpoint.retried, checkpoint.dead_lettered)

    def add(self, other: "PartitionStats") -> None:
        self.processed += other.processed
        self.total += other.total
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered

    @property
    def average(self) -> Optional[float]:
        return self.total / self.processed if self.processed else None


class AverageState:
    """Per-partition stats of the partitions this instance owns, and the copies found after their checkpoints."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.partitions: dict[Partition, PartitionStats] = {}
        self.routed_before: dict[Partition, dict[int, tuple[str, int, int]]] = {}
        self.processed_here = 0
        self.routing_counts: Counter[tuple[str, ...]] = Counter()
        self._published: Counter[tuple[str, ...]] = Counter()
        self._processed_sync = metrics.CounterSync(metrics.PROCESSED)
        self._window_processed = 0

    # PartitionRole: how state moves between instances and restarts
    def start_without_checkpoint(self, _consumer: object, partitions: list[Partition]) -> dict[Partition, int]:
        """No checkpoint: rebuild the partition's state from its first record."""
        return {partition: 0 for partition in partitions}

    def restore(self, partition: Partition, checkpoint: Optional[Checkpoint], copies: dict[int, tuple[str, int, int]]) -> None:
        self.partitions[partition] = PartitionStats.of(checkpoint)
        self.routed_before[partition] = dict(copies)

    def consistent(self, partition: Partition, tracker: OffsetTracker) -> bool:
        return tracker.pending(partition) == 0

    def snapshot(self, partition: Partition, next_offset: int, scan_from: dict[str, int]) -> Checkpoint:
        stats = self.partitions[partition]
        return Checkpoint(next_offset, scan_from, stats.processed, stats.total, stats.retried, stats.dead_lettered)

    def forget(self, partitions: set[Partition]) -> None:
        for partition in partitions:
            self.partitions.pop(partition, None)
            self.routed_before.pop(partition, None)

    # What it reports
    def owned_now(self) -> PartitionStats:
        """This instance's partitions, added up."""
        owned = PartitionStats()
        for stats in self.partitions.values():
            owned.add(stats)
        return owned

    def global_stats(self, known: dict[str, Checkpoint]) -> PartitionStats:
        """The whole group: owned partitions as they are now, the others as last checkpointed."""
        total = self.owned_now()
        for topic in (self.args.orders_topic, self.args.redrive_topic):
            for partition, checkpoint in partition_checkpoints(known, self.args.group_id, topic).items():
                if (topic, partition) not in self.partitions:
                    total.add(PartitionStats.of(checkpoint))
        return total

    def summary_line(self, elapsed: float) -> str:
        rate = (self.processed_here - self._window_processed) / elapsed
        self._window_processed = self.processed_here
        owned = self.owned_now()
        return (
            f"Processed {rate:.0f} orders/s | this instance's partitions: running average={fmt(owned.average)} "
            f"over {owned.processed} orders, retried={owned.retried} dead-lettered={owned.dead_lettered}"
        )

    def publish_metrics(self, consumer: Consumer, totals: PartitionStats) -> None:
        """Counts since the last tick, the group's average, and lag per owned partition."""
        self._processed_sync.publish(self.processed_here)
        for labels, count in self.routing_counts.items():
            delta = count - self._published[labels]
            if delta:
                if labels[0] == "retry":
                    metrics.ROUTED_TO_RETRY.labels(stage=labels[1], error_class=labels[2]).inc(delta)
                else:
                    metrics.DEAD_LETTERED.labels(reason=labels[1]).inc(delta)
                self._published[labels] = count
        metrics.RUNNING_COUNT.set(totals.processed)
        if totals.average is not None:
            metrics.RUNNING_AVERAGE.set(totals.average)
        publish_lag(consumer, list(self.partitions))


def observe_batch(msgs: list[Message], started: float) -> None:
    """Processing time per record (the batch's mean) and end-to-end latency of a sample."""
    if not msgs:
        return
    finished = time.monotonic()
    metrics.PROCESSING_SECONDS.observe((finished - started) / len(msgs))
    now = time.time()
    for msg in msgs[:: max(1, len(msgs) // metrics.SAMPLES_PER_BATCH)]:
        timestamp_type, timestamp = msg.timestamp()
        if timestamp_type and timestamp > 0:
            metrics.END_TO_END_SECONDS.observe(max(0.0, now - timestamp / 1000))


def publish_lag(consumer: Consumer, partitions: list[Partition]) -> None:
    """Lag from the high watermark of the last fetch (correct on every broker) and the position."""
    if not partitions:
        return
    try:
        positions = consumer.position([TopicPartition(topic, partition) for topic, partition in partitions])
    except KafkaException:
        return
    for tp in positions:
        if tp.offset < 0:
            continue
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high >= 0:
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - tp.offset))


def fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_summary(path: Optional[str], stats: PartitionStats) -> None:
    """The whole group's figures, replaced atomically."""
    if path:
        write_json_atomic(
            path,
            {"processed": stats.processed, "average": stats.average, "retried": stats.retried,
             "dead_lettered": stats.dead_lettered},
        )
