"""The ledger's interface: what the pipeline, the history, the budget and the report
schedule need from wherever replies are recorded. `bot.storage.sqlite.ledger.Ledger`
(embedded) and `bot.storage.postgres.ledger.PgLedger` (server) implement it."""
from __future__ import annotations

from typing import Any, Protocol

from ..models import Event, Reply
from ..turn import TurnContext

__all__ = ["LedgerSink", "ReportRuns"]


class LedgerSink(Protocol):
    clock: Any

    # -- writing: queued, never waits for the disk or the network ------------------------
    def record_reply(self, event: Event, reply: Reply, turn: TurnContext | None = None) -> None:
        """Queue one handled message with all its attempts (committed together)."""

    async def record_event(self, kind: str, conversation_id: str = "", data: dict | None = None,
                           ts: float | None = None) -> None:
        """A non-reply event (handoff_opened, rating, budget_alert, ...). ValueError on bad input."""

    def append_turn(self, conversation_id: str, role: str, text: str, ts: float) -> None: ...

    def has_pending_turns(self, conversation_id: str) -> bool: ...

    async def recent_turns(self, conversation_id: str, limit: int) -> list[tuple[str, str, float]]:
        """(role, text, ts) of the latest turns, oldest first, including queued ones."""

    # -- barriers --------------------------------------------------------------------------
    async def committed(self) -> None:
        """Returns once every write queued before it is durable (the commit barrier)."""

    async def flush(self) -> None:
        """Like `committed`, but asks for the commit now."""

    # -- reading ---------------------------------------------------------------------------
    async def spend_between(self, start: float, end: float) -> dict[str, float]:
        """Known spend per provider in [start, end) (unknown prices not counted)."""

    async def events_between(self, kind: str, start: float, end: float) -> list[tuple[float, dict]]:
        """(ts, data) of the events of one kind in [start, end), oldest first."""

    async def aclose(self) -> None: ...


class ReportRuns(Protocol):
    """Once-only claims of a daily report date, shared by every process of one install."""

    async def claim_report(self, day: str, now: float) -> str:
        """"first start" (nothing was ever claimed: `day` is recorded, nothing to post),
        "done" (this or a later day is claimed already) or "claimed" (post it)."""

    async def release_report(self, day: str) -> None:
        """A post failed: give the claim back so it is tried again."""

    async def report_posted(self, day: str, now: float) -> None: ...
