"""Which offsets may be committed: only contiguously, and only once each record is done.

A record is done when it was processed, or when its copy in the retry topic or
the DLQ was acknowledged by the broker. Offsets are committed up to the first
record that is not done yet, so a crash at any moment loses nothing.

Only the open records (routed, waiting for their acknowledgement) are kept, in
consumption order: a processed record is done the moment it is seen, so it
only moves the end of what was consumed. At 10 % failures that keeps nine
records in ten out of every queue and set.
"""

from __future__ import annotations

from collections import deque

Partition = tuple[str, int]


class OffsetTracker:
    def __init__(self) -> None:
        self._open: dict[Partition, deque[int]] = {}
        self._done_early: dict[Partition, set[int]] = {}
        self._consumed_to: dict[Partition, int] = {}

    def track(self, partition: Partition, offset: int) -> None:
        """Register a consumed record that is not done yet, in consumption order."""
        open_offsets = self._open.get(partition)
        if open_offsets is None:
            open_offsets = self._open[partition] = deque()
        open_offsets.append(offset)
        if offset >= self._consumed_to.get(partition, 0):
            self._consumed_to[partition] = offset + 1

    def consumed(self, partition: Partition, offset: int) -> None:
        """Records up to ``offset`` were consumed; those not tracked as open are done (processed)."""
        if offset >= self._consumed_to.get(partition, 0):
            self._consumed_to[partition] = offset + 1

    def complete(self, partition: Partition, offset: int) -> None:
        """Mark an open record done; the commit position moves once no older record is open."""
        open_offsets = self._open.get(partition)
        if not open_offsets:
            return  # the partition was revoked meanwhile
        if offset != open_offsets[0]:
            self._done_early.setdefault(partition, set()).add(offset)
            return
        open_offsets.popleft()
        done_early = self._done_early.get(partition)
        while done_early and open_offsets and open_offsets[0] in done_early:
            done_early.discard(open_offsets.popleft())

    def pending(self, partition: Partition | None = None) -> int:
        """Routed records that hold the commit position back, done or not (in one partition, or in all)."""
        if partition is not None:
            return len(self._open.get(partition, ()))
        return sum(len(offsets) for offsets in self._open.values())

    def start(self, partition: Partition, offset: int) -> None:
        """Begin tracking a newly assigned partition at ``offset``."""
        self.forget({partition})
        self._consumed_to[partition] = offset

    def position(self, partition: Partition) -> int | None:
        """The next offset to commit: every record before it is done."""
        open_offsets = self._open.get(partition)
        if open_offsets:
            return open_offsets[0]
        return self._consumed_to.get(partition)

    def forget(self, partitions: set[Partition]) -> None:
        """Drop all state of revoked partitions."""
        for partition in partitions:
            for table in (self._open, self._done_early, self._consumed_to):
                table.pop(partition, None)
