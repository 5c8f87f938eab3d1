"""Run the dev broker in the foreground: ``python -m devbroker [--port 9092]``; Ctrl+C stops it."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from typing import Optional

from devbroker import BrokerError, DevBroker
from pipeline.config import env
from pipeline.logs import setup_logging
from pipeline.shutdown import StopFlag

log = logging.getLogger("devbroker")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devbroker",
        description="Start Tansu, a Kafka-compatible broker that keeps data in memory, and wait for Ctrl+C.",
    )
    parser.add_argument("--host", default=env("DEVBROKER_HOST", "127.0.0.1"), help="listen address %(default)s")
    parser.add_argument("--port", type=int, default=env("DEVBROKER_PORT", "9092"), help="(env DEVBROKER_PORT) %(default)s")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    broker = DevBroker(args.port, args.host)
    stop = StopFlag().install()
    try:
        broker.start()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("Dev broker (Tansu, in memory) ready on %s; Ctrl+C stops it", broker.bootstrap_servers)
    assert broker.process is not None
    while not stop.requested and broker.process.poll() is None:
        try:
            broker.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    if broker.process.poll() is not None and not stop.requested:
        log.error("Tansu exited with code %s", broker.process.returncode)
        return 1
    broker.stop()
    log.info("Dev broker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
