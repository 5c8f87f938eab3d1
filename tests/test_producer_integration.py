"""The producer and the script conventions, against the real broker."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from avro_utils import avro_deserialize
from devbroker import broker_answers, free_port, port_open
from domain.order import validate_order
from tests.kafka_helpers import ROOT, ScriptRunner, Topics, alive, descendants, read_all, wait_until

pytestmark = pytest.mark.integration

SCRIPTS = ["producer.producer", "consumer.main_consumer", "retry.retry_consumer", "dlq.dlq_consumer", "devbroker", "demo",
           "consumer.stats", "dashboard", "bench", "bench.per_record"]


def test_producer_delivers_distinct_valid_orders(runner: ScriptRunner, topics: Topics, bootstrap: str):
    result = runner.run("producer.producer", "--count", "1000", "--rate", "0")
    assert result.returncode == 0, result.stderr
    assert "sent=1000 delivered=1000 failed=0" in result.stderr
    records = read_all(bootstrap, topics.orders)
    assert len(records) == 1000
    orders = [validate_order(avro_deserialize(r.value)) for r in records]
    assert len({o["orderId"] for o in orders}) == 1000
    assert all(r.key == o["orderId"].encode() for r, o in zip(records, orders))
    assert {o["product"] for o in orders} == {f"Item{n}" for n in range(1, 6)}


def test_producer_creates_the_topic_with_the_partition_count(runner: ScriptRunner, topics: Topics, bootstrap: str):
    result = runner.run("producer.producer", "--count", "3", "--rate", "0", "--partitions", "5")
    assert result.returncode == 0, result.stderr
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topics.orders, timeout=10)
    assert len(metadata.topics[topics.orders].partitions) == 5


def test_producer_paces_itself_and_stops_cleanly_on_sigterm(runner: ScriptRunner, topics: Topics, bootstrap: str):
    producer = runner.start("producer.producer", "--rate", "20", "--invalid-rate", "0.3")
    wait_until(lambda: producer.output().count("Produced ") >= 10, 60, what="ten deliveries")
    assert producer.stop() == 0
    output = producer.output()
    assert "SIGTERM received" in output and "Producer stopped: sent=" in output
    summary = output.split("Producer stopped: sent=")[1]
    sent = int(summary.split()[0])
    assert f"delivered={sent} failed=0" in summary
    records = read_all(bootstrap, topics.orders)
    assert len(records) == sent
    assert any("poison record" in line for line in output.splitlines())


@pytest.mark.parametrize("module", SCRIPTS)
def test_help_needs_no_broker_and_has_no_side_effects(module: str, tmp_path):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module", SCRIPTS[:4])
def test_a_wrong_flag_gets_a_usage_message(module: str):
    result = subprocess.run([sys.executable, "-m", module, "--no-such-flag"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "--no-such-flag" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_client_setting_is_one_clear_line(runner: ScriptRunner, tmp_path):
    config = tmp_path / "client.properties"
    config.write_text("session.timeout.ms=6000\nno.such.setting=1\n")
    result = runner.run("consumer.main_consumer", env={"KAFKA_CONFIG_FILE": str(config)}, timeout_s=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == 'error: invalid Kafka client setting: No such configuration property: "no.such.setting"'
    assert "Traceback" not in result.stderr


def test_passwords_never_appear_in_output(runner: ScriptRunner, tmp_path):
    secret = "Sup3r-S3cret-Passw0rd"
    config = tmp_path / "client.properties"
    config.write_text(
        f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=alice\nsasl.password={secret}\n"
    )
    script = runner.start("producer.producer", "--count", "1", "--log-level", "DEBUG",
                          env={"KAFKA_CONFIG_FILE": str(config)})
    wait_until(lambda: "not reachable" in script.output() or not script.running(), 60, what="a connection attempt")
    script.stop()
    assert secret not in script.output()


def test_a_script_without_broker_says_so_and_picks_up_when_it_starts(tmp_path, topics: Topics, start_broker):
    port = free_port()
    runner = ScriptRunner(f"127.0.0.1:{port}", tmp_path, topics.env())
    try:
        producer = runner.start("producer.producer", "--count", "5", "--rate", "0")
        wait_until(lambda: "not reachable" in producer.output(), 60, what="the unreachable-broker line")
        assert producer.running()
        with (tmp_path / "broker.log").open("wb") as log:
            start_broker(port, output=log)
            assert producer.process.wait(90) == 0, producer.output()
        output = producer.output()
        assert "Traceback" not in output
        assert output.count("not reachable") == 1
        assert "sent=5 delivered=5 failed=0" in output
    finally:
        runner.cleanup()


def test_stats_without_a_broker_is_one_line(tmp_path, topics: Topics):
    runner = ScriptRunner(f"127.0.0.1:{free_port()}", tmp_path, topics.env())
    result = runner.run("consumer.stats", timeout_s=90)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: Kafka") and "Traceback" not in result.stderr


def test_devbroker_starts_and_stops_on_ctrl_c(tmp_path, engine: str):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "devbroker", "--engine", engine, "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "ready on" in line:
                break
        family = descendants(process.pid)
        assert broker_answers(f"127.0.0.1:{port}")
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        assert not port_open("127.0.0.1", port)
        wait_until(lambda: not alive(family), 30, what="every broker process (JVMs included) to exit")
    finally:
        process.kill()


def java_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java producer picks for ``key``: murmur2, made positive, modulo the partition count."""
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    length = len(key)
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[length - length % 4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def test_keys_land_where_a_java_producer_puts_them(runner: ScriptRunner, topics: Topics, bootstrap: str):
    result = runner.run("producer.producer", "--count", "300", "--rate", "0", "--partitions", "7")
    assert result.returncode == 0, result.stderr
    records = read_all(bootstrap, topics.orders)
    assert len(records) == 300 and len({r.partition for r in records}) == 7
    assert all(r.partition == java_partition(r.key, 7) for r in records)


def test_stats_with_a_stats_topic_that_does_not_exist_says_so(runner: ScriptRunner, topics: Topics):
    result = runner.run("consumer.stats", "--json", "--stats-topic", topics.stats + "_typo", timeout_s=90)
    assert result.returncode == 1 and result.stdout == ""
    assert f"the stats topic {topics.stats}_typo does not exist" in result.stderr and "Traceback" not in result.stderr
