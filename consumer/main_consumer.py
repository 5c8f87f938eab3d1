"""Consume orders, keep a running average of ``price``, route failures to retry or the DLQ.

Run: ``python -m consumer.main_consumer [--fail-rate R] [--fail-product ItemN] [--summary-file PATH]``.

It reads ``orders`` and the re-drive topic, where the retry consumer puts
retries once due (and the DLQ consumer replays): retries never go back into
``orders``, which other teams may read. Per batch, :meth:`MainHandler.handle`
runs decode -> validate -> process (:func:`domain.order.evaluate`) ->
route for each record; the runtime's loop (:func:`runtime.loop.consume`)
does the rest: poll, checkpoint and commit once a second, or the
transaction on Apache Kafka (exactly-once).
"""

from __future__ import annotations

import argparse
import logging
from itertools import groupby
from typing import Optional

from confluent_kafka import Message

from app import settings as flags
from app.settings import env
from consumer.figures import MainEvents, MainFigures
from consumer.schema_registry import registry_decoder
from domain.average import PartitionStats, RunningAverage
from domain.codecs import Codec
from domain.codecs.framing import FramedDecoder
from domain.failures import FailureSimulator
from domain.headers import dead_letter_headers, retry_headers, too_large_headers
from domain.order import RETRY, Verdict, attempt_of, evaluate
from runtime import metrics
from runtime.cli import run
from runtime.clients import DRAINING_CONSUMER_DEFAULTS
from runtime.gc_tuning import tune_for_streaming
from runtime.logs import setup_logging
from runtime.loop import consume
from runtime.offsets import OffsetTracker, Partition
from runtime.partition_role import StatePerPartition
from runtime.routing import Copies, now_ms
from runtime.shutdown import StopFlag
from runtime.topics import RETRY_TOPIC_CONFIG
from runtime.wiring import Plan, wire

log = logging.getLogger("main-consumer")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m consumer.main_consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--summary-file", default=env("SUMMARY_FILE", "") or None, metavar="PATH",
                        help="the whole group's figures as JSON, replaced atomically at least once a second (env SUMMARY_FILE)")
    parser.add_argument("--schema-registry-url", default=env("SCHEMA_REGISTRY_URL", "") or None, metavar="URL",
                        help="decode Schema-Registry-framed values through this registry (env SCHEMA_REGISTRY_URL; "
                        "needs requirements-registry.txt); without it they are dead-lettered with their schema id")
    flags.add_failure_args(parser)
    flags.add_consumer_args(parser, "MAIN_GROUP_ID", "orders-main")
    flags.add_backoff_args(parser)
    flags.add_connection_args(parser)
    flags.add_format_arg(parser)
    flags.add_metrics_args(parser)
    return parser.parse_args(argv)


class MainHandler(StatePerPartition[PartitionStats]):
    """What happens to each record of a batch; each owned partition's running average travels in its checkpoint."""

    def __init__(self, copies: Copies, tracker: OffsetTracker, topics: flags.Topics, retries: flags.Retries,
                 simulator: FailureSimulator, codec: Codec, framed: Optional[FramedDecoder], average: RunningAverage,
                 events: MainEvents) -> None:
        super().__init__(average.partitions, PartitionStats.of, lambda stats, topic: stats.count_routed(topic == topics.retry))
        self.copies, self.tracker, self.topics, self.retries = copies, tracker, topics, retries
        self.simulator, self.codec, self.framed = simulator, codec, framed
        self.average, self.events = average, events
        self.held: set[Partition] = set()

    def handle(self, records: list[Message]) -> None:
        """decode -> validate -> process -> route each record; a partition's run of records shares its look-ups."""
        for partition, run_of_records in groupby(records, _partition_of):
            stats = self.average.partitions.get(partition)
            if stats is None:
                continue  # revoked while this batch was fetched; the new owner reads it
            lines_left = self.events.lines_left()
            count, total, last_offset = 0, 0.0, -1
            for msg in run_of_records:
                last_offset = msg.offset()
                outcome = evaluate(msg.value(), msg.headers(), self.simulator, self.codec, self.framed)
                if type(outcome) is dict:  # processed: the order itself, nothing else built for it
                    count, total = count + 1, total + outcome["price"]
                    if lines_left and self.events.wants_line():
                        lines_left -= 1
                        self.average.add(stats, count, total)
                        count, total = 0, 0.0
                        self.events.processed(outcome, attempt_of(msg.headers()))
                else:
                    self._route(msg, partition, stats, outcome)  # type: ignore[arg-type]
            self.average.add(stats, count, total)
            self.events.count_unlogged(count)
            if last_offset >= 0:
                self.tracker.consumed(partition, last_offset)
        self.events.tick()

    def _route(self, msg: Message, partition: Partition, stats: PartitionStats, verdict: Verdict) -> None:
        """A copy to the retry topic or the DLQ; the record is done once the copy is acknowledged."""
        self.tracker.track(partition, msg.offset())
        failure = verdict.failure
        if verdict.route == RETRY:
            delay_s = self.retries.backoff.delay_s(verdict.attempt)
            self.copies.copy(msg, self.topics.retry, retry_headers, failure, verdict.attempt, now_ms() + int(delay_s * 1000) + 1)
            stats.count_routed(to_retry=True)
            self.average.routing_counts[("retry", failure.stage, failure.error_class)] += 1
            self.events.retried(verdict, delay_s)
        else:
            self.copies.copy(msg, self.topics.dlq, dead_letter_headers, failure, verdict.attempt, verdict.dlq_reason)
            stats.count_routed(to_retry=False)
            self.average.routing_counts[("dlq", verdict.dlq_reason)] += 1  # type: ignore[index]
            self.events.dead_lettered(msg, verdict)

    def poll_timeout_s(self) -> float:
        return 0.5


def _partition_of(msg: Message) -> Partition:
    return msg.topic(), msg.partition()


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    stop = StopFlag().install()
    topics, codec = flags.topics(args), flags.codec(args)
    plan = Plan(sources=(topics.orders, topics.redrive), targets=(topics.retry, topics.dlq), dead_letter_topic=topics.dlq,
                too_large=too_large_headers, consumer_defaults=DRAINING_CONSUMER_DEFAULTS,
                topic_config={topics.retry: RETRY_TOPIC_CONFIG}, settled_only=True)  # its counts include copies asked for
    wiring = wire(flags.kafka_settings(args), flags.consumer_settings(args), plan, lambda: stop.requested)
    if wiring is None:
        return 0
    average = RunningAverage()
    figures = MainFigures(wiring, average, topics, args.summary_file)
    handler = MainHandler(wiring.copies, wiring.checkpointed.tracker, topics, flags.retries(args),
                          flags.failure_simulator(args), codec,
                          registry_decoder(args.schema_registry_url, codec, topics.orders), average,
                          MainEvents(average, topics, args.max_retries))
    log.info("Consuming %s (%s) and its retries from %s as group %s (fail rate %g, fail product %s); state in %s; "
             "%s; group protocol %s", topics.orders, codec.name, topics.redrive, args.group_id, args.fail_rate,
             args.fail_product or "none", args.stats_topic, wiring.guarantee, wiring.group_protocol)
    metrics.serve(args.metrics_port, args.metrics_addr)
    tune_for_streaming()
    consume(wiring, handler, figures, stop)
    return 0


if __name__ == "__main__":
    run(main)
