"""The main consumer's data path: a batch decides as the same records one batch each, with the same sums,
copies and commit positions.

No Kafka here: records are built with confluent_kafka.Message, and the router
only notes what it was asked to send (its delivery is tested on the real broker).
"""

from __future__ import annotations

import random

import pytest
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from app.settings import Retries, Topics
from avro_utils import avro_serialize
from consumer.figures import MainEvents
from consumer.main_consumer import MainHandler
from domain.average import RunningAverage
from domain.backoff import BackoffPolicy
from domain.codecs import AVRO
from domain.failures import FailureSimulator
from domain.headers import RETRY_COUNT, dead_letter_headers
from runtime.offsets import OffsetTracker
from producer.orders import poison_record, random_order

TOPIC = "orders"
PARTITIONS = 3


class NotingRouter:
    """Notes each copy the consumer asks for, as (target, source partition, source offset, attempt)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, int, int]] = []

    def copy(self, msg: Message, _topic: str, recipe: object, _failure: object, retry_count: int, _extra: object) -> None:
        self.sent.append(("dlq" if recipe is dead_letter_headers else "retry", msg.partition(), msg.offset(), retry_count))


def consumer(
    fail_rate: float, event_lines: int, fail_product: str = ""
) -> tuple[MainHandler, NotingRouter, OffsetTracker]:
    router, tracker = NotingRouter(), OffsetTracker()
    average, topics = RunningAverage(), Topics(orders=TOPIC)
    events = MainEvents(average, topics, max_retries=3)
    events.max_lines_per_second = event_lines
    handler = MainHandler(router, tracker, topics, Retries(3, BackoffPolicy()),  # type: ignore[arg-type]
                          FailureSimulator(fail_rate, fail_product, 7), AVRO, None, average, events)
    for partition in range(PARTITIONS):
        tracker.start((TOPIC, partition), 0)
        handler.restore((TOPIC, partition), None)
    return handler, router, tracker


def record(rng: random.Random, kind: str) -> tuple[bytes, bytes | None, list | None]:
    """(key, value, headers) of one record of ``kind``."""
    order = random_order(rng)
    key = order["orderId"].encode()
    if kind == "poison":
        poison = poison_record(rng)
        return poison.key, poison.value, None
    if kind == "tombstone":
        return key, None, None
    if kind == "retried":
        return key, avro_serialize(order), [(RETRY_COUNT, str(rng.randint(1, 4)).encode())]
    if kind == "foreign-header":
        return key, avro_serialize(order), [("trace-id", b"abc")]
    return key, avro_serialize(order), None


def batch(seed: int, runs: list[tuple[int, list[str]]]) -> list[Message]:
    """Runs of records of one partition each, offsets counting up per partition, as a fetch delivers them."""
    rng = random.Random(seed)
    next_offset = [0] * PARTITIONS
    msgs = []
    for partition, kinds in runs:
        for kind in kinds:
            key, value, headers = record(rng, kind)
            msgs.append(Message(topic=TOPIC, partition=partition, offset=next_offset[partition], key=key, value=value,
                                headers=headers))
            next_offset[partition] += 1
    return msgs


def outcome(main_consumer: MainHandler, router: NotingRouter, tracker: OffsetTracker) -> dict:
    per_partition = {
        p: (s.processed, round(s.total, 6), s.retried, s.dead_lettered)
        for (_, p), s in main_consumer.average.partitions.items()
    }
    positions = {p: tracker.position((TOPIC, p)) for p in range(PARTITIONS)}
    return {"stats": per_partition, "sent": router.sent, "positions": positions, "open": tracker.pending(),
            "processed_here": main_consumer.average.processed_here}


KINDS = st.sampled_from(["valid"] * 6 + ["poison", "tombstone", "retried", "foreign-header"])
RUNS = st.lists(st.tuples(st.integers(0, PARTITIONS - 1), st.lists(KINDS, min_size=1, max_size=40)), max_size=12)


@given(seed=st.integers(0, 10**6), runs=RUNS, fail_rate=st.sampled_from([0.0, 0.3]), event_lines=st.sampled_from([0, 3]))
@settings(max_examples=150, deadline=None)
def test_a_batch_decides_as_its_records_one_by_one(seed, runs, fail_rate, event_lines):
    msgs = batch(seed, runs)
    batched = consumer(fail_rate, event_lines, "Item3")
    batched[0].handle(msgs)
    one_by_one = consumer(fail_rate, event_lines, "Item3")
    for msg in msgs:
        one_by_one[0].handle([msg])
    assert outcome(*batched) == outcome(*one_by_one)


def test_commit_position_waits_for_a_copy_and_then_covers_the_whole_run():
    msgs = batch(1, [(0, ["valid", "poison", "valid", "valid"]), (1, ["valid"] * 3)])
    main_consumer, router, tracker = consumer(0.0, event_lines=0)
    main_consumer.handle(msgs)
    assert router.sent == [("dlq", 0, 1, 1)]
    assert tracker.position((TOPIC, 0)) == 1 and tracker.position((TOPIC, 1)) == 3
    tracker.complete((TOPIC, 0), 1)  # the copy is acknowledged
    assert tracker.position((TOPIC, 0)) == 4
    partitions = main_consumer.average.partitions
    assert partitions[(TOPIC, 0)].processed == 3 and partitions[(TOPIC, 1)].processed == 3


@pytest.mark.parametrize("event_lines", [0, 20])
def test_records_of_a_revoked_partition_are_left_alone(event_lines):
    msgs = batch(2, [(0, ["valid", "valid"]), (2, ["valid", "poison"])])
    main_consumer, router, tracker = consumer(0.0, event_lines)
    main_consumer.forget({(TOPIC, 2)})
    tracker.forget({(TOPIC, 2)})
    main_consumer.handle(msgs)
    assert router.sent == [] and main_consumer.average.processed_here == 2 and tracker.position((TOPIC, 2)) is None
