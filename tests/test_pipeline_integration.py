"""The three consumers together on the real broker, fed by a producer that is not ours."""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from typing import Optional

import pytest
from confluent_kafka import Producer

from domain.headers import (
    DLQ_REASON, ERROR, ERROR_CLASS, ERROR_STAGE, ORIGIN_TOPIC, REASON_EXHAUSTED, REASON_TOO_LARGE, REPLAYED_AT,
    RETRY_COUNT, RETRY_DUE, VALUE_OMITTED,
)
from runtime.provenance import source_of
from tests.kafka_helpers import ScriptRunner, Topics, create_topics, read_all, read_json, wait_until
from tests.pipeline_expectations import expected_outcome, float32, write_foreign_orders

pytestmark = pytest.mark.integration

FAST_BACKOFF = ["--backoff-base", "0.2", "--backoff-factor", "2", "--backoff-max", "0.8"]


def test_every_order_is_counted_or_dead_lettered_exactly_once(runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path):
    seed, fail_rate, fail_product, max_retries = 11, 0.1, "Item3", 3
    create_topics(bootstrap, topics.pipeline())
    batch = write_foreign_orders(bootstrap, topics.orders, 2500, random.Random(7))
    expected = expected_outcome(batch.valid, fail_rate, fail_product, seed, max_retries)
    summary_path = tmp_path / "summary.json"
    main = runner.start("consumer.main_consumer", "--fail-rate", str(fail_rate), "--fail-product", fail_product,
                        "--seed", str(seed), "--summary-file", str(summary_path), *FAST_BACKOFF)
    retry = runner.start("retry.retry_consumer", "--max-retries", str(max_retries), *FAST_BACKOFF)
    expected_dlq = len(batch.poison) + len(expected.exhausted)

    def settled() -> bool:
        summary = read_json(summary_path) or {}
        return summary.get("processed") == len(expected.processed) and len(read_all(bootstrap, topics.dlq)) >= expected_dlq

    runner.wait_until(settled, 180, what="all orders processed or dead-lettered")
    assert main.stop() == 0 and retry.stop() == 0
    for script in (main, retry):
        assert "Traceback" not in script.output()

    summary = read_json(summary_path)
    assert summary["processed"] == len(expected.processed)
    assert math.isclose(summary["average"], expected.average, rel_tol=1e-9)
    assert summary["dead_lettered"] == len(batch.poison)

    dead = read_all(bootstrap, topics.dlq)
    assert len(dead) == expected_dlq
    by_key_value = Counter((r.key, r.value) for r in dead)
    assert max(by_key_value.values()) == 1, "a record was dead-lettered twice"
    for record in dead:
        assert record.header(ERROR), "every dead letter carries a non-empty error header"
        assert record.header(ORIGIN_TOPIC) == topics.orders
    poison_seen = {r.key: r for r in dead if r.key in batch.poison}
    assert set(poison_seen) == set(batch.poison)
    for key, (kind, value, reason) in batch.poison.items():
        record = poison_seen[key]
        assert record.value == value, kind
        assert record.header(DLQ_REASON) == reason, kind
    exhausted_values = {r.value: r for r in dead if r.key not in batch.poison}
    assert {batch.values[v]["orderId"] for v in exhausted_values} == {o["orderId"] for o in expected.exhausted}
    for record in exhausted_values.values():
        assert record.header(DLQ_REASON) == REASON_EXHAUSTED
        assert record.header(RETRY_COUNT) == str(max_retries + 1)
        assert record.header(ERROR_STAGE) == "process"

    retried = read_all(bootstrap, topics.retry)
    assert summary["retried"] == len(retried)
    assert all(r.header(ERROR) and int(r.header(RETRY_COUNT)) >= 1 and r.header(RETRY_DUE) for r in retried)
    redriven = read_all(bootstrap, topics.redrive)
    assert len(redriven) == len(retried) - len(expected.exhausted)
    early = [r for r in redriven if r.timestamp_ms < int(r.header(RETRY_DUE))]
    assert early == [], "a retry was re-driven before it was due"
    assert_orders_hold_only(bootstrap, topics.orders, batch.written)


def assert_orders_hold_only(bootstrap: str, orders_topic: str, written: list) -> None:
    """A bystander reading the orders topic sees exactly what the producer wrote: no retry, no replay."""
    seen = Counter((r.key, r.value) for r in read_all(bootstrap, orders_topic))
    assert seen == Counter(written), f"{sum(seen.values())} records in {orders_topic}, {len(written)} written"


