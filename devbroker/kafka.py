"""Apache Kafka 4.x (KRaft) without Docker: the broker's jars from Maven Central, run on the machine's Java.

Our own launcher, because Apache's start scripts ship only in the download
tarball: this does what ``bin/kafka-server-start.sh`` and
``bin/kafka-run-class.sh`` do for a local cluster (heap, G1 flags, Log4j 2
configuration, classpath) and formats KRaft storage as ``kafka-storage.sh
format`` does. Every node is a combined broker and controller on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Optional, Union

from confluent_kafka.admin import AdminClient

from devbroker.base import BrokerError, brokers_answering, free_port, log, port_open
from devbroker.kafka_config import LOG4J2_PROPERTIES, KafkaNode, server_properties
from devbroker.maven import java_command, kafka_version, resolve_jars
from devbroker.secure import ScramUsers, app_acl_bindings, grant
from runtime.shutdown import die_with_parent

# KAFKA_JVM_PERFORMANCE_OPTS of bin/kafka-run-class.sh.
JVM_PERFORMANCE_OPTS = [
    "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
]
# bin/kafka-server-start.sh gives 1 GiB; half of it serves a dev node and leaves room for three beside the tests.
DEFAULT_HEAP_OPTS = "-Xms512m -Xmx512m"


def new_cluster_id() -> str:
    """A KRaft cluster id, as ``kafka-storage.sh random-uuid`` prints it (URL-safe base64 of 16 random bytes).

    Like Kafka's ``Uuid.randomUuid()``, never one that starts with "-", which a command line takes for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaCluster:
    """One or more Apache Kafka nodes on 127.0.0.1; use as a context manager or call start()/stop().

    With three nodes or more, topics default to replication factor 3 and
    ``min.insync.replicas=2``, as on a production cluster.
    """

    engine = "kafka"

    def __init__(
        self,
        port: int = 9092,
        nodes: int = 1,
        host: str = "127.0.0.1",
        output: Union[IO[bytes], int, None] = None,
        advertised_port: Optional[int] = None,
        data_dir: Optional[Path] = None,
        users: Optional[ScramUsers] = None,
        tls_keystore: Optional[Path] = None,
    ) -> None:
        """``users``: clients authenticate with SASL/SCRAM, and an authoriser allows only what ACLs grant
        (see :mod:`devbroker.secure`); the admin's and the application's properties files are written to the
        data dir once the cluster serves. ``tls_keystore`` (with ``users``): a PEM file of the node's private key
        (PKCS#8, unencrypted) and certificate chain, for a SASL_SSL listener on each node's ``tls_port``."""
        if tls_keystore is not None and users is None:
            raise BrokerError("a TLS listener here is for SASL over TLS: it needs SCRAM users too")
        self.tls_keystore = tls_keystore
        if nodes < 1:
            raise BrokerError("a cluster needs at least one node")
        if advertised_port is not None and nodes != 1:
            raise BrokerError("an advertised port other than the listening one needs a single node")
        self.host = host
        self.port = port
        self.output = output
        self.advertised_port = advertised_port or port  # another port when clients reach it through a proxy
        self.users = users
        self._keep_data = data_dir is not None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="kafka-orders-kafka-"))
        ports = [port] + [free_port(host) for _ in range(nodes - 1)]
        self.nodes = [
            KafkaNode(index + 1, ports[index], free_port(host), free_port(host), free_port(host),
                      self.data_dir / f"node-{index + 1}")
            for index in range(nodes)
        ]
        self._java: Optional[str] = None
        self._jars: Optional[Path] = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{node.port}" for node in self.nodes)

    @property
    def description(self) -> str:
        data = f"data in {self.data_dir}" if self._keep_data else "data in a temp dir"
        secured = ", SASL/SCRAM and ACLs" if self.users else ""
        return f"Apache Kafka {kafka_version()}, {len(self.nodes)} node(s){secured}, {data}"

    @property
    def tls_bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{node.tls_port}" for node in self.nodes)

    @property
    def admin_properties(self) -> Path:
        return self.data_dir / "admin.properties"

    @property
    def client_properties(self) -> Path:
        """The application user's ``--config`` file, with a secured cluster."""
        return self.data_dir / "client.properties"

    def properties_of(self, node: KafkaNode) -> str:
        """The node's server.properties (:func:`devbroker.kafka_config.server_properties`)."""
        return server_properties(node, self.nodes, self.host, self.advertised_port, self.users, self.tls_keystore)

    def _java_args(self, node: KafkaNode, main_class: str, *args: str) -> list[str]:
        assert self._java is not None and self._jars is not None
        heap = os.environ.get("KAFKA_HEAP_OPTS", DEFAULT_HEAP_OPTS).split()
        return [
            self._java, *heap, *JVM_PERFORMANCE_OPTS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}", f"-Dkafka.node.id={node.node_id}",
            "-cp", f"{self._jars}/*", main_class, *args,
        ]

    def _format(self, cluster_id: str) -> None:
        """Format every node's storage (kafka-storage.sh format), all at once."""
        formatting = []
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(self.properties_of(node), encoding="utf-8")
            command = self._java_args(node, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                                      "-t", cluster_id, "-c", str(node.config_path),
                                      *(self.users.format_arguments() if self.users else []))
            formatting.append((node, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      stdin=subprocess.DEVNULL)))
        for node, process in formatting:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                last = output.decode(errors="replace").strip().splitlines()[-1:]
                raise BrokerError(f"formatting node {node.node_id}'s storage failed: {' '.join(last)}")

    def start_node(self, node: KafkaNode) -> None:
        """Start one node's JVM (again, after kill()); wait_ready() tells when it serves."""
        if port_open(self.host, node.port):
            raise BrokerError(f"port {node.port} on {self.host} is already in use (is another broker running?)")
        node.process = subprocess.Popen(
            self._java_args(node, "kafka.Kafka", str(node.config_path)),
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output is not None else None,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            start_new_session=True,  # Ctrl+C reaches us, and we stop the nodes in order
        )

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every running node is listed by a metadata answer, not just until a port opens."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None:
                    raise BrokerError(f"Kafka node {node.node_id} exited with code {node.process.returncode} before it was ready")
            running = sum(node.running() for node in self.nodes)
            if brokers_answering(self._reachable_bootstrap(), 1.0) >= running:
                return
            time.sleep(0.2)  # poll until the cluster answers
        raise BrokerError(f"Apache Kafka did not answer on {self.bootstrap_servers} within {timeout_s:.0f} s")

    def _reachable_bootstrap(self) -> str:
        """The listening addresses of the running nodes (a proxy in front may not be up yet)."""
        return ",".join(f"{self.host}:{node.internal_port if self.users else node.port}"
                        for node in self.nodes if node.running())

    def start(self, ready_timeout_s: float = 120.0) -> "KafkaCluster":
        try:
            self._java = java_command()
            self._jars = resolve_jars()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "log4j2.properties").write_text(
                LOG4J2_PROPERTIES.format(level="INFO" if self.output is not None else "WARN"), encoding="utf-8")
            if not all((node.directory / "data" / "meta.properties").exists() for node in self.nodes):
                self._format(new_cluster_id())
            for node in self.nodes:
                self.start_node(node)
            self.wait_ready(ready_timeout_s)
            if self.users is not None:
                self.users.write_properties(self.data_dir, self.bootstrap_servers)
                grant(AdminClient({**self.users.admin_config(self.bootstrap_servers), "logger": log}),
                      app_acl_bindings(self.users.app))
        except BaseException:
            self.stop()
            raise
        return self

    def running(self) -> bool:
        return any(node.running() for node in self.nodes)

    def kill(self, node: KafkaNode) -> None:
        """SIGKILL one node, as a crash would."""
        if node.process is not None and node.running():
            node.process.kill()
            node.process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every node (a controlled shutdown), SIGKILL what is left after ``timeout_s``; drop temp data."""
        for node in self.nodes:
            if node.running():
                assert node.process is not None
                node.process.terminate()
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        if not self._keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
