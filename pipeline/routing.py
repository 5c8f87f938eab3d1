"""Sending records on to the retry topic, the DLQ or back to ``orders``, without losing any.

The source record's offset may be committed only once its copy is acknowledged
by the broker: the delivery report calls ``on_acked(topic, partition, offset)``
of the source. A copy that fails delivery is produced again, so the offset
stays uncommitted until the copy is really stored. Key and value are passed
through byte for byte.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Callable, Optional

from confluent_kafka import KafkaError, Message, Producer

from pipeline.headers import Failure, Headers, Origin, routed_headers

log = logging.getLogger(__name__)

SourceCallback = Callable[[str, int, int], None]


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
    """Produces routed copies and reports each acknowledged copy's source coordinates."""

    def __init__(self, producer: Producer, retry_topic: str, dlq_topic: str, on_acked: SourceCallback) -> None:
        self.producer = producer
        self.retry_topic = retry_topic
        self.dlq_topic = dlq_topic
        self.on_acked = on_acked
        self.redelivery_attempts = 0

    def send_back_to_retry(self, msg: Message, failure: Failure, retry_count: int, due_ms: int) -> None:
        headers = routed_headers(
            msg.headers(), retry_count=retry_count, failure=failure, current=origin_of_message(msg),
            now_ms=now_ms(), due_ms=due_ms,
        )
        self._produce(self.retry_topic, msg, headers)

    def send_to_dlq(self, msg: Message, failure: Failure, retry_count: int, dlq_reason: str) -> None:
        headers = routed_headers(
            msg.headers(), retry_count=retry_count, failure=failure, current=origin_of_message(msg),
            now_ms=now_ms(), dlq_reason=dlq_reason,
        )
        self._produce(self.dlq_topic, msg, headers)

    def redrive(self, msg: Message, topic: str) -> None:
        """Send ``msg`` unchanged (key, value and headers) to ``topic``."""
        self._produce(topic, msg, list(msg.headers() or []))

    def _produce(self, topic: str, msg: Message, headers: Headers) -> None:
        source = (msg.topic(), msg.partition(), msg.offset())
        self._send(topic, msg.key(), msg.value(), headers, source)

    def _send(
        self, topic: str, key: Optional[bytes], value: Optional[bytes], headers: Headers, source: tuple[str, int, int]
    ) -> None:
        report = partial(self._delivered, topic, key, value, headers, source)
        produce_patiently(self.producer, topic, key=key, value=value, headers=headers, on_delivery=report)

    def _delivered(
        self,
        topic: str,
        key: Optional[bytes],
        value: Optional[bytes],
        headers: Headers,
        source: tuple[str, int, int],
        err: Optional[KafkaError],
        _msg: Message,
    ) -> None:
        if err is None:
            self.on_acked(*source)
            return
        self.redelivery_attempts += 1
        log.error(
            "Copy of %s[%d]@%d to %s was not delivered (%s); sending it again", *source, topic, err.str()
        )
        self._send(topic, key, value, headers, source)
