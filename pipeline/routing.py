"""Sending records on to the retry topic, the DLQ or back to ``orders``, without losing any.

The source record's offset may be committed only once its copy is acknowledged
by the broker: the delivery report calls ``on_acked(source, copy)`` with the
(topic, partition, offset) of both. A copy that fails delivery is never
produced again (the first may have been stored after all): the script stops,
and the restart finds which copies landed; in a transaction, the transaction
aborts and the consumer rewinds. Key
and value are passed through byte for byte; every copy names its source in
the ``orders.source.*`` headers. The one exception: a value too large for the
target topic is replaced by a stub in the DLQ that says so and points at the
original (``orders.value.omitted``).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Callable, Optional

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pipeline.errors import FatalKafkaError
from pipeline.headers import (
    DLQ_REASON, ERROR, REASON_TOO_LARGE, VALUE_OMITTED, Failure, Headers, Origin, routed_headers, with_source,
)

log = logging.getLogger(__name__)

Source = tuple[str, int, int]
AckCallback = Callable[[Source, Source], None]  # (source, copy)
# Copies carry any record another producer could write; the broker's own limit then decides.
ROUTED_MESSAGE_MAX_BYTES = 8 * 1024 * 1024
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}


def now_ms() -> int:
    return int(time.time() * 1000)


def key_text(msg: Message) -> str:
    key = msg.key()
    return "<none>" if key is None else key.decode("utf-8", "replace")


def produce_patiently(producer: Producer, topic: str, **record: object) -> None:
    """Produce, serving delivery reports while the local queue is full instead of failing."""
    while True:
        try:
            producer.produce(topic, **record)
            return
        except BufferError:
            producer.poll(0.1)


def origin_of_message(msg: Message) -> Origin:
    timestamp_type, timestamp = msg.timestamp()
    return Origin(msg.topic(), msg.partition(), msg.offset(), timestamp if timestamp_type and timestamp >= 0 else None)


class Router:
    """Produces routed copies and reports each acknowledged copy with its source's coordinates."""

    def __init__(self, producer: Producer, retry_topic: str, dlq_topic: str, on_acked: AckCallback,
                 transaction_max_bytes: Optional[int] = None) -> None:
        """``transaction_max_bytes``: the producer is transactional, and copies larger than this become
        stubs before the broker refuses them, since a refused record aborts the whole transaction."""
        self.producer = producer
        self.retry_topic = retry_topic
        self.dlq_topic = dlq_topic
        self.on_acked = on_acked
        self.transaction_max_bytes = transaction_max_bytes

    def serve(self) -> None:
        """Serve delivery reports (the RoutingWorker's counterpart hands copies over)."""
        self.producer.poll(0)

    def use_producer(self, producer: Producer) -> None:
        """A renewed transactional producer replaces a fenced one."""
        self.producer = producer

    def send_back_to_retry(self, msg: Message, failure: Failure, retry_count: int, due_ms: int) -> None:
        headers = routed_headers(
            msg.headers(), retry_count=retry_count, failure=failure, current=origin_of_message(msg),
            now_ms=now_ms(), due_ms=due_ms,
        )
        self._send(self.retry_topic, msg.key(), msg.value(), headers, _source(msg))

    def send_to_dlq(self, msg: Message, failure: Failure, retry_count: int, dlq_reason: str) -> None:
        headers = routed_headers(
            msg.headers(), retry_count=retry_count, failure=failure, current=origin_of_message(msg),
            now_ms=now_ms(), dlq_reason=dlq_reason,
        )
        self._send(self.dlq_topic, msg.key(), msg.value(), headers, _source(msg))

    def redrive(self, msg: Message, topic: str) -> None:
        """Send ``msg`` to ``topic`` with its key, value and headers, naming its source."""
        source = _source(msg)
        self._send(topic, msg.key(), msg.value(), with_source(msg.headers(), source), source)

    def _send(self, topic: str, key: Optional[bytes], value: Optional[bytes], headers: Headers, source: Source) -> None:
        """Produce a copy whose headers already name its source."""
        limit = self.transaction_max_bytes
        if limit is not None and record_bytes(key, value, headers) > limit:
            self._send_stub(key, value, headers, source, f"over the topics' max.message.bytes {limit}")
            return
        report = partial(self._delivered, topic, key, value, headers, source)
        try:
            produce_patiently(self.producer, topic, key=key, value=value, headers=headers, on_delivery=report)
        except KafkaException as exc:
            if self.transaction_max_bytes is not None and exc.args[0].code() not in _TOO_LARGE:
                return  # the transaction failed already: its commit aborts it (or renews the producer) and rewinds
            if exc.args[0].code() not in _TOO_LARGE:
                raise
            self._send_stub(key, value, headers, source, exc.args[0].str())

    def _send_stub(self, key: Optional[bytes], value: Optional[bytes], headers: Headers, source: Source, why: str) -> None:
        """A DLQ record without the value, for a value too large to copy; the original stays at its source."""
        size = len(value or b"")
        log.error("Record %s[%d]@%d (%d bytes) is too large to copy (%s); dead-lettering it without its value",
                  *source, size, why)
        stub_headers = [(k, v) for k, v in headers if k not in (ERROR, DLQ_REASON, VALUE_OMITTED)] + [
            (ERROR, f"{REASON_TOO_LARGE}: {size} bytes ({why}); the original is at its origin".encode()),
            (DLQ_REASON, REASON_TOO_LARGE.encode()),
            (VALUE_OMITTED, str(size).encode()),
        ]
        report = partial(self._delivered, self.dlq_topic, key, None, stub_headers, source)
        produce_patiently(self.producer, self.dlq_topic, key=key, value=None, headers=stub_headers, on_delivery=report)

    def _delivered(
        self, topic: str, key: Optional[bytes], value: Optional[bytes], headers: Headers, source: Source,
        err: Optional[KafkaError], msg: Message,
    ) -> None:
        if err is None:
            self.on_acked(source, (msg.topic(), msg.partition(), msg.offset()))
            return
        if self.transaction_max_bytes is not None:
            log.debug("Copy of %s[%d]@%d not delivered (%s); its transaction aborts", *source, err.str())
            return
        if err.code() in _TOO_LARGE and value is not None:
            self._send_stub(key, value, headers, source, err.str())
            return
        raise FatalKafkaError(
            f"copy of {source[0]}[{source[1]}]@{source[2]} to {topic} not delivered ({err.str()}); stopping, "
            f"so that the restart finds which copies landed"
        )


def record_bytes(key: Optional[bytes], value: Optional[bytes], headers: Headers) -> int:
    """A bound on the record's size in a batch: its bytes and ~20 bytes of framing per field, plus the batch header."""
    fields = len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers)
    return fields + 20 * (len(headers) + 2) + 61


def _source(msg: Message) -> Source:
    return msg.topic(), msg.partition(), msg.offset()
