"""Never copy a record twice: find the copies a crashed owner made, and tell the next owner where to look.

Each routed copy names its source (:mod:`runtime.provenance`). A checkpoint
says which source offsets are applied and, per target partition, an offset
from which every later copy lies. On assignment the new owner reads the
targets from there to their end and skips the source offsets already copied.
This holds on any broker: it needs neither transactions nor commit metadata.
"""

from __future__ import annotations

import time
from typing import Iterable, Optional

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from runtime.clients import Clients
from runtime.offsets import Partition
from runtime.provenance import source_of
from runtime.reading import read_to_end


Copies = dict[Partition, dict[int, tuple[str, int, int]]]
RAISE_BASES_INTERVAL_S = 30.0


def find_copies(
    clients: Clients, scan_from: dict[Partition, int], sources: dict[Partition, int]
) -> tuple[Copies, dict[Partition, int]]:
    """Copies in the targets of source offsets at or beyond ``sources[partition]``, and where each target ends.

    Returns, per source partition, source offset -> (target topic, partition, offset) of its copy.
    """
    found: Copies = {partition: {} for partition in sources}
    ends: dict[Partition, int] = {}
    for msg in read_to_end(clients, scan_from, on_end=ends.__setitem__):
        source = source_of(msg.headers())
        if source is None:
            continue
        topic, partition, offset = source
        first_unapplied = sources.get((topic, partition))
        if first_unapplied is not None and offset >= first_unapplied:
            found[(topic, partition)][offset] = (msg.topic(), msg.partition(), msg.offset())
    return found, ends


def listed_ends(consumer: Consumer, targets: list[Partition]) -> dict[Partition, int]:
    """Each target's end as the broker lists it now; a target it cannot list is left out.

    Tansu 0.6 lists ends too low at times: a base that moves less, never one past a copy.
    """
    ends = {}
    for topic, partition in targets:
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5, cached=False)
        except KafkaException:
            continue
        if high >= 0:
            ends[(topic, partition)] = high
    return ends


class CopiedBefore:
    """Records after a checkpoint whose copy a previous owner made (found by :func:`find_copies`): done already."""

    def __init__(self) -> None:
        self._ahead: dict[Partition, dict[int, tuple[str, int, int]]] = {}

    def add(self, partition: Partition, copies: dict[int, tuple[str, int, int]]) -> None:
        self._ahead[partition] = dict(copies)

    def split(self, records: list[Message]) -> tuple[list[Message], list[tuple[Partition, int, tuple[str, int, int]]]]:
        """The records to handle, and (partition, offset, its copy) of those copied before."""
        if not self._ahead:
            return records, []  # the common case: nothing found by the last take-over is still ahead
        kept, done = [], []
        for msg in records:
            partition = (msg.topic(), msg.partition())
            ahead = self._ahead.get(partition)
            copy = ahead.pop(msg.offset(), None) if ahead else None
            if copy is None:
                kept.append(msg)
                continue
            if not ahead:
                del self._ahead[partition]
            done.append((partition, msg.offset(), copy))
        return kept, done

    def forget(self, partitions: Iterable[Partition]) -> None:
        for partition in partitions:
            self._ahead.pop(partition, None)


class CopyLedger:
    """Where this instance's copies went, so a checkpoint can say where later copies start."""

    def __init__(self) -> None:
        self._last_copy: dict[Partition, int] = {}
        self._beyond: dict[Partition, dict[int, tuple[Partition, int]]] = {}

    def copied(self, source: Partition, source_offset: int, target: Partition, copy_offset: Optional[int]) -> None:
        """Record an acknowledged copy (or one found by a scan).

        A delivery report may not know the copy's offset; the copy then lies
        after the last one known in that partition (acknowledgements come in
        order), which is bound enough.
        """
        if copy_offset is None or copy_offset < 0:
            copy_offset = self._last_copy.get(target, -1) + 1
        self._last_copy[target] = max(self._last_copy.get(target, -1), copy_offset)
        self._beyond.setdefault(source, {})[source_offset] = (target, copy_offset)

    def scan_from(self, source: Partition, position: int, base: dict[Partition, int]) -> dict[Partition, int]:
        """Per target: an offset at or before every copy of a source offset >= ``position``, made or to come.

        Copies of sources still beyond ``position`` bound it from below; else
        any later copy lies after the last one this instance made, and after
        ``base`` (the previous owner's bound).
        """
        beyond = self._beyond.get(source, {})
        for offset in [o for o in beyond if o < position]:
            del beyond[offset]
        result = dict(base)
        for target, last in self._last_copy.items():
            result[target] = max(result.get(target, 0), last + 1)
        for target, copy_offset in beyond.values():
            result[target] = min(result[target], copy_offset)
        return result

    def forget(self, sources: Iterable[Partition]) -> None:
        for source in sources:
            self._beyond.pop(source, None)


class ScanBases:
    """Per owned source partition, per target partition: an offset after which every later copy lies.

    A checkpoint's ``scan_from`` starts there (:meth:`CopyLedger.scan_from`);
    raising the bases as the targets grow keeps a take-over's scan short
    where the ledger knows no copy of the partition.
    """

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.of: dict[Partition, dict[Partition, int]] = {}  # owned source partition -> its bases
        self._raised = time.monotonic()

    def raise_if_due(self, copies_in_flight: int) -> None:
        """Every ~30 s, with no copy in flight: later copies lie beyond the targets' current ends.

        A copy in flight might land below them; one acknowledged is in the ledger if its source is not yet applied.
        """
        if time.monotonic() - self._raised < RAISE_BASES_INTERVAL_S or copies_in_flight:
            return
        self._raised = time.monotonic()
        self._raise(listed_ends(self.consumer, self._targets()))

    def _targets(self) -> list[Partition]:
        return list({target for base in self.of.values() for target in base})

    def _raise(self, ends: dict[Partition, int]) -> None:
        for base in self.of.values():
            for target, end in ends.items():
                base[target] = max(base.get(target, 0), end)
