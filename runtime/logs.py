"""Logging set-up shared by the scripts, and the rate-limited log of business events."""

from __future__ import annotations

import logging
import time
from typing import Callable

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, datefmt="%H:%M:%S")


class EventLog:
    """One readable line per business event at demo rates, periodic summaries at high rates.

    Up to ``max_lines_per_second`` event lines are written each second; beyond
    that they are counted, not formatted, and every ``summary_interval_s`` a
    summary line (from ``summarize``) says what happened meanwhile.
    """

    def __init__(
        self,
        logger: logging.Logger,
        summarize: Callable[[float], str],
        max_lines_per_second: int = 20,
        summary_interval_s: float = 5.0,
    ) -> None:
        self._logger = logger
        self._summarize = summarize
        self.max_lines_per_second = max_lines_per_second
        self._interval = summary_interval_s
        self._window_start = time.monotonic()
        self._lines_in_window = 0
        self._suppressed = 0
        self._last_summary = self._window_start

    def wants_line(self) -> bool:
        """Whether the next event gets its own line (then write it with :meth:`line`); if not, it is counted.

        Lets the hot path skip building a line's arguments at high rates. It
        reads no clock: :meth:`tick`, called once per loop, opens each second's budget.
        """
        if self._lines_in_window < self.max_lines_per_second:
            self._lines_in_window += 1
            return True
        self._suppressed += 1
        return False

    def lines_left(self) -> int:
        """Event lines this second may still write: 0 at high rates, when callers may skip offering them."""
        return self.max_lines_per_second - self._lines_in_window

    def count_unlogged(self, events: int) -> None:
        """Count events that were never offered a line, so that the summaries report them."""
        self._suppressed += events

    def line(self, message: str, *args: object, level: int = logging.INFO) -> None:
        """Write an event line that :meth:`wants_line` admitted."""
        self._logger.log(level, message, *args)

    def event(self, message: str, *args: object, level: int = logging.INFO) -> None:
        """Log one event line if the budget allows."""
        if self.wants_line():
            self._logger.log(level, message, *args)

    def tick(self, force: bool = False) -> None:
        """Call once per loop: opens a new second's line budget, and writes the summary
        if lines were suppressed and the interval passed (or ``force``)."""
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._lines_in_window = now, 0
        if (self._suppressed and now - self._last_summary >= self._interval) or force:
            elapsed = max(now - self._last_summary, 1e-9)
            suffix = f" ({self._suppressed} event lines suppressed)" if self._suppressed else ""
            self._logger.info("%s%s", self._summarize(elapsed), suffix)
            self._last_summary, self._suppressed = now, 0
