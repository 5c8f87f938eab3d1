"""What both dev brokers share: the error they raise, free ports, and 'does a broker answer here?'."""

from __future__ import annotations

import logging
import socket

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger("devbroker")


class BrokerError(RuntimeError):
    """The dev broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def brokers_answering(bootstrap_servers: str, timeout_s: float = 2.0) -> int:
    """How many brokers the cluster at ``bootstrap_servers`` lists in a metadata answer (0: no answer)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0, "logger": log})
    try:
        return len(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return 0


def broker_answers(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """True if a Kafka broker answers a metadata request at ``bootstrap_servers``."""
    return brokers_answering(bootstrap_servers, timeout_s) > 0
