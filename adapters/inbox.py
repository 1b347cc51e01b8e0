"""The durable inbox: an incoming update is on disk before anyone is told "got it".

The webhook answers 200 (and the polling offset moves) only after `record()` has
committed. Each update is claimed under a lease while it is being answered; one whose
process died mid-way is claimed again once the lease runs out, so it is answered after a
restart. The key is the platform's own update id, so a redelivered update is recognised
and answered once.
"""
from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass

from .durable import Clock, DurableStore

__all__ = ["Inbox", "InboxItem", "mark_done"]

MAX_ATTEMPTS = 5  # an update whose handling keeps crashing is parked as "failed", not retried forever


@dataclass(frozen=True, slots=True)
class InboxItem:
    key: str
    body: str
    attempts: int


def mark_done(db: sqlite3.Connection, key: str, now: float) -> None:
    """Mark an update answered, inside a caller's transaction (e.g. with its outbox rows)."""
    db.execute("UPDATE inbox SET state='done', done_at=?, lease_until=0 WHERE key=?", (now, key))


class Inbox:
    def __init__(self, store: DurableStore, *, lease_s: float = 60.0, owner: str | None = None,
                 clock: Clock = time.time) -> None:
        self.store = store
        self.lease_s = lease_s
        self.clock = clock
        # Leases carry their holder, so a process that waited too long to start on an update
        # sees that another one has taken it over (web + worker sharing a data dir).
        self.owner = owner or uuid.uuid4().hex

    async def record(self, key: str, body: str) -> bool:
        """Durably record an update and lease it to the caller. False if it was seen before."""
        def _insert(db: sqlite3.Connection) -> bool:
            now = self.clock()  # at commit: a write may wait in the store's queue under load
            cur = db.execute(
                "INSERT OR IGNORE INTO inbox(key, body, received, state, lease_until, owner) "
                "VALUES (?,?,?, 'pending', ?, ?)", (key, body, now, now + self.lease_s, self.owner))
            return cur.rowcount == 1

        return await self.store.run(_insert)

    async def claim_pending(self, limit: int = 100) -> list[InboxItem]:
        """Updates recorded but not answered whose lease has run out (e.g. after a crash)."""
        def _claim(db: sqlite3.Connection) -> list[InboxItem]:
            now = self.clock()
            rows = db.execute(
                "SELECT key, body, attempts FROM inbox WHERE state='pending' AND lease_until<=? "
                "ORDER BY received LIMIT ?", (now, limit)).fetchall()
            db.executemany("UPDATE inbox SET lease_until=?, owner=? WHERE key=?",
                           [(now + self.lease_s, self.owner, r[0]) for r in rows])
            return [InboxItem(*r) for r in rows]

        return await self.store.run(_claim)

    async def take(self, key: str) -> bool:
        """Confirm (and renew) our lease just before answering. False when the update was
        answered meanwhile, or another process took it over after our lease ran out."""
        def _take(db: sqlite3.Connection) -> bool:
            now = self.clock()
            cur = db.execute("UPDATE inbox SET lease_until=?, owner=? WHERE key=? AND state='pending' "
                             "AND (owner=? OR owner IS NULL OR lease_until<=?)",
                             (now + self.lease_s, self.owner, key, self.owner, now))
            return cur.rowcount == 1

        return await self.store.run(_take)

    async def done(self, key: str) -> None:
        now = self.clock()
        await self.store.run(lambda db: mark_done(db, key, now))

    async def failed(self, key: str, *, retry_in: float = 5.0) -> bool:
        """Count a failed try; retried after `retry_in` s, parked after MAX_ATTEMPTS. True if parked."""
        retry_at = self.clock() + retry_in

        def _fail(db: sqlite3.Connection) -> bool:
            db.execute("UPDATE inbox SET attempts=attempts+1, lease_until=? WHERE key=?", (retry_at, key))
            db.execute("UPDATE inbox SET state='failed' WHERE key=? AND attempts>=?", (key, MAX_ATTEMPTS))
            row = db.execute("SELECT state FROM inbox WHERE key=?", (key,)).fetchone()
            return bool(row and row[0] == "failed")

        return await self.store.run(_fail)

    async def release(self, keys: list[str]) -> None:
        """Give leases back (graceful stop) so a restart picks the updates up at once."""
        await self.store.run(lambda db: db.executemany(
            "UPDATE inbox SET lease_until=0 WHERE key=? AND state='pending'", [(k,) for k in keys]))

    def counts(self) -> dict[str, int]:
        return dict(self.store.query("SELECT state, COUNT(*) FROM inbox GROUP BY state"))  # type: ignore[arg-type]
