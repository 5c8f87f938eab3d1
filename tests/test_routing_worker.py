"""The routing worker makes the same copies as an in-process Router, acknowledges each, and dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from confluent_kafka import Message, Producer

from bench.pipeline_runs import children_of

from devbroker import free_port
from domain.headers import (
    DLQ_REASON, ERROR, FIRST_FAILURE, LAST_FAILURE, RETRY_COUNT, RETRY_DUE, Failure, dead_letter_headers, retry_headers,
    too_large_headers,
)
from runtime.clients import PRODUCER_ENFORCED, BrokerStatus
from runtime.errors import FatalKafkaError, PipelineError
from runtime.provenance import source_of
from runtime.routing import COPY_PRODUCER_DEFAULTS, Router
from runtime.routing_worker import RoutingWorker, WorkerSpec
from runtime.settings import KafkaSettings
from tests.kafka_helpers import ROOT, ScriptRunner, Topics, create_topics, read_all, wait_until

pytestmark = pytest.mark.integration

FAILURE = Failure("process", "TransientProcessingError", "simulated transient failure (attempt 1)", "boom")
# Differ between two copies of one record by when they were made, not by who made them.
TIMES = {FIRST_FAILURE, LAST_FAILURE}


def worker(bootstrap: str, topics: Topics, on_acked) -> RoutingWorker:
    spec = WorkerSpec(KafkaSettings(bootstrap), "test", topics.dlq, too_large_headers, (topics.retry, topics.dlq),
                      COPY_PRODUCER_DEFAULTS, PRODUCER_ENFORCED)
    return RoutingWorker(spec, on_acked)


def sources(topic: str, count: int) -> list[Message]:
    """Consumed records as the main consumer sees them: some with foreign headers, one a tombstone."""
    return [
        Message(topic=topic, partition=i % 3, offset=100 + i, timestamp=(1, 1_700_000_000_000 + i),
                key=f"order-{i}".encode(), value=None if i == 7 else f"value-{i}".encode(),
                headers=[("trace", f"t{i}".encode())] if i % 4 == 0 else None)
        for i in range(count)
    ]


def route(router, topics: Topics, msgs: list[Message]) -> None:
    for i, msg in enumerate(msgs):
        if i % 5 == 4:
            router.copy(msg, topics.dlq, dead_letter_headers, FAILURE, 1, "invalid order")
        else:
            router.copy(msg, topics.retry, retry_headers, FAILURE, 1, 1_800_000_000_000 + i)


def by_source(bootstrap: str, topics: Topics) -> dict:
    copies = read_all(bootstrap, topics.retry) + read_all(bootstrap, topics.dlq)
    return {source_of(record.headers): record for record in copies}


def test_worker_copies_are_the_routers_copies_and_each_is_acknowledged(bootstrap: str) -> None:
    msgs = sources("orders", 60)
    made: dict[str, dict] = {}
    for how in ("in-process", "worker"):
        topics = Topics.unique()
        create_topics(bootstrap, [topics.retry, topics.dlq])
        acked: dict = {}
        if how == "worker":
            router = worker(bootstrap, topics, acked.__setitem__)
            try:
                route(router, topics, msgs)
                router.serve()
                assert router.flush(30) == 0
                assert len(router) == 0
            finally:
                router.close()
        else:
            producer = Producer({"bootstrap.servers": bootstrap, **COPY_PRODUCER_DEFAULTS, **PRODUCER_ENFORCED})
            route(Router(producer, topics.dlq, too_large_headers, acked.__setitem__, BrokerStatus(bootstrap)), topics, msgs)
            assert producer.flush(30) == 0
        copies = by_source(bootstrap, topics)
        assert set(acked) == {(m.topic(), m.partition(), m.offset()) for m in msgs}
        for source, (topic, partition, offset) in acked.items():
            assert (copies[source].topic, copies[source].partition, copies[source].offset) == (topic, partition, offset)
        made[how] = {
            source: (r.topic == topics.dlq, r.key, r.value, [(k, v) for k, v in r.headers if k not in TIMES])
            for source, r in copies.items()
        }
    assert made["worker"] == made["in-process"]
    one = made["worker"][("orders", 1, 101)]
    assert dict(one[3])[RETRY_COUNT] == b"1" and dict(one[3])[ERROR] == b"boom" and RETRY_DUE in dict(one[3])
    assert dict(made["worker"][("orders", 1, 104)][3])[DLQ_REASON] == b"invalid order"


def test_a_dead_worker_stops_the_consumer_with_a_readable_error(bootstrap: str) -> None:
    topics = Topics.unique()
    create_topics(bootstrap, [topics.retry, topics.dlq])
    router = worker(bootstrap, topics, lambda source, copy: None)
    try:
        os.kill(router.pid, signal.SIGKILL)
        route(router, topics, sources("orders", 3))
        with pytest.raises(PipelineError, match="routing worker ended"):
            router.flush(10)
    finally:
        router.close()


def test_the_main_consumer_stops_in_one_line_when_its_worker_dies(runner: ScriptRunner) -> None:
    main = runner.start("consumer.main_consumer", "--fail-rate", "0", "--guarantee", "at-least-once", "--routing-worker")
    runner.wait_until(lambda: "Assigned" in main.output(), 60, "the main consumer's partitions")
    workers = children_of(main.process.pid)
    assert len(workers) == 1
    main.stopped = True  # it is to exit by itself
    os.kill(workers[0], signal.SIGKILL)
    assert main.process.wait(30) == 1
    assert "error: the routing worker ended" in main.output()
    assert "Traceback" not in main.output()


def test_the_worker_dies_with_its_parent_even_by_kill_9(bootstrap: str, tmp_path) -> None:
    """A copy made after the parent died could land after the next owner's scan, and be made twice."""
    topics = Topics.unique()
    create_topics(bootstrap, [topics.retry, topics.dlq])
    pid_file = tmp_path / "worker.pid"
    code = (
        "import signal, sys\n"
        "from tests.kafka_helpers import Topics\n"
        "from tests.test_routing_worker import worker\n"
        "child = worker(sys.argv[2], Topics(*sys.argv[3:8]), lambda s, c: None)\n"
        "open(sys.argv[1], 'w').write(str(child.pid))\n"
        "signal.pause()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(pid_file), bootstrap, topics.orders, topics.redrive,
                               topics.retry, topics.dlq, topics.stats], cwd=ROOT)
    try:
        child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 60, what="the worker's pid"))
        assert alive(child)
        parent.kill()
        parent.wait(30)
        wait_until(lambda: not alive(child), 10, what="the worker to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_undelivered_copy_stops_routing_instead_of_sending_it_again() -> None:
    """A resent copy could land twice (the first may have been stored after all): stop, the restart finds the truth."""
    nobody_listens = f"127.0.0.1:{free_port()}"
    producer = Producer({"bootstrap.servers": nobody_listens, "message.timeout.ms": 500, "log_level": 0, **PRODUCER_ENFORCED})
    router = Router(producer, "orders_dlq", too_large_headers, lambda source, copy: None, BrokerStatus(nobody_listens))
    [msg] = sources("orders", 1)
    router.copy(msg, "orders_retry", retry_headers, FAILURE, 1, 1_800_000_000_000)
    with pytest.raises(FatalKafkaError, match=r"copy of orders\[0\]@100 to orders_retry not delivered"):
        producer.flush(30)
    assert len(producer) == 0, "nothing was produced again"
