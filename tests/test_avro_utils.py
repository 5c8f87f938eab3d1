import math
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avro_utils import AvroDecodeError, AvroEncodeError, avro_deserialize, avro_serialize
from tests.kafka_helpers import ROOT

ORDER = {"orderId": "o-1", "product": "Item1", "price": 12.5}


def test_round_trip():
    assert avro_deserialize(avro_serialize(ORDER)) == ORDER


def test_price_is_float32_after_avro():
    decoded = avro_deserialize(avro_serialize({**ORDER, "price": 10.1}))
    assert decoded["price"] != 10.1 and math.isclose(decoded["price"], 10.1, rel_tol=1e-6)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        b"",
        avro_serialize(ORDER)[:-1],
        avro_serialize(ORDER)[:3],
        avro_serialize(ORDER) + b"\x00",
        b"\xfe\xff\xff\xff\x0fabc",  # length prefix claiming ~2 GB
        b"\x01",  # negative length
        b"\x80" * 20,  # endless varint
        b"\x04\xff\xfe\x02a\x00\x00\x80\x3f",  # invalid UTF-8 in orderId
        "not bytes",
        12345,
    ],
)
def test_decode_rejects_anything_but_one_order(payload):
    with pytest.raises(AvroDecodeError):
        avro_deserialize(payload)


def test_decode_accepts_bytearray_and_memoryview():
    payload = avro_serialize(ORDER)
    assert avro_deserialize(bytearray(payload)) == ORDER
    assert avro_deserialize(memoryview(payload)) == ORDER


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_random_bytes_decode_or_raise_the_module_error(payload):
    try:
        record = avro_deserialize(payload)
    except AvroDecodeError:
        return
    assert set(record) == {"orderId", "product", "price"}
    assert isinstance(record["orderId"], str) and isinstance(record["product"], str)
    assert isinstance(record["price"], float)


@given(st.text(), st.text(), st.floats(width=32))
@settings(max_examples=500, deadline=None)
def test_any_schema_fitting_record_round_trips(order_id, product, price):
    record = {"orderId": order_id, "product": product, "price": price}
    decoded = avro_deserialize(avro_serialize(record))
    assert decoded["orderId"] == order_id and decoded["product"] == product
    assert (math.isnan(price) and math.isnan(decoded["price"])) or decoded["price"] == price


@pytest.mark.parametrize(
    "record, field",
    [
        ({"product": "Item1", "price": 1.0}, "orderId"),
        ({**ORDER, "orderId": 7}, "orderId"),
        ({**ORDER, "product": None}, "product"),
        ({**ORDER, "price": "12"}, "price"),
        ({**ORDER, "price": True}, "price"),
        ({**ORDER, "price": 1e300}, "price"),
        ({**ORDER, "extra": 1}, "extra"),
    ],
)
def test_encode_error_names_the_field(record, field):
    with pytest.raises(AvroEncodeError, match=repr(field)):
        avro_serialize(record)


def test_schema_is_found_from_any_working_directory(tmp_path):
    code = "import avro_utils; print(avro_utils.ORDER_SCHEMA['name'])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "com.example.orders.Order"
