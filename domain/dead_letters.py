"""How a dead letter reads to a person. Pure: accepts any bytes and headers, never raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Sequence

from domain.codecs import AVRO, Codec
from domain.headers import (
    DLQ_REASON, ERROR, ERROR_CLASS, ERROR_STAGE, FIRST_FAILURE, LAST_FAILURE, REASON_EXHAUSTED, REASON_FRAMED, REASON_INVALID,
    REASON_TOO_LARGE,
    REASON_UNDECODABLE, REPLAYED_AT, VALUE_OMITTED, HeaderValue,
    get_retry_count, header_int, header_text, origin_of,
)

UNDECODABLE = "<could not decode>"
_MAX_KEY_CHARS = 120


@dataclass(frozen=True)
class DeadLetter:
    location: str
    key: str
    order: str
    reason: str
    error: str
    stage: str
    attempts: int
    origin: str
    first_failure: str
    last_failure: str

    def line(self) -> str:
        return (
            f"Dead letter {self.location} key={self.key} | {self.order} | reason={self.reason} | error={self.error} | "
            f"stage={self.stage} | attempts={self.attempts} | origin={self.origin} | "
            f"first failure={self.first_failure} | last failure={self.last_failure}"
        )


def format_time_ms(epoch_ms: Optional[int]) -> str:
    if epoch_ms is None:
        return "?"
    try:
        moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{epoch_ms} ms"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time_ms(text: str) -> int:
    """A point in time a person typed: epoch milliseconds, or ISO 8601 (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601, e.g. 2026-12-01T10:00:00Z, or epoch ms)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def show_key(key: Optional[bytes]) -> str:
    if key is None:
        return "<none>"
    text = key.decode("utf-8", errors="replace")
    return text if len(text) <= _MAX_KEY_CHARS else text[:_MAX_KEY_CHARS] + "…"


def show_order(value: Optional[bytes], codec: Codec = AVRO) -> str:
    try:
        order = codec.decode(value)
    except codec.decode_error:
        return UNDECODABLE if value is not None else f"{UNDECODABLE} (null value)"
    return f"order {order['orderId']!r} {order['product']!r} price={order['price']:.6g}"


def describe_dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: Optional[bytes],
    value: Optional[bytes],
    headers: Optional[Sequence[tuple[str, HeaderValue]]],
    codec: Codec = AVRO,
) -> DeadLetter:
    origin = origin_of(headers)
    replayed = header_int(headers, REPLAYED_AT)
    reason = header_text(headers, DLQ_REASON) or "?"
    if replayed is not None:
        reason += f" (replayed {format_time_ms(replayed)})"
    return DeadLetter(
        location=f"{topic}[{partition}]@{offset}",
        key=show_key(key),
        order=show_order(value, codec),
        reason=reason,
        error=header_text(headers, ERROR) or "?",
        stage=header_text(headers, ERROR_STAGE) or "?",
        attempts=get_retry_count(headers),
        origin=f"{origin.topic}[{origin.partition}]@{origin.offset}" if origin else "?",
        first_failure=format_time_ms(header_int(headers, FIRST_FAILURE)),
        last_failure=format_time_ms(header_int(headers, LAST_FAILURE)),
    )


KNOWN_REASONS = (REASON_UNDECODABLE, REASON_INVALID, REASON_EXHAUSTED, REASON_TOO_LARGE, REASON_FRAMED)


def dlq_reason(headers: Optional[Sequence[tuple[str, HeaderValue]]]) -> str:
    """The DLQ reason as a metric label: one of ours, else "other" (labels must stay few)."""
    reason = header_text(headers, DLQ_REASON)
    if reason is not None and reason.startswith(REASON_FRAMED):
        return REASON_FRAMED  # the schema id stays out of the label
    return reason if reason in KNOWN_REASONS else "other"


def replayed_since(headers: Optional[Sequence[tuple[str, HeaderValue]]], since_ms: int) -> bool:
    """True for a dead letter that a replay started at ``since_ms`` sent back and that failed again."""
    replayed = header_int(headers, REPLAYED_AT)
    return replayed is not None and replayed >= since_ms


def already_replayed(dead_letter: tuple[str, int, int], headers: Optional[Sequence[tuple[str, HeaderValue]]],
                     replayed: set[tuple[str, int, int]]) -> bool:
    """True if a replay sent this dead letter back before, or if it is itself a replayed record that failed again."""
    return dead_letter in replayed or header_int(headers, REPLAYED_AT) is not None


@dataclass(frozen=True)
class Facts:
    """What a selection looks at in a dead letter: small enough to keep for every one of them (the console's index)."""

    key: Optional[bytes]
    reason: str
    error: str
    error_class: str
    timestamp_ms: Optional[int]

    @classmethod
    def of(cls, key: Optional[bytes], headers: Optional[Sequence[tuple[str, HeaderValue]]],
           timestamp_ms: Optional[int]) -> "Facts":
        return cls(key, header_text(headers, DLQ_REASON) or "", header_text(headers, ERROR) or "",
                   header_text(headers, ERROR_CLASS) or "", timestamp_ms)


@dataclass(frozen=True)
class ReplaySelection:
    """Which dead letters a replay (or a console page) takes: every condition given must hold."""

    reason_contains: Optional[str] = None
    error_class: Optional[str] = None
    key: Optional[bytes] = None
    since_ms: Optional[int] = None
    until_ms: Optional[int] = None

    def selects(self, key: Optional[bytes], headers: Optional[Sequence[tuple[str, HeaderValue]]],
                timestamp_ms: Optional[int]) -> bool:
        return self.selects_facts(Facts.of(key, headers, timestamp_ms))

    def selects_facts(self, facts: Facts) -> bool:
        if self.reason_contains:
            needle = self.reason_contains.lower()
            if needle not in facts.reason.lower() and needle not in facts.error.lower():
                return False
        if self.error_class and facts.error_class.lower() != self.error_class.lower():
            return False
        if self.key is not None and facts.key != self.key:
            return False
        if self.since_ms is not None and (facts.timestamp_ms is None or facts.timestamp_ms < self.since_ms):
            return False
        return self.until_ms is None or (facts.timestamp_ms is not None and facts.timestamp_ms < self.until_ms)


def not_replayable(headers: Optional[Sequence[tuple[str, HeaderValue]]]) -> Optional[str]:
    """Why a dead letter cannot go back into processing, or None."""
    if header_text(headers, VALUE_OMITTED) is not None:
        return "a stub: its value was too large to copy and is only at its origin"
    return None
