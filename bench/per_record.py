"""What one record costs in the main consumer's Python thread, beside the decode-only loop: ``python -m bench.per_record``.

The throughput runs of ``python -m bench`` say how fast; this says where the
time goes, without the broker's share of the two cores: CPU time of this
thread only (``time.thread_time``), best of ``--repeats``, on records built in
memory (runs of 500 per partition, as a fetch returns them). At 10 %
failures the copies go, as in the script, through a producer to a dev broker:
an idempotent one (at-least-once) or a transactional one (exactly-once), with
a delivery report per copy. Then one copy's parts alone:
its headers, ``produce()``, and its delivery report.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from typing import Any, Callable, Optional

from confluent_kafka import Message, Producer
from confluent_kafka.admin import NewTopic

from app.settings import Retries, Topics
from avro_utils import avro_deserialize
from bench.limits import encoded_orders
from consumer.figures import MainEvents
from consumer.main_consumer import MainHandler
from devbroker import ENGINES, dev_broker, free_port
from domain.average import RunningAverage
from domain.backoff import BackoffPolicy
from domain.codecs import AVRO
from domain.failures import FailureSimulator
from domain.headers import Failure, retry_headers, too_large_headers
from runtime.clients import BrokerStatus, Clients
from runtime.gc_tuning import tune_for_streaming
from runtime.offsets import OffsetTracker
from runtime.provenance import source_headers
from runtime.routing import COPY_PRODUCER_DEFAULTS, Router, now_ms, ref_of
from runtime.settings import KafkaSettings
from runtime.wiring import copy_producer_config

PARTITIONS = 3
RUN = 500
BATCH = 5000
AT_LEAST_ONCE, EXACTLY_ONCE = "at-least-once", "exactly-once"


def cpu_us_per_record(work: Callable[[], Any], records: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best / records * 1e6


def copy_producer(bootstrap: str, guarantee: str) -> Producer:
    """The producer a main consumer makes its copies with, in ``guarantee``, as the runtime configures it."""
    topics, clients = Topics(), Clients(KafkaSettings(bootstrap), "bench")
    if guarantee == EXACTLY_ONCE:
        producer = clients.producer(*copy_producer_config(COPY_PRODUCER_DEFAULTS, f"bench-per-record-{time.time_ns()}"))
        producer.init_transactions(30)
        return producer
    return clients.producer(*copy_producer_config(COPY_PRODUCER_DEFAULTS, None), warm_up=[topics.retry, topics.dlq])


def create_copy_topics(bootstrap: str) -> None:
    """The retry and dead-letter topics; the admin client goes before the broker stops (a live one logs each
    refused reconnect)."""
    admin = Clients(KafkaSettings(bootstrap), "bench").admin()  # its lines go through logging, like the clients'
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("orders_retry", "orders_dlq")]).values():
        future.result(30)


def main_handler(fail_rate: float, producer: Producer, transactional: bool) -> tuple[MainHandler, Router]:
    """A main consumer's handler owning every partition from offset 0, its copies made as the script makes them."""
    topics, tracker = Topics(), OffsetTracker()

    def acked(source: tuple[str, int, int], _copy: tuple[str, int, int]) -> None:
        tracker.complete(source[:2], source[2])

    copies = Router(producer, topics.dlq, too_large_headers, acked, BrokerStatus("bench"),
                    transaction_max_bytes=1_048_588 if transactional else None)
    average = RunningAverage()
    handler = MainHandler(copies, tracker, topics, Retries(3, BackoffPolicy()), FailureSimulator(fail_rate), AVRO, None,
                          average, MainEvents(average, topics, max_retries=3))
    for partition in range(PARTITIONS):
        tracker.start((topics.orders, partition), 0)
        handler.restore((topics.orders, partition), None)
    return handler, copies


