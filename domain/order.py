"""An order, its business rules, and what happens to one record: decode -> validate -> process. Pure: no Kafka here.

:func:`evaluate` is the one decision path. It returns the order when it was
processed (most records: nothing is built for them), else a :class:`Verdict`
that routes the record. Permanent failures (undecodable bytes, a null value,
an invalid order) go to the DLQ at once: retrying cannot fix them. Any other
processing error is taken as transient and retried.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence, TypedDict, Union

from domain.codecs import AVRO, Codec
from domain.codecs.framing import FramedDecodeError, FramedDecoder, schema_id
from domain.errors import ValidationError
from domain.failures import FailureSimulator
from domain.headers import REASON_FRAMED, REASON_INVALID, REASON_UNDECODABLE, Failure, HeaderValue, get_retry_count

_INFINITY = math.inf


class Order(TypedDict):
    """A valid order, as fastavro decodes it (the schema's field names): no copy is made of it."""

    orderId: str
    product: str
    price: float


def is_valid_order(record: dict[str, Any]) -> bool:
    """orderId and product are non-blank strings and price is a finite float >= 0: one expression for the hot path."""
    try:
        order_id, product, price = record["orderId"], record["product"], record["price"]
    except KeyError:
        return False
    if (
        type(price) is float and 0.0 <= price < _INFINITY
        and type(order_id) is str and order_id and not order_id.isspace()
        and type(product) is str and product and not product.isspace()
    ):
        return True
    return False


def validate_order(record: dict[str, Any]) -> Order:
    """Return the record as an Order, or raise ValidationError naming the rule it breaks."""
    if is_valid_order(record):
        return record  # type: ignore[return-value]
    return _reject(record)


def _reject(record: dict[str, Any]) -> Order:
    """The slow path: say exactly which rule the order breaks (or accept an int price)."""
    order_id, product, price = record.get("orderId"), record.get("product"), record.get("price")
    if not isinstance(order_id, str) or not order_id.strip():
        raise ValidationError("orderId is empty")
    if not isinstance(product, str) or not product.strip():
        raise ValidationError(f"order {order_id}: product is empty")
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        raise ValidationError(f"order {order_id}: price is not a number")
    if not math.isfinite(price):
        raise ValidationError(f"order {order_id}: price is not finite ({price:.6g})")
    if price < 0:
        raise ValidationError(f"order {order_id}: price is negative ({price:.6g})")
    return Order(orderId=order_id, product=product, price=float(price))


RETRY = "retry"
DEAD_LETTER = "dead-letter"


class Verdict(NamedTuple):
    """A record that failed: where it goes, at which attempt, and why."""

    route: str
    attempt: int
    failure: Failure
    order: Optional[Order] = None
    dlq_reason: Optional[str] = None


def process_order(order: Order, attempt: int, simulator: FailureSimulator) -> None:
    """The business step; here only the simulated failures of the classic demo. Raises if it failed."""
    if simulator.active:
        simulator.check(order["orderId"], order["product"], attempt)


def undecodable(value: Optional[bytes], exc: Exception) -> tuple[Failure, str]:
    """Why a value did not decode, and its DLQ reason; a Schema Registry framing is named, with its schema id."""
    framed = schema_id(value)
    if framed is None:
        return Failure.from_exception("decode", exc, f"could not decode: {exc}"), REASON_UNDECODABLE
    reason = f"{REASON_FRAMED} (schema id {framed})"
    why = f"{reason}: the value is in the Confluent wire format; a Schema Registry deserializer reads it"
    return Failure.from_exception("decode", exc, why), reason


def attempt_of(headers: Optional[Sequence[tuple[str, HeaderValue]]]) -> int:
    """1 for a first attempt (most records carry no headers), else the retry count + 1."""
    return get_retry_count(headers) + 1 if headers else 1


def evaluate(
    value: Optional[bytes], headers: Optional[Sequence[tuple[str, HeaderValue]]], simulator: FailureSimulator,
    codec: Codec = AVRO, framed: Optional[FramedDecoder] = None,
) -> Union[Order, Verdict]:
    """decode -> validate -> process: the order if it was processed, else the Verdict that routes it.

    ``framed``: decodes Schema-Registry-framed values, through a registry (see :mod:`consumer.schema_registry`).
    """
    try:
        record = codec.decode(value)
    except codec.decode_error as exc:
        error: Exception = exc
        record = None
        if framed is not None and schema_id(value) is not None:
            try:
                record = framed(value)  # type: ignore[arg-type]
            except FramedDecodeError as registry_error:
                error = registry_error
        if record is None:
            failure, reason = undecodable(value, error)
            return Verdict(DEAD_LETTER, attempt_of(headers), failure, None, reason)
    if not is_valid_order(record):  # the cheap check; the exception below only says why
        try:
            validate_order(record)
        except ValidationError as exc:
            failure = Failure.from_exception("validate", exc, f"invalid order: {exc}")
            return Verdict(DEAD_LETTER, attempt_of(headers), failure, None, REASON_INVALID)
    order: Order = record  # type: ignore[assignment]
    try:
        process_order(order, attempt_of(headers) if headers else 1, simulator)
    except Exception as exc:
        return Verdict(RETRY, attempt_of(headers), Failure.from_exception("process", exc), order)
    return order
