"""SIGINT and SIGTERM both ask the loop to stop; a second signal stops at once."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Optional

log = logging.getLogger(__name__)


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
