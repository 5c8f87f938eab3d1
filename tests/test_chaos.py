"""Kill -9 every script at random moments, cut the broker off for 10 s, feed poison: nothing lost, nothing twice."""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from avro_utils import AvroDecodeError, avro_deserialize
from devbroker import DevBroker, free_port
from pipeline.errors import ValidationError
from pipeline.headers import ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC, REPLAYED_AT, SOURCE_TOPIC
from pipeline.validation import validate_order
from tests.kafka_helpers import Script, ScriptRunner, Topics, create_topics, read_all
from tests.pipeline_expectations import expected_outcome
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration

SEED, FAIL_RATE, FAIL_PRODUCT, MAX_RETRIES = 5, 0.1, "Item3", 3
TARGET_ORDERS = 20_000
FAST_BACKOFF = ["--backoff-base", "0.3", "--backoff-factor", "2", "--backoff-max", "1.2"]
MAIN_ARGS = ["--fail-rate", str(FAIL_RATE), "--fail-product", FAIL_PRODUCT, "--seed", str(SEED), *FAST_BACKOFF]


class Pipeline:
    """The scripts of one run, by role, restartable."""

    def __init__(self, runner: ScriptRunner) -> None:
        self.runner = runner
        self.current: dict[str, Script] = {}
        self.kills: list[str] = []

    def start(self, role: str, module: str, *args: str) -> None:
        self.current[role] = self.runner.start(module, *args, name=role, finite="--count" in args)
        self.current[role].role_args = (module, args)  # type: ignore[attr-defined]

    def kill_and_restart(self, role: str, restart_args: tuple[str, ...] | None = None) -> None:
        script = self.current[role]
        script.kill()
        self.kills.append(role)
        module, args = script.role_args  # type: ignore[attr-defined]
        self.start(role, module, *(restart_args if restart_args is not None else args))


def originals(bootstrap: str, topic: str) -> list:
    """Records of the orders topic written by the producer (not re-driven, not replayed)."""
    return [r for r in read_all(bootstrap, topic) if r.header(SOURCE_TOPIC) is None and r.header(REPLAYED_AT) is None]


def classify(records: list) -> tuple[list[dict], list]:
    valid, poison = [], []
    for record in records:
        try:
            valid.append(dict(avro_deserialize(record.value), _coords=(record.partition, record.offset)))
            validate_order(valid[-1])
        except AvroDecodeError:
            poison.append(record)
        except ValidationError:
            valid.pop()
            poison.append(record)
    return valid, poison


def stats(runner: ScriptRunner) -> dict:
    result = runner.run("consumer.stats", "--json", timeout_s=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_chaos_nothing_lost_nothing_counted_twice(tmp_path: Path, topics: Topics):
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    print(f"chaos seed {seed}")
    broker_port, proxy_port = free_port(), free_port()
    with (tmp_path / "tansu.log").open("wb") as broker_log, \
            DevBroker(broker_port, output=broker_log, advertised_port=proxy_port), \
            CuttableProxy(proxy_port, broker_port) as proxy:
        bootstrap = f"127.0.0.1:{proxy_port}"
        runner = ScriptRunner(bootstrap, tmp_path, topics.env())
        try:
            create_topics(bootstrap, [topics.orders, topics.retry, topics.dlq])
            pipeline = Pipeline(runner)
            pipeline.start("main-a", "consumer.main_consumer", *MAIN_ARGS)
            pipeline.start("main-b", "consumer.main_consumer", *MAIN_ARGS)
            pipeline.start("retry", "retry.retry_consumer", "--max-retries", str(MAX_RETRIES), *FAST_BACKOFF)
            pipeline.start("dlq", "dlq.dlq_consumer")
            pipeline.start("producer", "producer.producer", "--rate", "1500", "--count", "12000", "--invalid-rate", "0.02")

            def at_random(low: float, high: float) -> None:
                time.sleep(rng.uniform(low, high))  # poll: a random moment is the point of this test

            at_random(2, 5)
            pipeline.kill_and_restart("producer", ("--rate", "1500", "--count", "12000", "--invalid-rate", "0.02"))
            at_random(1, 3)
            pipeline.kill_and_restart("main-a")
            at_random(1, 3)
            pipeline.kill_and_restart("retry")
            at_random(0, 2)
            proxy.cut()
            time.sleep(10)  # poll: the outage lasts 10 s by design
            proxy.restore()
            at_random(2, 5)
            pipeline.kill_and_restart("main-b")
            pipeline.start("main-c", "consumer.main_consumer", *MAIN_ARGS)
            at_random(3, 6)
            pipeline.kill_and_restart("retry")
            pipeline.kill_and_restart("dlq")
            at_random(2, 4)
            pipeline.current["main-c"].stop()
            pipeline.kill_and_restart("main-a")

            runner.wait_until(lambda: not pipeline.current["producer"].running(), 120, what="the producer to finish")
            produced = originals(bootstrap, topics.orders)
            if len(produced) < TARGET_ORDERS:
                missing = TARGET_ORDERS - len(produced)
                pipeline.start("producer", "producer.producer", "--rate", "0", "--count", str(missing))
                runner.wait_until(lambda: not pipeline.current["producer"].running(), 120, what="the top-up producer")
                produced = originals(bootstrap, topics.orders)
            assert len(produced) >= TARGET_ORDERS

            valid, poison = classify(produced)
            expected = expected_outcome(valid, FAIL_RATE, FAIL_PRODUCT, SEED, MAX_RETRIES)
            expected_dead = {("p", r.partition, r.offset) for r in poison} | {("v", *o["_coords"]) for o in expected.exhausted}

            def settled() -> bool:
                figures = stats(runner)
                return figures["processed"] >= len(expected.processed) and \
                    len(read_all(bootstrap, topics.dlq)) >= len(expected_dead)

            runner.wait_until(settled, 300, what="the pipeline to settle")
            for role in ("main-a", "main-b", "retry", "dlq"):
                assert pipeline.current[role].stop() == 0, role
        finally:
            runner.cleanup()

        figures = stats(runner)
        dead = read_all(bootstrap, topics.dlq)
        origins = Counter((r.header(ORIGIN_TOPIC), int(r.header(ORIGIN_PARTITION)), int(r.header(ORIGIN_OFFSET))) for r in dead)
        poison_coords = {(topics.orders, r.partition, r.offset) for r in poison}
        exhausted_coords = {(topics.orders, *o["_coords"]) for o in expected.exhausted}
        twice = [origin for origin, count in origins.items() if count > 1]
        lost = (poison_coords | exhausted_coords) - set(origins)
        unexpected = set(origins) - (poison_coords | exhausted_coords)
        average_error = abs(figures["average"] - expected.average) / expected.average
        print(
            f"chaos: {len(produced)} orders produced ({len(poison)} poison), kills {Counter(pipeline.kills)} "
            f"(+1 instance added and removed), one 10 s broker cut; processed {figures['processed']} "
            f"(expected {len(expected.processed)}), dead-lettered {len(dead)} (expected {len(expected_dead)}), "
            f"dead-lettered twice {len(twice)}, missing from DLQ {len(lost)}, unexpected in DLQ {len(unexpected)}, "
            f"average {figures['average']:.9f} vs {expected.average:.9f} (relative error {average_error:.1e})"
        )
        assert len(pipeline.kills) >= 5
        assert figures["processed"] == len(expected.processed)
        assert math.isclose(figures["average"], expected.average, rel_tol=1e-9)
        assert twice == [] and lost == set() and unexpected == set()
        assert len(dead) == len(poison) + len(expected.exhausted)
        assert all(r.header("error") for r in dead)
