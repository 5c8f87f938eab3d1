"""The shared Avro helper: encode and decode orders with the schema in ``avro/order.avsc``.

A face over the order domain's Avro codec (:mod:`domain.codecs.avro_order`),
kept at the top level so that ``from avro_utils import avro_serialize`` works
as in the classic layout. The JSON and Protobuf codecs stand beside it in
:mod:`domain.codecs`.
"""

from domain.codecs.avro_order import (
    ORDER_SCHEMA, SCHEMA_PATH, AvroDecodeError, AvroEncodeError, AvroError, avro_deserialize, avro_serialize,
)

__all__ = [
    "ORDER_SCHEMA", "SCHEMA_PATH", "AvroDecodeError", "AvroEncodeError", "AvroError", "avro_deserialize", "avro_serialize",
]
