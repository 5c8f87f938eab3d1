"""Replay: re-drive selected dead letters to the main consumer, each once, at a bounded rate.

The one implementation behind ``python -m dlq.dlq_consumer --replay`` and the
console's replay (``python -m dlq.web``). A replayed copy goes to the re-drive
topic that only the main consumer group reads, with its retry count reset, the
replay's time, and the dead letter it came from; those copies are the record of
what was replayed, so a replay killed half-way and run again sends each dead
letter once, on any broker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, Producer, TopicPartition

from app import metrics as figures
from app.settings import Topics
from domain.codecs import Codec
from domain.dead_letters import ReplaySelection, already_replayed, describe_dead_letter, not_replayable, replayed_since
from domain.headers import replay_headers
from runtime.clients import PRODUCER_ENFORCED, Clients
from runtime.provenance import source_of, with_source
from runtime.reading import partitions_of, read_to_end
from runtime.routing import now_ms, produce_patiently

log = logging.getLogger("dlq-replay")

DeadLetterId = tuple[int, int]  # (partition, offset) in the DLQ


@dataclass(frozen=True)
class ReplayRequest:
    """Which dead letters to replay, and how."""

    selection: ReplaySelection
    max_rate: float = 1000.0  # records per second; 0 = no limit
    dry_run: bool = False
    again: bool = False  # replay dead letters that were replayed before
    only: Optional[frozenset[DeadLetterId]] = None  # these dead letters (that the selection also takes), or all


@dataclass
class ReplayReport:
    """What a replay did (or, dry-run, would do); updated as it goes, for progress."""

    dry_run: bool
    chosen: list[DeadLetterId] = field(default_factory=list)  # replayed, or would be
    skipped: int = 0  # not selected
    repeated: int = 0  # replayed before
    not_replayable: int = 0  # stubs
    undelivered: int = 0
    done: bool = False

    def line(self, redrive_topic: str) -> str:
        return (f"{'Would replay' if self.dry_run else 'Replayed'} {len(self.chosen) - self.undelivered} dead "
                f"letter(s) to {redrive_topic}, skipped {self.skipped} not selected"
                + (f", {self.repeated} replayed before (--again replays them)" if self.repeated else "")
                + (f", {self.not_replayable} not replayable" if self.not_replayable else "")
                + (f", {self.undelivered} not delivered" if self.undelivered else ""))


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


def replayed_dead_letters(clients: Clients, redrive_topic: str, dlq_topic: str) -> set[tuple[str, int, int]]:
    """The dead letters earlier replays sent back: every replayed copy in the re-drive topic names its dead letter.

    Costs one read of the re-drive topic.
    """
    starts = {partition: 0 for partition in partitions_of(clients, [redrive_topic])}
    sources = (source_of(msg.headers()) for msg in read_to_end(clients, starts))
    return {source for source in sources if source is not None and source[0] == dlq_topic}


def replay(clients: Clients, topics: Topics, group_id: str, request: ReplayRequest, codec: Codec,
           should_stop: Callable[[], bool], report: Optional[ReplayReport] = None) -> ReplayReport:
    """Re-drive the selected dead letters not replayed before, reading each partition up to its end.

    The end is where the broker reports end-of-partition while fetching; the
    listed high watermark is not used because some Kafka-compatible brokers
    (Tansu 0.6) report it wrong. A replayed record that fails again lands in
    the DLQ while we read it: it is passed over, or the replay would never end.
    ``report``: filled in as the replay goes (a caller's progress), and returned.
    """
    report = report if report is not None else ReplayReport(request.dry_run)
    started_ms = now_ms()
    replayed = set() if request.again else replayed_dead_letters(clients, topics.redrive, topics.dlq)
    consumer = clients.consumer(
        {"auto.offset.reset": "earliest"},
        {"group.id": f"{group_id}-replay", "enable.auto.commit": False, "enable.partition.eof": True},
    )
    partitions = consumer.list_topics(topics.dlq, timeout=10).topics[topics.dlq].partitions
    unfinished = set(partitions)
    consumer.assign([TopicPartition(topics.dlq, p, OFFSET_BEGINNING) for p in partitions])
    producer: Optional[Producer] = None if request.dry_run else clients.producer({}, PRODUCER_ENFORCED)
    pacer = Pacer(request.max_rate)
    try:
        while unfinished and not should_stop():
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
            if request.only is not None and (msg.partition(), msg.offset()) not in request.only:
                report.skipped += 1
                continue
            timestamp_type, timestamp = msg.timestamp()
            if not request.selection.selects(msg.key(), msg.headers(), timestamp if timestamp_type else None):
                report.skipped += 1
                continue
            why_not = not_replayable(msg.headers())
            if why_not is not None:
                report.not_replayable += 1
                log.warning("Not replaying %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), why_not)
                continue
            dead_letter = (msg.topic(), msg.partition(), msg.offset())
            if not request.again and already_replayed(dead_letter, msg.headers(), replayed):
                report.repeated += 1
                continue
            log.info("%s: %s", "Would replay" if request.dry_run else "Replaying", show(msg, codec))
            if producer is not None:
                pacer.wait(producer)
                headers = with_source(replay_headers(msg.headers(), now_ms()), dead_letter)
                produce_patiently(producer, topics.redrive, key=msg.key(), value=msg.value(), headers=headers)
                producer.poll(0)
                figures.REPLAYED.inc()
            report.chosen.append((msg.partition(), msg.offset()))
    finally:
        consumer.close()
    report.undelivered = producer.flush(30) if producer is not None else 0
    report.done = True
    log.info("%s", report.line(topics.redrive))
    return report
