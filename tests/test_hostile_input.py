"""Hostile records on the real broker: each ends in the DLQ with a clear reason, and no script stops."""

from __future__ import annotations

import random

import pytest
from confluent_kafka import Producer

from domain.headers import DLQ_REASON, ERROR, REASON_TOO_LARGE, VALUE_OMITTED
from tests.kafka_helpers import DEV_PROPERTIES, ScriptRunner, Topics, create_topics, read_all, read_json
from tests.pipeline_expectations import write_foreign_orders

pytestmark = pytest.mark.integration


def test_poison_corpus_is_dead_lettered_once_each_and_nothing_stops(runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path):
    create_topics(bootstrap, topics.pipeline())
    batch = write_foreign_orders(bootstrap, topics.orders, 50, random.Random(9), poison_rounds=2)
    summary_path = tmp_path / "summary.json"
    main = runner.start("consumer.main_consumer", "--fail-rate", "0", "--summary-file", str(summary_path))
    retry = runner.start("retry.retry_consumer")
    viewer = runner.start("dlq.dlq_consumer", "--from-beginning")
    runner.wait_until(lambda: viewer.output().count("Dead letter ") >= len(batch.poison), 120, what="every dead letter shown")
    runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == 50, 60, what="the valid orders")
    for script in (main, retry, viewer):
        assert script.running(), script.output()[-3000:]
        assert script.stop() == 0
        assert "Traceback" not in script.output()
    dead = read_all(bootstrap, topics.dlq)
    assert sorted(r.key for r in dead) == sorted(batch.poison)
    for record in dead:
        kind, value, reason = batch.poison[record.key]
        assert record.value == value, kind
        assert record.header(DLQ_REASON) == reason, kind
        assert record.header(ERROR), kind
    assert "<could not decode> (null value)" in viewer.output()


def test_a_value_too_large_to_copy_becomes_a_stub_that_points_at_the_original(runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path):
    create_topics(bootstrap, topics.pipeline())
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    producer.produce(topics.orders, key=b"big", value=b"\x01" * 500_000)
    assert producer.flush(30) == 0
    config = tmp_path / "small.properties"
    config.write_text(DEV_PROPERTIES.read_text() + "message.max.bytes=200000\n")
    runner.start("consumer.main_consumer", "--fail-rate", "0", env={"KAFKA_CONFIG_FILE": str(config)})
    runner.wait_until(lambda: read_all(bootstrap, topics.dlq), 60, what="the stub in the DLQ")
    [stub] = read_all(bootstrap, topics.dlq)
    assert stub.key == b"big" and stub.value is None
    assert stub.header(DLQ_REASON) == REASON_TOO_LARGE
    assert stub.header(VALUE_OMITTED) == "500000"
    assert "500000 bytes" in stub.header(ERROR)
