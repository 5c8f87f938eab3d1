"""On a secured Apache Kafka (SASL/SCRAM, an authoriser, least-privilege ACLs): exactly-once as `auto` chooses it,
and refusals that name their cause and stop the script instead of retrying for ever.

The cluster is the dev broker's ``--secure`` one: an admin (a super user) creates the topics and writes the
foreign orders; the scripts run as the application's user with only the ACLs of docs/security.md.
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
from confluent_kafka.admin import AdminClient, NewTopic

from devbroker import BrokerError, KafkaCluster, ScramUsers, free_port
from devbroker.secure import revoke
from runtime.topics import RETRY_TOPIC_CONFIG, STATS_TOPIC_CONFIG
from tests.conftest import engines_under_test
from tests.kafka_helpers import DEV_PROPERTIES, ScriptRunner, Topics, engine_unavailable, read_all, read_json
from tests.pipeline_expectations import expected_outcome, write_foreign_orders
from tests.tls import Certificates, make_certificates

pytestmark = pytest.mark.integration

FAST_BACKOFF = ["--backoff-base", "0.2", "--backoff-factor", "2", "--backoff-max", "0.8"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[KafkaCluster]:
    if "kafka" not in engines_under_test():
        pytest.skip("KAFKA_ENGINES leaves Apache Kafka out")
    with (tmp_path_factory.mktemp("secured") / "kafka.log").open("wb") as output:
        cluster = KafkaCluster(free_port(), users=ScramUsers(), output=output, tls_keystore=certificates.keystore)
        try:
            cluster.start()
        except BrokerError as exc:
            engine_unavailable("kafka", exc)
        try:
            yield cluster
        finally:
            cluster.stop()


def admin_config(cluster: KafkaCluster) -> dict[str, str]:
    assert cluster.users is not None
    return cluster.users.admin_config(cluster.bootstrap_servers)


def app_runner(cluster: KafkaCluster, tmp_path: Path, topics: Topics, password: str = "") -> ScriptRunner:
    """Scripts run as the application's user: the dev settings plus its SASL settings, as one properties file."""
    assert cluster.users is not None
    properties = tmp_path / "client.properties"
    properties.write_text(DEV_PROPERTIES.read_text() + cluster.users.client_properties(
        cluster.bootstrap_servers, cluster.users.app, password or cluster.users.app_password))
    return ScriptRunner(cluster.bootstrap_servers, tmp_path, {**topics.env(), "KAFKA_CONFIG_FILE": str(properties)})


def create_as_admin(cluster: KafkaCluster, topics: Topics) -> None:
    """What a cluster's admins do for the application: its topics, as the scripts would create them."""
    admin = AdminClient(admin_config(cluster))
    new = [NewTopic(name, 3, config=RETRY_TOPIC_CONFIG if name == topics.retry else {}) for name in topics.pipeline()]
    new.append(NewTopic(topics.stats, 1, config=STATS_TOPIC_CONFIG))
    for future in admin.create_topics(new).values():
        future.result(30)


def write_acl(cluster: KafkaCluster, topic: str) -> AclBinding:
    assert cluster.users is not None
    return AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{cluster.users.app}", "*",
                      AclOperation.WRITE, AclPermissionType.DENY)


def test_auto_chooses_exactly_once_under_least_privilege_and_counts_every_order_once(secured: KafkaCluster, tmp_path):
    topics = Topics.unique()
    create_as_admin(secured, topics)
    seed, fail_rate, fail_product, max_retries = 5, 0.1, "Item3", 3
    batch = write_foreign_orders(admin_config(secured), topics.orders, 400, random.Random(9))
    expected = expected_outcome(batch.valid, fail_rate, fail_product, seed, max_retries)
    runner = app_runner(secured, tmp_path, topics)
    summary_path = tmp_path / "summary.json"
    try:
        metrics_port = free_port()
        main = runner.start("consumer.main_consumer", "--fail-rate", str(fail_rate), "--fail-product", fail_product,
                            "--seed", str(seed), "--summary-file", str(summary_path), "--metrics-port",
                            str(metrics_port), *FAST_BACKOFF)
        retry = runner.start("retry.retry_consumer", "--max-retries", str(max_retries), *FAST_BACKOFF)
        expected_dlq = len(batch.poison) + len(expected.exhausted)

        def settled() -> bool:
            summary = read_json(summary_path) or {}
            return (summary.get("processed") == len(expected.processed)
                    and len(read_all(admin_config(secured), topics.dlq)) >= expected_dlq)

        runner.wait_until(settled, 240, what="all orders processed or dead-lettered")
        metrics_page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "orders_processed" in metrics_page and secured.users.app_password not in metrics_page
        assert main.stop() == 0 and retry.stop() == 0
        for script in (main, retry):
            assert "exactly-once (auto: transactions initialised" in script.output(), script.output()[-2000:]
            assert "Traceback" not in script.output()
            assert secured.users is not None and secured.users.app_password not in script.output()
        dead = read_all({**admin_config(secured), "isolation.level": "read_committed"}, topics.dlq)
        assert len(dead) == expected_dlq
        assert max(Counter((r.key, r.value) for r in dead).values()) == 1, "a record was dead-lettered twice"
        assert read_json(summary_path)["processed"] == len(expected.processed)
        assert secured.users.app_password not in summary_path.read_text()
    finally:
        runner.cleanup()


