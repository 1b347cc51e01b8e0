"""How many updates to answer at once: as many as the event loop can keep up with.

Answering is mostly waiting on a provider, so a small fixed limit (it was 64) capped
throughput with CPU to spare; but with no limit, a process that is out of CPU slows
every answer in flight at once — each provider call then takes longer, may miss its
deadline and fall back, and "typing…"/drafts start firing for all of them, which costs
more CPU still. Updates beyond the limit wait in arrival order, untouched.

The limit follows the loop's lag (how late a timer fires: the time one loop iteration
takes): it grows while the limit is what holds work back and the loop is prompt, and
shrinks when the loop falls behind *while this process is using most of a core*. A loop
that lags because other processes have the CPU is not a reason to shrink (fewer answers
in flight would then leave the CPU we do get unused) nor to grow: the limit stays. While
the process is behind (`behind`: updates waiting, or a lagging loop) the adapter skips
the niceties that cost Bot API calls ("typing…", drafts). Measured under
bench/load_bench.py (BENCHMARKS.md, "Web server under load").
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from types import TracebackType

from bot.logs import kv

__all__ = ["AdaptiveSlots"]

log = logging.getLogger("tierbot.admission")


class AdaptiveSlots:
    """A FIFO semaphore whose size moves between `minimum` and `maximum` with loop lag.

    Without `start()` (no running monitor) it is a plain semaphore of `initial` slots."""

    def __init__(self, maximum: int, *, minimum: int = 32, initial: int = 64,
                 target_lag_s: float = 0.025, busy_share: float = 0.8, interval_s: float = 0.1) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        self.minimum = max(1, min(minimum, maximum))
        self.limit = max(self.minimum, min(initial, maximum))
        self.target_lag_s = target_lag_s
        self.busy_share = busy_share  # of one core: above it the lag is our own doing
        self.interval_s = interval_s
        self.in_use = 0
        self.lag_s = 0.0  # smoothed
        self.cpu_share = 0.0  # smoothed: this process's CPU time per second of wall time
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._monitor: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def behind(self) -> bool:
        """Updates are waiting for a slot, or the loop answers timers late."""
        return bool(self._waiters) or self.lag_s > self.target_lag_s

    # -- the semaphore ----------------------------------------------------------------
    async def acquire(self) -> None:
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # the slot was counted for us by _admit
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # admitted, then cancelled: hand it on
                self.release()
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:  # already dropped by _admit
                    pass
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiters and self.in_use < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_use += 1
                fut.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()

    # -- the limit --------------------------------------------------------------------
    def start(self) -> None:
        if self._monitor is None and self.minimum < self.maximum:
            self._monitor = asyncio.create_task(self._watch(), name="tierbot-admission")

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
            self._monitor = None

    def observe(self, lag_s: float, cpu_share: float = 1.0) -> None:
        """One sample of loop lag and CPU use: adjust the limit (additive increase,
        multiplicative decrease)."""
        self.lag_s = 0.7 * self.lag_s + 0.3 * max(0.0, lag_s)
        self.cpu_share = 0.7 * self.cpu_share + 0.3 * max(0.0, cpu_share)
        old = self.limit
        busy = self.cpu_share >= self.busy_share
        if self.lag_s > self.target_lag_s and busy:
            self.limit = max(self.minimum, int(self.limit * 0.8))
        elif self._waiters and self.in_use >= self.limit and self.lag_s < self.target_lag_s / 2:
            self.limit = min(self.maximum, self.limit + max(1, self.limit // 8))
            self._admit()
        if self.limit != old:
            log.debug(kv(admission="limit", limit=self.limit, lag_ms=round(self.lag_s * 1000, 1),
                         cpu=round(self.cpu_share, 2), in_use=self.in_use, waiting=len(self._waiters)))

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t, cpu = loop.time(), time.process_time()
            await asyncio.sleep(self.interval_s)
            wall = loop.time() - t
            self.observe(wall - self.interval_s, (time.process_time() - cpu) / wall)
