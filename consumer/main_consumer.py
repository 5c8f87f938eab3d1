"""Consume orders, keep a running average of ``price``, route failures to retry or the DLQ.

It reads ``orders`` and the re-drive topic, where the retry consumer puts
retries once due (and the DLQ consumer replays): retries never go back into
``orders``, which other teams may read.

Run: ``python -m consumer.main_consumer [--fail-rate R] [--fail-product ItemN] [--summary-file PATH]``.

The loop, per batch: poll -> decode -> validate -> process -> route
(:meth:`MainConsumer.handle_batch`, one decision path in
:func:`consumer.processing.evaluate`) -> checkpoint and commit once a second
(:mod:`pipeline.checkpointed`). The running average is kept per partition
(:mod:`consumer.average_state`) and checkpointed with the next offset to apply,
so no record is applied twice. On Apache Kafka the copies, checkpoints and
offsets commit in one transaction (exactly-once); elsewhere a child process
makes the copies (:mod:`pipeline.routing_worker`) and a record counts as done
once its copy is acknowledged.
"""

from __future__ import annotations

import argparse
import logging
import time
from itertools import groupby
from typing import Optional, Union

from confluent_kafka import KafkaError, Message

from consumer.average_state import AverageState, PartitionStats, fmt, observe_batch, write_summary
from consumer.processing import RETRY, Verdict, attempt_of, evaluate
from formats import CODECS, add_format_arg
from formats.registry import registry_decoder
from pipeline import metrics
from pipeline.backoff import BackoffPolicy
from pipeline.wiring import wire
from pipeline.cli import run
from pipeline.config import add_backoff_args, add_connection_args, add_stats_topic_arg, env, positive_int, probability
from pipeline.failures import FailureSimulator
from pipeline.gc_tuning import tune_for_streaming
from pipeline.logs import EventLog, setup_logging
from pipeline.offsets import OffsetTracker, Partition
from pipeline.reading import next_batch
from pipeline.routing import ROUTED_MESSAGE_MAX_BYTES, Router, key_text, now_ms
from pipeline.routing_worker import RoutingWorker
from pipeline.shutdown import StopFlag
from pipeline.transactions import add_guarantee_args
from pipeline.validation import Order

log = logging.getLogger("main-consumer")

CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    # Memory: a bounded prefetch queue, and fetches of at most 2 MB per partition, 8 MB in all (a fetch
    # response is held whole while any of its records waits): peak RSS 126 MB, not 221 MB, on Apache Kafka.
    "fetch.max.bytes": 8_388_608,
    "max.partition.fetch.bytes": 2_097_152,
    "queued.max.messages.kbytes": 16_384,
    "queued.min.messages": 20_000,
    # Fetch again 10 ms (not 1 s) after the prefetch queue was full, and let the broker hold an empty
    # fetch 10 ms at most (Tansu waits it out, adding it to every record's latency).
    "fetch.queue.backoff.ms": 10,
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
    add_format_arg(parser)
    parser.add_argument("--schema-registry-url", default=env("SCHEMA_REGISTRY_URL", "") or None, metavar="URL",
                        help="decode Schema-Registry-framed values through this registry (env SCHEMA_REGISTRY_URL; "
                        "needs requirements-registry.txt); without it they are dead-lettered with their schema id")
    add_guarantee_args(parser)
    metrics.add_metrics_args(parser)
    return parser.parse_args(argv)


