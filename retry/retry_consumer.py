"""Own ``orders_retry``: wait until each record is due, then re-drive it to ``orders_redrive``.

Run: ``python -m retry.retry_consumer [--max-retries N]``.

Re-driven records go to the re-drive topic, which only this pipeline's main
consumer group reads, never back to ``orders``: other readers of ``orders``
see each order once. A record whose ``retryCount`` exceeds MAX_RETRIES goes
to the DLQ with reason "retries exhausted" and its last error. Waiting never
blocks the poll loop: records wait in memory, earliest due first, the loop keeps polling (so the
member stays in the group) with a timeout that ends at the next due time, and
a partition is paused only while it has too many records waiting.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Optional

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from formats import add_format_arg
from pipeline import metrics
from pipeline.backoff import BackoffPolicy
from pipeline.cli import run
from pipeline.config import add_backoff_args, add_connection_args, add_stats_topic_arg, env, positive_int
from pipeline.gc_tuning import tune_for_streaming
from pipeline.headers import (
    ERROR, ERROR_CLASS, ERROR_MESSAGE, ERROR_STAGE, REASON_EXHAUSTED, Failure, get_retry_count, header_text,
)
from pipeline.logs import EventLog, setup_logging
from pipeline.offsets import OffsetTracker
from pipeline.reading import next_batch
from pipeline.routing import ROUTED_MESSAGE_MAX_BYTES, Router, key_text, now_ms
from pipeline.shutdown import StopFlag
from pipeline.transactions import add_guarantee_args
from pipeline.wiring import wire
from pipeline.checkpoints import Checkpoint
from retry.schedule import RetrySchedule, due_time_ms

log = logging.getLogger("retry-consumer")

CONSUMER_DEFAULTS = {"auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky"}
PRODUCER_DEFAULTS = {"linger.ms": 5, "message.max.bytes": ROUTED_MESSAGE_MAX_BYTES}
MAX_POLL_WAIT_S = 0.5


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m retry.retry_consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", default=env("RETRY_GROUP_ID", "orders-retry"), help="(env RETRY_GROUP_ID) %(default)s")
    parser.add_argument(
        "--max-waiting", type=positive_int, default=env("RETRY_MAX_WAITING", "10000"),
        help="records waiting in memory per partition before it is paused (env RETRY_MAX_WAITING) %(default)s",
    )
    parser.add_argument("--batch-size", type=positive_int, default=env("BATCH_SIZE", "5000"), help="%(default)s")
    add_backoff_args(parser)
    add_connection_args(parser)
    add_stats_topic_arg(parser)
    add_format_arg(parser, "encoding of the orders; the retry consumer never decodes them, it copies values byte "
                   "for byte, so any format passes")
    add_guarantee_args(parser)
    metrics.add_metrics_args(parser)
    return parser.parse_args(argv)


def exhausted_failure(msg: Message, retry_count: int) -> Failure:
    """The DLQ reason for a record out of retries, carrying its last error."""
    headers = msg.headers()
    last_error = header_text(headers, ERROR_MESSAGE) or header_text(headers, ERROR) or "unknown error"
    return Failure(
        stage=header_text(headers, ERROR_STAGE) or "process",
        error_class=header_text(headers, ERROR_CLASS) or "RetriesExhausted",
        error_message=last_error,
        reason=f"{REASON_EXHAUSTED} after {retry_count} failed attempts; last error: {last_error}",
    )


@dataclass
class PartitionCounts:
    redriven: int = 0
    dead_lettered: int = 0


class RetryConsumer:
    """The waiting records and, per partition of the retry topic, what was forwarded."""

    def __init__(self, args: argparse.Namespace, consumer: Consumer, router: Router, tracker: OffsetTracker) -> None:
        self.args = args
        self.consumer = consumer
        self.router = router
        self.tracker = tracker
        self.policy = BackoffPolicy(args.backoff_base, args.backoff_factor, args.backoff_max, args.backoff_jitter)
        self.schedule: RetrySchedule[Message] = RetrySchedule()
        self.paused: set[tuple[str, int]] = set()
        self.counts: dict[tuple[str, int], PartitionCounts] = {}
        self.forwarded_before: dict[tuple[str, int], dict[int, tuple[str, int, int]]] = {}
        self.redriven = 0
        self.dead_lettered = 0
        self.max_lateness_ms = 0
        self.events = EventLog(log, self._summary_line)

    # PartitionRole: how the position and the forwarded copies survive restarts
    def start_without_checkpoint(self, consumer: Consumer, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """No checkpoint yet: the group's committed offset, else the beginning."""
        committed = consumer.committed([TopicPartition(*p) for p in partitions], timeout=30)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed}

    def restore(self, partition: tuple[str, int], checkpoint: Optional[Checkpoint], copies: dict[int, tuple[str, int, int]]) -> None:
        self.counts[partition] = PartitionCounts(checkpoint.redriven, checkpoint.dead_lettered) if checkpoint else PartitionCounts()
        self.forwarded_before[partition] = dict(copies)

    def consistent(self, partition: tuple[str, int], tracker: OffsetTracker) -> bool:
        return True  # records beyond the position are found again by the copy scan

    def snapshot(self, partition: tuple[str, int], next_offset: int, scan_from: dict[str, int]) -> Checkpoint:
        counts = self.counts[partition]
        return Checkpoint(next_offset, scan_from, redriven=counts.redriven, dead_lettered=counts.dead_lettered)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop waiting records of revoked partitions: their new owner reads them again."""
        self.schedule.forget(partitions)
        self.paused -= partitions
        for partition in partitions:
            self.counts.pop(partition, None)
            self.forwarded_before.pop(partition, None)

    def _summary_line(self, elapsed: float) -> str:
        return (
            f"Retry: re-driven={self.redriven} dead-lettered={self.dead_lettered} waiting={len(self.schedule)} "
            f"max lateness={self.max_lateness_ms} ms"
        )

    # The data path
    def handle(self, msg: Message) -> None:
        partition = (msg.topic(), msg.partition())
        if partition not in self.counts:
            return  # revoked while this batch was fetched; the new owner reads it
        self.tracker.track(partition, msg.offset())
        copy = self.forwarded_before.get(partition, {}).pop(msg.offset(), None)
        if copy is not None:
            self._count(partition, to_dlq=copy[0] == self.args.dlq_topic)
            self.tracker.complete(partition, msg.offset())
            self.events.event("Skipping %s[%d]@%d: already forwarded to %s[%d]@%d before the restart", *partition,
                              msg.offset(), *copy)
            return
        retry_count = get_retry_count(msg.headers())
        if retry_count > self.args.max_retries:
            failure = exhausted_failure(msg, retry_count)
            self.router.send_to_dlq(msg, failure, retry_count, REASON_EXHAUSTED)
            self._count(partition, to_dlq=True)
            metrics.DEAD_LETTERED.labels(reason=REASON_EXHAUSTED).inc()
            self.events.event("Dead-lettering key=%s: %s", key_text(msg), failure.reason, level=logging.WARNING)
            return
        timestamp_type, timestamp = msg.timestamp()
        due = due_time_ms(msg.headers(), timestamp if timestamp_type else None, now_ms(), retry_count, self.policy)
        self.schedule.push(due, partition, msg)
        if self.schedule.waiting(partition) >= self.args.max_waiting and partition not in self.paused:
            self.consumer.pause([TopicPartition(*partition)])
            self.paused.add(partition)
            log.info("Paused %s[%d]: %d records waiting", *partition, self.schedule.waiting(partition))

    def _count(self, partition: tuple[str, int], to_dlq: bool) -> None:
        counts = self.counts[partition]
        if to_dlq:
            counts.dead_lettered += 1
            self.dead_lettered += 1
        else:
            counts.redriven += 1
            self.redriven += 1

    def fire_due(self) -> None:
        """Re-drive every record whose time has come; resume partitions that drained."""
        current = now_ms()
        for due, msg in self.schedule.pop_due(current):
            self.router.redrive(msg, self.args.redrive_topic)
            self._count((msg.topic(), msg.partition()), to_dlq=False)
            lateness = current - due
            self.max_lateness_ms = max(self.max_lateness_ms, lateness)
            metrics.REDRIVEN.inc()
            metrics.RETRY_LATENESS_SECONDS.observe(lateness / 1000)
            self.events.event(
                "Re-driving key=%s to %s for attempt %d (%d ms after due)",
                key_text(msg), self.args.redrive_topic, get_retry_count(msg.headers()) + 1, lateness,
            )
        for partition in [p for p in self.paused if self.schedule.waiting(p) <= self.args.max_waiting // 2]:
            self.consumer.resume([TopicPartition(*partition)])
            self.paused.discard(partition)
            log.info("Resumed %s[%d]", *partition)

    def poll_timeout_s(self) -> float:
        """Poll until the next record is due, at most MAX_POLL_WAIT_S."""
        next_due = self.schedule.next_due_ms()
        if next_due is None:
            return MAX_POLL_WAIT_S
        return min(MAX_POLL_WAIT_S, max(0.0, (next_due - now_ms()) / 1000))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    stop = StopFlag().install()
    wiring = wire(args, lambda: stop.requested, CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, [args.redrive_topic, args.dlq_topic])
    if wiring is None:
        return 0
    consumer, checkpointed, router = wiring.consumer, wiring.checkpointed, wiring.router
    state = RetryConsumer(args, consumer, router, checkpointed.tracker)
    checkpointed.subscribe([args.retry_topic], state)
    metrics.serve(args.metrics_port, args.metrics_addr)
    tune_for_streaming()
    log.info("Scheduling retries from %s (max retries %d); %s", args.retry_topic, args.max_retries, wiring.guarantee)
    try:
        while not stop.requested:
            for msg in next_batch(consumer, args.batch_size, 0 if checkpointed.throttled else state.poll_timeout_s()):
                error = msg.error()
                if error is None:
                    state.handle(msg)
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Consumer error: %s", error.str())
            state.fire_due()
            checkpointed.producer.poll(0)  # delivery reports of the checkpoints
            checkpointed.throttle(held=state.paused)
            checkpointed.checkpoint_if_due()
            metrics.RETRY_WAITING.set(len(state.schedule))
            state.events.tick()
    finally:
        log.info("Shutting down: %d waiting record(s) stay in %s for the next run", len(state.schedule), args.retry_topic)
        wiring.close()
        log.info("Stopped. re-driven=%d dead-lettered=%d", state.redriven, state.dead_lettered)
    return 0


if __name__ == "__main__":
    run(main)
