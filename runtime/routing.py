"""Copies of consumed records to other topics (retry, dead letters, re-drive), without losing any.

The source record's offset may be committed only once its copy is acknowledged
by the broker: the delivery report calls ``on_acked(source, copy)`` with the
(topic, partition, offset) of both. A copy that fails delivery is never
produced again (the first may have been stored after all): the script stops,
and the restart finds which copies landed; in a transaction, the transaction
aborts and the consumer rewinds. The copy's offset from the report is what
lets a checkpoint say where copies of records beyond it lie
(:class:`runtime.copies.CopyLedger`), in both guarantees. Key and value are passed through byte for
byte; the headers come from the caller's recipe, and every copy names its
source (:mod:`runtime.provenance`). The one exception: a value too large for
the target topic goes to the dead-letter topic as a stub without its value,
with headers from the caller's ``too_large`` recipe.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from itertools import chain
from typing import Any, Callable, NamedTuple, Optional, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from runtime.access import denied, is_refusal
from runtime.clients import BrokerStatus, guarded
from runtime.errors import FatalKafkaError
from runtime.provenance import Headers, Source, source_headers, with_source

log = logging.getLogger(__name__)

AckCallback = Callable[[Source, Source], None]  # (source, copy)
# Copies carry any record another producer could write; the broker's own limit then decides.
ROUTED_MESSAGE_MAX_BYTES = 8 * 1024 * 1024
COPY_PRODUCER_DEFAULTS = {"linger.ms": 5, "message.max.bytes": ROUTED_MESSAGE_MAX_BYTES}
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}


class RecordRef(NamedTuple):
    """Where a consumed record lies, and its timestamp (None where the broker gave none)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: Optional[int]


# recipe(headers of the source record, where it lies, now in epoch ms, *args) -> the copy's headers.
HeaderRecipe = Callable[..., Headers]
# too_large(headers, value size, why) -> the headers of a stub that replaces a value too large to copy.
TooLargeRecipe = Callable[[Headers, int, str], Headers]


class Copies(Protocol):
    """What the loop and the checkpoints ask of whatever makes the copies (a :class:`Router`, a test's stand-in)."""

    def copy(self, msg: Message, topic: str, recipe: HeaderRecipe, *args: Any) -> None:
        """Copy ``msg`` to ``topic`` with headers ``recipe(msg.headers(), ref_of(msg), now_ms(), *args)``."""

    def redrive(self, msg: Message, topic: str) -> None:
        """Copy ``msg`` to ``topic`` with its own headers."""

    def serve(self) -> None:
        """Serve acknowledgements that came in; never waits."""

    def poll(self, timeout: float) -> int:
        """Serve acknowledgements, waiting up to ``timeout`` for the first."""

    def flush(self, timeout: float) -> int:
        """Wait until every copy is acknowledged; return how many are not."""

    def __len__(self) -> int:
        """Copies not yet acknowledged."""


def now_ms() -> int:
    return int(time.time() * 1000)


def key_text(msg: Message) -> str:
    key = msg.key()
    return "<none>" if key is None else key.decode("utf-8", "replace")


def ref_of(msg: Message) -> RecordRef:
    timestamp_type, timestamp = msg.timestamp()
    return RecordRef(msg.topic(), msg.partition(), msg.offset(), timestamp if timestamp_type and timestamp >= 0 else None)


def produce_patiently(producer: Producer, topic: str, **record: object) -> None:
    """Produce, serving delivery reports while the local queue is full instead of failing."""
    while True:
        try:
            producer.produce(topic, **record)
            return
        except BufferError:
            producer.poll(0.1)


