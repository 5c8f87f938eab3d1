"""Reading partitions from given offsets up to their current end, outside any consumer group.

The end is where the broker reports end-of-partition while fetching
(``enable.partition.eof``), not a listed high watermark: Tansu 0.6 reports
those wrong, and fetching is what every broker gets right.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable, Iterator, Optional

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from runtime.clients import Clients
from runtime.errors import PipelineError

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 120.0
METADATA_SETTLE_S = 10.0


def partitions_of(
    clients: Clients, topics: list[str], missing_ok: bool = False, timeout_s: float = 30.0
) -> list[tuple[str, int]]:
    """Every (topic, partition) of ``topics``, from the broker's metadata.

    A topic just created may take a moment to reach every broker of a cluster:
    a missing one is looked up again for up to ``METADATA_SETTLE_S`` before it counts as missing.
    """
    admin = clients.admin()
    deadline = time.monotonic() + METADATA_SETTLE_S
    while True:
        metadata = admin.list_topics(timeout=timeout_s)
        missing = [topic for topic in topics if topic not in metadata.topics]
        if not missing or missing_ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # poll the metadata until the new topic shows or the deadline passes
    if missing and not missing_ok:
        raise PipelineError(f"topic {missing[0]} does not exist")
    return [(topic, partition) for topic in topics if topic in metadata.topics
            for partition in sorted(metadata.topics[topic].partitions)]


def read_to_end(
    clients: Clients,
    starts: dict[tuple[str, int], int],
    on_end: Optional[Callable[[tuple[str, int], int], None]] = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> Iterator[Message]:
    """Yield every record from ``starts[(topic, partition)]`` to the end of each partition.

    ``on_end(partition, end_offset)`` is told where each partition ended.
    """
    if not starts:
        return
    consumer = clients.consumer(
        # A fetch at the end of a partition returns after fetch.wait.max.ms (500 ms by default) with nothing:
        # that wait would be the floor of every take-over.
        {"auto.offset.reset": "earliest", "fetch.wait.max.ms": 10},
        {
            "group.id": f"orders-reader-{uuid.uuid4().hex[:8]}",  # never joins: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        },
    )
    try:
        consumer.assign([TopicPartition(topic, partition, max(offset, 0)) for (topic, partition), offset in starts.items()])
        unfinished = set(starts)
        deadline = time.monotonic() + timeout_s
        while unfinished:
            if time.monotonic() > deadline:
                raise PipelineError(f"could not read {sorted(unfinished)} to the end within {timeout_s:.0f} s")
            for msg in next_batch(consumer, 1000, 0.5):
                error = msg.error()
                if error is None:
                    yield msg
                elif error.code() == KafkaError._PARTITION_EOF:
                    unfinished.discard((msg.topic(), msg.partition()))
                    if on_end is not None:
                        on_end((msg.topic(), msg.partition()), msg.offset())
                else:
                    log.warning("While reading %s[%d]: %s", msg.topic(), msg.partition(), error.str())
    finally:
        consumer.close()


def next_batch(consumer: Consumer, max_records: int, timeout_s: float) -> list[Message]:
    """Up to ``max_records`` records: wait for the first, then take what is already fetched.

    ``consume(n, timeout)`` alone waits until it has n records or the timeout
    passes, which at demo rates adds the whole timeout to every record's latency.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, timeout=0)] if max_records > 1 else [first]