def test_a_wrong_password_stops_the_script_with_the_authentication_line(secured: KafkaCluster, tmp_path):
    topics = Topics.unique()
    runner = app_runner(secured, tmp_path, topics, password="not-the-password")
    started = time.monotonic()
    result = runner.run("consumer.main_consumer", timeout_s=60)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 15
    assert "authentication failed for User:orders-app" in result.stderr and "SASL authentication error" in result.stderr
    assert "not reachable" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_missing_write_acl_on_the_dlq_stops_the_main_consumer_and_loses_nothing(secured: KafkaCluster, tmp_path,
                                                                                    guarantee: str):
    topics = Topics.unique()
    create_as_admin(secured, topics)
    admin = AdminClient(admin_config(secured))
    denial = write_acl(secured, topics.dlq)
    for future in admin.create_acls([denial]).values():
        future.result(30)
    batch = write_foreign_orders(admin_config(secured), topics.orders, 200, random.Random(4))
    runner = app_runner(secured, tmp_path, topics)
    summary_path = tmp_path / "summary.json"
    try:
        main = runner.start("consumer.main_consumer", "--guarantee", guarantee, "--summary-file", str(summary_path))
        main.stopped = True  # it is to exit by itself
        deadline = time.monotonic() + 60
        while main.running() and time.monotonic() < deadline:
            time.sleep(0.2)  # poll until it stops by itself
        assert main.process.returncode == 1, main.output()[-3000:]
        output = main.output()
        assert f"User:orders-app may not Write Topic {topics.dlq}" in output, output[-3000:]
        assert "Traceback" not in output
        revoke(admin, [denial])
        again = runner.start("consumer.main_consumer", "--guarantee", guarantee, "--summary-file", str(summary_path))
        runner.wait_until(lambda: (read_json(summary_path) or {}).get("processed") == len(batch.valid), 120,
                          what="every valid order processed after the ACL came back")
        runner.wait_until(lambda: len(read_all(admin_config(secured), topics.dlq)) >= len(batch.poison), 60,
                          what="every poison record dead-lettered")
        assert again.stop() == 0
        dead = read_all({**admin_config(secured), "isolation.level": "read_committed"}, topics.dlq)
        assert Counter(r.key for r in dead) == Counter(list(batch.poison)), "each poison record dead-lettered exactly once"
        assert read_json(summary_path)["dead_lettered"] == len(batch.poison)
    finally:
        runner.cleanup()


def test_sasl_over_tls_works_through_the_same_properties_file(secured: KafkaCluster, certificates: Certificates,
                                                              tmp_path):
    """SASL_SSL with the test's own CA: the scripts need nothing but the properties file's settings."""
    assert secured.users is not None
    topics = Topics.unique()
    create_as_admin(secured, topics)
    properties = tmp_path / "tls.properties"
    properties.write_text(
        DEV_PROPERTIES.read_text()
        + secured.users.client_properties(secured.tls_bootstrap_servers, secured.users.app, secured.users.app_password)
        .replace("security.protocol=SASL_PLAINTEXT", "security.protocol=SASL_SSL")
        + f"ssl.ca.location={certificates.ca}\n"
    )
    runner = ScriptRunner(secured.tls_bootstrap_servers, tmp_path, {**topics.env(), "KAFKA_CONFIG_FILE": str(properties)})
    result = runner.run("producer.producer", "--count", "20", "--rate", "0", timeout_s=90)
    assert result.returncode == 0, result.stderr
    assert "delivered=20 failed=0" in result.stderr
    assert len(read_all(admin_config(secured), topics.orders)) == 20
