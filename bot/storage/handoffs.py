"""The handoff repository's interface and its record.

Every state change is a compare-and-set in the store itself (`take` only from
`handed_off`, `resolve` only while open, a rating only once, at most one open handoff
per conversation), so two processes racing on one handoff cannot both win."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

__all__ = ["Handoff", "HandoffRepository", "OPEN_STATES", "HANDOFF_COLUMNS"]

OPEN_STATES = ("handed_off", "taken")


@dataclass(frozen=True, slots=True)
class Handoff:
    id: int
    platform: str
    conversation_id: str
    user_id: str
    user_name: str | None
    state: str  # handed_off | taken | resolved
    reason: str
    channel: str | None
    thread_ts: str | None
    taken_by: str | None
    resolved_by: str | None
    opened_at: float
    taken_at: float | None
    resolved_at: float | None
    rating: int | None
    rated_at: float | None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def customer(self) -> str:
        return self.user_name or self.user_id or self.conversation_id


HANDOFF_COLUMNS = tuple(f.name for f in fields(Handoff))


class HandoffRepository(Protocol):
    async def get(self, handoff_id: int) -> Handoff | None: ...

    async def active(self, platform: str, conversation_id: str) -> Handoff | None: ...

    async def by_thread(self, channel: str, thread_ts: str) -> Handoff | None: ...

    async def open_handoffs(self) -> list[Handoff]: ...

    async def count_since(self, since: float) -> dict[str, int]: ...

    async def open(self, platform: str, conversation_id: str, *, user_id: str = "",
                   user_name: str | None = None, reason: str = "",
                   now: float | None = None) -> tuple[Handoff, bool]:
        """Open one, or return the one already open; the bool says "newly opened"."""

    async def set_thread(self, handoff_id: int, channel: str, thread_ts: str) -> None: ...

    async def take(self, handoff_id: int, staff: str, now: float | None = None) -> tuple[Handoff | None, bool]: ...

    async def resolve(self, handoff_id: int, staff: str,
                      now: float | None = None) -> tuple[Handoff | None, bool]: ...

    async def rate(self, platform: str, conversation_id: str, rating: int,
                   now: float | None = None) -> Handoff | None: ...

    async def template_streak(self, platform: str, conversation_id: str, template_answered: bool) -> int: ...

    async def reset_streak(self, platform: str, conversation_id: str) -> None: ...

    async def claim_hours_notice(self, platform: str, conversation_id: str, day: str) -> bool:
        """True once per conversation and day: whoever claims it sends the notice."""

    async def aclose(self) -> None: ...
