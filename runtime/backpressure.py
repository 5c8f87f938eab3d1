"""Backpressure: while too many copies wait for acknowledgement, consume no more.

The copies in flight hold memory, and a broker that does not acknowledge them
(slow, or away) would let them grow without bound. Pausing the partitions,
rather than blocking, keeps the loop polling, so the member stays in its group.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, TopicPartition

from runtime.offsets import Partition
from runtime.routing import Copies

log = logging.getLogger(__name__)

WAIT_S = 0.05
BRIEF_WAIT_S = 5.0


class Backpressure:
    def __init__(self, consumer: Consumer, copies: Copies, max_in_flight: int) -> None:
        self.consumer = consumer
        self.copies = copies
        self.max_in_flight = max_in_flight
        self.paused = False

    def apply(self, owned: list[Partition], held: set[Partition]) -> None:
        """Pause ``owned`` while more than ``max_in_flight`` copies are in flight; resume once half are done.

        Copies briefly behind (a broker busy for a moment) are waited for, up to
        BRIEF_WAIT_S, far inside ``max.poll.interval.ms``. Longer (a slow or
        absent broker), every owned partition is paused, and the loop goes on
        polling (with no timeout while :attr:`paused`). ``held``: partitions
        the handler paused for its own reasons, left paused.
        """
        if len(self.copies) > self.max_in_flight and not self.paused:
            deadline = time.monotonic() + BRIEF_WAIT_S
            while len(self.copies) > self.max_in_flight // 2 and time.monotonic() < deadline:
                self.copies.poll(WAIT_S)
        in_flight = len(self.copies)
        if in_flight > self.max_in_flight:
            # Again on each loop: partitions assigned meanwhile too.
            self.consumer.pause([TopicPartition(topic, partition) for topic, partition in owned])
            if not self.paused:
                log.warning("Paused consumption: %d copies wait for acknowledgement", in_flight)
            self.paused = True
            self.copies.poll(WAIT_S)
        elif self.paused and in_flight <= self.max_in_flight // 2:
            self.consumer.resume([TopicPartition(*p) for p in owned if p not in held])
            self.paused = False
            log.info("Resumed consumption: %d copies in flight", in_flight)
