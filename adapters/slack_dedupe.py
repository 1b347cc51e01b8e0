"""Durable memory of Slack events taken in: a retry has no second effect, and an event
acked but not yet handled when the process died is handled after the restart.

Slack redelivers an event (same `event_id`, with `X-Slack-Retry-Num`) when it did not
see our ack in time, and slack-bolt does not deduplicate. The claim — with the event
body — is committed before the ack, and marked done once the work has finished, so:
- a retry (before or after a restart) finds the claim and is dropped;
- a claim still pending at start-up is work the last process acked but never finished.
Finished ids are pruned after a day (Slack retries within minutes).
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .durable import Clock

__all__ = ["SeenEvents"]

KEEP_S = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_events (
    event_id TEXT PRIMARY KEY,
    seen_at REAL NOT NULL,
    body TEXT,                 -- the event payload while its work is pending
    state TEXT NOT NULL        -- pending | done
);
CREATE INDEX IF NOT EXISTS seen_events_pending ON seen_events(state, seen_at);
"""


class SeenEvents:
    def __init__(self, path: Path | str, *, keep_s: float = KEEP_S, clock: Clock = time.time) -> None:
        self.clock = clock
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a claim must survive what the ack promised
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._keep_s = keep_s
        self._claims = 0
        self._closed = False

    def _run(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._lock:
            if self._closed:
                raise RuntimeError("seen-events store is closed")
            return self._conn.execute(sql, args)

    def _claim(self, event_id: str, body: str, now: float) -> bool:
        fresh = self._run("INSERT OR IGNORE INTO seen_events VALUES (?, ?, ?, 'pending')",
                          (event_id, now, body)).rowcount == 1
        self._claims += 1
        if self._claims % 500 == 0:
            self._run("DELETE FROM seen_events WHERE state = 'done' AND seen_at < ?", (now - self._keep_s,))
        return fresh

    async def claim(self, event_id: str, event: dict[str, Any] | None = None) -> bool:
        """True the first time an event id is seen (ever, across restarts); False after."""
        body = json.dumps(event) if event is not None else None
        return await asyncio.to_thread(self._claim, event_id, body, self.clock())  # type: ignore[arg-type]

    async def done(self, event_id: str) -> None:
        await asyncio.to_thread(self._run, "UPDATE seen_events SET state = 'done', body = NULL WHERE event_id = ?",
                                (event_id,))

    def _take_stale(self, older_than_s: float) -> list[tuple[str, dict[str, Any]]]:
        now = self.clock()
        rows = self._run("SELECT event_id, body FROM seen_events WHERE state = 'pending' AND seen_at < ?"
                         " ORDER BY seen_at", (now - older_than_s,)).fetchall()
        taken = []
        for event_id, body in rows:
            # Renewing seen_at is the lease: of two processes recovering at once, one wins.
            if body and self._run("UPDATE seen_events SET seen_at = ? WHERE event_id = ? AND state = 'pending'"
                                  " AND seen_at < ?", (now, event_id, now - older_than_s)).rowcount == 1:
                taken.append((event_id, json.loads(body)))
        return taken

    async def take_stale(self, older_than_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Events acked more than `older_than_s` ago and never finished (oldest first):
        work a process (this one before a restart, or a dead sibling) did not complete."""
        return await asyncio.to_thread(self._take_stale, older_than_s)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
