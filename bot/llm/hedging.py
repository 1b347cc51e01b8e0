"""Hedged requests: if the provider in use has not answered by its own recent p95
latency, start the next healthy one in parallel and keep the first good answer.

Both parts are small on purpose: a latency window per provider/model, and a budget
that caps extra requests at a fraction of traffic (default 5 %), so a slow provider
cannot double the bill. Hedging applies to `answer()`; streamed replies are not hedged
(two live streams cannot both be shown to the customer append-only).
"""
from __future__ import annotations

from collections import deque

__all__ = ["LatencyWindow", "HedgeBudget"]


class LatencyWindow:
    """The last `size` successful latencies (seconds) of one provider/model."""

    __slots__ = ("_values",)

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def __len__(self) -> int:
        return len(self._values)

    def quantile(self, q: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class HedgeBudget:
    """Allows a hedge only while hedges stay within `fraction` of all requests."""

    __slots__ = ("fraction", "requests", "hedges")

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.requests = 0
        self.hedges = 0

    def count_request(self) -> None:
        self.requests += 1

    def allows(self) -> bool:
        return self.hedges + 1 <= self.fraction * self.requests

    def try_spend(self) -> bool:
        if self.hedges + 1 > self.fraction * self.requests:
            return False
        self.hedges += 1
        return True
