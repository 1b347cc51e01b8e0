"""One SQLite file (WAL, fsync'd commits) shared by the inbox and the outbox.

Why one file: handing a reply to the outbox and marking its update answered must be a
single transaction, or a crash between the two would answer a customer twice or never.
Why a single worker thread: sqlite3 connections are not async; one thread keeps every
statement off the event loop and serialises writers without lock contention.
"""
from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = ["DurableStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    key          TEXT PRIMARY KEY,          -- e.g. "telegram:123456" (platform + update id)
    body         TEXT NOT NULL,             -- the update as received (JSON)
    received     REAL NOT NULL,
    state        TEXT NOT NULL,             -- pending | done | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  REAL NOT NULL DEFAULT 0,   -- a worker owns it until then
    done_at      REAL
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox(state, lease_until);
CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    platform     TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    method       TEXT NOT NULL,             -- e.g. "sendMessage"
    payload      TEXT NOT NULL,             -- JSON parameters of the call
    created      REAL NOT NULL,
    origin       REAL,                      -- when the message being answered arrived
    state        TEXT NOT NULL,             -- pending | failed   (sent rows are deleted)
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL DEFAULT 0,
    lease_until  REAL NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS outbox_chat ON outbox(state, platform, chat_id, id);
"""


class DurableStore:
    """Owns the connection and the one thread every statement runs on."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierbot-durable")
        self._db: sqlite3.Connection | None = None
        self._pool.submit(self._open).result()

    @classmethod
    def in_dir(cls, data_dir: Path, name: str = "messages.db") -> "DurableStore":
        return cls(Path(data_dir) / name)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsync'd, so "recorded" means "survives a power cut".
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(_SCHEMA)
        self._db = db

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise RuntimeError("durable store is closed")
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in one transaction on the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._tx, fn)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._pool.submit(self._tx, fn).result()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read for tests and tools (blocking)."""
        return self._pool.submit(lambda: self._db.execute(sql, params).fetchall()).result()  # type: ignore[union-attr]

    def close(self) -> None:
        if self._db is None:
            return

        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)
