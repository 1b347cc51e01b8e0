"""The ledger on PostgreSQL: the same rows as the embedded ledger, in one shared database,
so every process's replies are in one place.

Like the embedded ledger, writes never make a reply wait: `record_reply`, `append_turn`
and `record_event` queue rows, and one writer task commits what has gathered (after a
few milliseconds' linger) in one transaction — a reply and its attempts always together.
`committed()` is the commit barrier. While the database is unreachable the queued rows
are kept and retried (one error line when it goes, one when it is back), so nothing
queued is lost while the process lives; a statement PostgreSQL refuses for good is
retried alone and logged, never allowed to lose the rest of its batch.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from ...ledger.days import day_bounds
from ...logs import kv
from ...models import Event, Reply
from ...secrets import redact
from ...turn import TurnContext
from ..rows import ATTEMPT_COLUMNS, MESSAGE_COLUMNS, event_payload, reply_rows
from .database import CONNECTION_ERRORS, DatabaseDown, PgDatabase, clean

__all__ = ["PgLedger", "LedgerClosed"]

log = logging.getLogger("tierbot.ledger")

LINGER_S = 0.005
BATCH_MAX = 2000
RETRY_MAX_S = 5.0
CLOSE_TIMEOUT_S = 15.0


def _insert(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


_INSERT_MESSAGE = _insert("messages", ("id", *MESSAGE_COLUMNS))
_INSERT_ATTEMPT = _insert("attempts", ("message_id", *ATTEMPT_COLUMNS))
_INSERT_EVENT = _insert("events", ("ts", "kind", "conversation_id", "data"))
_INSERT_TURN = _insert("turns", ("conversation_id", "role", "text", "ts"))


class LedgerClosed(RuntimeError):
    pass


def _row(values: tuple) -> tuple:
    return tuple(clean(v) for v in values)


class PgLedger:
    """`LedgerSink` over a `PgDatabase` (see bot/storage/ledger.py)."""

    def __init__(self, db: PgDatabase, *, tz: ZoneInfo | None = None,
                 clock: Callable[[], float] = time.time, linger_s: float = LINGER_S,
                 batch_max: int = BATCH_MAX) -> None:
        self.db = db
        self.tz = tz or ZoneInfo("UTC")
        self.clock = clock
        self.linger_s = linger_s
        self.batch_max = batch_max
        self._queue: list[tuple[int, str, tuple, list[tuple]]] = []  # (seq, kind, row, child rows)
        self._seq = 0
        self._acked = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._urgent = False
        self._task: asyncio.Task | None = None
        self._closed = False
        self._down_since: float | None = None
        self._pending_turns: dict[str, int] = {}
        from ...ledger.history import LedgerHistory

        self.history = LedgerHistory(self)

    @classmethod
    def from_config(cls, config: Any, db: PgDatabase) -> "PgLedger":
        return cls(db, tz=config.tz)

    async def astart(self) -> None:
        await self.db.start()

    # -- queueing ------------------------------------------------------------------------
    def _put(self, kind: str, row: tuple, children: list[tuple] | None = None) -> int:
        self._seq += 1
        self._queue.append((self._seq, kind, _row(row), [_row(c) for c in children or ()]))
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-ledger-writer")
        assert self._wake is not None
        self._wake.set()
        return self._seq

    def _dropped(self, what: str) -> bool:
        if self._closed:
            log.warning(kv(event="ledger_closed_write_dropped", op=what))
        return self._closed

    def record_reply(self, event: Event, reply: Reply, turn: TurnContext | None = None) -> None:
        if self._dropped("msg"):
            return
        row, attempts = reply_rows(event, reply, self.clock())
        self._put("msg", row, attempts)

    async def record_event(self, kind: str, conversation_id: str = "", data: dict | None = None,
                           ts: float | None = None) -> None:
        payload = event_payload(kind, data)
        if self._dropped("event"):
            return
        self._put("event", (self.clock() if ts is None else float(ts), kind, conversation_id or "", payload))

    def append_turn(self, conversation_id: str, role: str, text: str, ts: float) -> None:
        if self._dropped("turn"):
            return
        self._pending_turns[conversation_id] = self._put("turn", (conversation_id, role, text, ts))
        if len(self._pending_turns) > 4096:
            for conv in [c for c, seq in self._pending_turns.items() if seq <= self._acked]:
                del self._pending_turns[conv]

    def has_pending_turns(self, conversation_id: str) -> bool:
        seq = self._pending_turns.get(conversation_id)
        if seq is None:
            return False
        if seq <= self._acked:
            del self._pending_turns[conversation_id]
            return False
        return True

    # -- barriers -----------------------------------------------------------------------------
    async def committed(self) -> None:
        target = self._seq
        if target <= self._acked or (self._closed and self._task is None):
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        await fut

    async def flush(self) -> None:
        self._urgent = True
        if self._wake is not None:
            self._wake.set()
        await self.committed()

    # -- the writer task -------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        retry = 0.1
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger_s and not self._urgent and len(self._queue) < self.batch_max and not self._closed:
                await asyncio.sleep(self.linger_s)  # let a burst gather: one commit for many replies
            self._urgent = False
            batch = self._queue[:self.batch_max]
            try:
                await self._commit(batch)
            except CONNECTION_ERRORS as e:
                self._went_down(e)
                await asyncio.sleep(retry)
                retry = min(RETRY_MAX_S, retry * 2)
                continue
            except asyncpg.PostgresError as e:
                await self._one_by_one(batch, e)
            retry = 0.1
            self._came_back()
            del self._queue[:len(batch)]
            self._ack(batch[-1][0])

    async def _commit(self, batch: list[tuple[int, str, tuple, list[tuple]]]) -> None:
        messages = [op for op in batch if op[1] == "msg"]
        events = [op[2] for op in batch if op[1] == "event"]
        turns = [op[2] for op in batch if op[1] == "turn"]
        # Every statement is bounded by the pool's command timeout; a stalled one
        # terminates the connection (`PgDatabase.connection`), so the rows are retried
        # on a fresh one. Only a refused statement is rolled back on this connection.
        async with self.db.connection() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                if messages:
                    ids = [r[0] for r in await conn.fetch(
                        "SELECT nextval('messages_id_seq') FROM generate_series(1, $1)", len(messages))]
                    await conn.executemany(_INSERT_MESSAGE, [(i, *op[2]) for i, op in zip(ids, messages)])
                    attempts = [(i, *a) for i, op in zip(ids, messages) for a in op[3]]
                    if attempts:
                        await conn.executemany(_INSERT_ATTEMPT, attempts)
                if events:
                    await conn.executemany(_INSERT_EVENT, events)
                if turns:
                    await conn.executemany(_INSERT_TURN, turns)
            except asyncpg.PostgresError:
                await tx.rollback()
                raise
            await tx.commit()

    async def _one_by_one(self, batch: list, error: BaseException) -> None:
        """One bad row must not lose the batch: each in its own transaction."""
        log.error(kv(event="ledger_write_failed", error=redact(f"{type(error).__name__}: {error}"),
                     batch=len(batch), action="retrying one by one"))
        for op in batch:
            while True:
                try:
                    await self._commit([op])
                    break
                except CONNECTION_ERRORS as e:
                    self._went_down(e)
                    await asyncio.sleep(RETRY_MAX_S / 5)
                except asyncpg.PostgresError as e:
                    log.error(kv(event="ledger_write_failed", op=op[1], error=redact(f"{type(e).__name__}: {e}")))
                    break

    def _went_down(self, e: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error(kv(event="ledger_database_unreachable", url=self.db.masked, queued=len(self._queue),
                         error=self.db.url.scrub(f"{type(e).__name__}: {e}"),
                         action="keeping the rows and retrying"))

    def _came_back(self) -> None:
        self.db.came_back()  # a commit went through: reply-path reads need not wait for a probe
        if self._down_since is not None:
            log.warning(kv(event="ledger_database_back", url=self.db.masked,
                           after_s=round(time.monotonic() - self._down_since, 1)))
            self._down_since = None

    def _ack(self, seq: int) -> None:
        self._acked = max(self._acked, seq)
        still = []
        for target, fut in self._waiters:
            if target <= self._acked:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((target, fut))
        self._waiters = still

    # -- reading ----------------------------------------------------------------------------------
    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        if self._closed and self._task is None:
            raise LedgerClosed("the ledger is closed")
        async with self.db.connection() as conn:
            return await conn.fetch(sql, *args)

    async def recent_turns(self, conversation_id: str, limit: int) -> list[tuple[str, str, float]]:
        """Including turns still queued: a read waits for them to commit first.

        On the reply path, so bounded: waiting for the commit and the read share the
        database's `reply_s`; an unreachable database raises `DatabaseDown` (the
        history then answers without these turns, and loads them again next time)."""
        if self._closed and self._task is None:
            raise LedgerClosed("the ledger is closed")
        if self.has_pending_turns(conversation_id):
            if self._down_since is not None or self.db.down:  # they cannot commit now
                raise DatabaseDown(f"the database at {self.db.masked} is unreachable (history skipped)")
            try:
                async with asyncio.timeout(self.db.timeouts.reply_s):
                    await self.committed()
            except TimeoutError:
                raise DatabaseDown(f"the ledger's writer is behind on {self.db.masked} (history skipped)") from None
        rows = await self.db.reply_path("history", lambda conn: conn.fetch(
            "SELECT role, text, ts FROM turns WHERE conversation_id = $1 ORDER BY id DESC LIMIT $2",
            conversation_id, limit))
        return [(r["role"], r["text"], r["ts"]) for r in reversed(rows)]

    async def spend_between(self, start: float, end: float) -> dict[str, float]:
        rows = await self._fetch("SELECT provider, SUM(cost_usd) AS s FROM attempts WHERE ts >= $1 AND ts < $2 "
                                 "AND cost_usd IS NOT NULL GROUP BY provider", start, end)
        return {r["provider"]: float(r["s"] or 0.0) for r in rows}

    async def events_between(self, kind: str, start: float, end: float) -> list[tuple[float, dict]]:
        rows = await self._fetch("SELECT ts, data FROM events WHERE kind = $1 AND ts >= $2 AND ts < $3 "
                                 "ORDER BY ts, id", kind, start, end)
        return [(r["ts"], json.loads(r["data"]) if r["data"] else {}) for r in rows]

    async def spend_today(self, provider: str | None = None) -> float:
        start, end = day_bounds(dt.datetime.fromtimestamp(self.clock(), self.tz).date(), self.tz)
        spend = await self.spend_between(start, end)
        return spend.get(provider, 0.0) if provider else sum(spend.values())

    def report_view(self, start: float, end: float):
        """The report's rows of [start, end) as an embedded ledger (see report_view.py)."""
        from .report_view import report_view

        return report_view(self, start, end)

    # -- report runs (once-only claims) -----------------------------------------------------------
    async def claim_report(self, day: str, now: float) -> str:
        async with self.db.connection() as conn, conn.transaction():
            # Two processes deciding at once: the second waits and sees the first's row.
            await conn.execute("LOCK TABLE report_runs IN SHARE ROW EXCLUSIVE MODE")
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM report_runs)"):
                await conn.execute("INSERT INTO report_runs (report_date, claimed_at) VALUES ($1, $2)", day, now)
                return "first start"
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM report_runs WHERE report_date >= $1)", day):
                return "done"
            await conn.execute("INSERT INTO report_runs (report_date, claimed_at) VALUES ($1, $2)", day, now)
            return "claimed"

    async def release_report(self, day: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM report_runs WHERE report_date = $1 AND posted_at IS NULL", day)

    async def report_posted(self, day: str, now: float) -> None:
        async with self.db.connection() as conn:
            await conn.execute("UPDATE report_runs SET posted_at = $1 WHERE report_date = $2", now, day)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Commit everything queued (waiting up to CLOSE_TIMEOUT_S for an absent database)."""
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            self._urgent = True
            assert self._wake is not None
            self._wake.set()
            done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
            if not done:
                log.critical(kv(event="ledger_rows_lost_on_close", rows=len(self._queue), url=self.db.masked))
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = None
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters = []
