"""What one record costs in the main consumer's Python thread, beside the decode-only loop: ``python -m bench.per_record``.

The throughput runs of ``python -m bench`` say how fast; this says where the
time goes, without the broker's share of the two cores: CPU time of this
thread only (``time.thread_time``), best of ``--repeats``, on records built in
memory (runs of 500 per partition, as a fetch returns them). At 10 %
failures the copies go, as in the script, through the routing worker to a
dev broker; the worker's own CPU time per copy is reported beside.
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

from avro_utils import avro_deserialize
from bench.limits import encoded_orders
from consumer.main_consumer import PRODUCER_DEFAULTS, MainConsumer, parse_args
from devbroker import TansuBroker, free_port
from pipeline.wiring import PRODUCER_ENFORCED
from pipeline.gc_tuning import tune_for_streaming
from pipeline.offsets import OffsetTracker
from pipeline.routing_worker import RoutingWorker

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


def consumer_state(fail_rate: float, bootstrap: str) -> tuple[MainConsumer, RoutingWorker]:
    """A main consumer owning every partition from offset 0, routing through a worker of its own."""
    args = parse_args(["--fail-rate", str(fail_rate), "--bootstrap-servers", bootstrap])
    tracker = OffsetTracker()
    router = RoutingWorker(args, PRODUCER_DEFAULTS, PRODUCER_ENFORCED,
                           lambda source, _copy: tracker.complete(source[:2], source[2]))
    main_consumer = MainConsumer(args, router, tracker)
    for partition in range(PARTITIONS):
        tracker.start((args.orders_topic, partition), 0)
        main_consumer.state.restore((args.orders_topic, partition), None, {})
    return main_consumer, router


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
        for fail_rate in (0.0, 0.1):
            main_consumer, router = consumer_state(fail_rate, broker.bootstrap_servers)

            def drain() -> None:
                worker_started = process_cpu_s(router.pid)
                for batch in batches:
                    main_consumer.handle_batch(batch)
                    router.serve()
                router.flush(30)
                worker_us.append((process_cpu_s(router.pid) - worker_started) * 1e6)

            try:
                figures[f"main consumer, {fail_rate:.0%} failures"] = cpu_us_per_record(drain, len(msgs), args.repeats)
            finally:
                router.close()
        routed = main_consumer.state.owned_now().retried / args.repeats  # the 10 % run's copies, per pass
    decode = figures["decode-only loop"]
    print(f"CPU time of this thread per record, best of {args.repeats} over {len(msgs):,} records:")
    print(f"  {'decode-only loop':<32} {decode:6.2f} us")
    for name, value in list(figures.items())[1:]:
        print(f"  {name:<32} {value:6.2f} us  ({value - decode:+.2f} us beside the decode-only loop)")
    extra = figures["main consumer, 10% failures"] - figures["main consumer, 0% failures"]
    print(f"  10 % failures, per routed copy   {extra * len(msgs) / routed:6.1f} us  ({routed:,.0f} copies; "
          "the failure draw of every record included)")
    print(f"  routing worker, per routed copy  {min(worker_us[args.repeats:]) / routed:6.1f} us  (its own process, "
          "best of the 10 % runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
