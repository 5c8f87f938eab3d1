"""Where the group's consumer reads: its assignment, its fetch positions, and seeks back to checkpoints."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from runtime.offsets import Partition

log = logging.getLogger(__name__)


def describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "no partitions"


def assign(consumer: Consumer, assignment: list[TopicPartition]) -> None:
    try:
        consumer.incremental_assign(assignment)  # cooperative-sticky, our default
    except KafkaException:
        consumer.assign(assignment)  # an eager strategy from the user's properties file


def fetch_positions(consumer: Consumer, partitions: list[Partition]) -> dict[Partition, int]:
    """The consumer's position in each of ``partitions``: after the last record handed out and any markers behind it."""
    try:
        positions = consumer.position([TopicPartition(topic, partition) for topic, partition in partitions])
    except KafkaException:
        return {}
    return {(tp.topic, tp.partition): tp.offset for tp in positions if tp.offset >= 0}


def seek_and_resume(consumer: Consumer, starts: dict[Partition, int]) -> None:
    """Read each partition again from its start offset (after an aborted transaction), paused or not."""
    for (topic, partition), offset in starts.items():
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:
                raise
            # Assigned so lately that fetching has not begun: it starts at the offset it was assigned, the same
            # committed checkpoint (the transaction that aborted committed nothing).
            log.debug("%s[%d] not fetching yet; it starts at its assigned offset", topic, partition)
    if starts:
        consumer.resume([TopicPartition(topic, partition) for topic, partition in starts])
