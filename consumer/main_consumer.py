"""Consume orders, keep a running average of ``price``, route failures to retry or the DLQ.

Run: ``python -m consumer.main_consumer [--fail-rate R] [--fail-product ItemN] [--summary-file PATH]``.

Per batch: poll -> decode -> validate -> process -> route -> commit. An offset
is committed only once its record was processed or its routed copy was
acknowledged, and only contiguously per partition (at-least-once).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Optional

from confluent_kafka import KafkaError, Message

from consumer.processing import PROCESSED, RETRY, RunningAverage, Verdict, evaluate
from pipeline.backoff import BackoffPolicy
from pipeline.cli import run
from pipeline.clients import Clients, ensure_topics
from pipeline.config import ClientSettings, add_backoff_args, add_connection_args, env, positive_int, probability
from pipeline.failures import FailureSimulator
from pipeline.logs import EventLog, setup_logging
from pipeline.offsets import OffsetTracker
from pipeline.routing import Router, key_text, now_ms
from pipeline.shutdown import StopFlag
from pipeline.summary import write_json_atomic
from pipeline.tracked import TrackedConsumer

log = logging.getLogger("main-consumer")

CONSUMER_DEFAULTS = {"auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky"}
CONSUMER_ENFORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False}
PRODUCER_DEFAULTS = {"linger.ms": 5}
PRODUCER_ENFORCED = {"enable.idempotence": True, "acks": "all"}
SUMMARY_INTERVAL_S = 0.5


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m consumer.main_consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", default=env("MAIN_GROUP_ID", "orders-main"), help="(env MAIN_GROUP_ID) %(default)s")
    parser.add_argument(
        "--fail-rate", type=probability, default=env("FAIL_RATE", "0.1"),
        help="chance that one processing attempt fails transiently; 0 turns simulation off (env FAIL_RATE) %(default)s",
    )
    parser.add_argument(
        "--fail-product", default=env("FAIL_PRODUCT", "") or None,
        help="every attempt for this product fails, so it ends in the DLQ (env FAIL_PRODUCT)",
    )
    parser.add_argument("--seed", type=int, default=env("FAIL_SEED", "0"), help="seed of the failure schedule (env FAIL_SEED) %(default)s")
    parser.add_argument("--summary-file", default=env("SUMMARY_FILE", "") or None, metavar="PATH",
                        help="JSON state, replaced atomically at least once a second (env SUMMARY_FILE)")
    parser.add_argument("--batch-size", type=positive_int, default=env("BATCH_SIZE", "500"), help="%(default)s")
    add_backoff_args(parser)
    add_connection_args(parser)
    return parser.parse_args(argv)


class MainConsumer:
    """The poll loop's state: running average, counters, offsets waiting for acknowledgement."""

    def __init__(self, args: argparse.Namespace, router: Router, tracker: OffsetTracker) -> None:
        self.args = args
        self.router = router
        self.tracker = tracker
        self.simulator = FailureSimulator(args.fail_rate, args.fail_product, args.seed)
        self.backoff = BackoffPolicy(args.backoff_base, args.backoff_factor, args.backoff_max, args.backoff_jitter)
        self.average = RunningAverage()
        self.retried = 0
        self.dead_lettered = 0
        self._window_start = time.monotonic()
        self._window_processed = 0
        self.events = EventLog(log, self._summary_line)

    def _summary_line(self, elapsed: float) -> str:
        rate = (self.average.count - self._window_processed) / elapsed
        self._window_processed = self.average.count
        return (
            f"Processed {rate:.0f} orders/s | running average={_fmt(self.average.average)} over "
            f"{self.average.count} orders | retried={self.retried} dead-lettered={self.dead_lettered}"
        )

    def summary(self) -> dict[str, object]:
        return {
            "processed": self.average.count,
            "average": self.average.average,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
        }

    def handle(self, msg: Message) -> None:
        """decode -> validate -> process -> route one record; never raises for bad data."""
        partition = (msg.topic(), msg.partition())
        self.tracker.track(partition, msg.offset())
        verdict = evaluate(msg.value(), msg.headers(), self.simulator)
        if verdict.route == PROCESSED:
            self._processed(msg, verdict)
        elif verdict.route == RETRY:
            self._retry(msg, verdict)
        else:
            self._dead_letter(msg, verdict)

    def _processed(self, msg: Message, verdict: Verdict) -> None:
        assert verdict.order is not None
        self.average.add(verdict.order.price)
        self.tracker.complete((msg.topic(), msg.partition()), msg.offset())
        self.events.event(
            "Processed order %s (attempt %d) | price=%.2f | running average=%.2f over %d orders",
            verdict.order.order_id, verdict.attempt, verdict.order.price, self.average.average, self.average.count,
        )

    def _retry(self, msg: Message, verdict: Verdict) -> None:
        assert verdict.failure is not None and verdict.order is not None
        delay_s = self.backoff.delay_s(verdict.attempt)
        self.router.send_back_to_retry(msg, verdict.failure, verdict.attempt, now_ms() + int(delay_s * 1000) + 1)
        self.retried += 1
        self.events.event(
            "Order %s failed attempt %d (%s) -> %s, due in %.2f s",
            verdict.order.order_id, verdict.attempt, verdict.failure.error_message, self.args.retry_topic, delay_s,
        )

    def _dead_letter(self, msg: Message, verdict: Verdict) -> None:
        assert verdict.failure is not None and verdict.dlq_reason is not None
        self.router.send_to_dlq(msg, verdict.failure, verdict.attempt, verdict.dlq_reason)
        self.dead_lettered += 1
        self.events.event(
            "Dead-lettering %s[%d]@%d key=%s -> %s: %s",
            msg.topic(), msg.partition(), msg.offset(), key_text(msg), self.args.dlq_topic, verdict.failure.reason,
            level=logging.WARNING,
        )

    def write_summary(self) -> None:
        if self.args.summary_file:
            write_json_atomic(self.args.summary_file, self.summary())


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    clients = Clients(ClientSettings(args), args.group_id)
    stop = StopFlag().install()
    topics = [args.orders_topic, args.retry_topic, args.dlq_topic]
    if not ensure_topics(clients, topics, args.partitions, args.replication_factor, lambda: stop.requested):
        return 0
    tracker = OffsetTracker()
    producer = clients.producer(PRODUCER_DEFAULTS, PRODUCER_ENFORCED)
    consumer = clients.consumer(CONSUMER_DEFAULTS, {**CONSUMER_ENFORCED, "group.id": args.group_id})
    router = Router(producer, args.retry_topic, args.dlq_topic, lambda t, p, o: tracker.complete((t, p), o))
    state = MainConsumer(args, router, tracker)
    tracked = TrackedConsumer(consumer, producer, tracker)
    tracked.subscribe([args.orders_topic])
    log.info(
        "Consuming %s as group %s (fail rate %g, fail product %s)",
        args.orders_topic, args.group_id, args.fail_rate, args.fail_product or "none",
    )
    last_summary = time.monotonic()
    state.write_summary()
    try:
        while not stop.requested:
            for msg in consumer.consume(args.batch_size, timeout=0.5):
                error = msg.error()
                if error is None:
                    state.handle(msg)
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Consumer error: %s", error.str())
            producer.poll(0)
            tracked.commit_if_due()
            if time.monotonic() - last_summary >= SUMMARY_INTERVAL_S:
                state.write_summary()
                last_summary = time.monotonic()
            state.events.tick()
    finally:
        log.info("Shutting down: flushing routed copies, committing offsets, closing the consumer")
        tracked.close()
        state.write_summary()
        log.info("Stopped. %s", state.summary())
    return 0


if __name__ == "__main__":
    run(main)
