"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the payload.

Every Schema Registry serializer writes it. A consumer that expects plain
bytes cannot decode such a record; :func:`schema_id` lets it say why.
"""

from __future__ import annotations

from typing import Optional

MAGIC_BYTE = 0
HEADER_BYTES = 5


def schema_id(value: Optional[bytes]) -> Optional[int]:
    """The schema id of a Schema-Registry-framed value, or None if it does not look framed."""
    if value is None or len(value) < HEADER_BYTES or value[0] != MAGIC_BYTE:
        return None
    return int.from_bytes(value[1:HEADER_BYTES], "big")
