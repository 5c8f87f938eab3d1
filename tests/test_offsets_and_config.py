import logging
import random

import pytest

from runtime.settings import parse_properties
from runtime.errors import ConfigError
from runtime.logs import EventLog
from runtime.offsets import OffsetTracker

P = ("orders", 0)


def test_commit_position_advances_only_contiguously():
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.track(P, offset)
    tracker.complete(P, 11)
    tracker.complete(P, 13)
    assert tracker.position(P) == 10 and tracker.pending(P) == 4
    tracker.complete(P, 10)
    assert tracker.position(P) == 12
    tracker.complete(P, 12)
    assert tracker.position(P) == 14
    assert tracker.pending() == 0


def test_records_consumed_wait_behind_open_ones():
    tracker = OffsetTracker()
    tracker.start(P, 5)
    tracker.consumed(P, 5)
    assert tracker.position(P) == 6
    tracker.track(P, 6)  # routed, waiting for its acknowledgement
    tracker.consumed(P, 7)
    assert tracker.position(P) == 6
    tracker.complete(P, 6)
    assert tracker.position(P) == 8 and tracker.pending(P) == 0


def test_commit_position_matches_a_naive_model_in_any_order_of_acknowledgements():
    rng = random.Random(7)
    for _ in range(200):
        tracker, done, consumed = OffsetTracker(), set(), []
        tracker.start(P, 100)
        unacked: list[int] = []
        for offset in range(100, 100 + rng.randrange(1, 60)):
            consumed.append(offset)
            if rng.random() < 0.3:
                tracker.track(P, offset)
                unacked.append(offset)
            else:
                tracker.consumed(P, offset)
                done.add(offset)
            while unacked and rng.random() < 0.4:
                acked = unacked.pop(rng.randrange(len(unacked)))
                tracker.complete(P, acked)
                done.add(acked)
            expected = next((o for o in consumed if o not in done), consumed[-1] + 1)
            assert tracker.position(P) == expected
            assert (tracker.pending(P) == 0) == (not unacked)


def test_forgotten_partitions_ignore_late_acknowledgements():
    tracker = OffsetTracker()
    tracker.track(P, 5)
    tracker.forget({P})
    tracker.complete(P, 5)
    assert tracker.position(P) is None


def test_properties_file_parsing():
    text = """
# comment
! another comment
bootstrap.servers=broker1:9092,broker2:9092
security.protocol = SASL_SSL
sasl.mechanisms: PLAIN
sasl.username=alice
sasl.password=s3cr=t
ssl.ca.location=/etc/ca.pem
long.value=a\\
  b
"""
    props = parse_properties(text)
    assert props == {
        "bootstrap.servers": "broker1:9092,broker2:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "alice",
        "sasl.password": "s3cr=t",
        "ssl.ca.location": "/etc/ca.pem",
        "long.value": "ab",
    }


def test_properties_line_without_separator_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"client.properties:2: expected key=value"):
        parse_properties("a=1\njunk\n", source="client.properties")


def test_event_log_limits_lines_and_summarizes(caplog):
    logger = logging.getLogger("test-events")
    events = EventLog(logger, lambda elapsed: "SUMMARY", max_lines_per_second=5, summary_interval_s=0)
    with caplog.at_level(logging.INFO, logger="test-events"):
        for i in range(50):
            events.event("event %d", i)
        events.tick()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:5] == [f"event {i}" for i in range(5)]
    assert messages[5] == "SUMMARY (45 event lines suppressed)"
    assert len(messages) == 6


def test_event_log_reopens_its_line_budget_each_second_at_tick(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("runtime.logs.time.monotonic", lambda: clock[0])
    logger = logging.getLogger("test-events-budget")
    events = EventLog(logger, lambda elapsed: "SUMMARY", max_lines_per_second=3, summary_interval_s=60)
    with caplog.at_level(logging.INFO, logger="test-events-budget"):
        for i in range(5):
            events.event("first %d", i)
        clock[0] += 0.5
        events.tick()
        events.event("still over budget")
        clock[0] += 0.6
        events.tick()
        for i in range(5):
            events.event("second %d", i)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["first 0", "first 1", "first 2", "second 0", "second 1", "second 2"]
