import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import TransientProcessingError, ValidationError
from domain.failures import FailureSimulator, attempt_draw
from domain.headers import REASON_INVALID, REASON_UNDECODABLE, RETRY_COUNT
from domain.order import DEAD_LETTER, RETRY, evaluate, validate_order
from avro_utils import avro_serialize

GOOD = {"orderId": "o-1", "product": "Item1", "price": 12.5}


def test_valid_order():
    order = validate_order(GOOD)
    assert (order["orderId"], order["product"], order["price"]) == ("o-1", "Item1", 12.5)


@pytest.mark.parametrize(
    "change",
    [{"orderId": ""}, {"orderId": "  "}, {"product": ""}, {"price": -0.01}, {"price": math.nan},
     {"price": math.inf}, {"price": -math.inf}, {"price": "1"}, {"orderId": None}],
)
def test_invalid_orders(change):
    with pytest.raises(ValidationError):
        validate_order({**GOOD, **change})


def test_zero_price_is_valid():
    assert validate_order({**GOOD, "price": 0.0})["price"] == 0.0


@given(st.dictionaries(st.sampled_from(["orderId", "product", "price", "x"]),
                       st.one_of(st.none(), st.text(), st.floats(), st.integers(), st.booleans(), st.binary())))
@settings(max_examples=500, deadline=None)
def test_validation_raises_only_its_own_error(record):
    try:
        validate_order(record)
    except ValidationError:
        pass


def test_failure_schedule_is_deterministic_and_near_the_rate():
    draws = [attempt_draw(f"order-{i}", 1, seed=3) for i in range(20000)]
    assert draws == [attempt_draw(f"order-{i}", 1, seed=3) for i in range(20000)]
    share = sum(d < 0.1 for d in draws) / len(draws)
    assert 0.09 < share < 0.11
    assert attempt_draw("order-1", 1, seed=3) != attempt_draw("order-1", 2, seed=3)
    assert attempt_draw("order-1", 1, seed=3) != attempt_draw("order-1", 1, seed=4)


@pytest.mark.parametrize("make_id", [lambda i: f"{i:08d}-aaaa-bbbb-cccc-000000000000", lambda i: f"order-{i}"])
@pytest.mark.parametrize("first,second", [(1, 2), (1, 3), (2, 3)])
def test_attempts_of_one_order_fail_independently(make_id, first, second):
    ids = [make_id(i) for i in range(40000)]
    assert 0.09 < sum(attempt_draw(i, second, 0) < 0.1 for i in ids) / len(ids) < 0.11
    both = sum(attempt_draw(i, first, 0) < 0.1 and attempt_draw(i, second, 0) < 0.1 for i in ids) / len(ids)
    assert 0.007 < both < 0.013  # 0.1 * 0.1


def test_fail_product_always_fails_and_rate_zero_never():
    simulator = FailureSimulator(fail_rate=0.0, fail_product="Item3")
    with pytest.raises(TransientProcessingError):
        simulator.check("a", "Item3", 7)
    for i in range(1000):
        simulator.check(f"o{i}", "Item1", 1)


def test_evaluate_routes_by_failure_kind():
    simulator = FailureSimulator(fail_rate=0.0, fail_product="Item3")
    processed = evaluate(avro_serialize(GOOD), None, simulator)
    assert type(processed) is dict and processed["orderId"] == GOOD["orderId"]  # the order itself, nothing built
    retried = evaluate(avro_serialize({**GOOD, "product": "Item3"}), [(RETRY_COUNT, b"2")], simulator)
    assert retried.route == RETRY and retried.attempt == 3 and retried.failure.stage == "process"
    undecodable = evaluate(b"\x01garbage", None, simulator)
    assert undecodable.route == DEAD_LETTER and undecodable.dlq_reason == REASON_UNDECODABLE
    assert undecodable.failure.stage == "decode" and undecodable.failure.error_class == "AvroDecodeError"
    tombstone = evaluate(None, None, simulator)
    assert tombstone.route == DEAD_LETTER and "null" in tombstone.failure.reason
    invalid = evaluate(avro_serialize({**GOOD, "price": -1.0}), None, simulator)
    assert invalid.route == DEAD_LETTER and invalid.dlq_reason == REASON_INVALID and invalid.failure.stage == "validate"


def test_gc_tuning_freezes_start_up_objects_and_collects_less_often():
    script = (
        "import gc; from runtime.gc_tuning import YOUNG_THRESHOLD, tune_for_streaming; "
        "before = gc.get_threshold(); tune_for_streaming(); "
        "assert gc.get_freeze_count() > 0 and gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:]), gc.get_threshold()"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parent.parent)
