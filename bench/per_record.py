"""What one record costs in the main consumer's Python thread, beside the decode-only loop: ``python -m bench.per_record``.

The throughput runs of ``python -m bench`` say how fast; this says where the
time goes, without the broker's share of the two cores: CPU time of this
thread only (``time.thread_time``), best of ``--repeats``, on records built in
memory (runs of 500 per partition, as a fetch returns them). At 10 %
failures the copies go through a real producer to a dev broker, and their
delivery reports are served in this thread, as in the script.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from typing import Callable, Optional

from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from avro_utils import avro_deserialize
from bench.limits import encoded_orders
from consumer.main_consumer import PRODUCER_DEFAULTS, MainConsumer, parse_args
from devbroker import DevBroker, free_port
from pipeline.checkpointed import PRODUCER_ENFORCED
from pipeline.gc_tuning import tune_for_streaming
from pipeline.offsets import OffsetTracker
from pipeline.routing import Router

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


def consumer_state(fail_rate: float, producer: Optional[Producer]) -> MainConsumer:
    """A main consumer owning every partition from offset 0, routing through ``producer`` (if any)."""
    args = parse_args(["--fail-rate", str(fail_rate)])
    tracker = OffsetTracker()
    router = Router(producer, args.retry_topic, args.dlq_topic,
                    lambda source, _copy: tracker.complete(source[:2], source[2])) if producer else None
    state = MainConsumer(args, router, tracker)  # type: ignore[arg-type]
    for partition in range(PARTITIONS):
        tracker.start((args.orders_topic, partition), 0)
        state.restore((args.orders_topic, partition), None, {})
    return state


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

    with DevBroker(free_port(), output=subprocess.DEVNULL) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("orders_retry", "orders_dlq")]).values():
            future.result(30)
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, **PRODUCER_DEFAULTS, **PRODUCER_ENFORCED})
        producer.list_topics("orders_retry", timeout=30)
        figures = {"decode-only loop": cpu_us_per_record(decode_only, len(msgs), args.repeats)}
        for fail_rate in (0.0, 0.1):
            state = consumer_state(fail_rate, producer)

            def drain() -> None:
                for batch in batches:
                    state.handle_batch(batch)
                    producer.poll(0)
                producer.flush(30)

            figures[f"main consumer, {fail_rate:.0%} failures"] = cpu_us_per_record(drain, len(msgs), args.repeats)
        routed = state.owned_now().retried / args.repeats  # the 10 % run's copies, per pass
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
