"""What :class:`pipeline.checkpointed.CheckpointedConsumer` asks of the script that uses it."""

from __future__ import annotations

from typing import Optional, Protocol

from confluent_kafka import Consumer

from pipeline.checkpoints import Checkpoint
from pipeline.offsets import OffsetTracker, Partition


class Copier(Protocol):
    """Whatever produces the routed copies: the producer itself, or a RoutingWorker."""

    def __len__(self) -> int:
        """Copies not yet acknowledged."""

    def flush(self, timeout: float) -> int:
        """Wait until every copy is acknowledged; return how many are not."""

    def poll(self, timeout: float) -> int:
        """Serve acknowledgements, waiting up to ``timeout`` for the first."""


class PartitionRole(Protocol):
    """What a consumer keeps per partition, and how it turns into a checkpoint and back."""

    def start_without_checkpoint(self, consumer: Consumer, partitions: list[Partition]) -> dict[Partition, int]:
        """Where to start partitions that have no checkpoint yet."""

    def restore(self, partition: Partition, checkpoint: Optional[Checkpoint], copies: dict[int, tuple[str, int, int]]) -> None:
        """Take over a partition: its checkpointed state and the copies made after the checkpoint."""

    def consistent(self, partition: Partition, tracker: OffsetTracker) -> bool:
        """True if a checkpoint written now matches the tracker's position."""

    def snapshot(self, partition: Partition, next_offset: int, scan_from: dict[str, int]) -> Checkpoint:
        """The partition's checkpoint at ``next_offset``."""

    def forget(self, partitions: set[Partition]) -> None:
        """Drop the state of partitions this instance no longer owns."""
