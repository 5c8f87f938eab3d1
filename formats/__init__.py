"""One Order, three encodings: ``--format avro|json|protobuf`` on the producer and every consumer.

Each codec is strict: ``decode`` returns exactly one order (a dict with
orderId, product, price) or raises the codec's own ``decode_error``; the
business rules (:mod:`pipeline.validation`) and the DLQ reasons are the same
for all three.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Optional

from avro_utils import AvroDecodeError, AvroEncodeError, avro_deserialize, avro_serialize
from formats.json_order import JsonDecodeError, JsonEncodeError, json_deserialize, json_serialize
from formats.protobuf_order import ProtobufDecodeError, ProtobufEncodeError, protobuf_deserialize, protobuf_serialize
from pipeline.config import env


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


def add_format_arg(
    parser: argparse.ArgumentParser, what: str = "encoding of the orders' values; producer and consumers must agree",
) -> None:
    parser.add_argument(
        "--format", choices=sorted(CODECS), default=env("MESSAGE_FORMAT", "avro"), dest="message_format",
        help=f"{what} (env MESSAGE_FORMAT) %(default)s",
    )
