"""Consume orders, keep a running average of ``price``, route failures to retry or the DLQ.

It reads ``orders`` and the re-drive topic, where the retry consumer puts
retries once due (and the DLQ consumer replays): retries never go back into
``orders``, which other teams may read.

Run: ``python -m consumer.main_consumer [--fail-rate R] [--fail-product ItemN] [--summary-file PATH]``.

Per batch: poll -> decode -> validate -> process -> route -> checkpoint. The
running average is kept per partition and checkpointed in the stats topic with
the next offset to apply, so it survives restarts and rebalances and no record
is applied twice; see pipeline/checkpointed.py. Copies to the retry topic and
the DLQ are made by a child process (pipeline/routing_worker.py): this thread
decides and hands them over; a record counts as done once its copy is acknowledged.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from dataclasses import dataclass
from itertools import groupby
from typing import Iterable, Optional, Union

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.processing import PROCESSED, RETRY, Verdict, decode_order, evaluate, process_order, retry_verdict
from pipeline import metrics
from pipeline.backoff import BackoffPolicy
from pipeline.checkpoints import Checkpoint, partition_checkpoints
from pipeline.cli import run
from pipeline.config import (
    add_backoff_args, add_connection_args, add_stats_topic_arg, env, positive_int, probability,
)
from pipeline.failures import FailureSimulator
from pipeline.gc_tuning import tune_for_streaming
from pipeline.logs import EventLog, setup_logging
from pipeline.offsets import OffsetTracker
from pipeline.reading import next_batch
from pipeline.routing import ROUTED_MESSAGE_MAX_BYTES, Router, key_text, now_ms
from pipeline.routing_worker import RoutingWorker
from pipeline.shutdown import StopFlag
from pipeline.transactions import add_guarantee_args
from pipeline.summary import write_json_atomic
from pipeline.validation import Order
from pipeline.checkpointed import wire

log = logging.getLogger("main-consumer")

CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    # Memory: the prefetch queue bounded by bytes and by count (librdkafka keeps ~250 bytes
    # beside each small order and by default prefetches 100,000 records per partition), and
    # fetches of at most 2 MB per partition, 8 MB in all: a fetch response is held whole while
    # any of its records waits, and Apache Kafka fills large fetches (peak RSS 221 MB with
    # 10 MB/50 MB, 126 MB with these; drain rate unchanged, python -m bench --engine kafka).
    "fetch.max.bytes": 8_388_608,
    "max.partition.fetch.bytes": 2_097_152,
    "queued.max.messages.kbytes": 16_384,
    "queued.min.messages": 20_000,
    # Fetch again 10 ms (not 1 s, the default) after the prefetch queue was full: at 1 s,
    # consumption stalls each time the queue fills (the benchmark's limits show it).
    "fetch.queue.backoff.ms": 10,
    # How long the broker may hold a fetch with no new data. Kafka answers as soon as
    # data arrives anyway; brokers that wait it out (Tansu) add it to every record's latency.
    "fetch.wait.max.ms": 10,
}
PRODUCER_DEFAULTS = {"linger.ms": 5, "message.max.bytes": ROUTED_MESSAGE_MAX_BYTES}
SUMMARY_INTERVAL_S = 0.5


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m consumer.main_consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", default=env("MAIN_GROUP_ID", "orders-main"), help="(env MAIN_GROUP_ID) %(default)s")
    parser.add_argument(
        "--fail-rate", type=probability, default=env("FAIL_RATE", "0"),
        help="simulated failures, for demos and tests: the chance that one processing attempt fails transiently; "
        "0 = none (env FAIL_RATE) %(default)s",
    )
    parser.add_argument(
        "--fail-product", default=env("FAIL_PRODUCT", "") or None,
        help="every attempt for this product fails, so it ends in the DLQ (env FAIL_PRODUCT)",
    )
    parser.add_argument("--seed", type=int, default=env("FAIL_SEED", "0"), help="seed of the failure schedule (env FAIL_SEED) %(default)s")
    parser.add_argument("--summary-file", default=env("SUMMARY_FILE", "") or None, metavar="PATH",
                        help="JSON state, replaced atomically at least once a second (env SUMMARY_FILE)")
    parser.add_argument("--batch-size", type=positive_int, default=env("BATCH_SIZE", "5000"), help="%(default)s")
    add_backoff_args(parser)
    add_connection_args(parser)
    add_stats_topic_arg(parser)
    add_guarantee_args(parser)
    metrics.add_metrics_args(parser)
    return parser.parse_args(argv)


@dataclass
class PartitionStats:
    """What one partition of ``orders`` contributed: the running average's sum and count, and routing counts."""

    processed: int = 0
    total: float = 0.0
    retried: int = 0
    dead_lettered: int = 0

    @classmethod
    def of(cls, checkpoint: Optional[Checkpoint]) -> "PartitionStats":
        if checkpoint is None:
            return cls()
        return cls(checkpoint.processed, checkpoint.sum, checkpoint.retried, checkpoint.dead_lettered)

    def add(self, other: "PartitionStats") -> None:
        self.processed += other.processed
        self.total += other.total
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered

    @property
    def average(self) -> Optional[float]:
        return self.total / self.processed if self.processed else None


