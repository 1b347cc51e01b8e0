"""One time budget for the whole reply, shared by every tier and every attempt."""
from __future__ import annotations

import time
from typing import Callable

__all__ = ["Deadline"]


class Deadline:
    """A point in (monotonic) time by which the reply must be ready.

    Attempts ask `budget()` for how long they may run: never more than what is left,
    minus what later tiers (the templates) must keep for themselves.
    """

    __slots__ = ("_clock", "_end", "total")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError(f"deadline must be positive, got {seconds!r}")
        self._clock = clock
        self.total = float(seconds)
        self._end = clock() + self.total

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def budget(self, cap: float | None = None, reserve: float = 0.0) -> float:
        """Seconds an attempt may take: what is left minus `reserve`, at most `cap`; never negative."""
        left = self.remaining() - reserve
        if cap is not None:
            left = min(left, cap)
        return max(0.0, left)
