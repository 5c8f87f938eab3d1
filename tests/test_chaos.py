"""Kill -9 every script at random moments, cut the broker off, kill brokers of a cluster: nothing lost, nothing twice."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType,
)

from avro_utils import AvroDecodeError, avro_deserialize
from devbroker import BrokerError, KafkaCluster, free_port
from domain.errors import ValidationError
from domain.headers import ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC, REPLAYED_AT, RETRY_COUNT
from runtime.topics import RETRY_TOPIC_CONFIG
from runtime.provenance import SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from runtime.transactions import TRANSACTION_DEFAULTS
from domain.order import validate_order
from tests.kafka_helpers import (
    DEV_PROPERTIES, Script, ScriptRunner, Topics, create_topics, engine_unavailable, read_all, read_json,
    topic_metadata, wait_until,
)
from tests.pipeline_expectations import expected_outcome, write_foreign_orders
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration

SEED, FAIL_RATE, FAIL_PRODUCT, MAX_RETRIES = 5, 0.1, "Item3", 3
TARGET_ORDERS = 20_000
FAST_BACKOFF = ["--backoff-base", "0.3", "--backoff-factor", "2", "--backoff-max", "1.2"]
SETTLE_TIMEOUT_S = 240  # after the producers finish; the test's own timeout leaves room for its report
TRANSACTION_TIMEOUT_S = TRANSACTION_DEFAULTS["transaction.timeout.ms"] / 1000  # of the consumers' producers
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

    def start_all(self, *producer_args: str, main_a_args: tuple[str, ...] = ()) -> None:
        """Two main consumers, the retry and DLQ consumers, and a producer with ``producer_args``."""
        self.start("main-a", "consumer.main_consumer", *MAIN_ARGS, *main_a_args)
        self.start("main-b", "consumer.main_consumer", *MAIN_ARGS)
        self.start("retry", "retry.retry_consumer", "--max-retries", str(MAX_RETRIES), *FAST_BACKOFF)
        self.start("dlq", "dlq.dlq_consumer")
        self.start("producer", "producer.producer", *producer_args)

    def kill_and_restart(self, role: str, restart_args: tuple[str, ...] | None = None) -> None:
        script = self.current[role]
        script.kill()
        self.kills.append(role)
        module, args = script.role_args  # type: ignore[attr-defined]
        self.start(role, module, *(restart_args if restart_args is not None else args))


def originals(bootstrap: str, topic: str) -> list:
    """Records of the orders topic, which holds only what producers wrote: a re-drive or replay found there fails."""
    records = read_all(bootstrap, topic)
    pipeline_made = [r for r in records if r.header(SOURCE_TOPIC) is not None or r.header(REPLAYED_AT) is not None]
    assert pipeline_made == [], f"{len(pipeline_made)} re-driven or replayed record(s) in {topic}"
    return records


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


@dataclass
class Outcome:
    """What the pipeline did with the orders produced, beside what it should have done."""

    produced: int
    poison: int
    processed: int
    expected_processed: int
    average: float
    expected_average: float
    dead_lettered: int
    expected_dead: int
    twice: list
    lost: set
    unexpected: set
    dead_without_reason: int
    trail: str = ""  # where a few of the orders dead-lettered twice or missing went, when there are any

    def __str__(self) -> str:
        error = abs(self.average - self.expected_average) / self.expected_average
        return (
            f"{self.produced} orders produced ({self.poison} poison); processed {self.processed} "
            f"(expected {self.expected_processed}), dead-lettered {self.dead_lettered} (expected {self.expected_dead}), "
            f"dead-lettered twice {len(self.twice)}, missing from DLQ {len(self.lost)}, "
            f"unexpected in DLQ {len(self.unexpected)}, average {self.average:.9f} vs {self.expected_average:.9f} "
            f"(relative error {error:.1e})" + (f"\n{self.trail}" if self.trail else "")
        )

    def assert_exact(self) -> None:
        assert self.processed == self.expected_processed, self
        assert math.isclose(self.average, self.expected_average, rel_tol=1e-9), self
        assert self.twice == [] and self.lost == set() and self.unexpected == set(), self
        assert self.dead_lettered == self.expected_dead, self
        assert self.dead_without_reason == 0, self


def settle_and_check(runner: ScriptRunner, pipeline: Pipeline, bootstrap: str, topics: Topics, target_orders: int) -> Outcome:
    """Top the orders up to ``target_orders``, wait until every one is handled, stop cleanly, compare with the model."""
    runner.wait_until(lambda: not pipeline.current["producer"].running(), 180, what="the producer to finish")
    produced = originals(bootstrap, topics.orders)
    if len(produced) < target_orders:
        missing = target_orders - len(produced)
        pipeline.start("producer", "producer.producer", "--rate", "0", "--count", str(missing))
        runner.wait_until(lambda: not pipeline.current["producer"].running(), 120, what="the top-up producer")
        produced = originals(bootstrap, topics.orders)
    assert len(produced) >= target_orders

    valid, poison = classify(produced)
    expected = expected_outcome(valid, FAIL_RATE, FAIL_PRODUCT, SEED, MAX_RETRIES)
    expected_dead = len(poison) + len(expected.exhausted)

    progress: dict[str, int] = {}

    def settled() -> bool:
        progress.update(processed=stats(runner)["processed"], dead_lettered=len(read_all(bootstrap, topics.dlq)))
        return progress["processed"] >= len(expected.processed) and progress["dead_lettered"] >= expected_dead

    try:
        runner.wait_until(settled, SETTLE_TIMEOUT_S, what="the pipeline to settle")
    except AssertionError as exc:
        tails = "\n".join(f"--- {role}:\n{script.output()[-1500:]}" for role, script in pipeline.current.items())
        raise AssertionError(f"{exc}: processed {progress.get('processed')} of {len(expected.processed)}, "
                             f"dead-lettered {progress.get('dead_lettered')} of {expected_dead}\n{tails}") from None
    for role, script in pipeline.current.items():
        if role != "producer":
            assert script.stop() == 0, f"{role} did not exit 0 on SIGTERM:\n{script.output()[-3000:]}"
    runner.assert_healthy()

    figures = stats(runner)
    dead = read_all(bootstrap, topics.dlq)
    origins = Counter((r.header(ORIGIN_TOPIC), int(r.header(ORIGIN_PARTITION)), int(r.header(ORIGIN_OFFSET))) for r in dead)
    should_be_dead = {(topics.orders, r.partition, r.offset) for r in poison} | \
        {(topics.orders, *o["_coords"]) for o in expected.exhausted}
    twice = [origin for origin, count in origins.items() if count > 1]
    lost = should_be_dead - set(origins)
    return Outcome(
        produced=len(produced), poison=len(poison),
        processed=figures["processed"], expected_processed=len(expected.processed),
        average=figures["average"], expected_average=expected.average,
        dead_lettered=len(dead), expected_dead=expected_dead,
        twice=twice, lost=lost, unexpected=set(origins) - should_be_dead,
        dead_without_reason=sum(1 for r in dead if not r.header("error")),
        trail=copy_trail(bootstrap, topics, dead, twice[:3] + sorted(lost)[:3]) if twice or lost else "",
    )


def copy_trail(bootstrap: str, topics: Topics, dead: list, origins: list[tuple[str, int, int]]) -> str:
    """Each origin's copies in the retry and re-drive topics and among the ``dead`` letters, with the source each names."""
    copies = [record for topic in (topics.retry, topics.redrive) for record in read_all(bootstrap, topic)] + dead
    lines = []
    for topic, partition, offset in origins:
        lines.append(f"{topic}[{partition}]@{offset}:")
        lines += [f"  {r.topic}[{r.partition}]@{r.offset} retryCount={r.header(RETRY_COUNT)} from "
                  f"{r.header(SOURCE_TOPIC)}[{r.header(SOURCE_PARTITION)}]@{r.header(SOURCE_OFFSET)}"
                  for r in copies if (r.header(ORIGIN_TOPIC), r.header(ORIGIN_PARTITION), r.header(ORIGIN_OFFSET))
                  == (topic, str(partition), str(offset))]
    return "\n".join(lines)


