"""Own ``orders_retry``: wait until each record is due, then re-drive it to ``orders_redrive``.

Run: ``python -m retry.retry_consumer [--max-retries N]``.

Re-driven records go to the re-drive topic, which only this pipeline's main
consumer group reads, never back to ``orders``: other readers of ``orders``
see each order once. A record whose ``retryCount`` exceeds MAX_RETRIES goes
to the DLQ with reason "retries exhausted" and its last error. Waiting never
blocks the loop (:func:`runtime.loop.consume`): records wait in memory,
earliest due first (:class:`domain.retry.RetrySchedule`), the loop keeps
polling (so the member stays in the group) with a timeout that ends at the
next due time, and a partition is paused only while it has too many records waiting.
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional

from confluent_kafka import Consumer, Message, TopicPartition

from app import settings as flags
from app.settings import env, positive_int
from domain.headers import REASON_EXHAUSTED, dead_letter_headers, get_retry_count, too_large_headers
from domain.retry import ForwardedCounts, RetrySchedule, due_time_ms, exhausted_failure
from retry.figures import RetryFigures
from runtime import metrics
from runtime.cli import run
from runtime.topics import RETRY_TOPIC_CONFIG
from runtime.gc_tuning import tune_for_streaming
from runtime.logs import EventLog, setup_logging
from runtime.loop import consume
from runtime.offsets import OffsetTracker, Partition
from runtime.partition_role import StatePerPartition
from runtime.routing import Copies, key_text, now_ms
from runtime.shutdown import StopFlag
from runtime.wiring import Plan, wire

log = logging.getLogger("retry-consumer")

MAX_POLL_WAIT_S = 0.5


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m retry.retry_consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--max-waiting", type=positive_int, default=env("RETRY_MAX_WAITING", "10000"),
                        help="records waiting in memory per partition before it is paused (env RETRY_MAX_WAITING) %(default)s")
    flags.add_consumer_args(parser, "RETRY_GROUP_ID", "orders-retry")
    flags.add_backoff_args(parser)
    flags.add_connection_args(parser)
    flags.add_format_arg(parser, "encoding of the orders; the retry consumer never decodes them, it copies values byte "
                         "for byte, so any format passes")
    flags.add_metrics_args(parser)
    return parser.parse_args(argv)


class RetryHandler(StatePerPartition[ForwardedCounts]):
    """The waiting records; what was forwarded from each partition of the retry topic survives restarts."""

    def __init__(self, copies: Copies, tracker: OffsetTracker, consumer: Consumer, topics: flags.Topics,
                 retries: flags.Retries, max_waiting: int) -> None:
        super().__init__({}, ForwardedCounts.of, lambda counts, topic: counts.count(to_dlq=topic == topics.dlq))
        self.copies, self.tracker, self.consumer, self.topics = copies, tracker, consumer, topics
        self.retries, self.max_waiting = retries, max_waiting
        self.schedule: RetrySchedule[Message] = RetrySchedule()
        self.held: set[Partition] = set()  # paused: too many records waiting
        self.redriven = self.dead_lettered = self.max_lateness_ms = 0
        self.lateness_ms: list[int] = []  # of re-drives not yet observed by the figures
        self.events = EventLog(log, self._summary_line)

    def handle(self, records: list[Message]) -> None:
        """Each record waits for its due time or, out of retries, goes to the DLQ; then what is due is re-driven."""
        for msg in records:
            self._take(msg)
        self._fire_due()
        self.events.tick()

    def _take(self, msg: Message) -> None:
        partition = (msg.topic(), msg.partition())
        if partition not in self.states:
            return  # revoked while this batch was fetched; the new owner reads it
        self.tracker.track(partition, msg.offset())
        retry_count = get_retry_count(msg.headers())
        if retry_count > self.retries.max_retries:
            failure = exhausted_failure(msg.headers(), retry_count)
            self.copies.copy(msg, self.topics.dlq, dead_letter_headers, failure, retry_count, REASON_EXHAUSTED)
            self._count(partition, to_dlq=True)
            self.events.event("Dead-lettering key=%s: %s", key_text(msg), failure.reason, level=logging.WARNING)
            return
        timestamp_type, timestamp = msg.timestamp()
        self.schedule.push(due_time_ms(msg.headers(), timestamp if timestamp_type else None, now_ms(), retry_count,
                                       self.retries.backoff), partition, msg)
        if self.schedule.waiting(partition) >= self.max_waiting and partition not in self.held:
            self.consumer.pause([TopicPartition(*partition)])
            self.held.add(partition)
            log.info("Paused %s[%d]: %d records waiting", *partition, self.schedule.waiting(partition))

    def _fire_due(self) -> None:
        """Re-drive every record whose time has come; resume partitions that drained."""
        current = now_ms()
        for due, msg in self.schedule.pop_due(current):
            self.copies.redrive(msg, self.topics.redrive)
            self._count((msg.topic(), msg.partition()), to_dlq=False)
            lateness = current - due
            self.max_lateness_ms = max(self.max_lateness_ms, lateness)
            self.lateness_ms.append(lateness)
            self.events.event("Re-driving key=%s to %s for attempt %d (%d ms after due)", key_text(msg),
                              self.topics.redrive, get_retry_count(msg.headers()) + 1, lateness)
        for partition in [p for p in self.held if self.schedule.waiting(p) <= self.max_waiting // 2]:
            self.consumer.resume([TopicPartition(*partition)])
            self.held.discard(partition)
            log.info("Resumed %s[%d]", *partition)

    def _count(self, partition: Partition, to_dlq: bool) -> None:
        self.states[partition].count(to_dlq)
        if to_dlq:
            self.dead_lettered += 1
        else:
            self.redriven += 1

    def _summary_line(self, elapsed: float) -> str:
        return (f"Retry: re-driven={self.redriven} dead-lettered={self.dead_lettered} waiting={len(self.schedule)} "
                f"max lateness={self.max_lateness_ms} ms")

    def poll_timeout_s(self) -> float:
        """Poll until the next record is due, at most MAX_POLL_WAIT_S."""
        next_due = self.schedule.next_due_ms()
        return MAX_POLL_WAIT_S if next_due is None else min(MAX_POLL_WAIT_S, max(0.0, (next_due - now_ms()) / 1000))

    def forget(self, partitions: set[Partition]) -> None:
        """Drop waiting records of revoked partitions: their new owner reads them again."""
        self.schedule.forget(partitions)
        self.held -= partitions
        super().forget(partitions)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    stop = StopFlag().install()
    topics = flags.topics(args)
    plan = Plan(sources=(topics.retry,), targets=(topics.redrive, topics.dlq), dead_letter_topic=topics.dlq,
                too_large=too_large_headers, topic_config={topics.retry: RETRY_TOPIC_CONFIG}, fresh_from_committed=True)
    wiring = wire(flags.kafka_settings(args), flags.consumer_settings(args), plan, lambda: stop.requested)
    if wiring is None:
        return 0
    handler = RetryHandler(wiring.copies, wiring.checkpointed.tracker, wiring.consumer, topics, flags.retries(args),
                           args.max_waiting)
    metrics.serve(args.metrics_port, args.metrics_addr)
    tune_for_streaming()
    log.info("Scheduling retries from %s (max retries %d); %s; group protocol %s", topics.retry, args.max_retries,
             wiring.guarantee, wiring.group_protocol)
    consume(wiring, handler, RetryFigures(handler), stop)
    return 0


if __name__ == "__main__":
    run(main)
