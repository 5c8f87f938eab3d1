"""The Router's copies: byte for byte, headers from the recipe, each acknowledged with its coordinates; never sent twice."""

from __future__ import annotations

import pytest
from confluent_kafka import Message, Producer

from devbroker import free_port
from domain.headers import DLQ_REASON, ERROR, RETRY_COUNT, RETRY_DUE, Failure, dead_letter_headers, retry_headers, too_large_headers
from runtime.clients import PRODUCER_ENFORCED, BrokerStatus
from runtime.errors import FatalKafkaError
from runtime.provenance import source_of
from runtime.routing import COPY_PRODUCER_DEFAULTS, Router
from tests.kafka_helpers import Topics, create_topics, read_all

pytestmark = pytest.mark.integration

FAILURE = Failure("process", "TransientProcessingError", "simulated transient failure (attempt 1)", "boom")


def sources(topic: str, count: int) -> list[Message]:
    """Consumed records as the main consumer sees them: some with foreign headers, one a tombstone."""
    return [
        Message(topic=topic, partition=i % 3, offset=100 + i, timestamp=(1, 1_700_000_000_000 + i),
                key=f"order-{i}".encode(), value=None if i == 7 else f"value-{i}".encode(),
                headers=[("trace", f"t{i}".encode())] if i % 4 == 0 else None)
        for i in range(count)
    ]


def route(router, topics: Topics, msgs: list[Message]) -> None:
    for i, msg in enumerate(msgs):
        if i % 5 == 4:
            router.copy(msg, topics.dlq, dead_letter_headers, FAILURE, 1, "invalid order")
        else:
            router.copy(msg, topics.retry, retry_headers, FAILURE, 1, 1_800_000_000_000 + i)


def by_source(bootstrap: str, topics: Topics) -> dict:
    copies = read_all(bootstrap, topics.retry) + read_all(bootstrap, topics.dlq)
    return {source_of(record.headers): record for record in copies}


def test_copies_keep_key_value_and_foreign_headers_and_each_is_acknowledged_where_it_lies(bootstrap: str) -> None:
    msgs = sources("orders", 60)
    topics = Topics.unique()
    create_topics(bootstrap, [topics.retry, topics.dlq])
    acked: dict = {}
    producer = Producer({"bootstrap.servers": bootstrap, **COPY_PRODUCER_DEFAULTS, **PRODUCER_ENFORCED})
    route(Router(producer, topics.dlq, too_large_headers, acked.__setitem__, BrokerStatus(bootstrap)), topics, msgs)
    assert producer.flush(30) == 0
    copies = by_source(bootstrap, topics)
    assert set(acked) == {(m.topic(), m.partition(), m.offset()) for m in msgs} == set(copies)
    for source, (topic, partition, offset) in acked.items():
        assert (copies[source].topic, copies[source].partition, copies[source].offset) == (topic, partition, offset)
    for msg in msgs:
        copy = copies[(msg.topic(), msg.partition(), msg.offset())]
        assert (copy.key, copy.value) == (msg.key(), msg.value())
        assert all(header in copy.headers for header in msg.headers() or [])
    retried = dict(copies[("orders", 1, 101)].headers)
    assert retried[RETRY_COUNT] == b"1" and retried[ERROR] == b"boom" and RETRY_DUE in retried
    assert copies[("orders", 1, 101)].topic == topics.retry
    dead = copies[("orders", 1, 104)]
    assert dead.topic == topics.dlq and dict(dead.headers)[DLQ_REASON] == b"invalid order"


def test_an_undelivered_copy_stops_routing_instead_of_sending_it_again() -> None:
    """A resent copy could land twice (the first may have been stored after all): stop, the restart finds the truth."""
    nobody_listens = f"127.0.0.1:{free_port()}"
    producer = Producer({"bootstrap.servers": nobody_listens, "message.timeout.ms": 500, "log_level": 0, **PRODUCER_ENFORCED})
    status = BrokerStatus(nobody_listens)
    acked: list = []
    router = Router(producer, "orders_dlq", too_large_headers, lambda source, copy: acked.append(source), status)
    [msg] = sources("orders", 1)
    router.copy(msg, "orders_retry", retry_headers, FAILURE, 1, 1_800_000_000_000)
    assert producer.flush(30) == 0, "nothing was produced again; the report raised nothing inside flush()"
    with pytest.raises(FatalKafkaError, match=r"copy of orders\[0\]@100 to orders_retry not delivered"):
        status.check()
    assert acked == [], "its source stays open, so no commit passes it"