@pytest.mark.timeout(600)
def test_chaos_nothing_lost_nothing_counted_twice(tmp_path: Path, topics: Topics, start_broker):
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    print(f"chaos seed {seed}")
    broker_port, proxy_port = free_port(), free_port()
    with (tmp_path / "broker.log").open("wb") as broker_log, CuttableProxy(proxy_port, broker_port) as proxy:
        start_broker(broker_port, output=broker_log, advertised_port=proxy_port)
        bootstrap = f"127.0.0.1:{proxy_port}"
        runner = ScriptRunner(bootstrap, tmp_path, topics.env())
        try:
            create_topics(bootstrap, topics.pipeline())
            pipeline = Pipeline(runner)
            pipeline.start_all("--rate", "1500", "--count", "12000", "--invalid-rate", "0.02")

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
            assert pipeline.current["main-c"].stop() == 0, pipeline.current["main-c"].output()[-3000:]
            pipeline.kill_and_restart("main-a")

            outcome = settle_and_check(runner, pipeline, bootstrap, topics, target_orders=TARGET_ORDERS)
        finally:
            runner.cleanup()
        print(f"chaos: kills {Counter(pipeline.kills)} (+1 instance added and removed), one 10 s broker cut; {outcome}")
        assert len(pipeline.kills) >= 5
        outcome.assert_exact()


