"""The retry consumer's figures, beside the work: its counts as Prometheus metrics, and its last line."""

from __future__ import annotations

import logging
from typing import Protocol, Sized

from confluent_kafka import Message

from app import metrics as figures
from app.settings import Topics
from domain.headers import REASON_EXHAUSTED
from runtime.metrics import CounterSync

log = logging.getLogger("retry-consumer")


class RetryCounts(Protocol):
    """What the figures read of the retry consumer's handler."""

    redriven: int
    dead_lettered: int
    schedule: Sized  # the records waiting
    lateness_ms: list[int]  # of re-drives not yet observed
    topics: Topics


class RetryFigures:
    """The runtime's :class:`runtime.loop.Observer` for the retry consumer: its counts as Prometheus metrics."""

    def __init__(self, handler: RetryCounts) -> None:
        self.handler = handler
        self._redriven = CounterSync(figures.REDRIVEN)
        self._exhausted = CounterSync(figures.DEAD_LETTERED.labels(reason=REASON_EXHAUSTED))
        self._waiting = 0  # as of the last loop: closing the consumer forgets the schedule

    def after_batch(self, records: list[Message], started: float) -> None:
        self._redriven.publish(self.handler.redriven)
        self._exhausted.publish(self.handler.dead_lettered)
        self._waiting = len(self.handler.schedule)
        figures.RETRY_WAITING.set(self._waiting)
        for lateness in self.handler.lateness_ms:
            figures.RETRY_LATENESS_SECONDS.observe(lateness / 1000)
        self.handler.lateness_ms.clear()

    def finish(self) -> None:
        log.info("This instance re-drove %d and dead-lettered %d; %d waiting record(s) stay in %s for the next run",
                 self.handler.redriven, self.handler.dead_lettered, self._waiting,
                 self.handler.topics.retry)
