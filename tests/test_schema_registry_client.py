"""``--schema-registry-url``: framed values decoded through confluent-kafka's registry client, offline.

No Schema Registry can run on the machines the suite runs on, so the client
talks to a local HTTP server that answers the one call a deserializer makes
(``GET /schemas/ids/{id}``) as the registry's REST API documents it. This
checks the wiring: the client, the deserializer of each format, our reader
schema, validation afterwards, and the DLQ reason when the registry cannot help.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from google.protobuf import descriptor_pb2

from avro_utils import SCHEMA_PATH as AVRO_SCHEMA_PATH
from domain.order import Verdict, evaluate
from domain.codecs import AVRO, CODECS, JSON
from domain.codecs.json_order import SCHEMA_PATH as JSON_SCHEMA_PATH
from consumer.schema_registry import registry_decoder
from domain.codecs.framing import FramedDecodeError
from domain.failures import FailureSimulator
from domain.headers import REASON_FRAMED
from schemas.order_pb2 import Order as OrderMessage

ORDER = {"orderId": "o-7", "product": "Item4", "price": 20.5}
PROTO = (JSON_SCHEMA_PATH.parent / "order.proto").read_text()
SCHEMAS = {
    1: {"schema": AVRO_SCHEMA_PATH.read_text()},
    2: {"schema": JSON_SCHEMA_PATH.read_text(), "schemaType": "JSON"},
    3: {"schema": PROTO, "schemaType": "PROTOBUF"},
}
IDS = {"avro": 1, "json": 2, "protobuf": 3}


def serialized_proto() -> str:
    """The registry's ``format=serialized`` answer for a Protobuf schema: a base64 FileDescriptorProto."""
    descriptor = descriptor_pb2.FileDescriptorProto()
    OrderMessage.DESCRIPTOR.file.CopyToProto(descriptor)
    return base64.b64encode(descriptor.SerializeToString()).decode()


class RegistryApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the handler's name is http.server's)
        path, _, query = self.path.partition("?")
        found = SCHEMAS.get(int(path.rsplit("/", 1)[1])) if path.startswith("/schemas/ids/") else None
        if found is not None and found.get("schemaType") == "PROTOBUF" and "format=serialized" in query:
            found = {**found, "schema": serialized_proto()}
        body = json.dumps(found or {"error_code": 40403, "message": "Schema not found"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RegistryApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def framed(fmt: str, schema_id: int) -> bytes:
    prefix = b"\x00" + schema_id.to_bytes(4, "big")
    payload = CODECS[fmt].encode(ORDER)
    return prefix + (b"\x00" if fmt == "protobuf" else b"") + payload  # protobuf: the message index list [0]


@pytest.mark.parametrize("fmt", sorted(CODECS))
def test_a_framed_order_decodes_through_the_registry_and_is_processed(registry_url: str, fmt: str):
    codec = CODECS[fmt]
    decode = registry_decoder(registry_url, codec, "orders")
    assert decode is not None
    order = evaluate(framed(fmt, IDS[fmt]), None, FailureSimulator(0.0, None, 0), codec, decode)
    expected_price = 20.5  # exact in float32 too
    assert order == {**ORDER, "price": expected_price}


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_an_unknown_schema_id_is_dead_lettered_with_its_id(registry_url: str, fmt: str):
    codec = AVRO if fmt == "avro" else JSON
    decode = registry_decoder(registry_url, codec, "orders")
    with pytest.raises(FramedDecodeError):
        decode(framed(fmt, 99))  # type: ignore[misc]
    verdict = evaluate(framed(fmt, 99), None, FailureSimulator(0.0, None, 0), codec, decode)
    assert isinstance(verdict, Verdict) and verdict.dlq_reason == f"{REASON_FRAMED} (schema id 99)"


def test_no_url_means_no_registry_client():
    assert registry_decoder(None, AVRO, "orders") is None
