"""The running average of ``price``, kept per partition so that each partition's share moves with it.

Each partition's sum and count travel in its checkpoint (:meth:`PartitionStats.state`),
so a restart or a rebalance resumes the average exactly where the last
checkpoint left it. Pure: the consumer script stores and restores the state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Optional


@dataclass
class PartitionStats:
    """What one partition contributed: the running average's sum and count, and routing counts."""

    processed: int = 0
    total: float = 0.0
    retried: int = 0
    dead_lettered: int = 0

    @classmethod
    def of(cls, state: Optional[Mapping[str, Any]]) -> "PartitionStats":
        """From a checkpoint's state (none: a partition never checkpointed)."""
        if not state:
            return cls()
        return cls(int(state.get("processed", 0)), float(state.get("sum", 0.0)), int(state.get("retried", 0)),
                   int(state.get("dead_lettered", 0)))

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores of it."""
        return {"processed": self.processed, "sum": self.total, "retried": self.retried,
                "dead_lettered": self.dead_lettered}

    def count_routed(self, to_retry: bool) -> None:
        """A record copied to the retry topic, or else to the DLQ."""
        if to_retry:
            self.retried += 1
        else:
            self.dead_lettered += 1

    def add(self, other: "PartitionStats") -> None:
        self.processed += other.processed
        self.total += other.total
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered

    @property
    def average(self) -> Optional[float]:
        return self.total / self.processed if self.processed else None


@dataclass
class RunningAverage:
    """The partitions this instance owns, and what it did since it started (for rates and metrics)."""

    partitions: dict[Hashable, PartitionStats] = field(default_factory=dict)
    processed_here: int = 0
    routing_counts: Counter[tuple[str, ...]] = field(default_factory=Counter)  # ("retry", stage, class) / ("dlq", reason)

    def add(self, stats: PartitionStats, count: int, total: float) -> None:
        """``count`` orders of ``stats``'s partition, whose prices add up to ``total``, processed here."""
        stats.processed += count
        stats.total += total
        self.processed_here += count

    def owned(self) -> PartitionStats:
        """This instance's partitions, added up."""
        owned = PartitionStats()
        for stats in self.partitions.values():
            owned.add(stats)
        return owned


def fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"
