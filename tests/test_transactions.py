"""Exactly-once on Apache Kafka: a fenced transactional producer is replaced, leaking nothing, and the summary
never shows what an aborted transaction did."""

from __future__ import annotations

import os
import random
import threading
import uuid

import pytest
from confluent_kafka import Producer

from tests.kafka_helpers import ScriptRunner, Topics, create_topics, read_json
from tests.pipeline_expectations import write_foreign_orders

pytestmark = pytest.mark.integration


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
