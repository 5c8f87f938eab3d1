import logging

import pytest

from pipeline.config import parse_properties
from pipeline.errors import ConfigError
from pipeline.logs import EventLog
from pipeline.offsets import OffsetTracker

P = ("orders", 0)


def test_commit_position_advances_only_contiguously():
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.track(P, offset)
    tracker.complete(P, 11)
    tracker.complete(P, 13)
    assert tracker.position(P) is None and tracker.pending(P) == 4
    tracker.complete(P, 10)
    assert tracker.position(P) == 12
    tracker.complete(P, 12)
    assert tracker.position(P) == 14
    assert tracker.pending() == 0


def test_records_done_at_once_wait_behind_open_ones():
    tracker = OffsetTracker()
    tracker.start(P, 5)
    tracker.done_at_once(P, 5)
    assert tracker.position(P) == 6
    tracker.track(P, 6)  # routed, waiting for its acknowledgement
    tracker.done_at_once(P, 7)
    assert tracker.position(P) == 6
    tracker.complete(P, 6)
    assert tracker.position(P) == 8 and tracker.pending(P) == 0


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
