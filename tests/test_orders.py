import random

from avro_utils import AvroDecodeError, avro_deserialize, avro_serialize
from domain.errors import ValidationError
from domain.order import validate_order
from producer.orders import POISON_KINDS, PRODUCTS, encoded_price, poison_record, random_order


def test_random_orders_fit_the_demo_ranges():
    rng = random.Random(1)
    orders = [random_order(rng) for _ in range(2000)]
    assert len({o["orderId"] for o in orders}) == 2000
    assert {o["product"] for o in orders} == set(PRODUCTS)
    for order in orders:
        assert 10.0 <= order["price"] <= 100.0
        assert round(order["price"], 2) == order["price"]
        assert validate_order(avro_deserialize(avro_serialize(order)))["orderId"] == order["orderId"]


def test_order_ids_differ_across_generators_with_the_same_seed():
    """Unique across restarts: ids do not come from the (seedable) price generator."""
    first = random_order(random.Random(5))["orderId"]
    second = random_order(random.Random(5))["orderId"]
    assert first != second


def test_every_poison_record_is_rejected_by_decode_or_validation():
    rng = random.Random(2)
    seen = set()
    for _ in range(600):
        poison = poison_record(rng)
        seen.add(poison.kind)
        try:
            validate_order(avro_deserialize(poison.value))
        except (AvroDecodeError, ValidationError):
            continue
        raise AssertionError(f"poison record {poison.kind} passed: {poison.value!r}")
    assert seen == set(POISON_KINDS)


def test_encoded_price_is_the_float32_value():
    assert encoded_price(10.1) == avro_deserialize(avro_serialize({"orderId": "a", "product": "b", "price": 10.1}))["price"]
