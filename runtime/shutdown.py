"""SIGINT and SIGTERM both ask the loop to stop; a second signal stops at once; the shutdown keeps to a deadline."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import Optional

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# The final flush and commit end within it, so that a stop fits Kubernetes' default grace period of 30 s.
SHUTDOWN_BUDGET_S = 20.0


class Deadline:
    """When a series of blocking calls must be over (a shutdown's); each call may block for what is left."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self, longest: float) -> float:
        """How long the next call may block: ``longest``, or what is left of the deadline if that is shorter."""
        return max(0.0, min(longest, self.at - time.monotonic()))


class StopFlag:
    """Set by SIGINT or SIGTERM; the loop checks it between batches (or waits) and then shuts down in order."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> "StopFlag":
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, _frame: Optional[FrameType]) -> None:
        if self.requested:
            log.warning("Second %s: exiting without a clean shutdown", signal.Signals(signum).name)
            os._exit(130)
        self.requested = True
        log.info("%s received: shutting down cleanly (send it again to exit at once)", signal.Signals(signum).name)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``signum`` to this process when the process that started it dies (even by kill -9)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
