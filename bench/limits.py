"""What the client itself can do on this machine: the limits our scripts are measured against.

Each limit uses the settings that make it fastest here; every figure is
orders per second over a fixed set of pre-produced or pre-encoded orders.
"""

from __future__ import annotations

import random
import time
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from domain.codecs import AVRO, Codec
from producer.orders import random_order

FAST_PRODUCER = {"linger.ms": 20, "batch.size": 1_000_000, "batch.num.messages": 100_000,
                 "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1_048_576,
                 "compression.type": "none", "acks": "1"}
# fetch.queue.backoff.ms is the one that matters: when the prefetch queue is over its
# thresholds librdkafka waits this long (1000 ms by default) before fetching again, which
# held raw consume() to ~150-210k records/s here; at 10 ms it read 560k-1.1M/s.
FAST_CONSUMER = {"fetch.max.bytes": 104_857_600, "max.partition.fetch.bytes": 10_485_760,
                 "queued.max.messages.kbytes": 1_048_576, "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 10}


PARTITIONS = 3  # of every topic the benchmark creates

# Rates are timed in steady state, from this share of the records on, the limits' and our scripts' alike.
STEADY_FROM = 0.1


def encoded_orders(count: int, seed: int = 1, codec: Codec = AVRO) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    orders = (random_order(rng) for _ in range(count))
    return [(order["orderId"].encode(), codec.encode(order)) for order in orders]


def produce_all(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], settings: dict | None = None) -> float:
    """Produce pre-encoded records; orders/s including the final flush."""
    producer = Producer({"bootstrap.servers": bootstrap, **FAST_PRODUCER, **(settings or {})})
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("records not delivered")
    return len(records) / (time.perf_counter() - started)


def encode_limit(bootstrap: str, topic: str, count: int, codec: Codec = AVRO) -> float:
    """Generate + encode + produce, as fast as the client goes."""
    rng = random.Random(2)
    producer = Producer({"bootstrap.servers": bootstrap, **FAST_PRODUCER})
    started = time.perf_counter()
    for _ in range(count):
        order = random_order(rng)
        value = codec.encode(order)
        while True:
            try:
                producer.produce(topic, value, order["orderId"].encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("records not delivered")
    return count / (time.perf_counter() - started)


def consume_all(bootstrap: str, topic: str, partitions: int, count: int, settings: dict,
                handle: Callable[[bytes], object] | None = None) -> float:
    """Read ``count`` records with consume(); orders/s in steady state, from the 10 % mark to the last record.

    Not from the first record: with a large prefetch, much is already fetched by then.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-limit", "enable.auto.commit": False,
                         **settings})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen = 0
    mark = int(count * STEADY_FROM)
    started = None
    try:
        while seen < count:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    continue
                if handle is not None:
                    handle(msg.value())
                seen += 1
            if started is None and seen >= mark:
                started, at_start = time.perf_counter(), seen
        assert started is not None
        return (seen - at_start) / (time.perf_counter() - started)
    finally:
        consumer.close()


def decode_limit(bootstrap: str, topic: str, partitions: int, count: int, settings: dict, codec: Codec = AVRO) -> float:
    return consume_all(bootstrap, topic, partitions, count, settings, codec.decode)
