"""Random orders, and poison records that show the DLQ path. Pure: no Kafka here."""

from __future__ import annotations

import random
import struct
import uuid
from typing import Any, NamedTuple

from domain.codecs import AVRO, JSON, Codec

PRODUCTS = tuple(f"Item{n}" for n in range(1, 6))
POISON_KINDS = ("random-bytes", "truncated", "trailing-bytes", "negative-price", "nan-price", "empty-orderId")


def new_order_id() -> str:
    """A random UUID: unique across restarts and across concurrent producers."""
    return str(uuid.uuid4())


def random_order(rng: random.Random) -> dict[str, Any]:
    return {
        "orderId": new_order_id(),
        "product": rng.choice(PRODUCTS),
        "price": round(rng.uniform(10.0, 100.0), 2),
    }


class Poison(NamedTuple):
    kind: str
    key: bytes
    value: bytes


def poison_record(rng: random.Random, codec: Codec = AVRO) -> Poison:
    """One record that the main consumer must dead-letter: undecodable, or decodable but invalid."""
    kind = rng.choice(POISON_KINDS)
    order = random_order(rng)
    key = order["orderId"].encode()
    if kind == "random-bytes":
        value = _undecodable_bytes(rng, codec)
    elif kind == "truncated":
        value = codec.encode(order)[:-2]
    elif kind == "trailing-bytes":
        value = codec.encode(order) + b"\x00junk"
    elif kind == "negative-price":
        value = codec.encode({**order, "price": -order["price"]})
    elif kind == "nan-price" and codec is JSON:  # JSON has no NaN: written as JavaScript would, so it cannot parse
        value = codec.encode(order).replace(b'"price":' + str(order["price"]).encode(), b'"price":NaN')
    elif kind == "nan-price":
        value = codec.encode({**order, "price": float("nan")})
    else:
        value = codec.encode({**order, "orderId": ""})
    return Poison(kind, key, value)


def _undecodable_bytes(rng: random.Random, codec: Codec) -> bytes:
    """Random bytes, drawn again in the rare case they happen to decode as an order."""
    while True:
        value = rng.randbytes(rng.randint(1, 64))
        try:
            codec.decode(value)
        except codec.decode_error:
            return value


def encoded_price(price: float) -> float:
    """The price as the consumer sees it: rounded to float32 by the Avro ``float`` type."""
    return struct.unpack("<f", struct.pack("<f", price))[0]
