"""A consumer whose offsets follow an OffsetTracker: committed on a timer, on revoke and at shutdown.

Shared by the main and retry consumers. On revoke the producer is flushed
first, so every routed copy is acknowledged and its source offset can be
committed before the partition moves to another member.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.offsets import OffsetTracker, Partition

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0
FLUSH_TIMEOUT_S = 30.0


def describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "no partitions"


class TrackedConsumer:
    def __init__(self, consumer: Consumer, producer: Producer, tracker: OffsetTracker) -> None:
        self.consumer = consumer
        self.producer = producer
        self.tracker = tracker
        self._last_commit = time.monotonic()

    def subscribe(self, topics: list[str], on_forget: Callable[[set[Partition]], None] = lambda _p: None) -> None:
        """Subscribe; revoked or lost partitions are dropped from the tracker and from ``on_forget``."""

        def on_assign(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            log.info("Assigned %s", describe(partitions))

        def on_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            revoked = {(tp.topic, tp.partition) for tp in partitions}
            self.producer.flush(FLUSH_TIMEOUT_S)
            self.commit(revoked, asynchronous=False)
            self.tracker.forget(revoked)
            on_forget(revoked)
            log.info("Revoked %s", describe(partitions))

        def on_lost(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            lost = {(tp.topic, tp.partition) for tp in partitions}
            self.tracker.forget(lost)
            on_forget(lost)
            log.warning("Lost %s: the new owner reads their uncommitted records again", describe(partitions))

        self.consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)

    def commit(self, partitions: Optional[set[Partition]] = None, asynchronous: bool = True) -> None:
        """Commit the positions of done records that advanced since the last commit."""
        positions = self.tracker.to_commit(partitions)
        self._last_commit = time.monotonic()
        if not positions:
            return
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=asynchronous)
            self.tracker.mark_committed(positions)
        except Exception as exc:  # KafkaException; the next commit carries the same positions
            log.warning("Offset commit failed (%s); will retry", exc)

    def commit_if_due(self) -> None:
        if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
            self.commit()

    def close(self) -> None:
        """Flush the producer, commit what is done, leave the group: in that order."""
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            log.error("%d routed copies not acknowledged; their records will be read again", remaining)
        self.commit(asynchronous=False)
        self.consumer.close()
