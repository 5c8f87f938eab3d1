"""Show each dead letter in ``orders_dlq`` with its reason, or replay selected ones to the main consumer.

Run: ``python -m dlq.dlq_consumer [--from-beginning]`` to follow the DLQ, or
``python -m dlq.dlq_consumer --replay [--reason-contains TEXT] [--error-class NAME]
[--key KEY] [--since TIME] [--until TIME] [--max-rate N] [--dry-run]`` to
re-drive dead letters after a fix: retry count reset, marked as replayed,
written to the re-drive topic that only the main consumer group reads (other
readers of ``orders`` never see a replay). A replay reads the DLQ up to its
end as of the start and stops there.
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from app import metrics as figures
from app import settings as flags
from app.settings import Topics, env, non_negative_float
from dlq.replay import ReplayRequest, replay, show
from domain.codecs import Codec
from domain.dead_letters import ReplaySelection, dlq_reason, parse_time_ms
from runtime.cli import run
from runtime.clients import Clients, guarded
from runtime.logs import setup_logging
from runtime.metrics import serve
from runtime.shutdown import StopFlag
from runtime.topics import ensure_topics

log = logging.getLogger("dlq-consumer")

CONSUMER_DEFAULTS = {"auto.offset.reset": "earliest"}
CONSUMER_ENFORCED = {"enable.auto.commit": True, "enable.auto.offset.store": False}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dlq.dlq_consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", default=env("DLQ_GROUP_ID", "orders-dlq"), help="(env DLQ_GROUP_ID) %(default)s")
    parser.add_argument("--from-beginning", action="store_true", help="show the whole DLQ history, not only what is new")
    parser.add_argument("--replay", action="store_true", help="send dead letters back to the main consumer (the re-drive topic), then exit")
    selection = parser.add_argument_group("with --replay: which dead letters (all conditions given must hold)")
    selection.add_argument("--reason-contains", metavar="TEXT", help="reason or error contains TEXT (any case)")
    selection.add_argument("--error-class", metavar="NAME", help="the failure's error class, e.g. ValidationError")
    selection.add_argument("--key", help="the record key, as UTF-8 text")
    selection.add_argument("--since", type=time_ms, metavar="TIME",
                           help="dead-lettered at or after TIME (ISO 8601, e.g. 2026-12-01T10:00:00Z, or epoch ms)")
    selection.add_argument("--until", type=time_ms, metavar="TIME", help="dead-lettered before TIME")
    selection.add_argument("--max-rate", type=non_negative_float, default=env("REPLAY_MAX_RATE", "1000"),
                           help="records per second at most, 0 = no limit (env REPLAY_MAX_RATE) %(default)s")
    selection.add_argument("--dry-run", action="store_true", help="show what would be replayed, send nothing")
    selection.add_argument("--again", action="store_true",
                           help="replay dead letters that were replayed before (by default each is replayed once)")
    flags.add_format_arg(parser)
    flags.add_connection_args(parser)
    flags.add_metrics_args(parser)
    args = parser.parse_args(argv)
    chosen = [args.reason_contains, args.error_class, args.key, args.since, args.until, args.dry_run or None,
              args.again or None]
    if any(option is not None for option in chosen) and not args.replay:
        parser.error("--reason-contains, --error-class, --key, --since, --until, --dry-run and --again go with --replay")
    if args.replay and args.from_beginning:
        parser.error("--replay always reads from the beginning; drop --from-beginning")
    return args


def time_ms(text: str) -> int:
    """``--since``/``--until``: epoch milliseconds, or ISO 8601 (UTC unless it says otherwise)."""
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def follow(clients: Clients, topics: Topics, group_id: str, from_beginning: bool, codec: Codec, stop: StopFlag) -> int:
    """Print dead letters as they arrive; the group's offsets remember what was shown."""
    consumer = clients.consumer(CONSUMER_DEFAULTS, {**CONSUMER_ENFORCED, "group.id": group_id})

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        if from_beginning:
            for tp in partitions:
                tp.offset = OFFSET_BEGINNING
            c.assign(partitions)

    consumer.subscribe([topics.dlq], on_assign=guarded(clients.status, on_assign))
    log.info("Following %s%s", topics.dlq, " from the beginning" if from_beginning else "")
    shown = 0
    try:
        while not stop.requested:
            msg = consumer.poll(0.5)
            clients.status.check()  # a refusal or fatal error the clients reported: stop
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("Consumer error: %s", msg.error().str())
                continue
            log.warning("%s", show(msg, codec))
            shown += 1
            figures.DEAD_LETTERS_SHOWN.labels(reason=dlq_reason(msg.headers())).inc()
            consumer.store_offsets(message=msg)
    finally:
        consumer.close()
        log.info("Stopped after showing %d dead letter(s)", shown)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    kafka, topics, codec = flags.kafka_settings(args), flags.topics(args), flags.codec(args)
    clients = Clients(kafka, args.group_id)
    stop = StopFlag().install()
    serve(args.metrics_port, args.metrics_addr)
    needed = [topics.dlq, topics.redrive] if args.replay else [topics.dlq]
    if not ensure_topics(clients, needed, kafka.partitions, kafka.replication_factor, lambda: stop.requested):
        return 0
    if not args.replay:
        return follow(clients, topics, args.group_id, args.from_beginning, codec, stop)
    selection = ReplaySelection(args.reason_contains, args.error_class, args.key.encode() if args.key is not None else None,
                                args.since, args.until)
    report = replay(clients, topics, args.group_id, ReplayRequest(selection, args.max_rate, args.dry_run, args.again),
                    codec, lambda: stop.requested)
    return 1 if report.undelivered else 0


if __name__ == "__main__":
    run(main)