def drain_cost(bootstrap: str, batches: list[list[Message]], fail_rate: float, guarantee: str,
               repeats: int) -> tuple[float, float]:
    """CPU µs per record of a main consumer's handler draining ``batches``, and the copies it made per pass; its
    producer is closed before the broker stops (a live one logs each refused reconnect)."""
    producer = copy_producer(bootstrap, guarantee)
    transactional = guarantee == EXACTLY_ONCE
    handler, copies = main_handler(fail_rate, producer, transactional)

    def drain() -> None:
        if transactional:
            producer.begin_transaction()
        for batch in batches:
            handler.handle(batch)
            copies.serve()
        if transactional:
            producer.commit_transaction(30)  # waits for every copy; its wait is not this thread's time
        else:
            copies.flush(30)

    try:
        return cpu_us_per_record(drain, sum(map(len, batches)), repeats), handler.average.owned().retried / repeats
    finally:
        producer.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.per_record", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="%(default)s")
    parser.add_argument("--repeats", type=int, default=5, help="%(default)s")
    parser.add_argument("--engine", choices=ENGINES, default="kafka",
                        help="the dev broker the copies go to (exactly-once needs sound transactions) %(default)s")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # the event lines are built as in the script, not written
    msgs = [
        Message(topic="orders", partition=(i // RUN) % PARTITIONS, offset=i, key=key, value=value, timestamp=(1, now_ms()))
        for i, (key, value) in enumerate(encoded_orders(args.records))
    ]
    batches = [msgs[i:i + BATCH] for i in range(0, len(msgs), BATCH)]
    tune_for_streaming()

    def decode_only() -> None:
        for msg in msgs:
            if msg.error():
                continue
            avro_deserialize(msg.value())

    figures = {"decode-only loop": cpu_us_per_record(decode_only, len(msgs), args.repeats)}
    copies_per_pass = 0.0
    with dev_broker(args.engine, free_port(), output=subprocess.DEVNULL) as broker:
        bootstrap = broker.bootstrap_servers
        create_copy_topics(bootstrap)
        for name, fail_rate, guarantee in (("0% failures", 0.0, AT_LEAST_ONCE), (f"10% failures, {AT_LEAST_ONCE}", 0.1, AT_LEAST_ONCE),
                                           (f"10% failures, {EXACTLY_ONCE}", 0.1, EXACTLY_ONCE)):
            figures[f"main consumer, {name}"], copies = drain_cost(bootstrap, batches, fail_rate, guarantee, args.repeats)
            if fail_rate:
                copies_per_pass = copies
        parts = copy_parts(bootstrap, msgs[:20_000], args.repeats)
    print(f"CPU time of this thread per record, best of {args.repeats} over {len(msgs):,} records "
          f"(copies to a dev broker: {args.engine}):")
    decode = figures["decode-only loop"]
    print(f"  {'decode-only loop':<44} {decode:6.2f} us")
    for name, value in list(figures.items())[1:]:
        print(f"  {name:<44} {value:6.2f} us  ({value - decode:+.2f} us beside the decode-only loop)")
    for guarantee in (AT_LEAST_ONCE, EXACTLY_ONCE):
        extra = figures[f"main consumer, 10% failures, {guarantee}"] - figures["main consumer, 0% failures"]
        print(f"  10 % failures, {guarantee}, per copy {extra * len(msgs) / copies_per_pass:8.1f} us "
              f"({copies_per_pass:,.0f} copies; every record's failure draw included)")
    print("One copy's parts alone, per copy:")
    for name, value in parts.items():
        print(f"  {name:<44} {value:6.2f} us")
    return 0


def copy_parts(bootstrap: str, msgs: list[Message], repeats: int) -> dict[str, float]:
    """A retry copy's headers, its ``produce()``, and its delivery report (at-least-once), each alone."""
    failure = Failure("process", "TransientProcessingError", "simulated transient failure (attempt 1)",
                      "simulated transient failure (attempt 1)")

    def headers() -> list:
        return [retry_headers(msg.headers(), ref_of(msg), now_ms(), failure, 1, 0)
                + source_headers((msg.topic(), msg.partition(), msg.offset())) for msg in msgs]

    built = headers()
    producer = copy_producer(bootstrap, AT_LEAST_ONCE)
    reported = copy_producer(bootstrap, AT_LEAST_ONCE)

    def produce(target: Producer, report: Optional[Callable[..., None]]) -> None:
        for msg, copy_headers in zip(msgs, built):
            target.produce("orders_retry", key=msg.key(), value=msg.value(), headers=copy_headers, on_delivery=report)
        target.flush(30)

    def report(_err: Any, _msg: Message) -> None:
        pass

    try:
        without = cpu_us_per_record(lambda: produce(producer, None), len(msgs), repeats)
        with_report = cpu_us_per_record(lambda: produce(reported, report), len(msgs), repeats)
    finally:
        producer.close()
        reported.close()
    return {
        "headers (the recipe and the source's three)": cpu_us_per_record(headers, len(msgs), repeats),
        "produce(), no delivery report": without,
        "a delivery report, served by poll()/flush()": with_report - without,
    }


if __name__ == "__main__":
    raise SystemExit(main())
