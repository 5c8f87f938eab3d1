"""Exponential backoff with bounded jitter for retries.

The delay before attempt n+1 after the n-th failure is
``min(cap, base * factor**(n-1))`` stretched by a jitter of up to ``+jitter``
(never shortened, so a retry is never scheduled earlier than the plain schedule).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 4.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs base >= 0, cap >= 0, factor >= 1 and 0 <= jitter <= 1")

    def plain_delay_s(self, failures: int) -> float:
        """The delay without jitter after ``failures`` failed attempts (>= 1)."""
        exponent = max(0, failures - 1)
        try:
            delay = self.base_s * self.factor**exponent
        except OverflowError:
            delay = self.cap_s
        return min(self.cap_s, delay)

    def delay_s(self, failures: int) -> float:
        """The delay with jitter: in [plain, plain * (1 + jitter)]."""
        return self.plain_delay_s(failures) * (1 + self.jitter * self.rng.random())
