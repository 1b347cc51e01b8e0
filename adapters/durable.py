"""One SQLite file (WAL, fsync'd commits) shared by the inbox and the outbox.

Why one file: handing a reply to the outbox and marking its update answered must be a
single transaction, or a crash between the two would answer a customer twice or never.
Why a single worker thread: sqlite3 connections are not async; one thread keeps every
statement off the event loop and serialises writers without lock contention.
Why group commit: an fsync'd commit per operation made that thread the bottleneck under
load (about 3 ms per transaction once it had to win the GIL back from the event loop
each time; 200 updates/s needed more than one thread-second per second). Operations
queued meanwhile now share one transaction and one fsync, each inside its own SAVEPOINT
so one failing operation rolls back only itself; no caller is answered before the
commit that holds its write is on disk.
"""
from __future__ import annotations

import asyncio
import sqlite3
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = ["Clock", "DurableStore"]

T = TypeVar("T")

# Wall-clock seconds (`time.time` in production). The inbox, outbox and Slack dedupe take
# one as a parameter so their leases, backoffs and pauses can be driven by a test.
Clock = Callable[[], float]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    key          TEXT PRIMARY KEY,          -- e.g. "telegram:123456" (platform + update id)
    body         TEXT NOT NULL,             -- the update as received (JSON)
    received     REAL NOT NULL,
    state        TEXT NOT NULL,             -- pending | done | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  REAL NOT NULL DEFAULT 0,   -- a worker owns it until then
    done_at      REAL,
    owner        TEXT                       -- which process holds the lease
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

    MAX_BATCH = 512

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._queue: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], Any] | None] = queue.SimpleQueue()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self.commits = 0  # for benchmarks: how many fsync'd commits the operations needed
        self.operations = 0
        opened: Future[None] = Future()
        self._thread = threading.Thread(target=self._worker, args=(opened,), name="tierbot-durable", daemon=True)
        self._thread.start()
        opened.result()

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
        columns = {row[1] for row in db.execute("PRAGMA table_info(inbox)")}
        if "owner" not in columns:  # a data dir from before leases had owners
            db.execute("ALTER TABLE inbox ADD COLUMN owner TEXT")
        self._db = db

    # -- the store's thread ---------------------------------------------------------------
    def _worker(self, opened: Future[None]) -> None:
        try:
            self._open()
        except BaseException as e:
            opened.set_exception(e)
            return
        opened.set_result(None)
        while True:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            stop = False
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(batch)
            if stop:
                break
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run_batch(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Any]]) -> None:
        db = self._db
        assert db is not None
        outcomes: list[tuple[bool, Any]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for fn, _ in batch:
                db.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, fn(db)))
                    db.execute("RELEASE op")
                except Exception as e:
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    outcomes.append((False, e))
            db.execute("COMMIT")
            self.commits += 1
            self.operations += len(batch)
        except Exception as e:  # the commit itself failed (disk full, I/O error): nobody's write is kept
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            outcomes = [(False, e)] * len(batch)
        by_loop: dict[Any, list[tuple[Any, bool, Any]]] = {}
        for (_, waiter), (ok, value) in zip(batch, outcomes):
            if isinstance(waiter, Future):
                waiter.set_result(value) if ok else waiter.set_exception(value)
            else:
                loop, fut = waiter
                by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, items in by_loop.items():  # one wake-up per event loop per batch
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that loop is closed; nobody is waiting any more
                pass

    # -- callers ----------------------------------------------------------------------------
    def _submit(self, fn: Callable[[sqlite3.Connection], Any], waiter: Any) -> None:
        if self._closed:
            raise RuntimeError("durable store is closed")
        self._queue.put((fn, waiter))

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` atomically on the store's thread; returns once committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._submit(fn, (loop, fut))
        return await fut

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        waiter: Future[T] = Future()
        self._submit(fn, waiter)
        return waiter.result()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read for tests and tools (blocking)."""
        return self.run_sync(lambda db: db.execute(sql, params).fetchall())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()


def _resolve(items: list[tuple[Any, bool, Any]]) -> None:
    for fut, ok, value in items:
        if not fut.done():  # the caller may have been cancelled meanwhile
            fut.set_result(value) if ok else fut.set_exception(value)
