import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.headers import (
    ERROR, ERROR_CLASS, ERROR_STAGE, FIRST_FAILURE, LAST_FAILURE, ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC,
    REPLAYED_AT, RETRY_COUNT, RETRY_DUE, Failure, Origin, get_retry_count, header_text, origin_of,
    replay_headers, routed_headers,
)
from runtime.provenance import source_of, with_source


@pytest.mark.parametrize(
    "headers, expected",
    [
        (None, 0),
        ([], 0),
        ([("other", b"1")], 0),
        ([(RETRY_COUNT, b"2")], 2),
        ([(RETRY_COUNT, "3")], 3),
        ([(RETRY_COUNT, b" 4 ")], 4),
        ([(RETRY_COUNT, b"abc")], 0),
        ([(RETRY_COUNT, b"-1")], 0),
        ([(RETRY_COUNT, b"1.5")], 0),
        ([(RETRY_COUNT, b"")], 0),
        ([(RETRY_COUNT, None)], 0),
        ([(RETRY_COUNT, b"99999999999999999999")], 0),
        ([(RETRY_COUNT, b"\xff\xfe")], 0),
        ([(RETRY_COUNT, "\u0663")], 0),  # a non-ASCII digit
        ([(RETRY_COUNT, b"1"), (RETRY_COUNT, b"2")], 2),  # the last one wins, as Kafka's lastHeader
    ],
)
def test_get_retry_count(headers, expected):
    assert get_retry_count(headers) == expected


@given(st.lists(st.tuples(st.sampled_from([RETRY_COUNT, ERROR, ORIGIN_OFFSET, "x"]),
                          st.one_of(st.none(), st.binary(), st.text()))))
@settings(max_examples=1000, deadline=None)
def test_header_parsing_never_raises(headers):
    count = get_retry_count(headers)
    assert 0 <= count <= 1_000_000
    origin_of(headers)


def _routed(previous=None, now=1000, **kwargs):
    failure = Failure("process", "TransientProcessingError", "boom", "boom happened")
    return routed_headers(previous, retry_count=1, failure=failure, current=Origin("orders", 2, 40, 999),
                          now_ms=now, **kwargs)


def test_routed_headers_carry_the_context():
    headers = _routed(due_ms=2000)
    assert get_retry_count(headers) == 1
    assert header_text(headers, ERROR) == "boom happened"
    assert origin_of(headers) == Origin("orders", 2, 40, 999)
    assert header_text(headers, ERROR_STAGE) == "process"
    assert header_text(headers, ERROR_CLASS) == "TransientProcessingError"
    assert header_text(headers, FIRST_FAILURE) == header_text(headers, LAST_FAILURE) == "1000"
    assert header_text(headers, RETRY_DUE) == "2000"
    assert all(isinstance(value, bytes) for _, value in headers)


def test_second_hop_keeps_origin_and_first_failure_and_replaces_the_rest():
    first = _routed(due_ms=2000) + [("trace-id", b"abc")]
    failure = Failure("process", "Other", "again", "again")
    second = routed_headers(first, retry_count=2, failure=failure, current=Origin("orders", 0, 77, None), now_ms=5000)
    assert origin_of(second) == Origin("orders", 2, 40, 999)
    assert header_text(second, FIRST_FAILURE) == "1000" and header_text(second, LAST_FAILURE) == "5000"
    assert get_retry_count(second) == 2 and header_text(second, ERROR) == "again"
    assert header_text(second, RETRY_DUE) is None
    assert [k for k, _ in second].count(RETRY_COUNT) == 1
    assert ("trace-id", b"abc") in second


def test_foreign_headers_with_junk_values_survive_routing():
    junk = [("h", b"\xff\xfe"), ("none", None), (RETRY_COUNT, b"abc"), (ORIGIN_PARTITION, b"-3")]
    headers = _routed(junk)
    assert ("h", b"\xff\xfe") in headers and ("none", b"") in headers
    assert origin_of(headers) == Origin("orders", 2, 40, 999)
    assert header_text(headers, ORIGIN_TOPIC) == "orders"


def test_replay_resets_the_retry_count_and_marks_the_record():
    headers = with_source(replay_headers(_routed(due_ms=2000), now_ms=9000), ("orders_dlq", 2, 41))
    assert get_retry_count(headers) == 0
    assert header_text(headers, REPLAYED_AT) == "9000"
    assert source_of(headers) == ("orders_dlq", 2, 41)  # a later replay knows this dead letter was replayed
    assert header_text(headers, RETRY_DUE) is None
    assert header_text(headers, ERROR) == "boom happened"
    assert source_of(headers) == ("orders_dlq", 2, 41)  # a later replay knows this dead letter was replayed