class MainConsumer:
    """The data path: what happens to each record of a batch."""

    def __init__(self, args: argparse.Namespace, router: Union[Router, RoutingWorker], tracker: OffsetTracker,
                 state: Optional[AverageState] = None) -> None:
        self.args = args
        self.router = router
        self.tracker = tracker
        self.state = state or AverageState(args)
        self.simulator = FailureSimulator(args.fail_rate, args.fail_product, args.seed)
        self.codec = CODECS[args.message_format]
        self.framed = registry_decoder(args.schema_registry_url, self.codec, args.orders_topic)
        self.backoff = BackoffPolicy(args.backoff_base, args.backoff_factor, args.backoff_max, args.backoff_jitter)
        self.events = EventLog(log, self.state.summary_line)

    def handle_batch(self, msgs: list[Message]) -> None:
        """decode -> validate -> process -> route each record; a partition's run of records shares its lookups.

        A processed order only adds to the run's sum and count (no object per
        record); the partition's stats and commit position move once per run.
        """
        for partition, records in groupby(msgs, _partition_of):
            stats = self.state.partitions.get(partition)
            if stats is None:
                continue  # revoked while this batch was fetched; the new owner reads it
            routed_before = self.state.routed_before[partition]
            lines_left = self.events.lines_left()
            count, total, last_offset = 0, 0.0, -1
            for msg in records:
                if msg.error() is not None:
                    _report(msg.error())
                    continue
                last_offset = msg.offset()
                if routed_before and last_offset in routed_before:
                    self._routed_before_restart(msg, partition, routed_before.pop(last_offset))
                    continue
                outcome = evaluate(msg.value(), msg.headers(), self.simulator, self.codec, self.framed)
                if type(outcome) is dict:  # processed: the order itself
                    count += 1
                    total += outcome["price"]
                    if lines_left and self.events.wants_line():
                        lines_left -= 1
                        self._add(stats, count, total)
                        count, total = 0, 0.0
                        self._log_processed(outcome, attempt_of(msg.headers()))
                else:
                    self._route(msg, partition, outcome)  # type: ignore[arg-type]
            self._add(stats, count, total)
            self.events.count_unlogged(count)
            if last_offset >= 0:
                self.tracker.consumed(partition, last_offset)

    def _add(self, stats: PartitionStats, count: int, total: float) -> None:
        stats.processed += count
        stats.total += total
        self.state.processed_here += count

    def _route(self, msg: Message, partition: Partition, verdict: Verdict) -> None:
        """Send a copy to the retry topic or the DLQ; the record is done once the copy is acknowledged."""
        self.tracker.track(partition, msg.offset())
        if verdict.route == RETRY:
            self._retry(msg, partition, verdict)
        else:
            self._dead_letter(msg, partition, verdict)

    def _retry(self, msg: Message, partition: Partition, verdict: Verdict) -> None:
        assert verdict.order is not None
        delay_s = self.backoff.delay_s(verdict.attempt)
        self.router.send_back_to_retry(msg, verdict.failure, verdict.attempt, now_ms() + int(delay_s * 1000) + 1)
        self.state.partitions[partition].retried += 1
        self.state.routing_counts[("retry", verdict.failure.stage, verdict.failure.error_class)] += 1
        if self.events.wants_line():
            outcome = ("out of retries: the retry consumer dead-letters it" if verdict.attempt > self.args.max_retries
                       else f"due in {delay_s:.2f} s")
            self.events.line(
                "Order %s failed attempt %d (%s) -> %s, %s",
                verdict.order["orderId"], verdict.attempt, verdict.failure.error_message, self.args.retry_topic, outcome,
            )

    def _dead_letter(self, msg: Message, partition: Partition, verdict: Verdict) -> None:
        assert verdict.dlq_reason is not None
        self.router.send_to_dlq(msg, verdict.failure, verdict.attempt, verdict.dlq_reason)
        self.state.partitions[partition].dead_lettered += 1
        self.state.routing_counts[("dlq", verdict.dlq_reason)] += 1
        self.events.event(
            "Dead-lettering %s[%d]@%d key=%s -> %s: %s",
            msg.topic(), msg.partition(), msg.offset(), key_text(msg), self.args.dlq_topic, verdict.failure.reason,
            level=logging.WARNING,
        )

    def _routed_before_restart(self, msg: Message, partition: Partition, copy: tuple[str, int, int]) -> None:
        """A record whose copy the previous owner made after its last checkpoint: count it, do not copy it again."""
        stats = self.state.partitions[partition]
        if copy[0] == self.args.retry_topic:
            stats.retried += 1
        else:
            stats.dead_lettered += 1
        self.tracker.track(partition, msg.offset())
        self.tracker.complete(partition, msg.offset())
        self.events.event("Skipping %s[%d]@%d: already routed to %s[%d]@%d before the restart", msg.topic(),
                          msg.partition(), msg.offset(), *copy)

    def _log_processed(self, order: Order, attempt: int) -> None:
        owned = self.state.owned_now()
        self.events.line(
            "Processed order %s (attempt %d) | price=%.2f | running average=%.2f over %d orders (this instance's partitions)",
            order["orderId"], attempt, order["price"], owned.average, owned.processed,
        )


def _partition_of(msg: Message) -> Partition:
    return msg.topic(), msg.partition()


def _report(error: KafkaError) -> None:
    """An error event in place of a record; end-of-partition is no error."""
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("Consumer error: %s", error.str())


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    stop = StopFlag().install()
    wiring = wire(args, lambda: stop.requested, CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, [args.retry_topic, args.dlq_topic],
                  route_in_child=True)
    if wiring is None:
        return 0
    consumer, checkpointed, router = wiring.consumer, wiring.checkpointed, wiring.router
    state = AverageState(args)
    main_consumer = MainConsumer(args, router, checkpointed.tracker, state)
    checkpointed.subscribe([args.orders_topic, args.redrive_topic], state)
    log.info(
        "Consuming %s (%s) and its retries from %s as group %s (fail rate %g, fail product %s); state in %s; %s",
        args.orders_topic, args.message_format, args.redrive_topic, args.group_id, args.fail_rate,
        args.fail_product or "none", args.stats_topic, wiring.guarantee,
    )
    metrics.serve(args.metrics_port, args.metrics_addr)
    tune_for_streaming()
    last_summary = time.monotonic()
    try:
        while not stop.requested:
            msgs = next_batch(consumer, args.batch_size, 0 if checkpointed.throttled else 0.5)  # poll
            started = time.monotonic()
            main_consumer.handle_batch(msgs)                                    # decode, validate, process, route
            observe_batch(msgs, started)
            router.serve()                                                      # hand copies over, take their acks
            checkpointed.producer.poll(0)                                       # delivery reports of checkpoints
            checkpointed.throttle()                                             # pause while copies pile up
            checkpointed.checkpoint_if_due()                                    # checkpoint + commit (or transaction)
            if time.monotonic() - last_summary >= SUMMARY_INTERVAL_S:
                checkpointed.refresh_known()
                totals = state.global_stats(checkpointed.known)
                write_summary(args.summary_file, totals)
                state.publish_metrics(consumer, totals)
                last_summary = time.monotonic()
            main_consumer.events.tick()
    finally:
        log.info("Shutting down: flushing routed copies, checkpointing, committing, closing the consumer")
        final = state.global_stats(checkpointed.known)
        wiring.close()
        write_summary(args.summary_file, final)
        log.info("Stopped. Whole group: processed=%d average=%s retried=%d dead-lettered=%d", final.processed,
                 fmt(final.average), final.retried, final.dead_lettered)
    return 0


if __name__ == "__main__":
    run(main)
