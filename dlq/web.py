"""Web console for the dead letters: the group's figures, the dead letters, and their replay; a JSON API beside.

Run: ``python -m dlq.web [--port 8080] [--token TOKEN] [--read-only]``, then
open http://127.0.0.1:8080. The API is described at ``/openapi.json`` (and
browsable at ``/docs``). Replays need the token as ``Authorization: Bearer
TOKEN``; without ``--token`` (or ``CONSOLE_TOKEN``) one is generated and shown
once at start.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import threading
import time
from typing import Any, Optional

import uvicorn
from confluent_kafka import KafkaException
from fastapi import HTTPException

from app import settings as flags
from app.settings import env, non_negative_float, positive_int
from dashboard.collect import Collector, Snapshot
from dlq.console import Console, build_app
from dlq.index import DeadLetterIndex
from dlq.replay import ReplayReport, ReplayRequest, replay
from runtime.cli import run
from runtime.clients import Clients
from runtime.errors import PipelineError
from runtime.logs import setup_logging
from runtime.shutdown import StopFlag
from runtime.topics import ensure_topics

log = logging.getLogger("dlq-console")

SUMMARY_MAX_AGE_S = 1.0
REPLAY_FLUSH_S = 35.0


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dlq.web", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=env("CONSOLE_HOST", "127.0.0.1"), help="(env CONSOLE_HOST) %(default)s")
    parser.add_argument("--port", type=positive_int, default=env("CONSOLE_PORT", "8080"), help="(env CONSOLE_PORT) %(default)s")
    parser.add_argument("--token", default=env("CONSOLE_TOKEN", ""),
                        help="bearer token that replays need (env CONSOLE_TOKEN); default: a new one, shown at start")
    parser.add_argument("--read-only", action="store_true", help="no replay, whatever the token")
    parser.add_argument("--max-rate", type=non_negative_float, default=env("REPLAY_MAX_RATE", "1000"),
                        help="replayed records per second at most, 0 = no limit (env REPLAY_MAX_RATE) %(default)s")
    parser.add_argument("--group-id", default=env("DLQ_GROUP_ID", "orders-dlq"),
                        help="the replay's consumer group is this with -replay, as for dlq_consumer (env DLQ_GROUP_ID) "
                        "%(default)s")
    parser.add_argument("--main-group", default=env("MAIN_GROUP_ID", "orders-main"), help="(env MAIN_GROUP_ID) %(default)s")
    parser.add_argument("--retry-group", default=env("RETRY_GROUP_ID", "orders-retry"), help="(env RETRY_GROUP_ID) %(default)s")
    flags.add_format_arg(parser)
    flags.add_connection_args(parser)
    flags.add_stats_topic_arg(parser)
    return parser.parse_args(argv)


class GroupFigures:
    """The overview's figures (dashboard.collect's snapshot), taken at most once a second whatever the requests."""

    def __init__(self, collector: Collector, groups: dict[str, str]) -> None:
        self.collector = collector
        self.groups = groups
        self._lock = threading.Lock()
        self._taken: Optional[tuple[float, dict[str, Any]]] = None

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            if self._taken is None or time.monotonic() - self._taken[0] >= SUMMARY_MAX_AGE_S:
                try:
                    self._taken = (time.monotonic(), as_figures(self.collector.snapshot()))
                except (KafkaException, PipelineError) as exc:
                    raise HTTPException(503, f"the figures cannot be read now: {exc}") from None
            return self._taken[1]


def as_figures(snapshot: Snapshot) -> dict[str, Any]:
    lag: dict[str, dict[str, int]] = {}
    for group, partitions in snapshot.lag.items():
        for partition, behind in partitions.items():
            topic = partition.rpartition("[")[0]
            lag.setdefault(group, {}).setdefault(topic, 0)
            lag[group][topic] += behind
    return {"processed": snapshot.processed, "average": snapshot.average, "retried": snapshot.retried,
            "dead_lettered": snapshot.dlq_total, "retry_backlog": snapshot.retry_waiting, "lag": lag,
            "dead_letters_by_reason": snapshot.dlq_by_reason}


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    kafka, topics, codec = flags.kafka_settings(args), flags.topics(args), flags.codec(args)
    clients = Clients(kafka, "orders-console")
    stop = StopFlag().install()
    if not ensure_topics(clients, [topics.dlq, topics.redrive], kafka.partitions, kafka.replication_factor,
                         lambda: stop.requested):
        return 0
    index = DeadLetterIndex(clients, topics)
    groups = {"main": args.main_group, "retry": args.retry_group, "dlq": args.group_id}
    collector = Collector(clients, {"orders": topics.orders, "redrive": topics.redrive, "retry": topics.retry,
                                    "dlq": topics.dlq}, groups, args.stats_topic)

    def replay_with(request: ReplayRequest, report: ReplayReport) -> ReplayReport:
        return replay(clients, topics, args.group_id, request, codec, lambda: stop.requested, report)

    token = args.token or secrets.token_urlsafe(18)
    console = Console(index, GroupFigures(collector, groups), replay_with, codec, token, args.read_only, args.max_rate)
    server = uvicorn.Server(uvicorn.Config(build_app(console), host=args.host, port=args.port, log_config=None,
                                           access_log=False))
    index.start()
    log.info("Dead-letter console on http://%s:%d (API: /openapi.json) for %s", args.host, args.port, topics.dlq)
    if args.read_only:
        log.info("Read-only: replay is off")
    elif not args.token:
        log.info("Replay token (generated; set --token or CONSOLE_TOKEN to choose one): %s", token)
    try:
        server.run()  # until SIGINT/SIGTERM: uvicorn finishes the requests in progress, hands the signal on, returns
    finally:
        console.wait_for_replay(REPLAY_FLUSH_S)  # the signal set stop.requested: a replay ends and flushes
        index.stop()
        collector.close()
    log.info("Stopped")
    return 0


if __name__ == "__main__":
    run(main)
