"""The handoff repository on PostgreSQL: one handoff state for every process, so a Slack
thread reply that lands on one process finds the handoff another process opened.

Every transition is one conditional statement (compare-and-set): the partial unique
index allows one open handoff per conversation, `take` only moves `handed_off`,
`resolve` only an open one, a rating is kept once, the hours notice is claimed once a
day per conversation."""
from __future__ import annotations

import time
from typing import Any

from ..handoffs import HANDOFF_COLUMNS, Handoff
from .database import DatabaseDown, PgDatabase, clean

__all__ = ["PgHandoffs"]

_COLS = ", ".join(HANDOFF_COLUMNS)
_SELECT = f"SELECT {_COLS} FROM handoffs"
_OPEN = "state <> 'resolved'"


def _handoff(row: Any) -> Handoff | None:
    return Handoff(*row) if row is not None else None


class PgHandoffs:
    """`HandoffRepository` over a `PgDatabase` (see bot/storage/handoffs.py)."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def astart(self) -> None:
        await self.db.start()

    async def _one(self, sql: str, *args: Any) -> Handoff | None:
        async with self.db.connection() as conn:
            return _handoff(await conn.fetchrow(sql, *(clean(a) for a in args)))

    async def _val(self, sql: str, *args: Any) -> Any:
        async with self.db.connection() as conn:
            return await conn.fetchval(sql, *(clean(a) for a in args))

    # -- reads ------------------------------------------------------------------------
    async def get(self, handoff_id: int) -> Handoff | None:
        return await self._one(f"{_SELECT} WHERE id = $1", handoff_id)

    async def active(self, platform: str, conversation_id: str) -> Handoff | None:
        """On the reply path (the handoff gate asks it for every message): bounded, and
        an unreachable database reads as "no open handoff" (logged once per outage by
        the database), so the bot answers rather than holding the reply."""
        try:
            row = await self.db.reply_path("open-handoff lookup", lambda conn: conn.fetchrow(
                f"{_SELECT} WHERE platform = $1 AND conversation_id = $2 AND {_OPEN}", platform, conversation_id))
        except DatabaseDown:
            return None
        return _handoff(row)

    async def _active(self, platform: str, conversation_id: str) -> Handoff | None:
        return await self._one(f"{_SELECT} WHERE platform = $1 AND conversation_id = $2 AND {_OPEN}",
                               platform, conversation_id)

    async def by_thread(self, channel: str, thread_ts: str) -> Handoff | None:
        return await self._one(f"{_SELECT} WHERE channel = $1 AND thread_ts = $2 ORDER BY id DESC LIMIT 1",
                               channel, thread_ts)

    async def open_handoffs(self) -> list[Handoff]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(f"{_SELECT} WHERE {_OPEN} ORDER BY opened_at, id")
        return [Handoff(*r) for r in rows]

    async def count_since(self, since: float) -> dict[str, int]:
        async with self.db.connection() as conn:
            r = await conn.fetchrow(
                "SELECT (SELECT COUNT(*) FROM handoffs WHERE opened_at >= $1),"
                " (SELECT COUNT(*) FROM handoffs WHERE resolved_at >= $1),"
                " (SELECT COUNT(*) FROM handoffs WHERE rated_at >= $1),"
                " (SELECT COALESCE(AVG(rating), 0) FROM handoffs WHERE rated_at >= $1),"
                f" (SELECT COUNT(*) FROM handoffs WHERE {_OPEN})", since)
        opened, resolved, ratings, avg, open_now = r
        return {"opened": opened, "resolved": resolved, "ratings": ratings,
                "rating_avg_x100": int(round(float(avg) * 100)), "open": open_now}

    # -- state changes --------------------------------------------------------------------
    async def open(self, platform: str, conversation_id: str, *, user_id: str = "",
                   user_name: str | None = None, reason: str = "",
                   now: float | None = None) -> tuple[Handoff, bool]:
        now = time.time() if now is None else now
        while True:
            created = await self._val(
                "INSERT INTO handoffs (platform, conversation_id, user_id, user_name, state, reason, opened_at)"
                " VALUES ($1, $2, $3, $4, 'handed_off', $5, $6)"
                f" ON CONFLICT (platform, conversation_id) WHERE {_OPEN} DO NOTHING RETURNING id",
                platform, conversation_id, user_id, user_name, reason, now)
            handoff = await self._active(platform, conversation_id)
            if handoff is not None:
                return handoff, created is not None and handoff.id == created
            # Resolved by someone else in between: open again.

    async def set_thread(self, handoff_id: int, channel: str, thread_ts: str) -> None:
        await self._val("UPDATE handoffs SET channel = $1, thread_ts = $2 WHERE id = $3",
                        channel, thread_ts, handoff_id)

    async def take(self, handoff_id: int, staff: str, now: float | None = None) -> tuple[Handoff | None, bool]:
        now = time.time() if now is None else now
        changed = await self._val("UPDATE handoffs SET state = 'taken', taken_by = $1, taken_at = $2"
                                  " WHERE id = $3 AND state = 'handed_off' RETURNING id", staff, now, handoff_id)
        return await self.get(handoff_id), changed is not None

    async def resolve(self, handoff_id: int, staff: str, now: float | None = None) -> tuple[Handoff | None, bool]:
        now = time.time() if now is None else now
        changed = await self._val("UPDATE handoffs SET state = 'resolved', resolved_by = $1, resolved_at = $2"
                                  f" WHERE id = $3 AND {_OPEN} RETURNING id", staff, now, handoff_id)
        return await self.get(handoff_id), changed is not None

    async def rate(self, platform: str, conversation_id: str, rating: int,
                   now: float | None = None) -> Handoff | None:
        now = time.time() if now is None else now
        return await self._one(
            "UPDATE handoffs SET rating = $1, rated_at = $2 WHERE id = (SELECT id FROM handoffs"
            " WHERE platform = $3 AND conversation_id = $4 ORDER BY id DESC LIMIT 1)"
            f" AND state = 'resolved' AND rating IS NULL RETURNING {_COLS}",
            rating, now, platform, conversation_id)

    # -- per-conversation flags -----------------------------------------------------------
    async def template_streak(self, platform: str, conversation_id: str, template_answered: bool) -> int:
        """Counted for every reply, so on the reply path: bounded, and while the database
        is unreachable the streak is not counted (0: no automatic handoff from it)."""
        args = (clean(platform), clean(conversation_id))
        try:
            if not template_answered:
                await self.db.reply_path("template streak", lambda conn: conn.execute(
                    "UPDATE conversation_flags SET template_streak = 0"
                    " WHERE platform = $1 AND conversation_id = $2 AND template_streak <> 0", *args))
                return 0
            return int(await self.db.reply_path("template streak", lambda conn: conn.fetchval(
                "INSERT INTO conversation_flags (platform, conversation_id, template_streak) VALUES ($1, $2, 1)"
                " ON CONFLICT (platform, conversation_id)"
                " DO UPDATE SET template_streak = conversation_flags.template_streak + 1"
                " RETURNING template_streak", *args)))
        except DatabaseDown:
            return 0

    async def reset_streak(self, platform: str, conversation_id: str) -> None:
        await self.template_streak(platform, conversation_id, False)

    async def claim_hours_notice(self, platform: str, conversation_id: str, day: str) -> bool:
        claimed = await self._val(
            "INSERT INTO conversation_flags (platform, conversation_id, hours_notice_day) VALUES ($1, $2, $3)"
            " ON CONFLICT (platform, conversation_id) DO UPDATE SET hours_notice_day = EXCLUDED.hours_notice_day"
            " WHERE conversation_flags.hours_notice_day IS DISTINCT FROM EXCLUDED.hours_notice_day"
            " RETURNING 1", platform, conversation_id, day)
        return claimed is not None

    async def aclose(self) -> None:
        """The pool belongs to the `PgDatabase` (closed last, with the bot's resources)."""
