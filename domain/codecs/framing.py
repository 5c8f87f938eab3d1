"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the payload.

Every Schema Registry serializer writes it. A consumer that expects plain
bytes cannot decode such a record; :func:`schema_id` lets it say why.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

MAGIC_BYTE = 0
HEADER_BYTES = 5


def schema_id(value: Optional[bytes]) -> Optional[int]:
    """The schema id of a Schema-Registry-framed value, or None if it does not look framed."""
    if value is None or len(value) < HEADER_BYTES or value[0] != MAGIC_BYTE:
        return None
    return int.from_bytes(value[1:HEADER_BYTES], "big")


class FramedDecodeError(ValueError):
    """A framed value could not be decoded (unknown schema id, unreachable registry, other bytes)."""


# Decodes a framed value into an order dict or raises FramedDecodeError; a Schema Registry client behind it.
FramedDecoder = Callable[[bytes], dict[str, Any]]
