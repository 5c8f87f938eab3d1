"""What the README promises of the runtime beyond the happy path: the guarantee `auto` picks, a restart fencing its
previous incarnation, partitions added to `orders` while the pipeline runs, and a shutdown within its budget."""

from __future__ import annotations

import math
import random
import re
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from runtime.provenance import source_of
from runtime.shutdown import SHUTDOWN_BUDGET_S
from tests.kafka_helpers import DEV_PROPERTIES, ScriptRunner, Topics, create_topics, read_all, read_json
from tests.pipeline_expectations import expected_outcome, write_foreign_orders

pytestmark = pytest.mark.integration

FAST_BACKOFF = ["--backoff-base", "0.2", "--backoff-factor", "2", "--backoff-max", "0.8"]
AUTO_CHOICE = {
    "kafka": "exactly-once (auto: the broker has a transaction coordinator); "
             "group protocol classic (auto: with exactly-once, whose commits the classic protocol's generations fence)",
    "tansu": "at-least-once (auto: the broker reports no transaction coordinator); "
             "group protocol classic (auto: the broker offers the classic protocol only)",
}


def test_auto_chooses_the_guarantee_and_group_protocol_per_broker_and_says_why(
    runner: ScriptRunner, topics: Topics, bootstrap: str, engine: str,
) -> None:
    create_topics(bootstrap, topics.pipeline())
    main = runner.start("consumer.main_consumer")
    retry = runner.start("retry.retry_consumer")
    for script, start_up_line in ((main, "Consuming "), (retry, "Scheduling retries ")):
        runner.wait_until(lambda: start_up_line in script.output(), 60, what=f"{script.name}'s start-up line")
        start_up = next(line for line in script.output().splitlines() if start_up_line in line)
        assert start_up.endswith(AUTO_CHOICE[engine]), start_up
        runner.wait_until(lambda: "Assigned " in script.output(), 60, what=f"{script.name}'s partitions")
    group = topics.env()["MAIN_GROUP_ID"]
    if engine == "kafka":  # the broker's own account of the group, beside our log line (Tansu calls every group
        admin = AdminClient({"bootstrap.servers": bootstrap})  # "consumer", whichever protocol it speaks)
        [future] = admin.describe_consumer_groups([group]).values()
        assert future.result(30).type == ConsumerGroupType.CLASSIC
    assert main.stop() == 0 and retry.stop() == 0
    runner.assert_healthy()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-ends-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def test_a_restart_with_the_same_transactional_id_fences_the_previous_incarnation(
        runner: ScriptRunner, topics: Topics, bootstrap: str, engine: str, tmp_path) -> None:
    """kill -9 a main consumer in the middle of a transaction that the coordinator would keep open for 60 s; its
    restart with the same ``--transactional-id`` aborts it at once, so ``read_committed`` readers of the retry topic
    see the restart's copies well before those 60 s."""
    if engine != "kafka":
        pytest.skip("Tansu's transactions fence nothing (docs/brokers.md)")
    create_topics(bootstrap, topics.pipeline())
    long_transactions = tmp_path / "long.properties"
    long_transactions.write_text(DEV_PROPERTIES.read_text() + "transaction.timeout.ms=60000\n")
    incarnation = ("consumer.main_consumer", "--guarantee", "exactly-once", "--transactional-id",
                   f"orders-main-{uuid.uuid4().hex[:8]}", "--config", str(long_transactions), "--fail-rate", "0.5")
    producer = runner.start("producer.producer", "--rate", "200")
    first = runner.start(*incarnation, name="first")
    runner.wait_until(lambda: len(read_all(bootstrap, topics.retry)) > 100, 90, what="copies flowing to the retry topic")
    first.kill()
    killed_at = time.monotonic()
    ends_at_kill = end_offsets(bootstrap, topics.orders)
    runner.start(*incarnation, name="restart")

    def restart_copies_readable() -> bool:
        committed = read_all({"bootstrap.servers": bootstrap, "isolation.level": "read_committed"}, topics.retry, 10)
        sources = (source_of(record.headers) for record in committed)
        return any(source is not None and source[2] >= ends_at_kill[source[1]] for source in sources)

    runner.wait_until(restart_copies_readable, 40, what="read_committed readers to see the restart's copies")
    assert time.monotonic() - killed_at < 50, "the killed incarnation's transaction was not aborted before its timeout"
    producer.stop()
    runner.assert_healthy()


