"""Interfaces of the shared live state (REDIS_URL): what the rate-limit gate and the budget
need from a store that every process sees. `bot.storage.redis` implements them; without
REDIS_URL the gate and the budget keep their state in the process (no store at all).

Every method answers None when the store is lost: the caller then decides per process,
so a lost store never costs a customer an answer."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = ["RateWindows", "SharedSpend", "OnceClaims", "BudgetStore"]


class RateWindows(Protocol):
    async def check(self, customer: str) -> str | None:
        """"ok", "notice" (first over the limit), "silent"; None: decide per process."""


class SharedSpend(Protocol):
    async def add(self, day: str, costs: Iterable[tuple[str, float]]) -> dict[str, float] | None:
        """Add this process's costs; every process's totals for the day."""

    async def totals(self, day: str) -> dict[str, float] | None: ...


class OnceClaims(Protocol):
    async def claim_alert(self, day: str, scope: str) -> bool | None:
        """True for exactly one caller per (day, scope)."""


class BudgetStore(SharedSpend, OnceClaims, Protocol):
    """What the budget needs: shared spend and its daily alert claimed once."""
