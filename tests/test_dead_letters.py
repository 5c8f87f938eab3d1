import argparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avro_utils import avro_serialize
from domain.dead_letters import UNDECODABLE, Facts, ReplaySelection, describe_dead_letter, not_replayable, replayed_since
from dlq.dlq_consumer import time_ms
from domain.headers import DLQ_REASON, ERROR, ERROR_CLASS, REPLAYED_AT, VALUE_OMITTED, Failure, Origin, routed_headers


def test_a_dead_letter_reads_well():
    failure = Failure("validate", "ValidationError", "price is negative", "invalid order: price is negative")
    headers = routed_headers(None, retry_count=1, failure=failure, current=Origin("orders", 1, 7, 0),
                             now_ms=1_700_000_000_000, dlq_reason="invalid order")
    value = avro_serialize({"orderId": "o-9", "product": "Item2", "price": -5.0})
    line = describe_dead_letter("orders_dlq", 0, 3, b"o-9", value, headers).line()
    for part in ("orders_dlq[0]@3", "key=o-9", "'o-9'", "reason=invalid order", "stage=validate", "attempts=1",
                 "origin=orders[1]@7", "2023-11-14T22:13:20.000Z"):
        assert part in line


@given(st.one_of(st.none(), st.binary()), st.one_of(st.none(), st.binary()),
       st.lists(st.tuples(st.text(), st.one_of(st.none(), st.binary()))))
@settings(max_examples=500, deadline=None)
def test_any_bytes_and_headers_are_shown_without_raising(key, value, headers):
    letter = describe_dead_letter("orders_dlq", 0, 0, key, value, headers)
    assert letter.line()


def test_undecodable_value():
    assert describe_dead_letter("d", 0, 0, None, b"\xff", None).order == UNDECODABLE


def test_reason_filter():
    headers = [(DLQ_REASON, b"invalid order"), (ERROR, b"price is negative")]

    def matches(reason_contains):
        return ReplaySelection(reason_contains=reason_contains).selects(None, headers, None)

    assert matches(None)
    assert matches("NEGATIVE")
    assert matches("invalid")
    assert not matches("exhausted")


def test_a_selection_reads_the_same_from_headers_and_from_kept_facts():
    headers = [(DLQ_REASON, b"invalid order"), (ERROR, b"price is negative"), (ERROR_CLASS, b"ValidationError")]
    facts = Facts.of(b"k", headers, 1_000)
    for selection in (ReplaySelection(error_class="validationerror"), ReplaySelection(key=b"k", since_ms=1_000),
                      ReplaySelection(until_ms=1_000), ReplaySelection(reason_contains="boom")):
        assert selection.selects(b"k", headers, 1_000) == selection.selects_facts(facts)


def test_a_replay_passes_over_what_it_sent_back_itself():
    started_ms = 1_700_000_000_000
    assert replayed_since([(REPLAYED_AT, b"%d" % (started_ms + 5))], started_ms)
    assert not replayed_since([(REPLAYED_AT, b"%d" % (started_ms - 5))], started_ms)  # an earlier replay's
    assert not replayed_since([(REPLAYED_AT, b"junk")], started_ms)
    assert not replayed_since(None, started_ms)


def test_a_replay_selection_needs_every_condition_it_names():
    headers = [(DLQ_REASON, b"retries exhausted"), (ERROR, b"boom"), (ERROR_CLASS, b"TransientProcessingError")]
    assert ReplaySelection().selects(None, None, None)
    assert ReplaySelection(error_class="transientprocessingerror", key=b"k", since_ms=100, until_ms=200).selects(
        b"k", headers, 150)
    assert not ReplaySelection(error_class="ValidationError").selects(b"k", headers, 150)
    assert not ReplaySelection(key=b"other").selects(b"k", headers, 150)
    assert not ReplaySelection(since_ms=151).selects(b"k", headers, 150)
    assert not ReplaySelection(until_ms=150).selects(b"k", headers, 150)
    assert not ReplaySelection(since_ms=1).selects(b"k", headers, None)
    assert not ReplaySelection(reason_contains="invalid").selects(b"k", headers, 150)


def test_a_stub_is_not_replayable():
    assert not_replayable([(VALUE_OMITTED, b"500000")]) is not None
    assert not_replayable([(DLQ_REASON, b"invalid order")]) is None


def test_replay_times_read_iso_8601_or_epoch_ms():
    assert time_ms("1700000000000") == 1_700_000_000_000
    assert time_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert time_ms("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC unless it says otherwise
    with pytest.raises(argparse.ArgumentTypeError):
        time_ms("yesterday")
