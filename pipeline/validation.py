"""Business rules for a decoded order: permanent failures, never retried."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from pipeline.errors import ValidationError


class Order(NamedTuple):
    order_id: str
    product: str
    price: float


def validate_order(record: dict[str, Any]) -> Order:
    """Return the order if orderId and product are non-empty and price is finite and >= 0."""
    order_id = record.get("orderId")
    product = record.get("product")
    price = record.get("price")
    if (
        type(order_id) is str and order_id and not order_id.isspace()
        and type(product) is str and product and not product.isspace()
        and type(price) is float and 0.0 <= price < math.inf
    ):
        return Order(order_id, product, price)  # the common case, checked in one expression
    return _reject(order_id, product, price)


def _reject(order_id: Any, product: Any, price: Any) -> Order:
    """The slow path: say exactly which rule the order breaks (or accept an int price)."""
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
    return Order(order_id, product, float(price))
