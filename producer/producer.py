"""Produce random Avro orders to the ``orders`` topic, keyed by orderId.

Run: ``python -m producer.producer [--rate N] [--count N] [--invalid-rate R]``.
The producer is idempotent (acks=all), paces itself with ``poll()`` so delivery
reports are served while it waits, and on Ctrl+C or SIGTERM flushes what is
pending and prints a summary.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Optional

from confluent_kafka import KafkaError, Message, Producer

from app import metrics as figures
from app import settings as flags
from app.settings import env, non_negative_float, probability
from domain.codecs import AVRO, Codec
from runtime.cli import run
from runtime.clients import PRODUCER_ENFORCED, Clients
from runtime.metrics import CounterSync, serve
from runtime.gc_tuning import tune_for_streaming
from runtime.logs import EventLog, setup_logging
from runtime.routing import produce_patiently
from runtime.shutdown import StopFlag
from runtime.topics import ensure_topics
from producer.orders import poison_record, random_order

log = logging.getLogger("producer")

# What won in the benchmark on one machine with the broker beside it; over a real network
# compression.type=lz4 in the properties file usually pays for itself.
PRODUCER_DEFAULTS = {"linger.ms": 5, "compression.type": "none", "batch.size": 1_000_000}
FLUSH_TIMEOUT_S = 30.0
METRICS_INTERVAL_S = 0.5


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m producer.producer", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rate", type=non_negative_float, default=env("PRODUCER_RATE", "1"),
        help="orders per second; 0 = as fast as the client can go (env PRODUCER_RATE) %(default)s",
    )
    parser.add_argument("--count", type=int, default=None, help="stop after this many records (default: run until stopped)")
    parser.add_argument(
        "--invalid-rate", type=probability, default=env("PRODUCER_INVALID_RATE", "0"),
        help="share of poison records: undecodable bytes or orders that fail validation "
        "(env PRODUCER_INVALID_RATE) %(default)s",
    )
    parser.add_argument("--client-id", default=env("PRODUCER_CLIENT_ID", "orders-producer"), help="%(default)s")
    flags.add_format_arg(parser)
    flags.add_connection_args(parser)
    flags.add_metrics_args(parser)
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 0:
        parser.error("--count must be >= 0")
    return args


@dataclass
class DeliveryStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    poison: int = 0
    _syncs: tuple[CounterSync, ...] = field(
        default_factory=lambda: tuple(CounterSync(c) for c in (figures.PRODUCED, figures.DELIVERED, figures.DELIVERY_FAILED)),
        repr=False,
    )

    def publish(self) -> None:
        self._syncs[0].publish(self.sent)
        self._syncs[1].publish(self.delivered)
        self._syncs[2].publish(self.failed)

    def line(self) -> str:
        return f"sent={self.sent} delivered={self.delivered} failed={self.failed} (poison records: {self.poison})"


class DeliveryReports:
    """Which delivery reports librdkafka sends, and what each one does.

    At demo rates every record's report writes a line (partition and offset).
    Above the line budget, librdkafka reports failures only
    (``delivery.report.only.error``): a Python call per record would cost
    about a tenth of the full rate. What the broker acknowledged is then what
    was sent, less what failed, less what is still queued (:meth:`OrderProducer.settle`).
    """

    def __init__(self, stats: DeliveryStats, events: EventLog, every_record: bool, codec: Codec = AVRO) -> None:
        self.stats = stats
        self.events = events
        self.every_record = every_record
        self.codec = codec

    def client_settings(self) -> dict[str, object]:
        """Enforced on the producer: the accounting depends on them."""
        return {"delivery.report.only.error": not self.every_record, "on_delivery": self.report}

    def report(self, err: Optional[KafkaError], msg: Message) -> None:
        if err is not None:
            self.stats.failed += 1
            log.error("Delivery failed for %s: %s", describe(msg.key(), msg.value(), self.codec), err.str())
            return
        self.stats.delivered += 1
        if self.events.wants_line():
            self.events.line("Produced %s -> %s[%d]@%s", describe(msg.key(), msg.value(), self.codec), msg.topic(), msg.partition(),
                             msg.offset())


class OrderProducer:
    """Sends orders and poison records, and accounts for every one of them."""

    POLL_EVERY = 100  # records between polls for delivery reports at full speed

    def __init__(self, producer: Producer, topic: str, reports: DeliveryReports) -> None:
        self.producer = producer
        self.topic = topic
        self.reports = reports
        self.stats = reports.stats
        self.codec = reports.codec

    def settle(self) -> None:
        """Bring ``stats.delivered`` up to date when successes are not reported one by one.

        ``len(producer)`` also counts client events not yet served (errors,
        logs), so while running this is a lower bound, never above the truth;
        once flushed it is exact. It never goes down: it feeds a counter.
        """
        if not self.reports.every_record:
            settled = self.stats.sent - self.stats.failed - len(self.producer)
            self.stats.delivered = max(self.stats.delivered, settled)

    def send(self, rng: random.Random, invalid_rate: float, count: int) -> None:
        """Produce ``count`` records (orders, or poison at ``invalid_rate``), then serve delivery reports.

        At full speed the loop calls this for bursts of POLL_EVERY records: the
        per-record path is generate, encode, produce, and nothing else.
        """
        produce, topic, encode = self.producer.produce, self.topic, self.codec.encode
        for _ in range(count):
            if invalid_rate and rng.random() < invalid_rate:
                poison = poison_record(rng, self.codec)
                key, value = poison.key, poison.value
                self.stats.poison += 1
            else:
                order = random_order(rng)
                key, value = order["orderId"].encode(), encode(order)
            try:
                produce(topic, value, key)
            except BufferError:
                produce_patiently(self.producer, topic, key=key, value=value)
        self.stats.sent += count
        self.producer.poll(0)
        if not self.reports.every_record:
            self.reports.events.count_unlogged(count)


def describe(key: Optional[bytes], value: Optional[bytes], codec: Codec) -> str:
    """A delivered record as a person reads it; only called when a line is written."""
    try:
        order = codec.decode(value)
    except codec.decode_error:
        return f"poison record key={(key or b'').decode('utf-8', 'replace')}"
    return f"order {order['orderId']} | {order['product']} | price={order['price']:.2f}"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    kafka = flags.kafka_settings(args)
    clients = Clients(kafka, args.client_id)
    stop = StopFlag().install()
    if not ensure_topics(clients, [args.orders_topic], kafka.partitions, kafka.replication_factor, lambda: stop.requested):
        return 0
    stats = DeliveryStats()
    started = time.monotonic()

    def summarize(elapsed: float) -> str:
        sender.settle()
        return f"Producer: {stats.line()}, {stats.sent / max(time.monotonic() - started, 1e-9):.0f} records/s overall"

    events = EventLog(log, summarize)
    rng = random.Random()
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    reports = DeliveryReports(stats, events, every_record=0 < args.rate <= events.max_lines_per_second,
                              codec=flags.codec(args))
    producer = clients.producer(PRODUCER_DEFAULTS, {**PRODUCER_ENFORCED, **reports.client_settings()}, warm_up=[args.orders_topic])
    sender = OrderProducer(producer, args.orders_topic, reports)
    log.info(
        "Producing to %s at %s (bootstrap %s)",
        args.orders_topic, f"{args.rate:g} orders/s" if interval else "full speed", kafka.bootstrap_servers,
    )
    serve(args.metrics_port, args.metrics_addr)
    tune_for_streaming()
    next_send = last_publish = time.monotonic()
    while not stop.requested and (args.count is None or stats.sent < args.count):
        clients.status.check()  # a refusal or fatal error the producer reported: stop
        if interval:
            wait = next_send - time.monotonic()
            if wait > 0:
                producer.poll(min(wait, 0.5))
                continue
            next_send = max(next_send + interval, time.monotonic() - 1.0)  # no burst after a stall
            burst = 1
        else:
            burst = OrderProducer.POLL_EVERY if args.count is None else min(OrderProducer.POLL_EVERY, args.count - stats.sent)
        sender.send(rng, args.invalid_rate, burst)
        events.tick()
        if time.monotonic() - last_publish >= METRICS_INTERVAL_S:
            sender.settle()
            stats.publish()
            last_publish = time.monotonic()
    log.info("Flushing %d pending record(s)", len(producer))
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    if remaining:
        log.error("%d record(s) not delivered within %.0f s", remaining, FLUSH_TIMEOUT_S)
    sender.settle()
    stats.publish()
    log.info("Producer stopped: %s, undelivered=%d", stats.line(), remaining)
    return 0 if stats.failed == 0 and remaining == 0 else 1


if __name__ == "__main__":
    run(main)
