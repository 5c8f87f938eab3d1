"""Orders as UTF-8 JSON objects, validated against ``schemas/order.schema.json`` (JSON Schema 2020-12).

Strict like :mod:`domain.codecs.avro_order`: anything that is not exactly one JSON object
matching the schema (unknown fields rejected) raises :class:`JsonDecodeError`.
JSON has no float32: the price is the number as written.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Optional

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "order.schema.json"
_FIELDS = {"orderId", "product", "price"}


class JsonDecodeError(ValueError):
    """The bytes are not exactly one JSON Order."""


class JsonEncodeError(ValueError):
    """A record does not fit the Order schema."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_serialize(record: dict[str, Any]) -> bytes:
    """Encode one order; raise JsonEncodeError if it does not match the schema."""
    if not matches_schema(record):
        raise JsonEncodeError(_first_error(record) or "not an Order")
    try:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError) as exc:
        raise JsonEncodeError(str(exc)) from exc


def json_deserialize(payload: Optional[bytes]) -> dict[str, Any]:
    """Decode exactly one order from ``payload`` or raise JsonDecodeError."""
    if payload is None:
        raise JsonDecodeError("value is null (tombstone), not a JSON order")
    try:
        record = json.loads(bytes(payload).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise JsonDecodeError(f"not a JSON order ({type(exc).__name__}: {exc})") from exc
    if not matches_schema(record):
        raise JsonDecodeError(f"not a JSON order ({_first_error(record)})")
    price = record["price"]
    if isinstance(price, bool) or not math.isfinite(price):
        raise JsonDecodeError(f"not a JSON order (price {price!r} is not a finite number)")
    record["price"] = float(price)
    return record


def matches_schema(record: Any) -> bool:
    """The schema's rules in one expression, tested equal to the validator, which costs several times the
    parse (docs/formats.md): it only runs to say why a record does not match."""
    return (
        type(record) is dict and record.keys() == _FIELDS
        and type(record["orderId"]) is str and type(record["product"]) is str and type(record["price"]) in (int, float)
    )


@functools.cache
def schema_validator() -> Any:
    """The schema's validator, compiled on first use: importing jsonschema is slow, and every script would
    pay for it at start-up, JSON or not."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _first_error(record: Any) -> Optional[str]:
    error = next(iter(schema_validator().iter_errors(record)), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the order"
    return f"{where}: {error.message}"
