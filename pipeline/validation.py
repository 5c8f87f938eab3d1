"""Business rules for a decoded order: permanent failures, never retried."""

from __future__ import annotations

import math
from typing import Any, TypedDict

from pipeline.errors import ValidationError

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
