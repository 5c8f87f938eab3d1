"""What the checkpointed consumer (:mod:`runtime.checkpointed`) asks of the script's handler, per partition."""

from __future__ import annotations

from typing import Any, Callable, Generic, MutableMapping, Optional, Protocol, TypeVar

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


class Checkpointable(Protocol):
    def state(self) -> dict[str, Any]:
        """What a checkpoint stores of it."""


State = TypeVar("State", bound=Checkpointable)


class StatePerPartition(Generic[State]):
    """The usual :class:`PartitionRole`: one state object per owned partition, stored by its ``state()``.

    ``load`` makes one from a checkpoint's state (None: never checkpointed); ``count_copy(state, topic)``
    counts a record the previous owner already copied to ``topic``.
    """

    def __init__(self, states: MutableMapping[Partition, State], load: Callable[[Optional[dict[str, Any]]], State],
                 count_copy: Callable[[State, str], None]) -> None:
        self.states, self._load, self._count_copy = states, load, count_copy

    def restore(self, partition: Partition, state: Optional[dict[str, Any]]) -> None:
        self.states[partition] = self._load(state)

    def already_copied(self, partition: Partition, copy: Source) -> None:
        self._count_copy(self.states[partition], copy[0])

    def snapshot(self, partition: Partition) -> dict[str, Any]:
        return self.states[partition].state()

    def forget(self, partitions: set[Partition]) -> None:
        for partition in partitions:
            self.states.pop(partition, None)
