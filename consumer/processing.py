"""What happens to one record: decode -> validate -> process, and the verdict. Pure: no Kafka here.

Permanent failures (undecodable bytes, a null value, an invalid order) go to the
DLQ at once: retrying cannot fix them. Any other processing error is taken as
transient and retried.

Most records are valid orders on their first attempt and process fine; the
consumer takes them the short way (:func:`decode_order`, then
:func:`process_order`), building nothing per record, and asks :func:`evaluate`
for the verdict of all others.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

from avro_utils import AvroDecodeError, avro_deserialize
from pipeline.errors import ValidationError
from pipeline.failures import FailureSimulator
from pipeline.headers import REASON_INVALID, REASON_UNDECODABLE, Failure, HeaderValue, get_retry_count
from pipeline.validation import Order, is_valid_order, validate_order

PROCESSED = "processed"
RETRY = "retry"
DEAD_LETTER = "dead-letter"


class Verdict(NamedTuple):
    route: str
    attempt: int
    order: Optional[Order] = None
    failure: Optional[Failure] = None
    dlq_reason: Optional[str] = None


def process_order(order: Order, attempt: int, simulator: FailureSimulator) -> None:
    """The business step; here only the simulated failures of the classic demo. Raises if it failed."""
    if simulator.active:
        simulator.check(order["orderId"], order["product"], attempt)


def decode_order(value: Optional[bytes]) -> Optional[Order]:
    """The valid order in ``value``, or None if it is not one (then :func:`evaluate` says why)."""
    try:
        record = avro_deserialize(value)  # type: ignore[arg-type]
    except AvroDecodeError:
        return None
    return record if is_valid_order(record) else None  # type: ignore[return-value]


def retry_verdict(order: Order, attempt: int, exc: Exception) -> Verdict:
    """Processing failed: anything not known to be permanent is worth a retry."""
    return Verdict(RETRY, attempt, order, Failure.from_exception("process", exc))


def evaluate(
    value: Optional[bytes], headers: Optional[Sequence[tuple[str, HeaderValue]]], simulator: FailureSimulator
) -> Verdict:
    attempt = get_retry_count(headers) + 1 if headers else 1  # most records carry no headers
    try:
        record = avro_deserialize(value)  # type: ignore[arg-type]
    except AvroDecodeError as exc:
        return Verdict(DEAD_LETTER, attempt, None, Failure.from_exception("decode", exc, f"could not decode: {exc}"),
                       REASON_UNDECODABLE)
    try:
        order = validate_order(record)
    except ValidationError as exc:
        return Verdict(DEAD_LETTER, attempt, None, Failure.from_exception("validate", exc, f"invalid order: {exc}"),
                       REASON_INVALID)
    try:
        process_order(order, attempt, simulator)
    except Exception as exc:
        return retry_verdict(order, attempt, exc)
    return Verdict(PROCESSED, attempt, order)
