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
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from app import metrics as figures
from app import settings as flags
from app.settings import Topics, env, non_negative_float
from domain.codecs import Codec
from domain.dead_letters import (
    ReplaySelection, already_replayed, describe_dead_letter, dlq_reason, not_replayable, replayed_since,
)
from domain.headers import replay_headers
from runtime.cli import run
from runtime.clients import PRODUCER_ENFORCED, Clients, ensure_topics, guarded
from runtime.logs import setup_logging
from runtime.metrics import serve
from runtime.provenance import source_of, with_source
from runtime.reading import partitions_of, read_to_end
from runtime.routing import now_ms, produce_patiently
from runtime.shutdown import StopFlag

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
    """A point in time from the command line: epoch milliseconds, or ISO 8601 (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO 8601, e.g. 2026-12-01T10:00:00Z, or epoch ms)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


class Pacer:
    """At most ``rate`` sends per second; waits by serving the producer's delivery reports."""

    def __init__(self, rate: float) -> None:
        self.interval_s = 1 / rate if rate else 0.0
        self._next = time.monotonic()

    def wait(self, producer: Producer) -> None:
        while (delay := self._next - time.monotonic()) > 0:
            producer.poll(delay)  # returns early once it has served a report, hence the loop
        self._next = max(self._next, time.monotonic()) + self.interval_s


def show(msg: Message, codec: Codec) -> str:
    return describe_dead_letter(
        msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(), codec
    ).line()


@dataclass(frozen=True)
class ReplayRequest:
    """Which dead letters to replay, and how."""

    selection: ReplaySelection
    max_rate: float = 1000.0  # records per second; 0 = no limit
    dry_run: bool = False
    again: bool = False  # replay dead letters that were replayed before


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


def replayed_dead_letters(clients: Clients, redrive_topic: str, dlq_topic: str) -> set[tuple[str, int, int]]:
    """The dead letters earlier replays sent back: every replayed copy in the re-drive topic names its dead letter.

    The copies are the record of what was replayed, so a replay killed half-way
    and run again sends each dead letter once, on any broker: what landed is
    found here, what did not is sent. Costs one read of the re-drive topic.
    """
    starts = {partition: 0 for partition in partitions_of(clients, [redrive_topic])}
    sources = (source_of(msg.headers()) for msg in read_to_end(clients, starts))
    return {source for source in sources if source is not None and source[0] == dlq_topic}


def replay(clients: Clients, topics: Topics, group_id: str, request: ReplayRequest, codec: Codec, stop: StopFlag) -> int:
    """Re-drive the selected dead letters not replayed before, reading each partition up to its end.

    The end is where the broker reports end-of-partition while fetching; the
    listed high watermark is not used because some Kafka-compatible brokers
    (Tansu 0.6) report it wrong. A replayed record that fails again lands in
    the DLQ while we read it: it is passed over, or the replay would never end.
    """
    started_ms = now_ms()
    replayed = set() if request.again else replayed_dead_letters(clients, topics.redrive, topics.dlq)
    consumer = clients.consumer(
        CONSUMER_DEFAULTS,
        {"group.id": f"{group_id}-replay", "enable.auto.commit": False, "enable.partition.eof": True},
    )
    partitions = consumer.list_topics(topics.dlq, timeout=10).topics[topics.dlq].partitions
    unfinished = set(partitions)
    consumer.assign([TopicPartition(topics.dlq, p, OFFSET_BEGINNING) for p in partitions])
    producer: Optional[Producer] = None if request.dry_run else clients.producer({}, PRODUCER_ENFORCED)
    verb = "Would replay" if request.dry_run else "Replaying"
    selection = request.selection
    pacer = Pacer(request.max_rate)
    selected = skipped = refused = repeated = 0
    try:
        while unfinished and not stop.requested:
            msg = consumer.poll(0.5)
            clients.status.check()  # a refusal or fatal error the clients reported: stop
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    unfinished.discard(msg.partition())
                else:
                    log.warning("Consumer error: %s", msg.error().str())
                continue
            if replayed_since(msg.headers(), started_ms):
                continue  # this replay sent it back, and it failed again
            timestamp_type, timestamp = msg.timestamp()
            if not selection.selects(msg.key(), msg.headers(), timestamp if timestamp_type else None):
                skipped += 1
                continue
            why_not = not_replayable(msg.headers())
            if why_not is not None:
                refused += 1
                log.warning("Not replaying %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), why_not)
                continue
            dead_letter = (msg.topic(), msg.partition(), msg.offset())
            if not request.again and already_replayed(dead_letter, msg.headers(), replayed):
                repeated += 1
                continue
            selected += 1
            log.info("%s: %s", verb, show(msg, codec))
            if producer is not None:
                pacer.wait(producer)
                headers = with_source(replay_headers(msg.headers(), now_ms()), dead_letter)
                produce_patiently(producer, topics.redrive, key=msg.key(), value=msg.value(), headers=headers)
                producer.poll(0)
                figures.REPLAYED.inc()
    finally:
        consumer.close()
    undelivered = producer.flush(30) if producer is not None else 0
    log.info(
        "%s %d dead letter(s) to %s, skipped %d not selected%s%s%s",
        "Would replay" if request.dry_run else "Replayed", selected - undelivered, topics.redrive, skipped,
        f", {repeated} replayed before (--again replays them)" if repeated else "",
        f", {refused} not replayable" if refused else "", f", {undelivered} not delivered" if undelivered else "",
    )
    return 1 if undelivered else 0


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
    return replay(clients, topics, args.group_id, ReplayRequest(selection, args.max_rate, args.dry_run, args.again),
                  codec, stop)


if __name__ == "__main__":
    run(main)
