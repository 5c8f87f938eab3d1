"""The console's index: pages newest first, filters with the replay's selection, cursors that repeat nothing."""

from __future__ import annotations

from confluent_kafka import Message

from app.settings import Topics
from dlq.index import DeadLetterIndex
from domain.dead_letters import ReplaySelection
from domain.headers import DLQ_REASON, ERROR, ERROR_CLASS, REPLAYED_AT
from runtime.provenance import with_source

TOPICS = Topics()


def dead_letter(partition: int, offset: int, reason: bytes, replayed: bool = False) -> Message:
    headers = [(DLQ_REASON, reason), (ERROR, b"boom"), (ERROR_CLASS, b"ValidationError" if b"invalid" in reason else b"X")]
    if replayed:
        headers.append((REPLAYED_AT, b"1700000000000"))
    return Message(topic="orders_dlq", partition=partition, offset=offset, key=f"k{offset}".encode(), value=b"v",
                   headers=headers, timestamp=(1, 1_700_000_000_000 + offset))


def filled(count: int) -> DeadLetterIndex:
    index = DeadLetterIndex(None, TOPICS)  # type: ignore[arg-type]  # fed by hand: no broker
    for partition in range(3):  # one partition after the other, as a first read brings them
        for offset in range(partition, count, 3):
            index._take(dead_letter(partition, offset, b"invalid order" if offset % 10 == 0 else b"undecodable"))
    return index


def every_page(index: DeadLetterIndex, selection: ReplaySelection, limit: int) -> list[tuple[int, int]]:
    seen, cursor = [], None
    while True:
        page = index.page(selection, limit, cursor)
        seen += [(entry.partition, entry.offset) for entry in page.entries]
        if page.cursor is None:
            return seen
        assert page.entries, "a page with a cursor is never empty"
        cursor = page.cursor


def test_pages_cover_every_match_once_newest_first() -> None:
    index = filled(100_000)
    everything = every_page(index, ReplaySelection(), 997)
    assert [offset for _, offset in everything] == list(range(99_999, -1, -1)), "newest first, across partitions"
    invalid = every_page(index, ReplaySelection(error_class="validationerror"), 50)
    assert [offset for _, offset in invalid] == list(range(99_990, -1, -10))
    since = every_page(index, ReplaySelection(reason_contains="invalid", since_ms=1_700_000_099_000), 7)
    assert [offset for _, offset in since] == list(range(99_990, 98_999, -10))
    assert index.page(ReplaySelection(key=b"nobody"), 50).cursor is None


def test_replayed_means_sent_back_by_a_replay_or_itself_a_replay_that_failed_again() -> None:
    index = filled(5)
    index._take(dead_letter(1, 5, b"retries exhausted", replayed=True))
    redriven = Message(topic="orders_redrive", partition=0, offset=0, key=b"k3", value=b"v",
                       headers=with_source([], ("orders_dlq", 0, 3)), timestamp=(1, 0))
    index._take(redriven)
    replayed = {entry.offset for entry in index.page(ReplaySelection(), 50).entries if index.replayed(entry)}
    assert replayed == {3, 5}
    assert index.get((0, 3)) is not None and index.get((0, 99)) is None
