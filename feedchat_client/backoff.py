"""Exponential backoff with full jitter, for reconnecting streams.

``delay(attempt) = uniform(0, min(cap, base * 2**attempt))`` (the "full jitter" scheme):
clients that lost the same server at the same moment spread their reconnects instead of
stampeding the new owner together.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for consecutive failed attempts; :meth:`reset` after a success."""

    base: float = 0.2
    """Seconds: the upper bound of the first delay."""
    cap: float = 10.0
    """Seconds: no delay exceeds this."""
    rand: Callable[[float, float], float] = field(default=random.uniform, repr=False)
    """``uniform(a, b)``; tests pass a deterministic one."""
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt, and count this attempt."""
        bound = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self.rand(0.0, bound)

    def reset(self) -> None:
        self.attempt = 0
