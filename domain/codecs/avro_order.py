"""Schemaless Avro encoding of orders with the schema in ``avro/order.avsc``.

The schema is parsed once, found relative to this file so the scripts work from
any working directory. Decoding is strict: anything that is not exactly one
valid ``Order`` raises :class:`AvroDecodeError`, never a half-decoded dict and
never an unrelated exception type, so a consumer can route it to the DLQ.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "avro" / "order.avsc"
ORDER_SCHEMA = fastavro.parse_schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
_FIELD_TYPES: dict[str, str] = {field["name"]: field["type"] for field in ORDER_SCHEMA["fields"]}
_FLOAT32_MAX = 3.4028234663852886e38


class AvroError(ValueError):
    """Base class of this module's errors."""


class AvroEncodeError(AvroError):
    """A record does not fit the Order schema; the message names the field."""


class AvroDecodeError(AvroError):
    """The bytes are not exactly one Avro-encoded Order."""


def _check_field(name: str, value: Any) -> None:
    expected = _FIELD_TYPES[name]
    if expected == "string":
        if not isinstance(value, str):
            raise AvroEncodeError(f"field {name!r} must be a string, got {type(value).__name__}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise AvroEncodeError(f"field {name!r} is not valid UTF-8: {exc}") from exc
    elif expected == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AvroEncodeError(f"field {name!r} must be a number, got {type(value).__name__}")
        if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise AvroEncodeError(f"field {name!r} is out of float32 range: {value!r}")


def avro_serialize(record: dict[str, Any]) -> bytes:
    """Encode one order; raise AvroEncodeError naming the first field that does not fit."""
    if not isinstance(record, dict):
        raise AvroEncodeError(f"an order must be a dict, got {type(record).__name__}")
    for name in _FIELD_TYPES:
        if name not in record:
            raise AvroEncodeError(f"field {name!r} is missing")
        _check_field(name, record[name])
    unknown = sorted(set(record) - set(_FIELD_TYPES))
    if unknown:
        raise AvroEncodeError(f"field {unknown[0]!r} is not in the Order schema")
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, ORDER_SCHEMA, record)
    return buffer.getvalue()


def avro_deserialize(payload: bytes) -> dict[str, Any]:
    """Decode exactly one order from ``payload`` or raise AvroDecodeError."""
    if payload is None:
        raise AvroDecodeError("value is null (tombstone), not an Avro order")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise AvroDecodeError(f"value must be bytes, got {type(payload).__name__}")
    if len(payload) == 0:
        raise AvroDecodeError("value is empty, not an Avro order")
    buffer = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(buffer, ORDER_SCHEMA, None)
    except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ...
        raise AvroDecodeError(f"not an Avro order ({type(exc).__name__}: {exc})") from exc
    consumed = buffer.tell()
    if consumed != len(payload):
        raise AvroDecodeError(f"{len(payload) - consumed} trailing byte(s) after an Avro order")
    return record