class MainConsumer:
    """Per-partition state of the running average, and what to do with each record."""

    def __init__(self, args: argparse.Namespace, router: Union[Router, RoutingWorker], tracker: OffsetTracker) -> None:
        self.args = args
        self.router = router
        self.tracker = tracker
        self.simulator = FailureSimulator(args.fail_rate, args.fail_product, args.seed)
        self.backoff = BackoffPolicy(args.backoff_base, args.backoff_factor, args.backoff_max, args.backoff_jitter)
        self.partitions: dict[tuple[str, int], PartitionStats] = {}
        self.routed_before: dict[tuple[str, int], dict[int, tuple[str, int, int]]] = {}
        self.processed_here = 0
        self.routing_counts: Counter[tuple[str, ...]] = Counter()
        self._published: Counter[tuple[str, ...]] = Counter()
        self._processed_sync = metrics.CounterSync(metrics.PROCESSED)
        self._window_processed = 0
        self.events = EventLog(log, self._summary_line)

    # PartitionRole: how state moves between instances and restarts
    def start_without_checkpoint(self, _consumer: object, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """No checkpoint: rebuild the partition's state from its first record."""
        return {partition: 0 for partition in partitions}

    def restore(self, partition: tuple[str, int], checkpoint: Optional[Checkpoint], copies: dict[int, tuple[str, int, int]]) -> None:
        self.partitions[partition] = PartitionStats.of(checkpoint)
        self.routed_before[partition] = dict(copies)

    def consistent(self, partition: tuple[str, int], tracker: OffsetTracker) -> bool:
        return tracker.pending(partition) == 0

    def snapshot(self, partition: tuple[str, int], next_offset: int, scan_from: dict[str, int]) -> Checkpoint:
        stats = self.partitions[partition]
        return Checkpoint(next_offset, scan_from, stats.processed, stats.total, stats.retried, stats.dead_lettered)

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for partition in partitions:
            self.partitions.pop(partition, None)
            self.routed_before.pop(partition, None)

    def owned_now(self) -> PartitionStats:
        """The partitions this instance owns, added up (per record only when a line is logged)."""
        owned = PartitionStats()
        for stats in self.partitions.values():
            owned.add(stats)
        return owned

    def global_stats(self, known: dict[str, Checkpoint], group: str) -> PartitionStats:
        """Owned partitions as they are now, the others as last checkpointed."""
        total = self.owned_now()
        for topic in (self.args.orders_topic, self.args.redrive_topic):
            for partition, checkpoint in partition_checkpoints(known, group, topic).items():
                if (topic, partition) not in self.partitions:
                    total.add(PartitionStats.of(checkpoint))
        return total

    def _summary_line(self, elapsed: float) -> str:
        rate = (self.processed_here - self._window_processed) / elapsed
        self._window_processed = self.processed_here
        owned = self.owned_now()
        return (
            f"Processed {rate:.0f} orders/s | this instance's partitions: running average={_fmt(owned.average)} "
            f"over {owned.processed} orders, retried={owned.retried} dead-lettered={owned.dead_lettered}"
        )

    # The data path
    def handle_batch(self, msgs: list[Message]) -> None:
        """decode -> validate -> process -> route each record; consecutive records of one partition share their lookups."""
        for partition, records in groupby(msgs, lambda msg: (msg.topic(), msg.partition())):
            self._handle_run(partition, records)

    def _handle_run(self, partition: tuple[str, int], records: Iterable[Message]) -> None:
        """Records of one partition, in offset order.

        While this second's event lines last (demo rates), each record takes
        :meth:`handle` and gets its line. After that, the common record (no
        headers: a first attempt; a valid order; processed without error) only
        adds to the partition's sums, and the run moves the commit position
        once at its end; every other record still takes :meth:`handle`.
        """
        stats = self.partitions.get(partition)
        remaining = iter(records)
        if stats is None or self.routed_before.get(partition):
            for msg in remaining:
                self._handle_one(msg)
            return
        while self.events.lines_left():
            msg = next(remaining, None)
            if msg is None:
                return
            self._handle_one(msg)
        simulator = self.simulator
        count, total, last = 0, 0.0, None
        for msg in remaining:
            if msg.error() is not None:
                _report(msg.error())
                continue
            last = msg
            if msg.headers() is None:
                order = decode_order(msg.value())
                if order is not None:
                    try:
                        process_order(order, 1, simulator)
                    except Exception as exc:
                        self._route(msg, partition, retry_verdict(order, 1, exc))
                        continue
                    count += 1
                    total += order["price"]
                    continue
            self.handle(msg)
        stats.processed += count
        stats.total += total
        self.processed_here += count
        self.events.count_unlogged(count)
        if last is not None:
            self.tracker.consumed(partition, last.offset())

    def _handle_one(self, msg: Message) -> None:
        if msg.error() is None:
            self.handle(msg)
        else:
            _report(msg.error())

    def handle(self, msg: Message) -> None:
        """decode -> validate -> process -> route one record, with its event line; never raises for bad data."""
        partition = (msg.topic(), msg.partition())
        stats = self.partitions.get(partition)
        if stats is None:
            return  # revoked while this batch was fetched; the new owner reads it
        offset = msg.offset()
        routed_before = self.routed_before[partition]
        if routed_before:
            copy = routed_before.pop(offset, None)
            if copy is not None:
                self.tracker.track(partition, offset)
                self._routed_before_restart(msg, partition, copy)
                return
        verdict = evaluate(msg.value(), msg.headers(), self.simulator)
        if verdict.route != PROCESSED:
            self._route(msg, partition, verdict)
            return
        assert verdict.order is not None
        stats.processed += 1
        stats.total += verdict.order["price"]
        self.processed_here += 1
        self.tracker.consumed(partition, offset)
        if self.events.wants_line():
            self._log_processed(verdict.order, verdict.attempt)

    def _route(self, msg: Message, partition: tuple[str, int], verdict: Verdict) -> None:
        """Send a copy to the retry topic or the DLQ; the record is done once the copy is acknowledged."""
        self.tracker.track(partition, msg.offset())
        if verdict.route == RETRY:
            self._retry(msg, partition, verdict)
        else:
            self._dead_letter(msg, partition, verdict)

    def _routed_before_restart(self, msg: Message, partition: tuple[str, int], copy: tuple[str, int, int]) -> None:
        stats = self.partitions[partition]
        if copy[0] == self.args.retry_topic:
            stats.retried += 1
        else:
            stats.dead_lettered += 1
        self.tracker.complete(partition, msg.offset())
        self.events.event("Skipping %s[%d]@%d: already routed to %s[%d]@%d before the restart", msg.topic(),
                          msg.partition(), msg.offset(), *copy)

    def _log_processed(self, order: Order, attempt: int) -> None:
        owned = self.owned_now()
        self.events.line(
            "Processed order %s (attempt %d) | price=%.2f | running average=%.2f over %d orders (this instance's partitions)",
            order["orderId"], attempt, order["price"], owned.average, owned.processed,
        )

    def _retry(self, msg: Message, partition: tuple[str, int], verdict: Verdict) -> None:
        assert verdict.failure is not None and verdict.order is not None
        delay_s = self.backoff.delay_s(verdict.attempt)
        self.router.send_back_to_retry(msg, verdict.failure, verdict.attempt, now_ms() + int(delay_s * 1000) + 1)
        self.partitions[partition].retried += 1
        self.routing_counts[("retry", verdict.failure.stage, verdict.failure.error_class)] += 1
        if self.events.wants_line():
            outcome = ("out of retries: the retry consumer dead-letters it" if verdict.attempt > self.args.max_retries
                       else f"due in {delay_s:.2f} s")
            self.events.line(
                "Order %s failed attempt %d (%s) -> %s, %s",
                verdict.order["orderId"], verdict.attempt, verdict.failure.error_message, self.args.retry_topic, outcome,
            )

    def _dead_letter(self, msg: Message, partition: tuple[str, int], verdict: Verdict) -> None:
        assert verdict.failure is not None and verdict.dlq_reason is not None
        self.router.send_to_dlq(msg, verdict.failure, verdict.attempt, verdict.dlq_reason)
        self.partitions[partition].dead_lettered += 1
        self.routing_counts[("dlq", verdict.dlq_reason)] += 1
        self.events.event(
            "Dead-lettering %s[%d]@%d key=%s -> %s: %s",
            msg.topic(), msg.partition(), msg.offset(), key_text(msg), self.args.dlq_topic, verdict.failure.reason,
            level=logging.WARNING,
        )

    def publish_metrics(self, consumer: Consumer, totals: PartitionStats) -> None:
        """Counts since the last tick, the global average, and lag per owned partition."""
        self._processed_sync.publish(self.processed_here)
        for labels, count in self.routing_counts.items():
            delta = count - self._published[labels]
            if delta:
                if labels[0] == "retry":
                    metrics.ROUTED_TO_RETRY.labels(stage=labels[1], error_class=labels[2]).inc(delta)
                else:
                    metrics.DEAD_LETTERED.labels(reason=labels[1]).inc(delta)
                self._published[labels] = count
        metrics.RUNNING_COUNT.set(totals.processed)
        if totals.average is not None:
            metrics.RUNNING_AVERAGE.set(totals.average)
        publish_lag(consumer, list(self.partitions))

    def observe_batch(self, msgs: list[Message], started: float) -> None:
        """Processing time per record (the batch's mean) and end-to-end latency of a sample."""
        if not msgs:
            return
        finished = time.monotonic()
        metrics.PROCESSING_SECONDS.observe((finished - started) / len(msgs))
        now = time.time()
        for msg in msgs[:: max(1, len(msgs) // metrics.SAMPLES_PER_BATCH)]:
            timestamp_type, timestamp = msg.timestamp()
            if timestamp_type and timestamp > 0:
                metrics.END_TO_END_SECONDS.observe(max(0.0, now - timestamp / 1000))


def publish_lag(consumer: Consumer, partitions: list[tuple[str, int]]) -> None:
    """Lag from the high watermark of the last fetch (correct on every broker) and the position."""
    if not partitions:
        return
    try:
        positions = consumer.position([TopicPartition(topic, partition) for topic, partition in partitions])
    except KafkaException:
        return
    for tp in positions:
        if tp.offset < 0:
            continue
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high >= 0:
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - tp.offset))


def _report(error: KafkaError) -> None:
    """An error event in place of a record; end-of-partition is no error."""
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("Consumer error: %s", error.str())


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_summary(path: Optional[str], stats: PartitionStats) -> None:
    if path:
        write_json_atomic(
            path,
            {"processed": stats.processed, "average": stats.average, "retried": stats.retried,
             "dead_lettered": stats.dead_lettered},
        )


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    stop = StopFlag().install()
    wiring = wire(args, lambda: stop.requested, CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, [args.retry_topic, args.dlq_topic],
                  route_in_child=True)
    if wiring is None:
        return 0
    consumer, worker, router = wiring.consumer, wiring.worker, wiring.router
    state = MainConsumer(args, router, worker.tracker)
    worker.subscribe([args.orders_topic, args.redrive_topic], state)
    log.info(
        "Consuming %s and its retries from %s as group %s (fail rate %g, fail product %s); state in %s; %s",
        args.orders_topic, args.redrive_topic, args.group_id, args.fail_rate, args.fail_product or "none",
        args.stats_topic, wiring.guarantee,
    )
    metrics.serve(args.metrics_port, args.metrics_addr)
    tune_for_streaming()
    last_summary = time.monotonic()
    try:
        while not stop.requested:
            msgs = next_batch(consumer, args.batch_size, 0.5)
            started = time.monotonic()
            state.handle_batch(msgs)
            state.observe_batch(msgs, started)
            router.serve()
            worker.producer.poll(0)  # delivery reports of the checkpoints
            worker.throttle()
            worker.checkpoint_if_due()
            if time.monotonic() - last_summary >= SUMMARY_INTERVAL_S:
                worker.refresh_known()
                totals = state.global_stats(worker.known, args.group_id)
                write_summary(args.summary_file, totals)
                state.publish_metrics(consumer, totals)
                last_summary = time.monotonic()
            state.events.tick()
    finally:
        log.info("Shutting down: flushing routed copies, checkpointing, committing, closing the consumer")
        final = state.global_stats(worker.known, args.group_id)
        wiring.close()
        write_summary(args.summary_file, final)
        log.info("Stopped. Whole group: processed=%d average=%s retried=%d dead-lettered=%d", final.processed,
                 _fmt(final.average), final.retried, final.dead_lettered)
    return 0


if __name__ == "__main__":
    run(main)
