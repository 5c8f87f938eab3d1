"""Measure, on a fresh dev broker of each engine, the behaviours in which Kafka-compatible brokers differ.

Run: ``python -m bench.broker_differences [--engines tansu,kafka]``. Each probe
asks the broker with a plain confluent-kafka client and prints what it saw,
one row per probe, one column per engine. The README's "Tansu and Kafka" page
quotes this table.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
import uuid
from typing import Callable, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devbroker import ENGINES, dev_broker, free_port
from runtime.logs import setup_logging

log = logging.getLogger("bench")
GROUP_SETTINGS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def unique_name() -> str:
    return f"probe-{uuid.uuid4().hex[:8]}"


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = unique_name()
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the futures are done
    for future in admin.create_topics([NewTopic(name, partitions)]).values():
        future.result(30)
    return name


def probe_consumer(bootstrap: str, **settings: object) -> Consumer:
    """A consumer of a group of its own, so that no probe sees another's offsets."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name(), **settings})


def read_to_end(bootstrap: str, topic: str, settings: Optional[dict] = None, timeout_s: float = 20) -> list:
    """Every record a consumer with ``settings`` is given, up to end-of-partition."""
    consumer = probe_consumer(bootstrap, **{"enable.partition.eof": True, **(settings or {})})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return records
                continue
            records.append(msg)
        return records
    finally:
        consumer.close()


def aborted_records_seen_by_read_committed(bootstrap: str) -> str:
    topic = new_topic(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique_name()})
    producer.init_transactions(30)
    producer.begin_transaction()
    for n in range(5):
        producer.produce(topic, value=b"aborted-%d" % n)
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)
    values = [msg.value() for msg in read_to_end(bootstrap, topic, {"isolation.level": "read_committed"})]
    return f"{sum(v.startswith(b'aborted') for v in values)} of 5 aborted (+{values.count(b'committed')} committed)"


def commit_metadata_kept(bootstrap: str) -> str:
    topic = new_topic(bootstrap)
    consumer = probe_consumer(bootstrap)
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 7, metadata="checkpoint-42")], asynchronous=False)
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return f"offset {committed.offset}, metadata {committed.metadata!r}"


def listed_high_watermark(bootstrap: str) -> str:
    topic = new_topic(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    for n in range(11):
        producer.produce(topic, value=b"%d" % n)
    producer.flush(30)
    consumer = probe_consumer(bootstrap)
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        consumer.close()
    return f"{high} listed for 11 records"


def largest_record_accepted(bootstrap: str) -> str:
    topic = new_topic(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8_000_000})
    verdicts = {}
    for size in (1_000_000, 1_048_576, 2_000_000):
        producer.produce(topic, value=b"x" * size, on_delivery=lambda err, _msg, size=size: verdicts.__setitem__(size, err))
        producer.flush(30)
    return ", ".join(f"{size:,} B {'accepted' if verdicts.get(size) is None else 'refused (' + verdicts[size].name() + ')'}"
                     for size in sorted(verdicts))


def group_join_seconds(bootstrap: str) -> str:
    topic = new_topic(bootstrap, partitions=3)
    consumer = probe_consumer(bootstrap, **GROUP_SETTINGS)
    started = time.monotonic()
    consumer.subscribe([topic])
    try:
        while not consumer.assignment() and time.monotonic() - started < 60:
            consumer.poll(0.1)
        return f"{time.monotonic() - started:.1f} s (session.timeout.ms=6000)"
    finally:
        consumer.close()


PROBES: list[tuple[str, Callable[[str], str]]] = [
    ("aborted records seen by read_committed", aborted_records_seen_by_read_committed),
    ("committed offset metadata read back", commit_metadata_kept),
    ("high watermark listed (ListOffsets)", listed_high_watermark),
    ("record sizes the broker accepts", largest_record_accepted),
    ("first member's group join", group_join_seconds),
]


def probe(engine: str) -> dict[str, str]:
    answers = {}
    started = time.monotonic()
    with dev_broker(engine, free_port(), output=subprocess.DEVNULL) as broker:
        answers["start until a metadata answer"] = f"{time.monotonic() - started:.1f} s"
        for name, run in PROBES:
            try:
                answers[name] = run(broker.bootstrap_servers)
            except Exception as exc:  # a probe that fails is itself a finding: report it, go on
                answers[name] = f"failed: {exc}"
            log.info("%s, %s: %s", engine, name, answers[name])
    return answers


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_differences", description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, of %(default)s")
    args = parser.parse_args(argv)
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    if not engines or set(engines) - set(ENGINES):
        parser.error(f"--engines: choose from {', '.join(ENGINES)}")
    setup_logging("INFO")
    results = {engine: probe(engine) for engine in engines}
    rows = list(next(iter(results.values())))
    width = max(map(len, rows))
    print(f"\n{'':<{width}}  " + "  ".join(f"{engine:<44}" for engine in engines))
    for row in rows:
        print(f"{row:<{width}}  " + "  ".join(f"{results[engine][row]:<44}" for engine in engines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
