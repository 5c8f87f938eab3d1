"""The three encodings of an Order: strict decoding, one error type each, and the Schema Registry framing."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.order import DEAD_LETTER, Verdict, evaluate
from domain.codecs import AVRO, CODECS, JSON, PROTOBUF
from domain.codecs.framing import schema_id
from domain.codecs.json_order import matches_schema, schema_validator
from domain.failures import FailureSimulator
from domain.headers import REASON_FRAMED, REASON_INVALID, REASON_UNDECODABLE
from producer.orders import POISON_KINDS, poison_record, random_order
from schemas.order_pb2 import Order as OrderMessage

ORDER = {"orderId": "o-1", "product": "Item2", "price": 12.5}
NO_FAILURES = FailureSimulator(0.0, None, 0)


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS)
@given(order_id=st.text(min_size=1), product=st.text(min_size=1), price=st.floats(0, 1e6, allow_nan=False))
@settings(max_examples=50, deadline=None)
def test_every_order_round_trips(codec, order_id, product, price):
    order = {"orderId": order_id, "product": product, "price": price}
    decoded = codec.decode(codec.encode(order))
    assert decoded["orderId"] == order_id and decoded["product"] == product
    expected = price if codec is JSON else struct.unpack("<f", struct.pack("<f", price))[0]  # JSON has no float32
    assert decoded["price"] == expected


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS)
@given(value=st.binary(max_size=80))
@settings(max_examples=200, deadline=None)
def test_any_bytes_decode_to_one_order_or_raise_the_codecs_own_error(codec, value):
    try:
        order = codec.decode(value)
    except codec.decode_error:
        return
    assert set(order) == {"orderId", "product", "price"} and isinstance(order["price"], float)


@pytest.mark.parametrize("value", [
    b'{"orderId":"a","product":"b","price":1,"extra":1}', b'{"orderId":"a","product":"b"}', b'[1,2]', b'"a"',
    b'{"orderId":"a","product":"b","price":"1"}', b'{"orderId":"a","product":"b","price":true}',
    b'{"orderId":"a","product":"b","price":NaN}', b'{"orderId":"a","product":"b","price":1e999}',
    b'{"orderId":"a","product":"b","price":1} trailing', b"\xff\xfe", b"", None,
])
def test_json_is_strict(value):
    with pytest.raises(JSON.decode_error):
        JSON.decode(value)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
ORDER_LIKE = st.fixed_dictionaries(
    {"orderId": JSON_VALUES, "product": JSON_VALUES, "price": JSON_VALUES},
    optional={"extra": JSON_VALUES, "orderId ": JSON_VALUES},
)


@given(record=JSON_VALUES | ORDER_LIKE)
@settings(max_examples=400, deadline=None)
def test_the_fast_json_check_says_what_the_schema_says(record):
    assert matches_schema(record) == schema_validator().is_valid(record)


def test_json_keeps_the_price_as_written():
    assert JSON.decode(b'{"orderId":"a","product":"b","price":10.1}')["price"] == 10.1  # not float32's 10.100000381


@pytest.mark.parametrize("value", [
    OrderMessage(orderId="a", product="b", price=1).SerializeToString() + b"\x20\x07",  # field 4: not in Order
    OrderMessage(product="b", price=1).SerializeToString(),  # no orderId
    OrderMessage(orderId="a", price=1).SerializeToString(),  # no product
    b"\x0a\xff\xff\xff\xff\x0f", b"\xff", None,
])
def test_protobuf_is_strict(value):
    with pytest.raises(PROTOBUF.decode_error):
        PROTOBUF.decode(value)


def test_a_protobuf_price_left_out_is_zero_as_proto3_says():
    assert PROTOBUF.decode(OrderMessage(orderId="a", product="b").SerializeToString())["price"] == 0.0


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS)
def test_poison_of_every_kind_is_dead_lettered_in_every_format(codec):
    rng = random.Random(4)
    seen = set()
    for _ in range(300):
        poison = poison_record(rng, codec)
        seen.add(poison.kind)
        verdict = evaluate(poison.value, None, NO_FAILURES, codec)
        assert isinstance(verdict, Verdict) and verdict.route == DEAD_LETTER, poison.kind
        assert verdict.dlq_reason in (REASON_UNDECODABLE, REASON_INVALID)
    assert seen == set(POISON_KINDS)
    order = random_order(rng)
    assert evaluate(codec.encode(order), None, NO_FAILURES, codec)["orderId"] == order["orderId"]


def test_a_schema_registry_framed_record_is_named_with_its_schema_id():
    framed = b"\x00" + (4242).to_bytes(4, "big") + AVRO.encode(ORDER)
    assert schema_id(framed) == 4242 and schema_id(AVRO.encode(ORDER)) is None and schema_id(b"\x00ab") is None
    for codec in CODECS.values():
        verdict = evaluate(framed, None, NO_FAILURES, codec)
        assert isinstance(verdict, Verdict) and verdict.dlq_reason == f"{REASON_FRAMED} (schema id 4242)"
        assert "Confluent wire format" in verdict.failure.reason


def test_the_sizes_differ_as_expected():
    sizes = {name: len(codec.encode(ORDER)) for name, codec in CODECS.items()}
    assert sizes["avro"] < sizes["protobuf"] < sizes["json"]
