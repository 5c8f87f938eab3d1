"""Taking over partitions: where each starts, from which checkpoint, and what a previous owner copied since.

A partition starts at its checkpoint's offset; without one, at its
beginning or the group's committed offset. The copies made after the
checkpoints are found by scanning the copy targets from the offsets the
checkpoints name (:mod:`runtime.copies`); the scan's ends become the next
checkpoints' scan bases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from confluent_kafka import Consumer, TopicPartition

from runtime.checkpoints import Checkpoint, CheckpointStore, checkpoint_key, target_name
from runtime.clients import Clients, patiently
from runtime.copies import Copies, find_copies, listed_ends
from runtime.offsets import Partition
from runtime.reading import partitions_of


@dataclass(frozen=True)
class TakeOver:
    starts: dict[Partition, int]  # the first offset to read
    checkpoints: dict[Partition, Optional[Checkpoint]]  # None: never checkpointed
    copies: Copies  # per partition: offset after its checkpoint -> where its copy lies
    ends: dict[Partition, int]  # where each copy target ended when scanned


def plan_take_over(clients: Clients, consumer: Consumer, store: CheckpointStore, target_topics: list[str],
                   partitions: list[Partition], exactly_once: bool, fresh_from_committed: bool) -> TakeOver:
    """Load the partitions' checkpoints and scan the copy targets for copies made since them.

    With exactly-once the checkpoints must show the group's committed offsets (KIP-447: see
    :meth:`CheckpointStore.load_showing`). ``fresh_from_committed``: a partition without a checkpoint starts
    at the group's committed offset, not at its beginning.
    """
    committed = committed_offsets(clients, consumer, partitions) if exactly_once else None
    known = store.load_showing(committed) if committed is not None else store.load()
    checkpoints = {p: known.get(checkpoint_key(store.group, *p)) for p in partitions}
    fresh = [p for p, checkpoint in checkpoints.items() if checkpoint is None]
    if fresh and fresh_from_committed and committed is None:
        committed = committed_offsets(clients, consumer, fresh)
    starts = {}
    for partition, checkpoint in checkpoints.items():
        if checkpoint is not None:
            starts[partition] = checkpoint.next_offset
        elif fresh_from_committed:
            starts[partition] = max((committed or {}).get(partition, -1), 0)
        else:
            starts[partition] = 0
    scan_from = {target: min((c.scan_from.get(target_name(*target), 0) if c else 0) for c in checkpoints.values())
                 for target in partitions_of(clients, target_topics)}
    # A checkpoint's scan_from may lie past records of a transaction still open (this member's own, even): a
    # read_committed scan from there would wait for it to end. The copies sought are committed, so below the
    # last stable offset, which a read_committed consumer lists as a partition's end.
    stable = listed_ends(consumer, list(scan_from))
    scan_from = {target: min(offset, stable.get(target, offset)) for target, offset in scan_from.items()}
    copies, ends = find_copies(clients, scan_from, starts)
    return TakeOver(starts, checkpoints, copies, ends)


def committed_offsets(clients: Clients, consumer: Consumer, partitions: list[Partition]) -> dict[Partition, int]:
    """The group's committed offsets (negative where none). Under read_committed, librdkafka fetches them once
    every transaction that committed some has ended (KIP-447)."""
    committed = patiently(lambda: consumer.committed([TopicPartition(*p) for p in partitions], timeout=30),
                          clients.status, "fetch the group's committed offsets") or []
    return {(tp.topic, tp.partition): tp.offset for tp in committed}
