"""The producer's delivery accounting when librdkafka reports failures only (full speed)."""

from __future__ import annotations

import logging
import random
import time

from confluent_kafka import Producer

from devbroker import free_port
from runtime.logs import EventLog
from producer.producer import DeliveryReports, DeliveryStats, OrderProducer


def test_failures_are_counted_and_never_reported_as_delivered_when_only_errors_are_reported():
    stats = DeliveryStats()
    reports = DeliveryReports(stats, EventLog(logging.getLogger("test"), lambda _e: ""), every_record=False)
    nobody_listens = f"127.0.0.1:{free_port()}"
    producer = Producer({"bootstrap.servers": nobody_listens, "message.timeout.ms": 1000, **reports.client_settings()})
    sender = OrderProducer(producer, "orders", reports)
    sender.send(random.Random(1), invalid_rate=0.3, count=10)
    sender.settle()
    assert (stats.sent, stats.delivered, stats.failed) == (10, 0, 0)  # all still queued
    assert 0 < stats.poison < 10
    deadline = time.monotonic() + 30
    while stats.failed < 10 and time.monotonic() < deadline:
        producer.poll(0.1)
    sender.settle()
    assert (stats.sent, stats.delivered, stats.failed) == (10, 0, 10)
