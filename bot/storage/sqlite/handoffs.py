"""Durable handoff state (SQLite in TIERBOT_DATA_DIR), so a restart forgets nothing.

One row per handoff. A conversation is with the bot unless it has a row in state
`handed_off` or `taken`; a partial unique index makes "at most one open handoff per
conversation" a database fact, so two racing triggers cannot open two threads.
Per-conversation counters (template streak, last out-of-hours notice) live beside it.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from ..handoffs import HANDOFF_COLUMNS, OPEN_STATES, Handoff
from .writer import SQLiteWriter

__all__ = ["Handoff", "HandoffStore", "OPEN_STATES"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoffs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    platform TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    user_name TEXT,
    state TEXT NOT NULL CHECK (state IN ('handed_off', 'taken', 'resolved')),
    reason TEXT NOT NULL DEFAULT '',
    channel TEXT,
    thread_ts TEXT,
    taken_by TEXT,
    resolved_by TEXT,
    opened_at REAL NOT NULL,
    taken_at REAL,
    resolved_at REAL,
    rating INTEGER,
    rated_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS handoffs_one_open
    ON handoffs (platform, conversation_id) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS handoffs_thread ON handoffs (channel, thread_ts);
CREATE TABLE IF NOT EXISTS conversation_flags (
    platform TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    template_streak INTEGER NOT NULL DEFAULT 0,
    hours_notice_day TEXT,
    PRIMARY KEY (platform, conversation_id)
);
"""


_COLS = ", ".join(HANDOFF_COLUMNS)
_SELECT = f"SELECT {_COLS} FROM handoffs"
_OPEN = "state != 'resolved'"
# Writes whose answer nobody needs: queued without a round trip, committed after a short linger.
_STATEMENTS = {
    "reset_streak": "UPDATE conversation_flags SET template_streak = 0"
                    " WHERE platform = ? AND conversation_id = ? AND template_streak != 0",
    "flags_row": "INSERT OR IGNORE INTO conversation_flags (platform, conversation_id) VALUES (?, ?)",
}
_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000")


def _row(rows: list[tuple]) -> Handoff | None:
    return Handoff(*rows[0]) if rows else None


