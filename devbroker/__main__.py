"""Run a dev broker in the foreground: ``python -m devbroker [--engine tansu|kafka] [--port 9092] [--nodes 3]``.

Ctrl+C (or SIGTERM) stops it, every JVM included.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional

from devbroker import ENGINES, BrokerError, KafkaCluster, ScramUsers, dev_broker
from app.settings import env
from runtime.logs import setup_logging
from runtime.shutdown import StopFlag

log = logging.getLogger("devbroker")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devbroker",
        description="Start a Kafka broker on 127.0.0.1 and wait for Ctrl+C: Tansu (in memory, nothing to install) "
                    "or Apache Kafka (KRaft; needs Java 17+, and Maven once to fetch it).",
    )
    parser.add_argument("--engine", choices=ENGINES, default=env("DEVBROKER_ENGINE", "tansu"),
                        help="(env DEVBROKER_ENGINE) %(default)s")
    parser.add_argument("--host", default=env("DEVBROKER_HOST", "127.0.0.1"), help="listen address %(default)s")
    parser.add_argument("--port", type=int, default=env("DEVBROKER_PORT", "9092"),
                        help="(env DEVBROKER_PORT) %(default)s; the first node's, with --nodes")
    parser.add_argument("--nodes", type=int, default=1,
                        help="Apache Kafka nodes, each broker and controller %(default)s; 3 gives replication factor 3, "
                             "min.insync.replicas=2")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Apache Kafka keeps its data here across runs (default: a temp dir, removed at exit)")
    parser.add_argument("--secure", action="store_true",
                        help="Apache Kafka with SASL/SCRAM and an authoriser: an admin and an application user with "
                             "least-privilege ACLs (docs/security.md); prints the properties files to use")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.engine == "tansu" and (args.nodes != 1 or args.data_dir is not None or args.secure):
        parser.error("--nodes, --data-dir and --secure need --engine kafka (Tansu runs one node, in memory, "
                     "without authentication)")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging("INFO")
    stop = StopFlag().install()
    try:
        broker = dev_broker(args.engine, args.port, args.host, nodes=args.nodes, data_dir=args.data_dir,
                            users=ScramUsers() if args.secure else None)
        broker.start()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("Dev broker (%s) ready on %s; Ctrl+C stops it", broker.description, broker.bootstrap_servers)
    if isinstance(broker, KafkaCluster) and broker.users is not None:
        log.info("The application's settings: --config %s (the admin's: %s)", broker.client_properties,
                 broker.admin_properties)
    while not stop.requested and broker.running():
        time.sleep(0.2)  # poll for Ctrl+C and for a broker that exits by itself
    exited_by_itself = not stop.requested
    broker.stop()
    if exited_by_itself:
        log.error("The dev broker exited by itself")
        return 1
    log.info("Dev broker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