def leaders(bootstrap: str, topic: str) -> Counter:
    """How many of ``topic``'s partitions each node leads; asked right after a node restart, so through
    ``topic_metadata``, which asks again until its deadline."""
    metadata = topic_metadata(AdminClient({"bootstrap.servers": bootstrap}), topic, time.monotonic() + 60)
    return Counter(partition.leader for partition in metadata.partitions.values())


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes: replication factor 3, min.insync.replicas=2."""
    with (tmp_path / "cluster.log").open("wb") as output:
        cluster = KafkaCluster(free_port(), nodes=3, output=output)
        try:
            cluster.start()
        except BrokerError as exc:
            engine_unavailable("kafka", exc)
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.mark.timeout(600)
def test_broker_faults_on_a_three_node_cluster(tmp_path: Path, topics: Topics, kafka_cluster: KafkaCluster):
    """SIGKILL the node that leads most orders partitions for longer than the transaction timeout, starting a third
    main consumer while it is down; restart it; then SIGKILL a node that leads none (or fewest) and restart the
    retry consumer meanwhile. Every script keeps running and exits 0 on SIGTERM; the outcome is exact."""
    bootstrap = kafka_cluster.bootstrap_servers
    runner = ScriptRunner(bootstrap, tmp_path, topics.env())
    faults = []
    try:
        create_topics(bootstrap, topics.pipeline())
        pipeline = Pipeline(runner)
        pipeline.start_all("--rate", "500", "--count", "15000", "--invalid-rate", "0.02")
        nodes = {node.node_id: node for node in kafka_cluster.nodes}

        def crash_and_restart(node_id: int, down_s: float, while_down: Callable[[], None]) -> None:
            kafka_cluster.kill(nodes[node_id])
            faults.append(node_id)
            while_down()
            time.sleep(down_s)  # poll: the outage lasts this long by design
            kafka_cluster.start_node(nodes[node_id])
            kafka_cluster.wait_ready(120)

        runner.wait_until(lambda: stats(runner)["processed"] > 500, 120, what="the pipeline to get going")
        busiest, _ = leaders(bootstrap, topics.orders).most_common(1)[0]
        crash_and_restart(busiest, TRANSACTION_TIMEOUT_S + 5,
                          lambda: pipeline.start("main-c", "consumer.main_consumer", *MAIN_ARGS))
        runner.wait_until(lambda: stats(runner)["processed"] > 3000, 120, what="processing after the leader's return")
        by_leadership = leaders(bootstrap, topics.orders)
        quietest = min(nodes, key=lambda node_id: by_leadership.get(node_id, 0))
        crash_and_restart(quietest, 8, lambda: pipeline.kill_and_restart("retry"))
        outcome = settle_and_check(runner, pipeline, bootstrap, topics, target_orders=15000)
    finally:
        runner.cleanup()
    print(f"broker faults: nodes SIGKILLed and restarted {faults}; {outcome}")
    assert len(faults) == 2
    assert "Assigned" in pipeline.current["main-c"].output(), "the consumer started during the outage joined"
    outcome.assert_exact()


@pytest.mark.timeout(600)
def test_a_stalled_member_is_fenced(engine: str, runner: ScriptRunner, bootstrap: str, topics: Topics, tmp_path: Path):
    """SIGSTOP one of two main consumers past its session while orders flow, SIGCONT it after the other took over.

    The stalled member's transaction outlives the stall (a 60 s transaction timeout), so it is the group
    coordinator that refuses it: the member aborts, rewinds to the committed checkpoints and rejoins.
    """
    if engine == "tansu":
        pytest.skip("Tansu delivers aborted records, so nothing fences a stalled member there (at-least-once)")
    create_topics(bootstrap, topics.pipeline())
    long_transactions = tmp_path / "zombie.properties"
    long_transactions.write_text(DEV_PROPERTIES.read_text() + "transaction.timeout.ms=60000\n")
    pipeline = Pipeline(runner)
    pipeline.start_all("--rate", "500", "--count", "15000", "--invalid-rate", "0.02",
                       main_a_args=("--config", str(long_transactions)))
    zombie, survivor = pipeline.current["main-a"], pipeline.current["main-b"]
    runner.wait_until(lambda: "Processed order" in zombie.output(), 120, what="main-a to process orders")
    assigned_before = survivor.output().count("Assigned ")
    zombie.signal(signal.SIGSTOP)
    runner.wait_until(lambda: survivor.output().count("Assigned ") > assigned_before, 60,
                      what="main-b to take over main-a's partitions")
    processed_at_take_over = stats(runner)["processed"]
    runner.wait_until(lambda: stats(runner)["processed"] > processed_at_take_over + 1000, 120,
                      what="main-b to process the zombie's partitions")
    zombie.signal(signal.SIGCONT)
    runner.wait_until(lambda: "Assigned" in zombie.output().partition("Aborting the open transaction")[2], 60,
                      what="the zombie to abort its transaction and rejoin")
    outcome = settle_and_check(runner, pipeline, bootstrap, topics, target_orders=15000)
    aborted = [line for line in zombie.output().splitlines() if "Aborting the open transaction" in line]
    print(f"zombie: {aborted[0]}; {outcome}")
    outcome.assert_exact()


LIBRDKAFKA_MESSAGE_TIMEOUT_S = 300  # message.timeout.ms's default


def java_hash(text: str) -> int:
    """``String.hashCode()``: how Kafka maps a group id to its coordinator's partition of __consumer_offsets."""
    value = 0
    for char in text:
        value = (31 * value + ord(char)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def group_coordinator(bootstrap: str, group_id: str, topic: str) -> int:
    """The node leading the group's partition of __consumer_offsets (created first by a throwaway group's commit)."""
    warm_up = Consumer({"bootstrap.servers": bootstrap, "group.id": f"warm-up-{group_id}"})

    def committed() -> bool:
        try:
            warm_up.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
            return True
        except KafkaException:
            return False  # the coordinator is still loading the new __consumer_offsets

    wait_until(committed, 60, what="a first offset commit on the cluster")
    warm_up.close()
    offsets = AdminClient({"bootstrap.servers": bootstrap}).list_topics("__consumer_offsets", timeout=10)
    partitions = offsets.topics["__consumer_offsets"].partitions
    hashed = java_hash(group_id)
    return partitions[(0 if hashed == -(1 << 31) else abs(hashed)) % len(partitions)].leader


@pytest.mark.timeout(900)  # the outage alone lasts 310 s
def test_copies_wait_out_a_partition_without_leader_and_the_consumer_pauses_in_its_group(
        tmp_path: Path, topics: Topics, kafka_cluster: KafkaCluster):
    """The retry topic lives on one node (replication factor 1), which is killed while a backlog of orders, half of
    them failing, is consumed: copies to it cannot be acknowledged. At-least-once, the main consumer pauses once
    more than --max-copies-in-flight copies wait, keeps polling (it stays in its group: assigned once, nothing
    lost or revoked), and resumes when the node is back, later than librdkafka's default message.timeout.ms (300 s),
    which the at-least-once copies do not have; every order is counted or dead-lettered once."""
    bootstrap = kafka_cluster.bootstrap_servers
    runner = ScriptRunner(bootstrap, tmp_path, topics.env())
    seed, fail_rate, max_retries = 17, 0.5, 3
    try:
        create_topics(bootstrap, [topics.orders, topics.redrive, topics.dlq])
        coordinator = group_coordinator(bootstrap, topics.env()["MAIN_GROUP_ID"], topics.orders)
        victim = next(node for node in kafka_cluster.nodes if node.node_id != coordinator)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        [created] = admin.create_topics([NewTopic(topics.retry, 3, replica_assignment=[[victim.node_id]] * 3,
                                                  config=RETRY_TOPIC_CONFIG)]).values()
        created.result(30)
        summary_path = tmp_path / "summary.json"
        # Production sessions, so that the outage keeps them: the classic protocol's from the properties file
        # (librdkafka's default), KIP-848's (which auto chooses here) set on the groups, as the broker's default
        # is. The dev cluster's 6 s is shorter than an offset commit held while a dead node leaves the ISR.
        production_session = tmp_path / "session.properties"
        production_session.write_text(DEV_PROPERTIES.read_text() + "session.timeout.ms=45000\nheartbeat.interval.ms=3000\n")
        groups = [topics.env()["MAIN_GROUP_ID"], topics.env()["RETRY_GROUP_ID"]]
        for future in admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=[
                ConfigEntry("consumer.session.timeout.ms", "45000", incremental_operation=AlterConfigOpType.SET)])
                for group in groups]).values():
            future.result(30)
        main = runner.start("consumer.main_consumer", "--guarantee", "at-least-once", "--fail-rate", str(fail_rate),
                            "--seed", str(seed), "--max-copies-in-flight", "200", "--summary-file", str(summary_path),
                            "--config", str(production_session), *FAST_BACKOFF, name="main")
        retry = runner.start("retry.retry_consumer", "--guarantee", "at-least-once", "--max-retries",
                             str(max_retries), *FAST_BACKOFF, name="retry")
        runner.wait_until(lambda: "Assigned " in main.output(), 60, what="the main consumer's assignment")
        kafka_cluster.kill(victim)
        batch = write_foreign_orders(bootstrap, topics.orders, 2000, random.Random(3), poison_rounds=0)
        runner.wait_until(lambda: "Paused consumption" in main.output(), 90, what="the main consumer to pause")
        time.sleep(LIBRDKAFKA_MESSAGE_TIMEOUT_S + 10)  # poll: the outage outlasts the default message timeout by design
        kafka_cluster.start_node(victim)
        kafka_cluster.wait_ready(120)
        expected = expected_outcome(batch.valid, fail_rate, None, seed, max_retries)

        def settled() -> bool:
            summary = read_json(summary_path) or {}
            return summary.get("processed") == len(expected.processed) and \
                len(read_all(bootstrap, topics.dlq)) >= len(expected.exhausted)

        runner.wait_until(settled, 240, what="every order processed or dead-lettered after the outage")
        assert main.stop() == 0 and retry.stop() == 0
        runner.assert_healthy()
    finally:
        runner.cleanup()
    output = main.output()
    running = output.partition("SIGTERM received")[0]  # closing the consumer revokes its partitions, as it should
    assert running.count("Assigned ") == 1 and "Lost " not in running and "Revoked " not in running, \
        "the main consumer left its group during the outage"
    assert "Resumed consumption" in output
    assert math.isclose(read_json(summary_path)["average"], expected.average, rel_tol=1e-9)
    assert len(read_all(bootstrap, topics.dlq)) == len(expected.exhausted), "nothing dead-lettered twice"
