"""Per-partition state checkpointed in a compacted Kafka topic, the way Kafka Streams keeps changelogs.

One record per source partition, keyed ``group/topic/partition``, holding
the next offset to apply and everything needed to resume exactly there: the
consumer's own state of the partition and where to look for copies made
after the checkpoint. The latest record of a key wins.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from runtime.clients import Clients
from runtime.errors import PipelineError
from runtime.reading import partitions_of, read_to_end

log = logging.getLogger(__name__)

# A committed transaction's markers reach every partition within moments; past this a checkpoint is taken as it is.
MARKERS_WAIT_S = 10.0
STOP_WAIT_S = 5.0  # for a background read in progress; the thread is a daemon


def checkpoint_prefix(group: str, topic: str) -> str:
    return f"{group}/{topic}/"


def checkpoint_key(group: str, topic: str, partition: int) -> str:
    return f"{checkpoint_prefix(group, topic)}{partition}"


def partition_checkpoints(checkpoints: dict[str, "Checkpoint"], group: str, topic: str) -> dict[int, "Checkpoint"]:
    """One group's checkpoints of the partitions of ``topic``, by partition; other keys are ignored."""
    prefix = checkpoint_prefix(group, topic)
    return {
        int(key[len(prefix):]): checkpoint
        for key, checkpoint in checkpoints.items()
        if key.startswith(prefix) and key[len(prefix):].isdigit()
    }


def target_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


@dataclass
class Checkpoint:
    """Everything below ``next_offset`` is applied; copies made later lie at or after ``scan_from``.

    ``state`` is what the consumer keeps per partition (its role's snapshot),
    stored beside the two offsets as top-level JSON fields.
    """

    next_offset: int
    scan_from: dict[str, int] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({**self.state, "next_offset": self.next_offset, "scan_from": self.scan_from},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: Optional[bytes]) -> Optional["Checkpoint"]:
        """The checkpoint, or None for a tombstone or a record this code did not write."""
        if not payload:
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        next_offset, scan_from = data.pop("next_offset", None), data.pop("scan_from", {})
        if type(next_offset) is not int or next_offset < 0 or not isinstance(scan_from, dict):
            return None
        return cls(next_offset, scan_from, data)


class CheckpointStore:
    """Reads and writes checkpoints of one consumer group in the stats topic."""

    def __init__(self, clients: Clients, topic: str, group: str) -> None:
        self.clients = clients
        self.topic = topic
        self.group = group
        self._latest: dict[str, Checkpoint] = {}
        self._read_to: dict[tuple[str, int], int] = {}

    def load(self) -> dict[str, Checkpoint]:
        """The latest checkpoint of each key of this group, read to the end of the topic.

        The first load reads the (compacted) topic from its start; later ones go on from where the last ended.
        """
        prefix = f"{self.group}/"
        starts = {tp: self._read_to.get(tp, 0) for tp in partitions_of(self.clients, [self.topic])}
        for msg in read_to_end(self.clients, starts, on_end=self._read_to.__setitem__):
            key = (msg.key() or b"").decode("utf-8", "replace")
            if not key.startswith(prefix):
                continue
            checkpoint = Checkpoint.decode(msg.value())
            if checkpoint is None:
                self._latest.pop(key, None)
            else:
                self._latest[key] = checkpoint
        return dict(self._latest)

    def load_showing(self, committed: dict[tuple[str, int], int]) -> dict[str, Checkpoint]:
        """:meth:`load`, read again until each partition's checkpoint is at its ``committed`` offset (negative: none).

        With exactly-once, a previous owner's last transaction may still be
        committing when its partitions move (a stall, a broker failover): read
        before its markers, this topic shows the checkpoint before it, and the
        records it covered would be copied again. The group's committed
        offsets, fetched under read_committed once that transaction ended
        (KIP-447), say where each committed checkpoint is.
        """
        expected = {partition: offset for partition, offset in committed.items() if offset >= 0}
        deadline = time.monotonic() + MARKERS_WAIT_S
        while True:
            known = self.load()
            behind = [p for p, offset in expected.items()
                      if getattr(known.get(checkpoint_key(self.group, *p)), "next_offset", -1) < offset]
            if not behind or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # poll: the transaction's markers reach this topic moments after its offsets
        for topic, partition in behind:
            log.warning("%s[%d]: no checkpoint at the committed offset %d within %.0f s; resuming from the one shown",
                        topic, partition, expected[(topic, partition)], MARKERS_WAIT_S)
        return known

    def save(
        self, producer: Producer, topic: str, partition: int, checkpoint: Checkpoint,
        on_delivery: Optional[Callable[[Optional[KafkaError], Message], None]] = None,
    ) -> None:
        """Produce a checkpoint; offsets are committed only once it is acknowledged."""
        key = checkpoint_key(self.group, topic, partition).encode()
        if on_delivery is None:
            producer.produce(self.topic, key=key, value=checkpoint.encode())
        else:
            producer.produce(self.topic, key=key, value=checkpoint.encode(), on_delivery=on_delivery)


class CheckpointsInBackground:
    """A group's checkpoints as a thread of their own last read them, every ``every_s``.

    A read of the stats topic (a new reader, a fetch to its end) takes tens of milliseconds; inside the
    consumer's loop it held back every record that arrived meanwhile.
    """

    def __init__(self, store: CheckpointStore, every_s: float) -> None:
        self.store, self.every_s = store, every_s
        self.latest: dict[str, Checkpoint] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="checkpoints", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.latest = self.store.load()
            except (KafkaException, PipelineError) as exc:  # figures only: the next read tries again
                log.debug("The group's checkpoints not read (%s)", exc)
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_WAIT_S)
