"""What one record costs in the main consumer's Python thread, beside the decode-only loop: ``python -m bench.per_record``.

The throughput runs of ``python -m bench`` say how fast; this says where the
time goes, without the broker's share of the two cores: CPU time of this
thread only (``time.thread_time``), best of ``--repeats``, on records built in
memory (runs of 500 per partition, as a fetch returns them). At 10 %
failures the copies go to a dev broker, made in this thread (the script's
default) or by the routing worker (``--routing-worker``), whose own CPU time
per copy is reported beside.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import time
from pathlib import Path
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
from runtime.routing import COPY_PRODUCER_DEFAULTS, Copies, Router
from runtime.routing_worker import RoutingWorker, WorkerSpec
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


def main_handler(fail_rate: float, bootstrap: str, in_worker: bool) -> tuple[MainHandler, Copies]:
    """A main consumer's handler owning every partition from offset 0, its copies made as asked."""
    topics, kafka = Topics(), KafkaSettings(bootstrap)
    tracker = OffsetTracker()

    def acked(source: tuple[str, int, int], _copy: tuple[str, int, int]) -> None:
        tracker.complete(source[:2], source[2])

    copies: Copies
    if in_worker:
        spec = WorkerSpec(kafka, "bench", topics.dlq, too_large_headers, (topics.retry, topics.dlq),
                          COPY_PRODUCER_DEFAULTS, PRODUCER_ENFORCED, "WARNING")
        copies = RoutingWorker(spec, acked)
    else:
        producer = Clients(kafka, "bench").producer(COPY_PRODUCER_DEFAULTS, PRODUCER_ENFORCED, warm_up=[topics.retry, topics.dlq])
        copies = Router(producer, topics.dlq, too_large_headers, acked, BrokerStatus(bootstrap))
    average = RunningAverage()
    handler = MainHandler(copies, tracker, topics, Retries(3, BackoffPolicy()), FailureSimulator(fail_rate), AVRO, None,
                          average, MainEvents(average, topics, max_retries=3))
    for partition in range(PARTITIONS):
        tracker.start((topics.orders, partition), 0)
        handler.restore((topics.orders, partition), None)
    return handler, copies


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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

    worker_us: list[float] = []
    with TansuBroker(free_port(), output=subprocess.DEVNULL) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("orders_retry", "orders_dlq")]).values():
            future.result(30)
        figures = {"decode-only loop": cpu_us_per_record(decode_only, len(msgs), args.repeats)}
        for name, fail_rate, in_worker in (("0% failures", 0.0, False), ("10% failures", 0.1, False),
                                           ("10% failures, routing worker", 0.1, True)):
            handler, copies = main_handler(fail_rate, broker.bootstrap_servers, in_worker)

            def drain() -> None:
                worker_started = process_cpu_s(copies.pid) if isinstance(copies, RoutingWorker) else 0.0
                for batch in batches:
                    handler.handle(batch)
                    copies.serve()
                copies.flush(30)
                if isinstance(copies, RoutingWorker):
                    worker_us.append((process_cpu_s(copies.pid) - worker_started) * 1e6)

            try:
                figures[f"main consumer, {name}"] = cpu_us_per_record(drain, len(msgs), args.repeats)
            finally:
                copies.close()
        routed = handler.average.owned().retried / args.repeats  # the 10 % run's copies, per pass
    decode = figures["decode-only loop"]
    print(f"CPU time of this thread per record, best of {args.repeats} over {len(msgs):,} records:")
    print(f"  {'decode-only loop':<32} {decode:6.2f} us")
    for name, value in list(figures.items())[1:]:
        print(f"  {name:<32} {value:6.2f} us  ({value - decode:+.2f} us beside the decode-only loop)")
    for name in ("10% failures", "10% failures, routing worker"):
        extra = figures[f"main consumer, {name}"] - figures["main consumer, 0% failures"]
        print(f"  {name}: per routed copy {extra * len(msgs) / routed:6.1f} us of this thread  ({routed:,.0f} copies; "
              "the failure draw of every record included)")
    print(f"  the routing worker's own process, per routed copy  {min(worker_us) / routed:6.1f} us  (best of its runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