class Router:
    """Produces copies in this thread and reports each acknowledged copy with its source's coordinates."""

    def __init__(self, producer: Producer, dead_letter_topic: str, too_large: TooLargeRecipe, on_acked: AckCallback,
                 status: BrokerStatus, transaction_max_bytes: Optional[int] = None) -> None:
        """``status``: where a copy refused for a missing ACL is reported (:class:`runtime.clients.BrokerStatus`).
        ``transaction_max_bytes``: the producer is transactional, and copies larger than this become
        stubs before the broker refuses them, since a refused record aborts the whole transaction."""
        self.status = status
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.too_large = too_large
        self.on_acked = on_acked
        self.transaction_max_bytes = transaction_max_bytes
        self._report = guarded(status, self._delivered)  # each copy's delivery report: this, its details bound

    def __len__(self) -> int:
        return len(self.producer)

    @property
    def in_transaction(self) -> bool:
        return self.transaction_max_bytes is not None

    def serve(self) -> None:
        self.producer.poll(0)

    def poll(self, timeout: float) -> int:
        return self.producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        return self.producer.flush(timeout)

    def use_producer(self, producer: Producer) -> None:
        """A renewed transactional producer replaces a fenced one."""
        self.producer = producer

    def copy(self, msg: Message, topic: str, recipe: HeaderRecipe, *args: Any) -> None:
        original = msg.headers()
        source = (msg.topic(), msg.partition(), msg.offset())
        headers = recipe(original, ref_of(msg), now_ms(), *args)
        # A recipe's headers are fresh bytes; without headers at its source (a first attempt) none names a source.
        self._send(topic, msg.key(), msg.value(), headers + source_headers(source) if original is None
                   else with_source(headers, source), source)

    def redrive(self, msg: Message, topic: str) -> None:
        source = (msg.topic(), msg.partition(), msg.offset())
        self._send(topic, msg.key(), msg.value(), with_source(msg.headers(), source), source)

    def _send(self, topic: str, key: Optional[bytes], value: Optional[bytes], headers: Headers, source: Source) -> None:
        limit = self.transaction_max_bytes
        if limit is not None and record_bytes(key, value, headers) > limit:
            self._send_stub(key, value, headers, source, f"over the topics' max.message.bytes {limit}")
            return
        report = partial(self._report, topic, key, value, headers, source)
        try:
            produce_patiently(self.producer, topic, key=key, value=value, headers=headers, on_delivery=report)
        except KafkaException as exc:
            if is_refusal(exc.args[0]):  # the producer knows the topic refused from its metadata
                self.status.refuse(denied(exc.args[0], self.status.principal, "Write", topic))
                self.status.check()  # in the loop's thread, not a callback: stop with the refusal's line
            if self.in_transaction and exc.args[0].code() not in _TOO_LARGE:
                return  # the transaction failed already: its commit aborts it (or renews the producer) and rewinds
            if exc.args[0].code() not in _TOO_LARGE:
                raise
            self._send_stub(key, value, headers, source, exc.args[0].str())

    def _send_stub(self, key: Optional[bytes], value: Optional[bytes], headers: Headers, source: Source, why: str) -> None:
        """A dead letter without the value, for a value too large to copy; the original stays at its source."""
        size = len(value or b"")
        log.error("Record %s[%d]@%d (%d bytes) is too large to copy (%s); dead-lettering it without its value",
                  *source, size, why)
        stub_headers = self.too_large(headers, size, why)
        report = partial(self._report, self.dead_letter_topic, key, None, stub_headers, source)
        produce_patiently(self.producer, self.dead_letter_topic, key=key, value=None, headers=stub_headers,
                          on_delivery=report)

    def _delivered(
        self, topic: str, key: Optional[bytes], value: Optional[bytes], headers: Headers, source: Source,
        err: Optional[KafkaError], msg: Message,
    ) -> None:
        if err is None:
            self.on_acked(source, (msg.topic(), msg.partition(), msg.offset()))
            return
        if is_refusal(err):
            self.status.refuse(denied(err, self.status.principal, "Write", topic))
        if self.in_transaction:
            log.debug("Copy of %s[%d]@%d not delivered (%s); its transaction aborts", *source, err.str())
            return
        if err.code() in _TOO_LARGE and value is not None:
            self._send_stub(key, value, headers, source, err.str())
            return
        # Its source stays open, so no commit passes it; the loop stops at its next status check.
        self.status.fail(FatalKafkaError(
            f"copy of {source[0]}[{source[1]}]@{source[2]} to {topic} not delivered ({err.str()}); stopping, "
            f"so that the restart finds which copies landed"
        ))


def record_bytes(key: Optional[bytes], value: Optional[bytes], headers: Headers) -> int:
    """A bound on the record's size in a batch: its bytes and ~20 bytes of framing per field, plus the batch header."""
    fields = len(key or b"") + len(value or b"") + sum(map(len, chain.from_iterable(headers)))  # names and values
    return fields + 20 * (len(headers) + 2) + 61
