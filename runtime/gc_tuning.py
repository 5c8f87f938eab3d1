"""Garbage-collector settings for a loop that allocates a few objects per record and keeps none.

CPython starts a young-generation collection every 700 net allocations; at
high record rates that is hundreds of collections a second, each also
walking the objects they promote, while a record's objects (messages,
tuples, dicts) form no cycles and die by reference counting anyway. So
start-up's objects are frozen and collections come less often; cycles are
still collected, only in larger steps.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_for_streaming() -> None:
    """Call once, after start-up: start-up objects leave the collector's view, collections come 70x less often."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
