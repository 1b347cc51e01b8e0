"""A wall clock a test moves by hand, for the parts that take `clock=` (inbox, outbox,
Slack dedupe): leases run out and backoffs come due when the test says, not after a sleep."""
from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
