"""Orders in each format, written by a producer that is not ours, through the main and retry consumers."""

from __future__ import annotations

import math
import random
import uuid

import pytest
from confluent_kafka import Producer

from domain.codecs import CODECS
from domain.headers import DLQ_REASON, REASON_FRAMED
from producer.orders import poison_record
from tests.kafka_helpers import ScriptRunner, Topics, create_topics, read_all, read_json
from tests.pipeline_expectations import expected_outcome, float32

pytestmark = pytest.mark.integration

FAST_BACKOFF = ["--backoff-base", "0.2", "--backoff-factor", "2", "--backoff-max", "0.8"]


@pytest.mark.parametrize("fmt", sorted(CODECS))
def test_each_format_flows_through_exactly_and_a_framed_record_is_named(
        fmt: str, runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path):
    codec = CODECS[fmt]
    create_topics(bootstrap, topics.pipeline())
    rng = random.Random(11)
    orders = [{"orderId": str(uuid.uuid4()), "product": f"Item{rng.randint(1, 5)}", "price": rng.uniform(0, 500)}
              for _ in range(400)]
    poison = [poison_record(rng, codec) for _ in range(20)]
    framed = b"\x00" + (7).to_bytes(4, "big") + codec.encode(orders[0])
    producer = Producer({"bootstrap.servers": bootstrap})
    for order in orders:
        producer.produce(topics.orders, key=order["orderId"].encode(), value=codec.encode(order))
    for record in poison:
        producer.produce(topics.orders, key=record.key, value=record.value)
    producer.produce(topics.orders, key=b"framed", value=framed)
    assert producer.flush(30) == 0

    summary_path = tmp_path / "summary.json"
    runner.start("consumer.main_consumer", "--format", fmt, "--fail-rate", "0.1", "--fail-product", "Item3",
                 "--seed", "3", "--summary-file", str(summary_path), *FAST_BACKOFF)
    runner.start("retry.retry_consumer", "--format", fmt, "--max-retries", "3", *FAST_BACKOFF)
    expected = expected_outcome(orders, 0.1, "Item3", 3, 3)
    dead_expected = len(poison) + 1 + len(expected.exhausted)
    runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == len(expected.processed)
                      and len(read_all(bootstrap, topics.dlq)) == dead_expected, 180, what="every order handled")
    for script in runner.scripts:
        assert script.stop() == 0, script.name

    as_decoded = (lambda price: price) if fmt == "json" else float32  # JSON has no float32
    average = math.fsum(as_decoded(order["price"]) for order in expected.processed) / len(expected.processed)
    summary = read_json(summary_path)
    assert summary["processed"] == len(expected.processed)
    assert math.isclose(summary["average"], average, rel_tol=1e-9), (summary["average"], average)
    dead = read_all(bootstrap, topics.dlq)
    assert len(dead) == dead_expected
    [framed_letter] = [r for r in dead if r.key == b"framed"]
    assert framed_letter.header(DLQ_REASON) == f"{REASON_FRAMED} (schema id 7)"
