"""A consumer that resumes each partition exactly where its last checkpoint left off.

What it keeps per partition is the handler's (:class:`runtime.partition_role.PartitionRole`).
The cycle, every commit interval (``--commit-interval-ms``), on revoke and at shutdown, is Quix Streams': flush
the copies -> write the checkpoints -> commit the offsets. With exactly-once
they join the copies in one transaction (:mod:`runtime.transactions`); an
aborted one rewinds every partition to its last committed checkpoint.
Without, an offset is committed once its checkpoint is stored: the
checkpoints are the truth, the offsets follow so that lag tools see progress.
On assignment: load the checkpoints, find the copies made after them, and
start each partition at its checkpoint's offset (:mod:`runtime.take_over`).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Callable, Optional

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from runtime.checkpoints import Checkpoint, CheckpointStore, target_name
from runtime.clients import Clients, guarded
from runtime.copies import CopiedBefore, CopyLedger, ScanBases
from runtime.offsets import OffsetTracker, Partition
from runtime.partition_role import PartitionRole
from runtime.positions import assign, describe, fetch_positions, seek_and_resume
from runtime.provenance import Source
from runtime.routing import AckCallback, Copies
from runtime.shutdown import SHUTDOWN_BUDGET_S, Deadline
from runtime.take_over import plan_take_over
from runtime.transactions import Transactions

log = logging.getLogger(__name__)

# A checkpoint between batches waits this long for copies in flight, then checkpoints what is done.
CHECKPOINT_FLUSH_S = 2.0
FLUSH_TIMEOUT_S = 30.0


class CheckpointedConsumer:
    def __init__(self, clients: Clients, consumer: Consumer, producer: Producer, store: CheckpointStore,
                 target_topics: list[str], make_copies: Callable[[AckCallback], Copies],
                 transactions: Optional[Transactions] = None, fresh_from_committed: bool = False,
                 settled_only: bool = False, interval_s: float = 1.0) -> None:
        """``make_copies(on_acked)``: what makes the copies, told of each acknowledged one (:meth:`acked`).

        ``fresh_from_committed``: a partition without a checkpoint starts at the group's committed offset, not
        at its beginning. ``settled_only``: checkpoint a partition only while none of its copies waits for
        acknowledgement (for a role whose state counts a copy when it is asked for). ``interval_s``: how often
        :meth:`checkpoint_if_due` checkpoints and commits.
        """
        self.clients, self.consumer, self.producer, self.store = clients, consumer, producer, store
        self.target_topics, self.transactions = target_topics, transactions
        self.fresh_from_committed, self.settled_only, self.interval_s = fresh_from_committed, settled_only, interval_s
        self.copies = make_copies(self.acked)
        self.role: Optional[PartitionRole] = None
        self.tracker = OffsetTracker()
        self.ledger = CopyLedger()
        self.copied_before = CopiedBefore()
        self.bases = ScanBases(consumer)
        self._saved: dict[Partition, Checkpoint] = {}
        self._published: dict[Partition, Optional[dict]] = {}  # each owned partition's last written state
        self.written_at: Optional[float] = None  # epoch s: the handling that written_states() covers ended then
        self._last_checkpoint = time.monotonic()
        self._closing: Optional[Deadline] = None  # set by close(): when the shutdown must be over

    def use_producer(self, producer: Producer) -> None:
        """A renewed transactional producer (see :class:`Transactions`) replaces the fenced one."""
        self.producer = producer

    def acked(self, source: Source, copy: Source) -> None:
        """Delivery of a routed copy: its source is done, and the ledger learns where the copy lies."""
        topic, partition, offset = source
        self.ledger.copied((topic, partition), offset, (copy[0], copy[1]), copy[2])
        self.tracker.complete((topic, partition), offset)

    def subscribe(self, topics: list[str], role: PartitionRole) -> None:
        """Subscribe; ``role`` keeps the per-partition state."""
        self.role = role

        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if self._closing is not None:  # a rebalance ending while close() leaves the group: revoked unread
                assign(consumer, partitions)
                return
            starts = self.take_over([(tp.topic, tp.partition) for tp in partitions])
            assignment = [TopicPartition(topic, partition, offset) for (topic, partition), offset in starts.items()]
            assign(consumer, assignment)
            log.info("Assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in assignment) or "nothing")

        def on_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            revoked = {(tp.topic, tp.partition) for tp in partitions}
            # Leaving the group in close(), which has just checkpointed: another try with the same group
            # generation fails alike, or waits out a rebalance that waits for this member.
            if self._closing is None:
                self.checkpoint(revoked, final=True)
            self._drop(revoked)
            log.info("Revoked %s", describe(partitions))

        def on_lost(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            log.warning("Lost %s: the new owner resumes them from their checkpoints", describe(partitions))
            self._drop({(tp.topic, tp.partition) for tp in partitions})
            if self.transactions is not None:
                self.transactions.abort(f"this member lost {describe(partitions)}")
                self._after_abort()

        status = self.clients.status  # what a callback raises is raised by the loop's next status check
        self.consumer.subscribe(topics, on_assign=guarded(status, on_assign), on_revoke=guarded(status, on_revoke),
                                on_lost=guarded(status, on_lost))

    def take_over(self, partitions: list[Partition]) -> dict[Partition, int]:
        """Restore partitions from their checkpoints and the copies made since; return their start offsets."""
        assert self.role is not None, "subscribe() first"
        if not partitions:
            return {}
        started = time.monotonic()
        found = plan_take_over(self.clients, self.consumer, self.store, self.target_topics, partitions,
                               exactly_once=self.transactions is not None, fresh_from_committed=self.fresh_from_committed)
        for partition in partitions:
            copies, checkpoint = found.copies[partition], found.checkpoints[partition]
            for source_offset, (topic, target_partition, copy_offset) in copies.items():
                self.ledger.copied(partition, source_offset, (topic, target_partition), copy_offset)
            self.bases.of[partition] = dict(found.ends)
            self.tracker.start(partition, found.starts[partition])
            self.role.restore(partition, checkpoint.state if checkpoint else None)
            self._saved.pop(partition, None)
            self._published[partition] = checkpoint.state if checkpoint else None
            if copies:
                self.copied_before.add(partition, copies)
                log.info("%s[%d]: %d record(s) after the checkpoint were already copied; they will not be copied again",
                         *partition, len(copies))
        log.info("Took over %d partition(s) in %.2f s (checkpoints loaded, copies since them scanned)", len(partitions),
                 time.monotonic() - started)
        return found.starts

    def not_copied_before(self, records: list[Message]) -> list[Message]:
        """``records`` less those whose copy a previous owner made after its checkpoint: they are done."""
        kept, done = self.copied_before.split(records)
        for partition, offset, copy in done:
            self.tracker.track(partition, offset)
            self.tracker.complete(partition, offset)
            self.role.already_copied(partition, copy)  # type: ignore[union-attr]
        return kept

    def checkpoint(self, partitions: Optional[set[Partition]] = None, final: bool = False) -> None:
        """Flush -> write checkpoints that changed -> commit offsets once each checkpoint is acknowledged.

        With transactions, the checkpoints of every owned partition and their
        offsets commit in one transaction with the copies. Without, the first
        flush runs only while routed copies are in flight, and between
        checkpoints the loop does not wait for the checkpoints' own
        acknowledgements: each commits its offset from its delivery report.
        On revoke and at shutdown (``final``) it waits and commits synchronously.
        """
        self._last_checkpoint = time.monotonic()
        if self.role is None:
            return
        if self.transactions is not None:
            if self.transactions.begun:  # else stopped while initialising: nothing was handled
                self._commit_transaction(final)
            return
        if len(self.copies) or final:
            self.copies.flush(self._final_wait_s() if final else CHECKPOINT_FLUSH_S)
        self.bases.raise_if_due(len(self.copies))
        commits: list[TopicPartition] = []
        taken_at = time.time()
        for partition, checkpoint in self._changed_checkpoints(partitions, between_batches=not final):
            commit = TopicPartition(partition[0], partition[1], checkpoint.next_offset)
            self.store.save(self.producer, partition[0], partition[1], checkpoint,
                            on_delivery=None if final else guarded(self.clients.status, partial(self._checkpoint_stored, commit)))
            self._saved[partition] = checkpoint
            self._published[partition] = checkpoint.state
            commits.append(commit)
        if partitions is None:  # every owned partition's state stands as of taken_at (with settled_only: but one
            # whose copies still wait after the flush above, which keeps its older checkpoint)
            self.written_at = taken_at
        if not commits:
            return
        if not final:
            self.producer.poll(0)
            return
        if self.producer.flush(self._final_wait_s()):
            log.warning("Checkpoints not acknowledged; the next owner resumes from the previous ones")
            return
        self._commit(commits, asynchronous=False)

    def _commit_transaction(self, final: bool) -> None:
        """Copies acknowledged -> checkpoints and offsets into the transaction -> commit, or rewind if it aborted."""
        assert self.transactions is not None
        if not self.transactions.flush():
            self._after_abort()
            return
        self.bases.raise_if_due(len(self.copies))
        taken_at = time.time()
        changed = self._changed_checkpoints(None, between_batches=not final)

        def write_checkpoints(producer: Producer) -> None:
            for (topic, partition), checkpoint in changed:
                self.store.save(producer, topic, partition, checkpoint)

        offsets = [TopicPartition(topic, partition, checkpoint.next_offset) for (topic, partition), checkpoint in changed]
        if not self.transactions.commit(write_checkpoints, offsets):
            self._after_abort()
            return
        for partition, checkpoint in changed:
            self._saved[partition] = checkpoint
            self._published[partition] = checkpoint.state
        self.written_at = taken_at

    def _final_wait_s(self) -> float:
        return FLUSH_TIMEOUT_S if self._closing is None else self._closing.left(FLUSH_TIMEOUT_S)

    def _after_abort(self) -> None:
        if self._closing is not None:  # no rewind: the next owner resumes from the last committed checkpoints
            log.warning("The final transaction aborted; the next owner resumes from the last committed checkpoints")
        else:
            self._rewind()  # every owned partition: the aborted transaction held the progress of them all

    def _changed_checkpoints(self, partitions: Optional[set[Partition]],
                             between_batches: bool) -> list[tuple[Partition, Checkpoint]]:
        """The checkpoint of each owned partition (of ``partitions``, if given) that differs from the last one written.

        ``between_batches``: every record the consumer handed out is handled (not so in a rebalance callback).
        """
        assert self.role is not None
        changed = []
        fetched_to = fetch_positions(self.consumer, self.owned()) if between_batches else {}
        for partition in self.bases.of:
            if partitions is not None and partition not in partitions:
                continue
            position = self.tracker.position(partition)
            if position is None or (self.settled_only and self.tracker.pending(partition)):
                continue
            if self.tracker.pending(partition) == 0:
                # Past the transaction markers after the last record (offsets no record has), so lag reads 0.
                position = max(position, fetched_to.get(partition, position))
            scan_from = self.ledger.scan_from(partition, position, self.bases.of[partition])
            checkpoint = Checkpoint(position, {target_name(*t): o for t, o in scan_from.items()}, self.role.snapshot(partition))
            if checkpoint != self._saved.get(partition):
                changed.append((partition, checkpoint))
        return changed

    def _rewind(self) -> None:
        """After an aborted transaction: every owned partition back to its last committed checkpoint."""
        owned = self.owned()
        self._drop(set(owned))
        starts = self.take_over(owned)
        seek_and_resume(self.consumer, starts)
        if owned:
            log.info("Rewound %s to their committed checkpoints",
                     ", ".join(f"{t}[{p}]@{o}" for (t, p), o in starts.items()))

    def _checkpoint_stored(self, commit: TopicPartition, err: Optional[KafkaError], _msg: Message) -> None:
        """Delivery report of a checkpoint: commit its offset, or write it again next time."""
        if err is not None:
            log.warning("Checkpoint of %s[%d] not stored (%s); writing it again", commit.topic, commit.partition, err.str())
            self._saved.pop((commit.topic, commit.partition), None)
            return
        if (commit.topic, commit.partition) in self.bases.of:
            self._commit([commit], asynchronous=True)

    def _commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        try:
            self.consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:  # the checkpoint is the truth; the next commit catches up
            log.warning("Offset commit failed (%s); the checkpoint stands", exc)

    def checkpoint_if_due(self) -> None:
        if time.monotonic() - self._last_checkpoint >= self.interval_s:
            self.checkpoint()

    def written_states(self) -> dict[Partition, Optional[dict]]:
        """The state in each owned partition's last checkpoint written (with transactions: committed), or the one
        it resumed from; an aborted transaction's rewind leaves them as they were. ``written_at`` says when the
        handling they cover ended."""
        return dict(self._published)

    def owned(self) -> list[Partition]:
        return list(self.bases.of)

    def close(self) -> None:
        """Flush, checkpoint and commit what is done, then leave the group: in that order, within the budget."""
        self._closing = Deadline(SHUTDOWN_BUDGET_S)
        if self.transactions is not None:
            self.transactions.finish_by(self._closing)
        try:
            self.checkpoint(final=True)
        finally:
            self.consumer.close()
            if self.transactions is not None:
                self.transactions.close()

    def _drop(self, partitions: set[Partition]) -> None:
        self.tracker.forget(partitions)
        self.ledger.forget(partitions)
        if self.role is not None:
            self.role.forget(partitions)
        for partition in partitions:
            self.bases.of.pop(partition, None)
            self._saved.pop(partition, None)
            self._published.pop(partition, None)
        self.copied_before.forget(partitions)
