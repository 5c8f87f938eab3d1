"""What the checkpointed consumer (:mod:`runtime.checkpointed`) asks of the script's handler, per partition."""

from __future__ import annotations

from typing import Any, Optional, Protocol

from runtime.offsets import Partition
from runtime.provenance import Source


class PartitionRole(Protocol):
    """What a consumer keeps per partition, and how it turns into a checkpoint's state and back."""

    def restore(self, partition: Partition, state: Optional[dict[str, Any]]) -> None:
        """Take over a partition with its checkpointed state (None: never checkpointed)."""

    def already_copied(self, partition: Partition, copy: Source) -> None:
        """A record after the checkpoint whose copy the previous owner made (found by the copy scan):
        it is done, and the handler never sees it; count it as that copy says."""

    def snapshot(self, partition: Partition) -> dict[str, Any]:
        """The partition's state, for a checkpoint at the tracker's position."""

    def forget(self, partitions: set[Partition]) -> None:
        """Drop the state of partitions this instance no longer owns."""