def test_partitions_added_to_orders_while_running_are_consumed(runner: ScriptRunner, topics: Topics, bootstrap: str,
                                                              tmp_path) -> None:
    """orders grows from 3 to 5 partitions mid-run; the retry, re-drive and DLQ topics have 2, 4 and 1. Every order
    is counted or dead-lettered exactly once (new partitions are found within topic.metadata.refresh.interval.ms)."""
    seed, fail_rate, fail_product, max_retries = 13, 0.1, "Item3", 2
    create_topics(bootstrap, [topics.orders], partitions=3)
    create_topics(bootstrap, [topics.retry], partitions=2)
    create_topics(bootstrap, [topics.redrive], partitions=4)
    create_topics(bootstrap, [topics.dlq], partitions=1)
    quick_metadata = tmp_path / "metadata.properties"
    quick_metadata.write_text(DEV_PROPERTIES.read_text() + "topic.metadata.refresh.interval.ms=2000\n")
    summary_path = tmp_path / "summary.json"
    main = runner.start("consumer.main_consumer", "--config", str(quick_metadata), "--fail-rate", str(fail_rate),
                        "--fail-product", fail_product, "--seed", str(seed), "--summary-file", str(summary_path),
                        *FAST_BACKOFF)
    retry = runner.start("retry.retry_consumer", "--config", str(quick_metadata), "--max-retries", str(max_retries),
                         *FAST_BACKOFF)
    rng = random.Random(5)
    before = write_foreign_orders(bootstrap, topics.orders, 600, rng, poison_rounds=0)
    runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed", 0) > 100, 90, what="processing to start")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.create_partitions([NewPartitions(topics.orders, 5)]).values()
    try:
        future.result(30)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._UNSUPPORTED_FEATURE:
            raise
        pytest.skip(f"the broker cannot add partitions (docs/brokers.md): {exc.args[0].str()}")
    after = write_foreign_orders(bootstrap, topics.orders, 600, rng, poison_rounds=0)
    written_to_new = [r for r in read_all(bootstrap, topics.orders) if r.partition >= 3]
    assert written_to_new, "some orders were written to the added partitions"

    expected = expected_outcome(before.valid + after.valid, fail_rate, fail_product, seed, max_retries)

    def settled() -> bool:
        summary = read_json(summary_path) or {}
        return summary.get("processed") == len(expected.processed) and \
            len(read_all(bootstrap, topics.dlq)) >= len(expected.exhausted)

    runner.wait_until(settled, 180, what="every order processed or dead-lettered, new partitions included")
    assert main.stop() == 0 and retry.stop() == 0
    runner.assert_healthy()
    summary = read_json(summary_path)
    assert math.isclose(summary["average"], expected.average, rel_tol=1e-9)
    dead = read_all(bootstrap, topics.dlq)
    assert len(dead) == len(expected.exhausted), "nothing dead-lettered twice"
    assert "Assigned" in main.output() and f"{topics.orders}[4]" in main.output(), "the added partitions were assigned"


@pytest.mark.timeout(400)
def test_members_stopped_one_after_another_exit_within_the_shutdown_budget(
        runner: ScriptRunner, topics: Topics, bootstrap: str) -> None:
    """Three main consumers stopped one after another, three times over, while orders flow: each stop starts a
    rebalance that can end while the next member closes (its final commit meets a newer group generation, its
    partitions arrive inside close()). Every member still exits 0 within the shutdown budget."""
    create_topics(bootstrap, topics.pipeline())
    producer = runner.start("producer.producer", "--rate", "300")
    retry = runner.start("retry.retry_consumer", *FAST_BACKOFF)  # so that re-drive partitions carry orders too
    for round_ in range(3):
        # A group of its own per round: on Tansu a group whose members all left during a rebalance may give new
        # members no partitions for minutes (docs/brokers.md).
        group = ("--group-id", f"orders-main-{uuid.uuid4().hex[:8]}")
        members = [runner.start("consumer.main_consumer", *group, "--fail-rate", "0.1", *FAST_BACKOFF,
                                name=f"main-{round_}{i}") for i in range(3)]
        for member in members:
            runner.wait_until(lambda: "Processed order" in re.split("Assigned |Revoked ", member.output())[-1], 90,
                              what=f"{member.name} to process orders from the partitions it owns")
        for member in members:  # stop() fails the test if the member has not exited by then
            assert member.stop(timeout_s=SHUTDOWN_BUDGET_S + 5) == 0, member.output()[-3000:]
    assert producer.stop() == 0 and retry.stop() == 0
    runner.assert_healthy()
