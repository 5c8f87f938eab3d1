"""Orders written by a producer that is not ours, and what the pipeline must make of them."""

from __future__ import annotations

import math
import random
import struct
import uuid
from dataclasses import dataclass, field
from typing import Optional

from confluent_kafka import Producer

from avro_utils import avro_serialize
from domain.failures import attempt_draw
from domain.headers import REASON_INVALID, REASON_UNDECODABLE
from tests.kafka_helpers import Connection, client_config


def float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def poison_corpus(rng: random.Random) -> list[tuple[str, Optional[bytes], str]]:
    """(kind, value, expected DLQ reason) for records the main consumer must dead-letter."""
    order = {"orderId": "p-" + uuid.uuid4().hex, "product": "Item1", "price": 10.0}
    good = avro_serialize(order)
    return [
        ("random bytes", bytes([0x01]) + rng.randbytes(40), REASON_UNDECODABLE),
        ("empty value", b"", REASON_UNDECODABLE),
        ("null value", None, REASON_UNDECODABLE),
        ("truncated", good[:-3], REASON_UNDECODABLE),
        ("trailing bytes", good + b"\x00\x01", REASON_UNDECODABLE),
        ("gigabyte length prefix", b"\xfe\xff\xff\xff\x0f" + b"abc", REASON_UNDECODABLE),
        # 1,000,000 bytes: within Apache Kafka's default max.message.bytes (1,048,588) with key and headers.
        ("1 MB value", b"\x01" + rng.randbytes(1_000_000 - 1), REASON_UNDECODABLE),
        ("negative price", avro_serialize({**order, "orderId": "neg-" + uuid.uuid4().hex, "price": -3.5}), REASON_INVALID),
        ("nan price", avro_serialize({**order, "orderId": "nan-" + uuid.uuid4().hex, "price": math.nan}), REASON_INVALID),
        ("infinite price", avro_serialize({**order, "orderId": "inf-" + uuid.uuid4().hex, "price": math.inf}), REASON_INVALID),
        ("empty orderId", avro_serialize({**order, "orderId": ""}), REASON_INVALID),
        ("empty product", avro_serialize({**order, "orderId": "np-" + uuid.uuid4().hex, "product": ""}), REASON_INVALID),
    ]


@dataclass
class ForeignBatch:
    valid: list[dict] = field(default_factory=list)
    values: dict[bytes, dict] = field(default_factory=dict)
    poison: dict[bytes, tuple[str, Optional[bytes], str]] = field(default_factory=dict)
    written: list[tuple[Optional[bytes], Optional[bytes]]] = field(default_factory=list)  # (key, value) of each record


def write_foreign_orders(bootstrap: Connection, topic: str, count: int, rng: random.Random,
                         poison_rounds: int = 1) -> ForeignBatch:
    """Write ``count`` valid orders and the poison corpus, mixed, with odd keys and headers."""
    producer = Producer({**client_config(bootstrap), "linger.ms": 5, "message.max.bytes": 4 * 1024 * 1024})
    batch = ForeignBatch()
    records: list[tuple[Optional[bytes], Optional[bytes], list]] = []
    for _ in range(count):
        order = {"orderId": str(uuid.uuid4()), "product": f"Item{rng.randint(1, 5)}", "price": rng.uniform(0, 500)}
        value = avro_serialize(order)
        batch.valid.append(order)
        batch.values[value] = order
        key = None if rng.random() < 0.1 else order["orderId"].encode()
        headers = rng.choice([[], [("source", b"\xff\xfe")], [("retryCount", b"abc")], [("retryCount", b"-1")],
                              [("retryCount", b"99999999999999999999")], [("trace", b"1"), ("trace", b"2")]])
        records.append((key, value, headers))
    for round_ in range(poison_rounds):
        for index, entry in enumerate(poison_corpus(rng)):
            key = f"poison-{round_}-{index}-{uuid.uuid4().hex[:6]}".encode()
            batch.poison[key] = entry
            records.append((key, entry[1], [("junk", bytes([0xC3, 0x28]))]))
    rng.shuffle(records)
    failures: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.key()!r}: {err.str()}")

    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
        batch.written.append((key, value))
    assert producer.flush(60) == 0
    assert failures == [], f"the broker refused {len(failures)} record(s): {failures[:3]}"
    return batch


@dataclass
class Expected:
    processed: list[dict]
    exhausted: list[dict]

    @property
    def average(self) -> Optional[float]:
        if not self.processed:
            return None
        return math.fsum(float32(o["price"]) for o in self.processed) / len(self.processed)


def expected_outcome(orders: list[dict], fail_rate: float, fail_product: Optional[str], seed: int, max_retries: int) -> Expected:
    """Replay the deterministic failure schedule: processed at some attempt, or out of retries."""
    processed, exhausted = [], []
    for order in orders:
        attempts = max_retries + 1
        succeeded = order["product"] != fail_product and any(
            attempt_draw(order["orderId"], attempt, seed) >= fail_rate for attempt in range(1, attempts + 1)
        )
        (processed if succeeded else exhausted).append(order)
    return Expected(processed, exhausted)
