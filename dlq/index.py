"""The console's index of dead letters: a few facts per dead letter, kept in memory and tailed from Kafka.

Pages and filters are answered from it, so no request reads the topic: one
background thread reads the DLQ once from its beginning and then only what is
new, and the re-drive topic beside it to know which dead letters were
replayed. An entry is about 300 bytes (100,000 dead letters: ~30 MB), kept in
the order of the time each was dead-lettered; a page finds its cursor by
bisection and walks on, newest first, until it has ``limit`` matches.
Only the one dead letter a detail view shows is fetched from the topic.
"""

from __future__ import annotations

import bisect
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Optional

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from app.settings import Topics
from domain.dead_letters import Facts, ReplaySelection
from domain.headers import REPLAYED_AT, get_retry_count, header_int, origin_of
from runtime.clients import Clients
from runtime.errors import PipelineError
from runtime.provenance import source_of
from runtime.reading import next_batch, partitions_of

log = logging.getLogger("dlq-console")

DeadLetterId = tuple[int, int]  # (partition, offset) in the DLQ
FETCH_TIMEOUT_S = 10.0
RETRY_INTERVAL_S = 2.0


@dataclass(frozen=True)
class Entry:
    partition: int
    offset: int
    facts: Facts
    attempts: int
    origin: str  # topic[partition]@offset of the original record, or "?"
    came_back: bool  # itself a replayed record that failed again


Cursor = tuple[int, int, int]  # (time, partition, offset) of the last dead letter a page showed


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    cursor: Optional[Cursor]  # where the next page starts, None after the last


def sort_key(entry: Entry) -> Cursor:
    return entry.facts.timestamp_ms or 0, entry.partition, entry.offset


class DeadLetterIndex:
    """Every dead letter's facts, ordered by the time they were dead-lettered, and which were replayed; thread-safe."""

    def __init__(self, clients: Clients, topics: Topics) -> None:
        self.clients = clients
        self.topics = topics
        self._keys: list[Cursor] = []  # sorted; _entries in the same order
        self._entries: list[Entry] = []
        self._by_id: dict[DeadLetterId, Entry] = {}
        self._replayed: set[DeadLetterId] = set()
        self._next: dict[tuple[str, int], int] = {}  # where reading resumes after a fault
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, name="dead-letter-index", daemon=True)
        self.caught_up = threading.Event()  # set once the topics were read to their ends at least once

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def __len__(self) -> int:
        return len(self._entries)

    def page(self, selection: ReplaySelection, limit: int, cursor: Optional[Cursor] = None) -> Page:
        """Up to ``limit`` matching entries, newest first, after ``cursor`` (the previous page's)."""
        with self._lock:
            position = len(self._entries) if cursor is None else bisect.bisect_left(self._keys, cursor)
            found: list[Entry] = []
            while position > 0 and len(found) < limit:
                position -= 1
                if selection.selects_facts(self._entries[position].facts):
                    found.append(self._entries[position])
            more = len(found) == limit and any(
                selection.selects_facts(self._entries[earlier].facts) for earlier in range(position - 1, -1, -1))
            return Page(found, sort_key(found[-1]) if more else None)

    def get(self, dead_letter: DeadLetterId) -> Optional[Entry]:
        with self._lock:
            return self._by_id.get(dead_letter)

    def replayed(self, entry: Entry) -> bool:
        """Sent back by a replay before, or itself a replayed record that failed again (as the replay decides)."""
        return entry.came_back or (entry.partition, entry.offset) in self._replayed

    def fetch(self, dead_letter: DeadLetterId) -> Optional[Message]:
        """The dead letter's record, read from the DLQ (the index keeps only its facts)."""
        if self.get(dead_letter) is None:
            return None
        partition, offset = dead_letter
        consumer = self.clients.consumer({}, {"group.id": f"orders-console-{uuid.uuid4().hex[:8]}",
                                             "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(self.topics.dlq, partition, offset)])
            msg = consumer.poll(FETCH_TIMEOUT_S)
            return msg if msg is not None and msg.error() is None and msg.offset() == offset else None
        finally:
            consumer.close()

    def _tail(self) -> None:
        """Read on until stopped; a broker fault is one line, and reading resumes where it ended."""
        while not self._stop.is_set():
            try:
                self._read()
            except (KafkaException, PipelineError) as exc:
                log.warning("Could not read %s (%s); retrying", self.topics.dlq, exc)
                self._stop.wait(RETRY_INTERVAL_S)

    def _read(self) -> None:
        consumer = self.clients.consumer(
            {"fetch.wait.max.ms": 100},
            {"group.id": f"orders-console-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
             "enable.partition.eof": True},
        )
        partitions = partitions_of(self.clients, [self.topics.dlq, self.topics.redrive])
        unfinished = set(partitions)
        consumer.assign([TopicPartition(topic, partition, self._next.get((topic, partition), OFFSET_BEGINNING))
                         for topic, partition in partitions])
        try:
            while not self._stop.is_set():
                for msg in next_batch(consumer, 1000, 0.2):
                    error = msg.error()
                    if error is None:
                        self._take(msg)
                        self._next[(msg.topic(), msg.partition())] = msg.offset() + 1
                    elif error.code() == KafkaError._PARTITION_EOF:
                        unfinished.discard((msg.topic(), msg.partition()))
                        if not unfinished and not self.caught_up.is_set():
                            log.info("Indexed %d dead letter(s) of %s", len(self._entries), self.topics.dlq)
                            self.caught_up.set()
                    else:
                        log.warning("While reading %s[%d]: %s", msg.topic(), msg.partition(), error.str())
        finally:
            consumer.close()

    def _take(self, msg: Message) -> None:
        headers = msg.headers()
        if msg.topic() == self.topics.redrive:
            source = source_of(headers)
            if source is not None and source[0] == self.topics.dlq:
                with self._lock:
                    self._replayed.add((source[1], source[2]))
            return
        timestamp_type, timestamp = msg.timestamp()
        origin = origin_of(headers)
        entry = Entry(msg.partition(), msg.offset(), Facts.of(msg.key(), headers, timestamp if timestamp_type else None),
                      get_retry_count(headers), f"{origin.topic}[{origin.partition}]@{origin.offset}" if origin else "?",
                      header_int(headers, REPLAYED_AT) is not None)
        key = sort_key(entry)
        with self._lock:
            position = bisect.bisect(self._keys, key)  # at the end, but for partitions read behind the others
            self._keys.insert(position, key)
            self._entries.insert(position, entry)
            self._by_id[(entry.partition, entry.offset)] = entry
