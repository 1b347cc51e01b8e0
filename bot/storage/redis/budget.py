"""Budget spend and alerts in Redis, so a daily cap holds across processes.

Each process adds what its replies cost to one hash per day (HINCRBYFLOAT, atomic) and
reads the totals back — every process's spend — with the same round trip; between
replies it refreshes them at most every `refresh_s`. The alert for a cap is claimed
once per day with SET NX: whichever process claims it posts it, the others do not."""
from __future__ import annotations

from collections.abc import Iterable

from .shared import SharedState

__all__ = ["SharedBudget"]

DAY_TTL_S = 3 * 24 * 3600  # a day's totals are kept a little past the day


class SharedBudget:
    """`bot.storage.shared.SharedSpend` and `OnceClaims` (the daily alert) on Redis."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared

    def _spend_key(self, day: str) -> str:
        return self.shared.key("budget", day)

    async def add(self, day: str, costs: Iterable[tuple[str, float]]) -> dict[str, float] | None:
        """Add this process's costs; returns today's totals of every process (None: Redis lost)."""
        key = self._spend_key(day)
        costs = [(p, c) for p, c in costs if c]

        async def go(client) -> dict[str, float]:
            pipe = client.pipeline(transaction=True)
            for provider, cost in costs:
                pipe.hincrbyfloat(key, provider, cost)
            pipe.expire(key, DAY_TTL_S)
            pipe.hgetall(key)
            results = await pipe.execute()
            return _floats(results[-1])

        return await self.shared.run("budget", go)

    async def totals(self, day: str) -> dict[str, float] | None:
        key = self._spend_key(day)

        async def go(client) -> dict[str, float]:
            return _floats(await client.hgetall(key))

        return await self.shared.run("budget", go)

    async def claim_alert(self, day: str, scope: str) -> bool | None:
        """True for the one process that should send this cap's alert today; None: Redis lost."""
        key = self.shared.key("budget-alert", day, scope)

        async def go(client) -> bool:
            return bool(await client.set(key, "1", nx=True, ex=DAY_TTL_S))

        return await self.shared.run("budget alert", go)


def _floats(raw: dict) -> dict[str, float]:
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
