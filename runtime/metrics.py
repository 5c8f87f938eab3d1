"""Serving Prometheus metrics, and what the loops need to publish cheaply.

The hot path never touches metric objects per record: the loops count in
plain integers and publish once per tick (:class:`CounterSync`), and latency
histograms observe a bounded sample of each batch (:func:`observe_batch`).
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from runtime.errors import ConfigError
from runtime.offsets import Partition
from runtime.positions import fetch_positions

log = logging.getLogger(__name__)

# Fine from 40 to 100 ms, around the 50 ms end-to-end target: a quantile is interpolated inside its bucket.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1,
                   0.15, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PROCESSING_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1)
SAMPLES_PER_BATCH = 64


def serve(port: Optional[int], addr: str) -> None:
    if port is None:
        return
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: {exc.strerror}") from None
    log.info("Prometheus metrics on http://%s:%d/metrics", addr, port)


class CounterSync:
    """Publishes plain integer counts to a Prometheus counter as deltas, once per tick."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.published = 0

    def publish(self, total: int) -> None:
        if total > self.published:
            self.counter.inc(total - self.published)
            self.published = total


def observe_batch(msgs: list[Message], started: float, per_record: Histogram, end_to_end: Histogram) -> None:
    """Handling time per record (the batch's mean) and end-to-end latency of a sample of the batch."""
    if not msgs:
        return
    finished = time.monotonic()
    per_record.observe((finished - started) / len(msgs))
    now = time.time()
    for msg in msgs[:: max(1, len(msgs) // SAMPLES_PER_BATCH)]:
        timestamp_type, timestamp = msg.timestamp()
        if timestamp_type and timestamp > 0:
            end_to_end.observe(max(0.0, now - timestamp / 1000))


def publish_lag(consumer: Consumer, partitions: list[Partition], gauge: Gauge) -> None:
    """Lag from the high watermark of the last fetch (correct on every broker) and the position."""
    if not partitions:
        return
    for (topic, partition), position in fetch_positions(consumer, partitions).items():
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high >= 0:
            gauge.labels(topic=topic, partition=str(partition)).set(max(0, high - position))