class HandoffStore:
    """Handoff state in SQLite, written and read by a writer process (bot/storage/sqlite/writer.py):
    no thread of this process takes the GIL from the event loop for it, and the gate's
    per-message check is one small message to that process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None)  # the schema first, loudly
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()
        self._w = SQLiteWriter(self.path, pragmas=_PRAGMAS, statements=_STATEMENTS)

    async def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple]:
        """A read on the writer process's reader connection (sees every committed change)."""
        return await self._w.query(sql, args, ordered=False)

    async def _change(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple]:
        """One statement in the writer's transaction, answered once committed."""
        return await self._w.query(sql, args, ordered=True)

    # -- reads ------------------------------------------------------------------------
    async def get(self, handoff_id: int) -> Handoff | None:
        return _row(await self._read(f"{_SELECT} WHERE id = ?", (handoff_id,)))

    async def active(self, platform: str, conversation_id: str) -> Handoff | None:
        return _row(await self._read(f"{_SELECT} WHERE platform = ? AND conversation_id = ? AND {_OPEN}",
                                     (platform, conversation_id)))

    async def by_thread(self, channel: str, thread_ts: str) -> Handoff | None:
        return _row(await self._read(f"{_SELECT} WHERE channel = ? AND thread_ts = ? ORDER BY id DESC LIMIT 1",
                                     (channel, thread_ts)))

    async def open_handoffs(self) -> list[Handoff]:
        return [Handoff(*r) for r in await self._read(f"{_SELECT} WHERE {_OPEN} ORDER BY opened_at")]

    async def count_since(self, since: float) -> dict[str, int]:
        """Handoffs opened / resolved and ratings given since a time (for `/tierbot stats`)."""
        [(opened, resolved, ratings, avg, open_now)] = await self._read(
            "SELECT (SELECT COUNT(*) FROM handoffs WHERE opened_at >= ?),"
            " (SELECT COUNT(*) FROM handoffs WHERE resolved_at >= ?),"
            " (SELECT COUNT(*) FROM handoffs WHERE rated_at >= ?),"
            " (SELECT COALESCE(AVG(rating), 0) FROM handoffs WHERE rated_at >= ?),"
            f" (SELECT COUNT(*) FROM handoffs WHERE {_OPEN})", (since, since, since, since))
        return {"opened": opened, "resolved": resolved, "ratings": ratings,
                "rating_avg_x100": int(round(avg * 100)), "open": open_now}

    # -- state changes --------------------------------------------------------------------
    async def open(self, platform: str, conversation_id: str, *, user_id: str = "",
                   user_name: str | None = None, reason: str = "",
                   now: float | None = None) -> tuple[Handoff, bool]:
        """Open a handoff, or return the one already open. The bool says "newly opened"."""
        now = time.time() if now is None else now
        while True:
            # The partial unique index makes a second open one a no-op, racing or not.
            created = await self._change(
                "INSERT OR IGNORE INTO handoffs (platform, conversation_id, user_id, user_name, state,"
                " reason, opened_at) VALUES (?, ?, ?, ?, 'handed_off', ?, ?) RETURNING id",
                (platform, conversation_id, user_id, user_name, reason, now))
            handoff = await self.active(platform, conversation_id)
            if handoff is not None:
                return handoff, bool(created) and handoff.id == created[0][0]
            # Resolved by someone else in between: open again.

    async def set_thread(self, handoff_id: int, channel: str, thread_ts: str) -> None:
        await self._change("UPDATE handoffs SET channel = ?, thread_ts = ? WHERE id = ?",
                           (channel, thread_ts, handoff_id))

    async def take(self, handoff_id: int, staff: str, now: float | None = None) -> tuple[Handoff | None, bool]:
        """handed_off → taken. Taking an already-taken or resolved handoff changes nothing."""
        now = time.time() if now is None else now
        return await self._transition(
            handoff_id, "UPDATE handoffs SET state = 'taken', taken_by = ?, taken_at = ?"
            " WHERE id = ? AND state = 'handed_off'", (staff, now, handoff_id))

    async def resolve(self, handoff_id: int, staff: str, now: float | None = None) -> tuple[Handoff | None, bool]:
        """Open → resolved (the bot answers again). Resolving twice changes nothing."""
        now = time.time() if now is None else now
        return await self._transition(
            handoff_id, "UPDATE handoffs SET state = 'resolved', resolved_by = ?, resolved_at = ?"
            f" WHERE id = ? AND {_OPEN}", (staff, now, handoff_id))

    async def rate(self, platform: str, conversation_id: str, rating: int,
                   now: float | None = None) -> Handoff | None:
        """Keep the customer's rating on their latest handoff, if it is resolved and not yet rated."""
        now = time.time() if now is None else now
        return _row(await self._change(
            "UPDATE handoffs SET rating = ?, rated_at = ? WHERE id = (SELECT id FROM handoffs"
            " WHERE platform = ? AND conversation_id = ? ORDER BY id DESC LIMIT 1)"
            f" AND state = 'resolved' AND rating IS NULL RETURNING {_COLS}",
            (rating, now, platform, conversation_id)))

    async def _transition(self, handoff_id: int, sql: str, args: tuple[Any, ...]) -> tuple[Handoff | None, bool]:
        changed = bool(await self._change(sql + " RETURNING id", args))
        return await self.get(handoff_id), changed

    # -- per-conversation flags -----------------------------------------------------------
    async def template_streak(self, platform: str, conversation_id: str, template_answered: bool) -> int:
        """Count consecutive template-only answers; any other answer resets it to 0."""
        if not template_answered:  # most answers: queued, no round trip
            self._w.write("reset_streak", (platform, conversation_id))
            return 0
        [(streak,)] = await self._change(
            "INSERT INTO conversation_flags (platform, conversation_id, template_streak) VALUES (?, ?, 1)"
            " ON CONFLICT (platform, conversation_id) DO UPDATE SET template_streak = template_streak + 1"
            " RETURNING template_streak", (platform, conversation_id))
        return streak

    async def reset_streak(self, platform: str, conversation_id: str) -> None:
        await self.template_streak(platform, conversation_id, False)

    async def claim_hours_notice(self, platform: str, conversation_id: str, day: str) -> bool:
        """True once per conversation and (staff-local) day: whoever claims it sends the notice."""
        self._w.write("flags_row", (platform, conversation_id))  # ordered before the claim
        return bool(await self._change(
            "UPDATE conversation_flags SET hours_notice_day = ? WHERE platform = ? AND conversation_id = ?"
            " AND (hours_notice_day IS NULL OR hours_notice_day != ?) RETURNING 1",
            (day, platform, conversation_id, day)))

    async def aclose(self) -> None:
        await self._w.aclose()
