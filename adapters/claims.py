"""Durable "do this once" claims, in the same SQLite file as the inbox and the outbox.

The inbox answers each *update* once; some effects must happen once across updates — a
"Did you mean…?" button pressed twice arrives as two updates (two callback query ids),
and must be answered once. The first update to claim the effect's key owns it; the same
update may claim it again (a retry after a crash before its answer was queued), any other
update is told no.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from .durable import DurableStore

__all__ = ["Claims"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS claims (
        key      TEXT PRIMARY KEY,   -- the effect, e.g. "telegram:pick:<chat>:<message>:<entry>"
        owner    TEXT NOT NULL,      -- who did it: the inbox key of the update
        created  REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS claims_created ON claims(created)",
)


class Claims:
    # A button on a message older than this may answer again: claims are not kept forever.
    KEEP_S = 30 * 86400.0

    def __init__(self, store: DurableStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._ready = False

    async def claim(self, key: str, owner: str) -> bool:
        """True when `owner` holds `key` (claimed now, or earlier by the same owner)."""
        now = self.clock()
        ready = self._ready

        def _claim(db: sqlite3.Connection) -> bool:
            if not ready:  # inside the store's transaction (executescript would commit it)
                for statement in _SCHEMA:
                    db.execute(statement)
            db.execute("DELETE FROM claims WHERE created < ?", (now - self.KEEP_S,))
            db.execute("INSERT OR IGNORE INTO claims(key, owner, created) VALUES (?,?,?)", (key, owner, now))
            row = db.execute("SELECT owner FROM claims WHERE key=?", (key,)).fetchone()
            return bool(row and row[0] == owner)

        held = await self.store.run(_claim)
        self._ready = True
        return held