def test_dlq_consumer_shows_and_replays_dead_letters(runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path):
    create_topics(bootstrap, topics.pipeline())
    batch = write_foreign_orders(bootstrap, topics.orders, 20, random.Random(3))
    summary_path = tmp_path / "summary.json"
    main = runner.start("consumer.main_consumer", "--fail-rate", "0", "--summary-file", str(summary_path))
    runner.wait_until(lambda: len(read_all(bootstrap, topics.dlq)) == len(batch.poison), 120, what="poison in the DLQ")

    viewer = runner.start("dlq.dlq_consumer", "--from-beginning")
    wait_until(lambda: viewer.output().count("Dead letter ") == len(batch.poison), 90, what="every dead letter shown")
    assert viewer.stop() == 0
    shown = viewer.output()
    assert "<could not decode>" in shown and "reason=invalid order" in shown and "stage=decode" in shown
    assert "Traceback" not in shown

    dry = runner.run("dlq.dlq_consumer", "--replay", "--reason-contains", "NEGATIVE", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Would replay 1 dead letter(s)" in dry.stderr
    assert len(read_all(bootstrap, topics.dlq)) == len(batch.poison)

    replay = runner.run("dlq.dlq_consumer", "--replay", "--reason-contains", "negative")
    assert replay.returncode == 0, replay.stderr
    assert f"Replayed 1 dead letter(s) to {topics.redrive}, skipped {len(batch.poison) - 1}" in replay.stderr
    wait_until(lambda: len(read_all(bootstrap, topics.dlq)) == len(batch.poison) + 1, 60, what="the replayed record back in the DLQ")
    again = [r for r in read_all(bootstrap, topics.dlq) if r.header(REPLAYED_AT)]
    assert len(again) == 1 and again[0].header(RETRY_COUNT) == "1" and "negative" in again[0].header(ERROR)
    assert main.stop() == 0
    assert read_json(summary_path)["processed"] == 20
    assert_orders_hold_only(bootstrap, topics.orders, batch.written)


def test_state_survives_kill_9_and_stats_reads_it(runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path):
    create_topics(bootstrap, topics.pipeline())
    batch = write_foreign_orders(bootstrap, topics.orders, 500, random.Random(4), poison_rounds=0)
    summary_path = tmp_path / "summary.json"
    first = runner.start("consumer.main_consumer", "--fail-rate", "0", "--summary-file", str(summary_path))
    runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == 500, 60, what="500 orders processed")
    runner.wait_until(lambda: "500 orders processed" in runner.run("consumer.stats").stdout, 30, what="the checkpoint")
    first.kill()
    summary_path.unlink()
    second = runner.start("consumer.main_consumer", "--fail-rate", "0", "--summary-file", str(summary_path))
    runner.wait_until(lambda: "Assigned" in second.output(), 60, what="the restarted consumer's assignment")
    runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == 500, 30, what="the restored summary")
    assert second.stop() == 0
    expected = sum(float32(o["price"]) for o in batch.valid) / 500
    summary = read_json(summary_path)
    assert summary["processed"] == 500 and math.isclose(summary["average"], expected, rel_tol=1e-9)
    figures = json.loads(runner.run("consumer.stats", "--json").stdout)
    assert figures["processed"] == 500 and math.isclose(figures["average"], expected, rel_tol=1e-9)
    assert sum(p["processed"] for p in figures["partitions"].values()) == 500
    assert "Processed order" not in second.output(), "a record was applied twice after the restart"


def test_a_stats_topic_that_is_not_compacted_is_refused(runner: ScriptRunner, topics: Topics, bootstrap: str):
    create_topics(bootstrap, [*topics.pipeline(), topics.stats])  # the broker's default: cleanup.policy=delete
    result = runner.run("consumer.main_consumer", timeout_s=90)
    assert result.returncode == 2, result.stderr
    [line] = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert f"the stats topic {topics.stats} has cleanup.policy=delete" in line
    assert "Traceback" not in result.stderr


