"""What each Apache Kafka node of a dev cluster is configured with: its server.properties and its logging."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from devbroker.secure import MECHANISM, ScramUsers

LOG4J2_PROPERTIES = """\
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] node ${{sys:kafka.node.id}} %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
# "could not connect to node N" while the other nodes of a cluster start up; "controller activation" on first start.
logger.network.name = org.apache.kafka.clients.NetworkClient
logger.network.level = ERROR
logger.controller.name = org.apache.kafka.controller.QuorumController
logger.controller.level = ERROR
"""


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    internal_port: int  # inter-broker traffic (PLAINTEXT) when clients must authenticate on ``port``
    tls_port: int  # SASL over TLS, beside ``port``, when the cluster has a TLS keystore
    directory: Path
    process: Optional[subprocess.Popen[bytes]] = None

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def server_properties(node: KafkaNode, nodes: list[KafkaNode], host: str, advertised_port: int,
                      users: Optional[ScramUsers], tls_keystore: Optional[Path]) -> str:
    """A node's server.properties: a combined broker and controller, dev timings, and with ``users`` SASL/SCRAM
    clients under least-privilege ACLs (inter-node traffic on an unauthenticated loopback listener)."""
    replicas = min(3, len(nodes))
    min_insync = 2 if replicas >= 3 else 1
    voters = ",".join(f"{other.node_id}@{host}:{other.controller_port}" for other in nodes)
    advertised = advertised_port if len(nodes) == 1 else node.port
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{advertised}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.directory / "data",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_insync,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_insync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_insync,
        # Our scripts create their topics, as they must where auto-creation is off (most production clusters).
        "auto.create.topics.enable": "false",
        # A dev cluster: a group's first member need not wait 3 s for others to join.
        "group.initial.rebalance.delay.ms": 0,
        # The consumer protocol's (KIP-848) dev timings, as dev.properties sets the classic protocol's: members
        # heartbeat every 500 ms, and a joining one gets its partitions at its second heartbeat, after the
        # owner's next one gave them up; a killed one is out after 6 s (defaults: 5 s and 45 s, with minimums
        # of the same).
        "group.consumer.heartbeat.interval.ms": 500, "group.consumer.min.heartbeat.interval.ms": 500,
        "group.consumer.session.timeout.ms": 6000, "group.consumer.min.session.timeout.ms": 6000,
        # A crashed instance's open transaction is aborted within 1 s of its timeout (default: 10 s), so
        # read_committed readers behind it (a take-over loading checkpoints) wait less.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
    }
    if users is not None:
        settings.update({
            "listeners": f"SASL_PLAINTEXT://{host}:{node.port},INTERNAL://{host}:{node.internal_port},"
                         f"CONTROLLER://{host}:{node.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://{host}:{advertised},INTERNAL://{host}:{node.internal_port}",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            # The nodes talk over the unauthenticated loopback listeners, as ANONYMOUS.
            "super.users": f"User:{users.admin};User:ANONYMOUS",
        })
    if tls_keystore is not None:
        settings["listeners"] += f",SASL_SSL://{host}:{node.tls_port}"
        settings["advertised.listeners"] += f",SASL_SSL://{host}:{node.tls_port}"
        settings["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
        settings.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": tls_keystore})
    return "".join(f"{key}={value}\n" for key, value in settings.items())
