"""Decoding Schema-Registry-framed values through the registry (``--schema-registry-url``), optional.

With a registry URL, a value in the Confluent wire format is decoded by
confluent-kafka's own deserializer for the chosen format, with our Order
schema as the reader's schema (Avro resolves the writer's schema against it),
and the result goes through the same validation as any order. Without one, or
when the registry cannot decode it, the value is dead-lettered as
``schema-registry framed (schema id N)``. Needs ``pip install -r requirements-registry.txt``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from domain.codecs.avro_order import SCHEMA_PATH as AVRO_SCHEMA_PATH
from domain.codecs import AVRO, JSON, Codec
from domain.codecs.framing import FramedDecodeError, FramedDecoder
from domain.codecs.json_order import SCHEMA_PATH as JSON_SCHEMA_PATH
from runtime.errors import ConfigError


def registry_decoder(url: Optional[str], codec: Codec, topic: str) -> Optional[FramedDecoder]:
    """A decoder of framed values of ``topic`` in ``codec`` through the registry at ``url``; None without a URL."""
    if not url:
        return None
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.serialization import MessageField, SerializationContext
    except ImportError:
        raise ConfigError("--schema-registry-url needs the registry client: pip install -r requirements-registry.txt") from None
    client = SchemaRegistryClient({"url": url})
    deserializer = _deserializer(client, codec)

    def decode(value: bytes) -> dict[str, Any]:
        try:
            record = deserializer(value, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:  # the client raises SerializationError, SchemaRegistryError, httpx errors, ...
            raise FramedDecodeError(f"{type(exc).__name__}: {exc}") from exc
        if codec is not AVRO and codec is not JSON:
            record = {"orderId": record.orderId, "product": record.product, "price": record.price}
        if not isinstance(record, dict):
            raise FramedDecodeError(f"the registry's schema gave a {type(record).__name__}, not an order")
        return record

    return decode


def _deserializer(client: Any, codec: Codec) -> Callable[..., Any]:
    if codec is AVRO:
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        return AvroDeserializer(client, AVRO_SCHEMA_PATH.read_text(encoding="utf-8"))
    if codec is JSON:
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer
        return JSONDeserializer(JSON_SCHEMA_PATH.read_text(encoding="utf-8"), schema_registry_client=client)
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer

    from schemas.order_pb2 import Order as OrderMessage
    return ProtobufDeserializer(OrderMessage, {"use.deprecated.format": False}, schema_registry_client=client)