def test_replay_takes_only_what_it_is_asked_for_never_a_stub_and_keeps_to_its_rate(
        runner: ScriptRunner, topics: Topics, bootstrap: str):
    create_topics(bootstrap, topics.pipeline())
    base_ms = int(time.time() * 1000) - 60_000
    producer = Producer({"bootstrap.servers": bootstrap})

    def dead_letter(key: bytes, error_class: bytes, reason: bytes, at_ms: int, value: Optional[bytes] = b"v",
                    extra: tuple = ()) -> None:
        headers = [(DLQ_REASON, reason), (ERROR, reason), (ERROR_CLASS, error_class), *extra]
        producer.produce(topics.dlq, key=key, value=value, headers=headers, timestamp=at_ms)

    dead_letter(b"k1", b"ValidationError", b"invalid order", base_ms)
    dead_letter(b"k2", b"TransientProcessingError", b"retries exhausted", base_ms + 1000)
    dead_letter(b"k3", b"ValidationError", REASON_TOO_LARGE.encode(), base_ms + 2000, None, ((VALUE_OMITTED, b"500000"),))
    for n in range(30):
        dead_letter(b"bulk-%d" % n, b"BulkError", b"retries exhausted", base_ms + 3000)
    assert producer.flush(30) == 0

    def replay(*selection: str) -> str:
        result = runner.run("dlq.dlq_consumer", "--replay", *selection)
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert "Replayed 1 dead letter(s)" in replay("--key", "k1")
    assert "Replayed 1 dead letter(s)" in replay("--error-class", "transientprocessingerror", "--since", str(base_ms + 500),
                                                 "--until", str(base_ms + 1500))
    refused = replay("--reason-contains", "too large")
    assert "Replayed 0 dead letter(s)" in refused and "1 not replayable" in refused
    assert "Replayed 30 dead letter(s)" in replay("--error-class", "BulkError", "--max-rate", "20")
    replayed = read_all(bootstrap, topics.redrive)
    assert sorted(r.key for r in replayed if not r.key.startswith(b"bulk-")) == [b"k1", b"k2"]
    bulk = sorted(r.timestamp_ms for r in replayed if r.key.startswith(b"bulk-"))
    assert len(bulk) == 30 and bulk[-1] - bulk[0] >= 0.9 * 29 / 20 * 1000, "faster than --max-rate 20"
    second_run = replay()
    assert "Replayed 0 dead letter(s)" in second_run and "32 replayed before" in second_run
    assert "Replayed 1 dead letter(s)" in replay("--key", "k1", "--again")


def test_a_replay_killed_half_way_and_run_again_sends_each_dead_letter_once(
        runner: ScriptRunner, topics: Topics, bootstrap: str):
    create_topics(bootstrap, topics.pipeline())
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(60):
        producer.produce(topics.dlq, key=b"dead-%d" % n, value=b"v", headers=[(DLQ_REASON, b"retries exhausted")])
    assert producer.flush(30) == 0
    first = runner.start("dlq.dlq_consumer", "--replay", "--max-rate", "5")
    runner.wait_until(lambda: len(read_all(bootstrap, topics.redrive)) >= 10, 60, what="a part of the replay")
    first.kill()
    assert len(read_all(bootstrap, topics.redrive)) < 60, "the replay finished before it was killed"
    rerun = runner.run("dlq.dlq_consumer", "--replay", "--max-rate", "0")
    assert rerun.returncode == 0, rerun.stderr
    sources = Counter(source_of(r.headers) for r in read_all(bootstrap, topics.redrive))
    assert sorted(sources.values()) == [1] * 60 and {s[0] for s in sources} == {topics.dlq}


def test_a_reset_is_refused_while_the_group_runs_and_then_starts_it_over(
        runner: ScriptRunner, topics: Topics, bootstrap: str, tmp_path, engine: str):
    create_topics(bootstrap, topics.pipeline())
    write_foreign_orders(bootstrap, topics.orders, 100, random.Random(6), poison_rounds=0)
    summary_path = tmp_path / "summary.json"
    main = runner.start("consumer.main_consumer", "--summary-file", str(summary_path))
    runner.wait_until(lambda: "100 orders processed" in runner.run("consumer.stats").stdout, 90, what="the checkpoints")
    if engine != "tansu":  # Tansu's DescribeGroups lists no members of a running group (measured), so it cannot refuse
        refused = runner.run("consumer.stats", "--reset")
        assert refused.returncode == 1 and "active member(s)" in refused.stderr, refused.stderr
    assert main.stop() == 0
    done = runner.run("consumer.stats", "--reset")
    assert done.returncode == 0, done.stderr
    assert json.loads(runner.run("consumer.stats", "--json").stdout)["processed"] == 0
    summary_path.unlink()
    again = runner.start("consumer.main_consumer", "--summary-file", str(summary_path))
    runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == 100, 90, what="the orders processed anew")
    assert again.stop() == 0
    assert read_json(summary_path)["processed"] == 100
