"""Wait for a state, not for a guessed number of milliseconds.

`until` polls a predicate with a generous timeout: a loaded 2-core machine may take many
times longer than an idle one, and a test that waits for the state it needs costs nothing
extra when the machine is fast."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["until", "GENEROUS"]

GENEROUS = 60.0  # seconds; only a hang or a bug takes this long


async def until(predicate: Callable[[], object], timeout: float = GENEROUS, *, what: str = "",
                interval: float = 0.01) -> None:
    """Return as soon as `predicate()` is true; AssertionError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"not reached within {timeout} s: {what or predicate}")
        await asyncio.sleep(interval)
