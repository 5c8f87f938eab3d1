"""What the checkpointed consumer (:mod:`runtime.checkpointed`) asks of the script's handler, per partition."""

from __future__ import annotations

from typing import Any, Optional, Protocol

from confluent_kafka import Consumer

from runtime.offsets import OffsetTracker, Partition

Copied = dict[int, tuple[str, int, int]]  # source offset -> (topic, partition, offset) of its copy


class PartitionRole(Protocol):
    """What a consumer keeps per partition, and how it turns into a checkpoint's state and back."""

    def start_without_checkpoint(self, consumer: Consumer, partitions: list[Partition]) -> dict[Partition, int]:
        """Where to start partitions that have no checkpoint yet."""

    def restore(self, partition: Partition, state: Optional[dict[str, Any]], copied: Copied) -> None:
        """Take over a partition: its checkpointed state (None: never checkpointed) and the copies made after it."""

    def consistent(self, partition: Partition, tracker: OffsetTracker) -> bool:
        """True if a checkpoint written now matches the tracker's position."""

    def snapshot(self, partition: Partition) -> dict[str, Any]:
        """The partition's state, for a checkpoint at the tracker's position."""

    def forget(self, partitions: set[Partition]) -> None:
        """Drop the state of partitions this instance no longer owns."""
