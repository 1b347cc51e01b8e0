"""Durable memory of Slack deliveries already taken in, so a retry has no second effect.

Slack redelivers an event (same `event_id`, with `X-Slack-Retry-Num`) when it did not
see our ack in time, and slack-bolt does not deduplicate. The claim is written to
SQLite before the work starts, so a restart between the first delivery and the retry
still recognises it. Old ids are pruned (Slack retries within minutes).
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["SeenEvents"]

KEEP_S = 24 * 3600


class SeenEvents:
    def __init__(self, path: Path | str, *, keep_s: float = KEEP_S) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS seen_events (event_id TEXT PRIMARY KEY, seen_at REAL NOT NULL)")
        self._lock = threading.Lock()
        self._keep_s = keep_s
        self._claims = 0
        self._closed = False

    def _claim(self, event_id: str, now: float) -> bool:
        with self._lock:
            if self._closed:
                raise RuntimeError("seen-events store is closed")
            fresh = self._conn.execute("INSERT OR IGNORE INTO seen_events VALUES (?, ?)",
                                       (event_id, now)).rowcount == 1
            self._claims += 1
            if self._claims % 500 == 0:
                self._conn.execute("DELETE FROM seen_events WHERE seen_at < ?", (now - self._keep_s,))
            return fresh

    async def claim(self, event_id: str) -> bool:
        """True the first time an event id is seen (ever, across restarts); False after."""
        return await asyncio.to_thread(self._claim, event_id, time.time())

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
