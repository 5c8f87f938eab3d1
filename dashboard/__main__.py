"""Live view of the pipeline, read from Kafka alone: rates, running average, retry backlog, DLQ, lag.

Run: ``python -m dashboard`` beside the demo; ``--once`` prints one plain-text
snapshot and exits, ``--json`` the same as JSON. It needs nothing but the
broker, and says so when the broker is unreachable, then recovers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional

from confluent_kafka import KafkaException
from rich.console import Console
from rich.live import Live

from app import settings as flags
from app.settings import env
from dashboard.collect import Collector, Snapshot
from dashboard.render import as_json, lines, rich_view
from runtime.cli import run
from runtime.clients import Clients
from runtime.errors import PipelineError
from runtime.logs import setup_logging
from runtime.shutdown import StopFlag


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", help="print one plain-text snapshot and exit")
    parser.add_argument("--json", action="store_true", help="with --once implied: print the snapshot as JSON")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (and the rate window) %(default)s")
    parser.add_argument("--main-group", default=env("MAIN_GROUP_ID", "orders-main"), help="%(default)s")
    parser.add_argument("--retry-group", default=env("RETRY_GROUP_ID", "orders-retry"), help="%(default)s")
    parser.add_argument("--dlq-group", default=env("DLQ_GROUP_ID", "orders-dlq"), help="%(default)s")
    flags.add_connection_args(parser)
    flags.add_stats_topic_arg(parser)
    return parser.parse_args(argv)


def take(collector: Collector, previous: Optional[Snapshot]) -> Snapshot:
    return collector.snapshot().with_rates(previous)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging("ERROR")  # the view itself reports the broker's state
    clients = Clients(flags.kafka_settings(args), "orders-dashboard")
    topics = {"orders": args.orders_topic, "redrive": args.redrive_topic, "retry": args.retry_topic, "dlq": args.dlq_topic}
    groups = {"main": args.main_group, "retry": args.retry_group, "dlq": args.dlq_group}
    collector = Collector(clients, topics, groups, args.stats_topic)
    try:
        if args.once or args.json:
            return snapshot_once(collector, topics, args.interval, as_json_output=args.json)
        return live(collector, topics, args.interval)
    finally:
        collector.close()


def snapshot_once(collector: Collector, topics: dict[str, str], interval_s: float, as_json_output: bool) -> int:
    try:
        first = take(collector, None)
        time.sleep(interval_s)  # the window over which rates are measured
        snapshot = take(collector, first)
    except KafkaException as exc:
        print(f"error: Kafka broker at {collector.clients.settings.bootstrap_servers} is unreachable ({exc})", file=sys.stderr)
        return 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if as_json_output:
        json.dump(as_json(snapshot), sys.stdout)
        sys.stdout.write("\n")
    else:
        print("\n".join(lines(snapshot, topics)))
    return 0


def live(collector: Collector, topics: dict[str, str], interval_s: float) -> int:
    stop = StopFlag().install()
    bootstrap = collector.clients.settings.bootstrap_servers
    snapshot: Optional[Snapshot] = None
    status = f"connecting to {bootstrap}…"
    with Live(rich_view(None, topics, status), console=Console(), refresh_per_second=4, screen=False) as view:
        while not stop.requested:
            try:
                snapshot = take(collector, snapshot)
                status = f"Kafka at {bootstrap} · updated {time.strftime('%H:%M:%S')} · Ctrl+C quits"
            except (KafkaException, PipelineError) as exc:
                status = f"Kafka broker at {bootstrap} is unreachable ({str(exc)[:80]}); retrying"
            view.update(rich_view(snapshot, topics, status))
            deadline = time.monotonic() + interval_s
            while not stop.requested and time.monotonic() < deadline:
                time.sleep(0.1)  # poll for Ctrl+C between refreshes
    return 0


if __name__ == "__main__":
    run(main)
