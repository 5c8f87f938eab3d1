"""Docker-free brokers for development and tests: Tansu (in memory, PyPI only) or Apache Kafka (Maven Central + Java).

``dev_broker(engine, port)`` gives either; both are context managers with
``bootstrap_servers``, ``description``, ``start()``, ``running()`` and ``stop()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Optional, Union

from devbroker.base import BrokerError, broker_answers, brokers_answering, free_port, port_open
from devbroker.kafka import KafkaCluster
from devbroker.secure import ScramUsers
from devbroker.tansu import TansuBroker

ENGINES = ("tansu", "kafka")
ENGINE_NAMES = {"tansu": "Tansu", "kafka": "Apache Kafka"}
DevBroker = Union[TansuBroker, KafkaCluster]

__all__ = [
    "ENGINES", "ENGINE_NAMES", "BrokerError", "DevBroker", "KafkaCluster", "ScramUsers", "TansuBroker",
    "broker_answers", "brokers_answering", "dev_broker", "free_port", "port_open",
]


def dev_broker(
    engine: str,
    port: int,
    host: str = "127.0.0.1",
    output: Union[IO[bytes], int, None] = None,
    advertised_port: Optional[int] = None,
    nodes: int = 1,
    data_dir: Optional[Path] = None,
    users: Optional[ScramUsers] = None,
) -> DevBroker:
    """A not-yet-started dev broker of the given engine listening on ``host:port`` (``users``: secured, see
    :mod:`devbroker.secure`)."""
    if engine == "tansu":
        if nodes != 1 or data_dir is not None or users is not None:
            raise BrokerError("Tansu runs one node, in memory and without authentication: --nodes, --data-dir and "
                              "--secure need --engine kafka")
        return TansuBroker(port, host, output=output, advertised_port=advertised_port)
    if engine == "kafka":
        return KafkaCluster(port, nodes, host, output=output, advertised_port=advertised_port, data_dir=data_dir,
                            users=users)
    raise BrokerError(f"unknown broker engine {engine!r}: choose one of {', '.join(ENGINES)}")
