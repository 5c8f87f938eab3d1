"""The dev broker's own rules, without starting one: KRaft settings, cluster ids, one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devbroker import KafkaCluster
from devbroker.kafka import new_cluster_id
from devbroker.maven import kafka_version
from tests.kafka_helpers import ROOT


def settings(cluster: KafkaCluster, node_index: int) -> dict[str, str]:
    text = cluster.properties_of(cluster.nodes[node_index])
    return dict(line.split("=", 1) for line in text.splitlines())


def test_three_nodes_replicate_like_production_and_share_one_quorum(tmp_path: Path):
    cluster = KafkaCluster(19092, nodes=3, data_dir=tmp_path)
    first, third = settings(cluster, 0), settings(cluster, 2)
    for node in (first, third):
        assert node["process.roles"] == "broker,controller"
        assert node["default.replication.factor"] == "3" and node["min.insync.replicas"] == "2"
        assert node["offsets.topic.replication.factor"] == "3"
        assert node["transaction.state.log.replication.factor"] == "3"
        assert node["transaction.state.log.min.isr"] == "2"
        assert node["auto.create.topics.enable"] == "false"
    assert first["controller.quorum.voters"] == third["controller.quorum.voters"]
    assert len(first["controller.quorum.voters"].split(",")) == 3
    assert first["node.id"] != third["node.id"] and first["log.dirs"] != third["log.dirs"]
    assert first["listeners"].startswith("PLAINTEXT://127.0.0.1:19092,")


def test_one_node_has_one_replica_and_may_advertise_a_proxy(tmp_path: Path):
    node = settings(KafkaCluster(19092, nodes=1, advertised_port=29092, data_dir=tmp_path), 0)
    assert node["default.replication.factor"] == "1" and node["min.insync.replicas"] == "1"
    assert node["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"


def test_cluster_ids_look_like_kafka_storage_random_uuid():
    ids = {new_cluster_id() for _ in range(2000)}  # one in 64 random ids starts with "-": kafka-storage takes it for an option
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id) for cluster_id in ids)


def test_the_pinned_version_is_a_kafka_4():
    assert kafka_version().startswith("4.")


def run_devbroker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devbroker", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_kafka_options_with_tansu_are_a_usage_error():
    result = run_devbroker("--engine", "tansu", "--nodes", "3", env=dict(os.environ))
    assert result.returncode == 2
    assert "--nodes, --data-dir and --secure need --engine kafka" in result.stderr and "Traceback" not in result.stderr


def test_missing_java_is_one_line_saying_what_to_install(tmp_path: Path):
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    result = run_devbroker("--engine", "kafka", "--port", "19999", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: Java 17+ is needed to run Apache Kafka: apt-get install openjdk-17-jre-headless"]


def test_missing_maven_is_one_line_saying_what_to_install(tmp_path: Path):
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on this machine: the Java check is the one that applies")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(os.path.realpath(java))
    env = {**os.environ, "PATH": str(bin_dir), "KAFKA_ORDERS_CACHE": str(tmp_path / "empty-cache")}
    env.pop("JAVA_HOME", None)
    result = run_devbroker("--engine", "kafka", "--port", "19999", env=env)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: Apache Maven is needed once") and line.endswith("apt-get install maven")
