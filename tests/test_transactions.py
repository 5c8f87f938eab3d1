"""Exactly-once on Apache Kafka: a fenced transactional producer is replaced, leaking nothing, the summary never
shows what an aborted transaction did, and a take-over waits for the previous owner's last transaction."""

from __future__ import annotations

import os
import random
import threading
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from runtime.checkpoints import Checkpoint
from runtime.settings import ConsumerSettings, KafkaSettings, load_properties
from runtime.wiring import Plan, wire
from tests.kafka_helpers import DEV_PROPERTIES, ScriptRunner, Topics, create_topics, read_json
from tests.pipeline_expectations import write_foreign_orders

pytestmark = pytest.mark.integration

DEV_PROPERTY_MAP = load_properties(str(DEV_PROPERTIES))


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_renewals_of_a_fenced_producer_leak_no_threads_and_lose_nothing(
        runner: ScriptRunner, topics: Topics, bootstrap: str, engine: str, tmp_path):
    if engine != "kafka":
        pytest.skip("Tansu's transactions fence nothing (docs/brokers.md)")
    create_topics(bootstrap, topics.pipeline())
    transactional_id = f"orders-main-test-{uuid.uuid4().hex[:8]}"
    summary_path = tmp_path / "summary.json"
    main = runner.start("consumer.main_consumer", "--guarantee", "exactly-once", "--transactional-id", transactional_id,
                        "--summary-file", str(summary_path))
    rng = random.Random(8)
    valid = len(write_foreign_orders(bootstrap, topics.orders, 50, rng, poison_rounds=0).valid)
    runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == valid, 90,
                      what="the main consumer running, its transactional producer initialised")

    def renewals() -> int:
        return main.output().count("Starting a new producer with the same transactional.id")

    def fence_and_wait_for_renewal() -> None:
        nonlocal valid
        before = renewals()
        Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id}).init_transactions(30)
        valid += len(write_foreign_orders(bootstrap, topics.orders, 50, rng, poison_rounds=0).valid)
        runner.wait_until(lambda: renewals() > before, 60, what="the main consumer to renew its fenced producer")
        runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == valid, 90,
                          what="the orders written meanwhile processed")

    published: list[int] = []  # the summary's processed figure, as a reader of the file sees it
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.02):  # poll the file: a reader of it sees no more than this
            published.append((read_json(summary_path) or {}).get("processed", 0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(2):
        fence_and_wait_for_renewal()
    settled = threads_of(main.process.pid)
    for _ in range(6):
        fence_and_wait_for_renewal()
    sampling.set()
    sampler.join()
    assert threads_of(main.process.pid) <= settled + 2, "replaced producers keep their threads"
    assert main.stop() == 0
    assert read_json(summary_path)["processed"] == valid
    assert "Traceback" not in main.output()
    drops = [(before, after) for before, after in zip(published, published[1:]) if after < before]
    assert drops == [], f"the summary showed figures of an aborted transaction: {drops[:5]}"


class Counted:
    """A partition role that keeps one figure per partition (the checkpointed consumer asks nothing more)."""

    def __init__(self) -> None:
        self.restored: dict = {}

    def restore(self, partition, state) -> None:
        self.restored[partition] = state

    def already_copied(self, partition, copy) -> None:
        raise AssertionError(f"no copies in this test: {partition} {copy}")

    def snapshot(self, partition) -> dict:
        return dict(self.restored.get(partition) or {})

    def forget(self, partitions) -> None:
        for partition in partitions:
            self.restored.pop(partition, None)


def test_a_take_over_waits_for_the_previous_owners_last_transaction(topics: Topics, bootstrap: str, engine: str):
    """The previous owner's last transaction (its checkpoint at offset 5 and the group's offset 5) is still open
    when the partition moves here and commits 2 s later: the take-over resumes at 5 with that checkpoint's state,
    not from the checkpoint before it (which would copy those five records again)."""
    if engine != "kafka":
        pytest.skip("Tansu's transactions fence nothing (docs/brokers.md)")
    create_topics(bootstrap, topics.pipeline())
    group = topics.env()["MAIN_GROUP_ID"]
    kafka = KafkaSettings(bootstrap, DEV_PROPERTY_MAP, partitions=1)
    wiring = wire(kafka, ConsumerSettings(group, stats_topic=topics.stats, guarantee="exactly-once"),
                  Plan((topics.orders,), (topics.retry,), topics.dlq, lambda headers, size, why: headers),
                  should_stop=lambda: False)
    assert wiring is not None
    previous_owner = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"previous-{uuid.uuid4().hex[:8]}"})
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        previous_owner.init_transactions(30)
        previous_owner.begin_transaction()
        wiring.checkpointed.store.save(previous_owner, topics.orders, 0, Checkpoint(5, state={"processed": 5}))
        previous_owner.send_offsets_to_transaction([TopicPartition(topics.orders, 0, 5)],
                                                   member.consumer_group_metadata(), 30)
        previous_owner.flush(30)
        committer = threading.Timer(2.0, previous_owner.commit_transaction, args=(30,))  # the scenario's own timing
        committer.start()
        wiring.checkpointed.role = Counted()
        starts = wiring.checkpointed.take_over([(topics.orders, 0)])
        committer.join()
        assert starts == {(topics.orders, 0): 5}
        assert wiring.checkpointed.written_states() == {(topics.orders, 0): {"processed": 5}}
    finally:
        member.close()
        wiring.consumer.close()
