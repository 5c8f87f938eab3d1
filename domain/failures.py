"""Simulated processing failures, decided deterministically so a run can be reproduced.

The same (seed, orderId, attempt) always gives the same answer, in any process,
so a test can compute which orders were retried and which end in the DLQ.
"""

from __future__ import annotations

import zlib
from typing import Optional

from domain.errors import TransientProcessingError


def attempt_draw(order_id: str, attempt: int, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, orderId, attempt), the same in every process.

    The first attempt, drawn for every record, takes the seeded CRC-32 of the
    orderId as it is: uniform, and one C call. CRC-32 is linear, so a later
    attempt mixes the attempt number in with MurmurHash3's finalizer, which
    makes the attempts of one order independent of each other and of the first.
    """
    h = zlib.crc32(order_id.encode("utf-8", "replace"), seed & 0xFFFFFFFF)
    if attempt == 1:
        return h / 2**32
    h ^= (attempt * 0x9E3779B1) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h / 2**32


class FailureSimulator:
    """Which processing attempts fail; ``active`` is False when none ever does (the hot path asks it first)."""

    __slots__ = ("fail_rate", "fail_product", "seed", "active")

    def __init__(self, fail_rate: float = 0.1, fail_product: Optional[str] = None, seed: int = 0) -> None:
        self.fail_rate = fail_rate
        self.fail_product = fail_product or None  # an empty name is no product
        self.seed = seed
        self.active = fail_rate > 0 or self.fail_product is not None

    def check(self, order_id: str, product: str, attempt: int) -> None:
        """Raise TransientProcessingError if this attempt is chosen to fail."""
        if product == self.fail_product:
            raise TransientProcessingError(f"simulated failure: product {product} always fails")
        if self.fail_rate and attempt_draw(order_id, attempt, self.seed) < self.fail_rate:
            raise TransientProcessingError(f"simulated transient failure (attempt {attempt})")
