"""What one record costs in the main consumer's Python thread, beside the decode-only loop: ``python -m bench.per_record``.

The throughput runs of ``python -m bench`` say how fast; this says where the
time goes, without the broker's share of the two cores: CPU time of this
thread only (``time.thread_time``), best of ``--repeats``, on records built in
memory (runs of 500 per partition, as a fetch returns them). At 10 %
failures the copies go, as in the script, through a producer to a dev broker.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from typing import Callable, Optional

from confluent_kafka import Message
from confluent_kafka.admin import AdminClient, NewTopic

from app.settings import Retries, Topics
from avro_utils import avro_deserialize
from bench.limits import encoded_orders
from consumer.figures import MainEvents
from consumer.main_consumer import MainHandler
from devbroker import TansuBroker, free_port
from domain.average import RunningAverage
from domain.backoff import BackoffPolicy
from domain.codecs import AVRO
from domain.failures import FailureSimulator
from domain.headers import too_large_headers
from runtime.clients import PRODUCER_ENFORCED, BrokerStatus, Clients
from runtime.gc_tuning import tune_for_streaming
from runtime.offsets import OffsetTracker
from runtime.routing import COPY_PRODUCER_DEFAULTS, Router
from runtime.settings import KafkaSettings

PARTITIONS = 3
RUN = 500
BATCH = 5000


def cpu_us_per_record(work: Callable[[], None], records: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best / records * 1e6


def main_handler(fail_rate: float, bootstrap: str) -> tuple[MainHandler, Router]:
    """A main consumer's handler owning every partition from offset 0, its copies made as the script makes them."""
    topics, kafka = Topics(), KafkaSettings(bootstrap)
    tracker = OffsetTracker()

    def acked(source: tuple[str, int, int], _copy: tuple[str, int, int]) -> None:
        tracker.complete(source[:2], source[2])

    producer = Clients(kafka, "bench").producer(COPY_PRODUCER_DEFAULTS, PRODUCER_ENFORCED, warm_up=[topics.retry, topics.dlq])
    copies = Router(producer, topics.dlq, too_large_headers, acked, BrokerStatus(bootstrap))
    average = RunningAverage()
    handler = MainHandler(copies, tracker, topics, Retries(3, BackoffPolicy()), FailureSimulator(fail_rate), AVRO, None,
                          average, MainEvents(average, topics, max_retries=3))
    for partition in range(PARTITIONS):
        tracker.start((topics.orders, partition), 0)
        handler.restore((topics.orders, partition), None)
    return handler, copies


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.per_record", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="%(default)s")
    parser.add_argument("--repeats", type=int, default=5, help="%(default)s")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # the event lines are built as in the script, not written
    now_ms = int(time.time() * 1000)
    msgs = [
        Message(topic="orders", partition=(i // RUN) % PARTITIONS, offset=i, key=key, value=value, timestamp=(1, now_ms))
        for i, (key, value) in enumerate(encoded_orders(args.records))
    ]
    batches = [msgs[i:i + BATCH] for i in range(0, len(msgs), BATCH)]
    tune_for_streaming()

    def decode_only() -> None:
        for msg in msgs:
            if msg.error():
                continue
            avro_deserialize(msg.value())

    with TansuBroker(free_port(), output=subprocess.DEVNULL) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("orders_retry", "orders_dlq")]).values():
            future.result(30)
        figures = {"decode-only loop": cpu_us_per_record(decode_only, len(msgs), args.repeats)}
        for fail_rate in (0.0, 0.1):
            handler, copies = main_handler(fail_rate, broker.bootstrap_servers)

            def drain() -> None:
                for batch in batches:
                    handler.handle(batch)
                    copies.serve()
                copies.flush(30)

            figures[f"main consumer, {fail_rate:.0%} failures"] = cpu_us_per_record(drain, len(msgs), args.repeats)
        routed = handler.average.owned().retried / args.repeats  # the 10 % run's copies, per pass
    decode = figures["decode-only loop"]
    print(f"CPU time of this thread per record, best of {args.repeats} over {len(msgs):,} records:")
    print(f"  {'decode-only loop':<32} {decode:6.2f} us")
    for name, value in list(figures.items())[1:]:
        print(f"  {name:<32} {value:6.2f} us  ({value - decode:+.2f} us beside the decode-only loop)")
    extra = figures["main consumer, 10% failures"] - figures["main consumer, 0% failures"]
    print(f"  10 % failures, per routed copy   {extra * len(msgs) / routed:6.1f} us  ({routed:,.0f} copies; "
          "the failure draw of every record included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
