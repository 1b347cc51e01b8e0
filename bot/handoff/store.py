"""Durable handoff state (SQLite in TIERBOT_DATA_DIR), so a restart forgets nothing.

One row per handoff. A conversation is with the bot unless it has a row in state
`handed_off` or `taken`; a partial unique index makes "at most one open handoff per
conversation" a database fact, so two racing triggers cannot open two threads.
Per-conversation counters (template streak, last out-of-hours notice) live beside it.
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = ["Handoff", "HandoffStore", "OPEN_STATES"]

T = TypeVar("T")
OPEN_STATES = ("handed_off", "taken")

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


def _row(row: sqlite3.Row | None) -> Handoff | None:
    return Handoff(**dict(row)) if row is not None else None


class HandoffStore:
    """Small synchronous SQLite core, run off the event loop one call at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        self._closed = False

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._closed:
                    raise RuntimeError("handoff store is closed")
                return fn(self._conn)

        return await asyncio.to_thread(locked)

    # -- reads ------------------------------------------------------------------------
    async def get(self, handoff_id: int) -> Handoff | None:
        return await self._run(lambda c: _row(c.execute(
            "SELECT * FROM handoffs WHERE id = ?", (handoff_id,)).fetchone()))

    async def active(self, platform: str, conversation_id: str) -> Handoff | None:
        return await self._run(lambda c: _row(c.execute(
            "SELECT * FROM handoffs WHERE platform = ? AND conversation_id = ? AND state != 'resolved'",
            (platform, conversation_id)).fetchone()))

    async def by_thread(self, channel: str, thread_ts: str) -> Handoff | None:
        return await self._run(lambda c: _row(c.execute(
            "SELECT * FROM handoffs WHERE channel = ? AND thread_ts = ? ORDER BY id DESC LIMIT 1",
            (channel, thread_ts)).fetchone()))

    async def open_handoffs(self) -> list[Handoff]:
        return await self._run(lambda c: [_row(r) for r in c.execute(  # type: ignore[misc]
            "SELECT * FROM handoffs WHERE state != 'resolved' ORDER BY opened_at").fetchall()])

    async def count_since(self, since: float) -> dict[str, int]:
        """Handoffs opened / resolved and ratings given since a time (for `/tierbot stats`)."""
        def q(c: sqlite3.Connection) -> dict[str, int]:
            opened = c.execute("SELECT COUNT(*) FROM handoffs WHERE opened_at >= ?", (since,)).fetchone()[0]
            resolved = c.execute("SELECT COUNT(*) FROM handoffs WHERE resolved_at >= ?", (since,)).fetchone()[0]
            rated = c.execute("SELECT COUNT(*), COALESCE(AVG(rating), 0) FROM handoffs WHERE rated_at >= ?",
                              (since,)).fetchone()
            open_now = c.execute("SELECT COUNT(*) FROM handoffs WHERE state != 'resolved'").fetchone()[0]
            return {"opened": opened, "resolved": resolved, "ratings": rated[0],
                    "rating_avg_x100": int(round(rated[1] * 100)), "open": open_now}

        return await self._run(q)

    # -- state changes --------------------------------------------------------------------
    async def open(self, platform: str, conversation_id: str, *, user_id: str = "",
                   user_name: str | None = None, reason: str = "",
                   now: float | None = None) -> tuple[Handoff, bool]:
        """Open a handoff, or return the one already open. The bool says "newly opened"."""
        now = time.time() if now is None else now

        def q(c: sqlite3.Connection) -> tuple[Handoff, bool]:
            cur = c.execute(
                "INSERT OR IGNORE INTO handoffs (platform, conversation_id, user_id, user_name, state,"
                " reason, opened_at) VALUES (?, ?, ?, ?, 'handed_off', ?, ?)",
                (platform, conversation_id, user_id, user_name, reason, now))
            row = c.execute("SELECT * FROM handoffs WHERE platform = ? AND conversation_id = ?"
                            " AND state != 'resolved'", (platform, conversation_id)).fetchone()
            return _row(row), cur.rowcount == 1  # type: ignore[return-value]

        return await self._run(q)

    async def set_thread(self, handoff_id: int, channel: str, thread_ts: str) -> None:
        await self._run(lambda c: c.execute(
            "UPDATE handoffs SET channel = ?, thread_ts = ? WHERE id = ?", (channel, thread_ts, handoff_id)))

    async def take(self, handoff_id: int, staff: str, now: float | None = None) -> tuple[Handoff | None, bool]:
        """handed_off → taken. Taking an already-taken or resolved handoff changes nothing."""
        now = time.time() if now is None else now
        return await self._transition(
            handoff_id,
            "UPDATE handoffs SET state = 'taken', taken_by = ?, taken_at = ? WHERE id = ? AND state = 'handed_off'",
            (staff, now, handoff_id))

    async def resolve(self, handoff_id: int, staff: str, now: float | None = None) -> tuple[Handoff | None, bool]:
        """Open → resolved (the bot answers again). Resolving twice changes nothing."""
        now = time.time() if now is None else now
        return await self._transition(
            handoff_id,
            "UPDATE handoffs SET state = 'resolved', resolved_by = ?, resolved_at = ?"
            " WHERE id = ? AND state != 'resolved'",
            (staff, now, handoff_id))

    async def rate(self, platform: str, conversation_id: str, rating: int,
                   now: float | None = None) -> Handoff | None:
        """Keep the customer's rating on their latest resolved, not-yet-rated handoff."""
        now = time.time() if now is None else now

        def q(c: sqlite3.Connection) -> Handoff | None:
            row = c.execute("SELECT * FROM handoffs WHERE platform = ? AND conversation_id = ?"
                            " ORDER BY id DESC LIMIT 1", (platform, conversation_id)).fetchone()
            if row is None or row["state"] != "resolved" or row["rating"] is not None:
                return None
            if c.execute("UPDATE handoffs SET rating = ?, rated_at = ? WHERE id = ? AND rating IS NULL",
                         (rating, now, row["id"])).rowcount != 1:
                return None  # another process recorded a rating in between
            return _row(c.execute("SELECT * FROM handoffs WHERE id = ?", (row["id"],)).fetchone())

        return await self._run(q)

    async def _transition(self, handoff_id: int, sql: str, args: tuple[Any, ...]) -> tuple[Handoff | None, bool]:
        def q(c: sqlite3.Connection) -> tuple[Handoff | None, bool]:
            changed = c.execute(sql, args).rowcount == 1
            return _row(c.execute("SELECT * FROM handoffs WHERE id = ?", (handoff_id,)).fetchone()), changed

        return await self._run(q)

    # -- per-conversation flags -----------------------------------------------------------
    async def template_streak(self, platform: str, conversation_id: str, template_answered: bool) -> int:
        """Count consecutive template-only answers; any other answer resets it to 0."""
        def q(c: sqlite3.Connection) -> int:
            if template_answered:
                c.execute("INSERT INTO conversation_flags (platform, conversation_id, template_streak)"
                          " VALUES (?, ?, 1) ON CONFLICT (platform, conversation_id)"
                          " DO UPDATE SET template_streak = template_streak + 1", (platform, conversation_id))
            else:
                c.execute("UPDATE conversation_flags SET template_streak = 0"
                          " WHERE platform = ? AND conversation_id = ?", (platform, conversation_id))
            row = c.execute("SELECT template_streak FROM conversation_flags"
                            " WHERE platform = ? AND conversation_id = ?", (platform, conversation_id)).fetchone()
            return row[0] if row else 0

        return await self._run(q)

    async def reset_streak(self, platform: str, conversation_id: str) -> None:
        await self.template_streak(platform, conversation_id, False)

    async def claim_hours_notice(self, platform: str, conversation_id: str, day: str) -> bool:
        """True once per conversation and (staff-local) day: whoever claims it sends the notice."""
        def q(c: sqlite3.Connection) -> bool:
            c.execute("INSERT OR IGNORE INTO conversation_flags (platform, conversation_id) VALUES (?, ?)",
                      (platform, conversation_id))
            return c.execute(
                "UPDATE conversation_flags SET hours_notice_day = ? WHERE platform = ? AND conversation_id = ?"
                " AND (hours_notice_day IS NULL OR hours_notice_day != ?)",
                (day, platform, conversation_id, day)).rowcount == 1

        return await self._run(q)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._conn.close()

        await asyncio.to_thread(close)
