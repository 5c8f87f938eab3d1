"""Which offsets may be committed: only contiguously, and only once each record is done.

A record is done when it was processed, or when its copy in the retry topic or
the DLQ was acknowledged by the broker. Offsets are committed up to the first
record that is not done yet, so a crash at any moment loses nothing.
"""

from __future__ import annotations

from collections import deque

Partition = tuple[str, int]


class OffsetTracker:
    def __init__(self) -> None:
        self._in_flight: dict[Partition, deque[int]] = {}
        self._done: dict[Partition, set[int]] = {}
        self._next: dict[Partition, int] = {}

    def track(self, partition: Partition, offset: int) -> None:
        """Register a consumed record, in consumption order."""
        self._in_flight.setdefault(partition, deque()).append(offset)

    def done_at_once(self, partition: Partition, offset: int) -> None:
        """A record consumed and done in one step (processed): the hot path.

        With nothing open before it, it only moves the position; otherwise it
        waits in line behind the open records like any other.
        """
        in_flight = self._in_flight.get(partition)
        if in_flight:
            in_flight.append(offset)
            self.complete(partition, offset)
        else:
            self._next[partition] = offset + 1

    def complete(self, partition: Partition, offset: int) -> None:
        """Mark a record done; advances the commit position if it was the oldest open one."""
        in_flight = self._in_flight.get(partition)
        if not in_flight:
            return  # the partition was revoked meanwhile
        done = self._done.setdefault(partition, set())
        done.add(offset)
        while in_flight and in_flight[0] in done:
            finished = in_flight.popleft()
            done.discard(finished)
            self._next[partition] = finished + 1

    def pending(self, partition: Partition | None = None) -> int:
        """Records consumed but not done yet (in one partition, or in all)."""
        if partition is not None:
            return len(self._in_flight.get(partition, ()))
        return sum(len(offsets) for offsets in self._in_flight.values())

    def start(self, partition: Partition, offset: int) -> None:
        """Begin tracking a newly assigned partition at ``offset``."""
        self.forget({partition})
        self._next[partition] = offset

    def position(self, partition: Partition) -> int | None:
        """The next offset to commit: every record before it is done."""
        return self._next.get(partition)

    def forget(self, partitions: set[Partition]) -> None:
        """Drop all state of revoked partitions."""
        for partition in partitions:
            for table in (self._in_flight, self._done, self._next):
                table.pop(partition, None)
