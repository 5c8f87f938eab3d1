"""When a retry is due, what a record out of retries carries to the DLQ, and the records waiting. Pure: no Kafka here.

Records wait in memory, earliest due first, so a record due in 1 s is never
stuck behind one due in 4 s in the same partition (head-of-line blocking
would make retries late). Memory is bounded: the poll loop pauses a partition
whose waiting records reach the limit and resumes it once half have fired.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any, Generic, Hashable, Iterable, Mapping, Optional, Sequence, TypeVar

from domain.backoff import BackoffPolicy
from domain.headers import (
    ERROR, ERROR_CLASS, ERROR_MESSAGE, ERROR_STAGE, LAST_FAILURE, REASON_EXHAUSTED, RETRY_DUE, Failure, HeaderValue,
    header_int, header_text,
)

Item = TypeVar("Item")
Partition = Hashable  # whatever the caller keys its partitions by


@dataclass
class ForwardedCounts:
    """What the retry consumer forwarded from one partition: re-driven, and dead-lettered out of retries."""

    redriven: int = 0
    dead_lettered: int = 0

    @classmethod
    def of(cls, state: Optional[Mapping[str, Any]]) -> "ForwardedCounts":
        """From a checkpoint's state (none: a partition never checkpointed)."""
        return cls(int((state or {}).get("redriven", 0)), int((state or {}).get("dead_lettered", 0)))

    def state(self) -> dict[str, int]:
        """What a checkpoint stores of it."""
        return {"redriven": self.redriven, "dead_lettered": self.dead_lettered}

    def count(self, to_dlq: bool) -> None:
        if to_dlq:
            self.dead_lettered += 1
        else:
            self.redriven += 1


def due_time_ms(
    headers: Optional[Sequence[tuple[str, HeaderValue]]],
    record_timestamp_ms: Optional[int],
    now_ms: int,
    retry_count: int,
    policy: BackoffPolicy,
) -> int:
    """The stamped due time, else the last failure (or record time) plus the backoff.

    Never before the record's own timestamp plus the plain backoff: a stamp
    made on a host whose clock runs behind would fire early (the retry topic
    is created with ``message.timestamp.type=LogAppendTime``, so on Apache
    Kafka that timestamp is the broker's clock). Never further ahead than the
    longest backoff from now: a foreign header cannot park a record for a year.
    """
    longest_ms = int(policy.cap_s * (1 + policy.jitter) * 1000) + 1
    due = header_int(headers, RETRY_DUE)
    if due is None:
        failed_at = header_int(headers, LAST_FAILURE) or record_timestamp_ms or now_ms
        due = failed_at + int(policy.delay_s(retry_count) * 1000) + 1
    if record_timestamp_ms is not None:
        due = max(due, record_timestamp_ms + int(policy.plain_delay_s(retry_count) * 1000))
    return min(due, now_ms + longest_ms)


def exhausted_failure(headers: Optional[Sequence[tuple[str, HeaderValue]]], retry_count: int) -> Failure:
    """The DLQ reason for a record out of retries, carrying its last error."""
    last_error = header_text(headers, ERROR_MESSAGE) or header_text(headers, ERROR) or "unknown error"
    return Failure(
        stage=header_text(headers, ERROR_STAGE) or "process",
        error_class=header_text(headers, ERROR_CLASS) or "RetriesExhausted",
        error_message=last_error,
        reason=f"{REASON_EXHAUSTED} after {retry_count} failed attempts; last error: {last_error}",
    )


class RetrySchedule(Generic[Item]):
    """Items waiting for their due time, with a count per partition."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Partition, Item]] = []
        self._order = itertools.count()
        self._waiting: dict[Partition, int] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due_ms: int, partition: Partition, item: Item) -> None:
        heapq.heappush(self._heap, (due_ms, next(self._order), partition, item))
        self._waiting[partition] = self._waiting.get(partition, 0) + 1

    def next_due_ms(self) -> Optional[int]:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int) -> list[tuple[int, Item]]:
        """Remove and return (due, item) for every item due at ``now_ms``, earliest first."""
        due: list[tuple[int, Item]] = []
        while self._heap and self._heap[0][0] <= now_ms:
            due_ms, _, partition, item = heapq.heappop(self._heap)
            self._waiting[partition] -= 1
            due.append((due_ms, item))
        return due

    def waiting(self, partition: Partition) -> int:
        return self._waiting.get(partition, 0)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Drop the items of revoked partitions; their new owner reads them again."""
        gone = set(partitions)
        self._heap = [entry for entry in self._heap if entry[2] not in gone]
        heapq.heapify(self._heap)
        for partition in gone:
            self._waiting.pop(partition, None)
