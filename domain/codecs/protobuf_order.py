"""Orders as Protocol Buffers (``schemas/order.proto``, code generated into ``schemas/order_pb2.py``).

Strict like :mod:`domain.codecs.avro_order`: anything that is not exactly one Order raises
:class:`ProtobufDecodeError`: bytes that do not parse, fields the schema does
not have, or a missing orderId or product. A missing price reads as 0.0, as
proto3 prescribes: encoders leave out a field equal to its default.
"""

from __future__ import annotations

from typing import Any, Optional

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from schemas.order_pb2 import Order as OrderMessage

_REQUIRED = ("orderId", "product")


class ProtobufDecodeError(ValueError):
    """The bytes are not exactly one Protobuf Order."""


class ProtobufEncodeError(ValueError):
    """A record does not fit the Order message."""


def protobuf_serialize(record: dict[str, Any]) -> bytes:
    """Encode one order; raise ProtobufEncodeError naming what does not fit."""
    unknown = sorted(set(record) - {"orderId", "product", "price"})
    if unknown:
        raise ProtobufEncodeError(f"field {unknown[0]!r} is not in the Order message")
    try:
        return OrderMessage(**record).SerializeToString()
    except (TypeError, ValueError) as exc:
        raise ProtobufEncodeError(str(exc)) from exc


def protobuf_deserialize(payload: Optional[bytes]) -> dict[str, Any]:
    """Decode exactly one order from ``payload`` or raise ProtobufDecodeError."""
    if payload is None:
        raise ProtobufDecodeError("value is null (tombstone), not a Protobuf order")
    message = OrderMessage()
    try:
        message.ParseFromString(bytes(payload))
    except (DecodeError, ValueError, TypeError) as exc:
        raise ProtobufDecodeError(f"not a Protobuf order ({type(exc).__name__}: {exc})") from exc
    unknown = UnknownFieldSet(message)
    if len(unknown):
        raise ProtobufDecodeError(f"not a Protobuf order (field number {unknown[0].field_number} is not in Order)")
    present = {field.name for field, _value in message.ListFields()}
    missing = [name for name in _REQUIRED if name not in present]
    if missing:
        raise ProtobufDecodeError(f"not a Protobuf order ({missing[0]} is missing)")
    return {"orderId": message.orderId, "product": message.product, "price": message.price}
