"""Run the producer, the three consumers and the dead-letter console together, each line prefixed with its name.

Starts a dev broker (Tansu, in memory, or with ``--engine kafka`` Apache
Kafka) unless a broker already answers at the bootstrap address. Ctrl+C (or
SIGTERM) stops the producer first, then the consumers, then the broker, and
leaves no process behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Optional

from demo.processes import ProcessGroup
from devbroker import ENGINES, BrokerError, DevBroker, broker_answers, dev_broker
from app.settings import add_format_arg, env, probability
from runtime.settings import DEFAULT_BOOTSTRAP
from runtime.logs import setup_logging
from runtime.shutdown import StopFlag

log = logging.getLogger("demo")
ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"localhost", "127.0.0.1"}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--bootstrap-servers", default=env("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
        help="(env KAFKA_BOOTSTRAP_SERVERS) %(default)s; a dev broker is started there if none answers",
    )
    parser.add_argument("--engine", choices=ENGINES, default=env("DEVBROKER_ENGINE", "tansu"),
                        help="dev broker to start if none answers (env DEVBROKER_ENGINE) %(default)s")
    parser.add_argument("--rate", type=positive_float, default=2.0, help="orders per second %(default)s")
    parser.add_argument("--invalid-rate", type=probability, default=0.05, help="share of poison records %(default)s")
    parser.add_argument("--fail-rate", type=probability, default=0.1,
                        help="chance that a processing attempt fails, simulated (the main consumer's default is 0) %(default)s")
    parser.add_argument("--fail-product", default="Item3", help="product that always fails %(default)s")
    add_format_arg(parser)
    parser.add_argument(
        "--metrics-port", type=first_port, default=env("DEMO_METRICS_PORT", "9101"),
        help="first of four Prometheus ports: producer, main, retry, dlq (env DEMO_METRICS_PORT) %(default)s; 0 = off",
    )
    parser.add_argument("--metrics-addr", default=env("METRICS_ADDR", "127.0.0.1"),
                        help="(env METRICS_ADDR) %(default)s; 0.0.0.0 lets Prometheus in Docker scrape them")
    parser.add_argument("--console-port", type=port_or_off, default=env("DEMO_CONSOLE_PORT", "8080"),
                        help="the dead-letter console's port (env DEMO_CONSOLE_PORT) %(default)s; 0 = off")
    parser.add_argument("--state-dir", default=str(ROOT / ".demo"), help="summary file and broker log %(default)s")
    return parser.parse_args(argv)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def first_port(text: str) -> int:
    """The first of four consecutive ports, or 0 for none."""
    value = int(text)
    if value != 0 and not 1 <= value <= 65532:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a port from 1 to 65532 (four ports follow it), got {text}")
    return value


def port_or_off(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a port, got {text}")
    return value


def local_port(bootstrap_servers: str) -> Optional[int]:
    """The port if the (first) bootstrap address is on this machine, else None."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    return int(port) if host in LOCAL_HOSTS and port.isdigit() else None


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging("INFO")
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    stop = StopFlag().install()

    broker: Optional[DevBroker] = None
    if broker_answers(args.bootstrap_servers):
        log.info("Using the Kafka broker that answers at %s", args.bootstrap_servers)
    else:
        port = local_port(args.bootstrap_servers)
        if port is None:
            log.error("No broker answers at %s, and it is not local, so no dev broker can stand in", args.bootstrap_servers)
            return 1
        try:
            broker = dev_broker(args.engine, port, output=(state_dir / "devbroker.log").open("wb"))
            log.info("No broker at %s: starting the dev broker (%s)", args.bootstrap_servers, broker.description)
            broker.start()
        except BrokerError as exc:
            log.error("%s", exc)
            return 1

    summary_file = state_dir / "summary.json"
    child_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap_servers,
        "KAFKA_CONFIG_FILE": os.environ.get("KAFKA_CONFIG_FILE") or str(ROOT / "dev.properties"),
        "PYTHONUNBUFFERED": "1",
    }
    python = sys.executable
    console_token = secrets.token_urlsafe(18)
    scripts = [
        *([("console", "dlq.web", ["--port", str(args.console_port), "--token", console_token])]
          if args.console_port else []),
        ("dlq", "dlq.dlq_consumer", []),
        ("retry", "retry.retry_consumer", []),
        ("main", "consumer.main_consumer", ["--fail-rate", str(args.fail_rate), "--fail-product", args.fail_product,
                                            "--summary-file", str(summary_file)]),
        ("producer", "producer.producer", ["--rate", str(args.rate), "--invalid-rate", str(args.invalid_rate)]),
    ]
    scripts = [
        (name, module, [*extra, "--format", args.message_format]) for name, module, extra in scripts
    ]
    metrics_ports = {"producer": 0, "main": 1, "retry": 2, "dlq": 3}
    group = ProcessGroup()
    for name, module, extra in scripts:
        if args.metrics_port and name in metrics_ports:
            extra = [*extra, "--metrics-port", str(args.metrics_port + metrics_ports[name]), "--metrics-addr", args.metrics_addr]
        group.start(name, [python, "-m", module, *extra], child_env)
    if args.metrics_port:
        log.info("Prometheus metrics: %s", ", ".join(
            f"{name} http://{args.metrics_addr}:{args.metrics_port + offset}/metrics" for name, offset in metrics_ports.items()))
    if args.console_port:
        log.info("Dead-letter console: http://127.0.0.1:%d (replay token %s)", args.console_port, console_token)
    log.info("Live view: python -m dashboard (in another terminal)")
    log.info("Pipeline running; main consumer state in %s. Ctrl+C stops everything.", summary_file)
    exit_code = 0
    while not stop.requested:
        exited = group.exited()
        if exited:
            log.error("%s exited with code %s; stopping the demo", exited[0].name, exited[0].process.returncode)
            exit_code = 1
            break
        time.sleep(0.2)  # poll for Ctrl+C and for children that exit
    log.info("Stopping the producer, then the consumers%s", ", then the dev broker" if broker else "")
    group.stop_all()
    if broker is not None:
        broker.stop()
    log.info("Demo stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
