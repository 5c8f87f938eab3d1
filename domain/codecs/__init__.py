"""One Order, three encodings: ``--format avro|json|protobuf`` on the producer and every consumer.

Each codec is strict: ``decode`` returns exactly one order (a dict with
orderId, product, price) or raises the codec's own ``decode_error``; the
business rules (:mod:`domain.order`) and the DLQ reasons are the same
for all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from domain.codecs.avro_order import AvroDecodeError, AvroEncodeError, avro_deserialize, avro_serialize
from domain.codecs.json_order import JsonDecodeError, JsonEncodeError, json_deserialize, json_serialize
from domain.codecs.protobuf_order import ProtobufDecodeError, ProtobufEncodeError, protobuf_deserialize, protobuf_serialize


@dataclass(frozen=True)
class Codec:
    name: str
    encode: Callable[[dict[str, Any]], bytes]
    decode: Callable[[Optional[bytes]], dict[str, Any]]
    encode_error: type[ValueError]
    decode_error: type[ValueError]


AVRO = Codec("avro", avro_serialize, avro_deserialize, AvroEncodeError, AvroDecodeError)  # type: ignore[arg-type]
JSON = Codec("json", json_serialize, json_deserialize, JsonEncodeError, JsonDecodeError)
PROTOBUF = Codec("protobuf", protobuf_serialize, protobuf_deserialize, ProtobufEncodeError, ProtobufDecodeError)
CODECS = {codec.name: codec for codec in (AVRO, JSON, PROTOBUF)}
