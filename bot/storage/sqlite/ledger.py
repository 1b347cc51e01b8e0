"""The ledger: one SQLite file (WAL) holding every reply, every attempt, non-reply
events and conversation turns.

Writes never block the event loop: they are pickled to one writer *process*
(bot/storage/sqlite/writer.py) that commits them in batches (one fsync-free WAL commit per
batch, not per row). Conversation history is read through that process too, ordered
after turns still queued; heavy reads (reports) run on reader threads with their own
connections, so a report over a million rows never holds up a customer's reply.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ...logs import kv
from ...models import Event, Reply
from ...secrets import redact
from ...turn import TurnContext
from ..rows import event_payload, reply_rows
from .ledger_schema import migrate
from .writer import SQLiteWriter

__all__ = ["Ledger", "LedgerClosed", "LedgerListener", "connect"]

log = logging.getLogger("tierbot.ledger")
T = TypeVar("T")

BATCH_MAX = 2000  # ops per commit: bounds one transaction's size under a burst
# After the first queued write the writer waits this long for more: one commit per few
# hundred messages under load instead of one per message. It is also the most a write
# waits before it is committed (`committed()` waits at most this long plus the commit).
LINGER_S = 0.005
READERS = 3

_INSERT_MESSAGE = """INSERT INTO messages (ts, platform, conversation_id, user_id, tier, provider,
    model, fallback, input_tokens, output_tokens, cost_usd, latency_ms, question, meta,
    cache_hit, template, faq_entry, handoff_requested, sources)
    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"""
_INSERT_MESSAGE_ID = _INSERT_MESSAGE.replace("(ts,", "(id, ts,").replace("VALUES (?,", "VALUES (?,?,")
_INSERT_ATTEMPT = """INSERT INTO attempts (message_id, seq, provider, model, outcome, detail,
    latency_ms, input_tokens, output_tokens, cost_usd, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)"""
_INSERT_EVENT = "INSERT INTO events (ts, kind, conversation_id, data) VALUES (?,?,?,?)"
_INSERT_TURN = "INSERT INTO turns (conversation_id, role, text, ts) VALUES (?,?,?,?)"
_STATEMENTS = {"msg": _INSERT_MESSAGE_ID, "attempt": _INSERT_ATTEMPT, "event": _INSERT_EVENT, "turn": _INSERT_TURN}
_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000")

class LedgerClosed(RuntimeError):
    pass


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the ledger's pragmas (autocommit; transactions are explicit)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
    conn.execute("PRAGMA busy_timeout=5000")
    if readonly:  # reports scan whole days: give them room
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA mmap_size=268435456")
    return conn


class LedgerListener:
    """The ReplyListener that records every reply. Separate from `Ledger` so that the
    ledger itself is closed last, as a resource, after every listener has finished."""

    def __init__(self, ledger: "Ledger") -> None:
        self.ledger = ledger

    async def on_reply(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        self.ledger.record_reply(event, reply, turn)


class Ledger:
    """Durable record of what the bot did: `Ledger(path)` or `Ledger.from_config(config)`."""

    def __init__(self, path: Path, *, tz: ZoneInfo | None = None,
                 clock: Callable[[], float] = time.time, batch_max: int = BATCH_MAX,
                 linger_s: float = LINGER_S) -> None:
        self.path = Path(path)
        self.tz = tz or ZoneInfo("UTC")  # the operator's day, for "today"
        self.clock = clock
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)  # migrate up front: a bad file fails at start, loudly
        try:
            self.migrated_from = migrate(conn)
        finally:
            conn.close()
        self._closed = False
        # Writes go to a child process (see bot/storage/sqlite/writer.py for why not a thread).
        self._writer = SQLiteWriter(self.path, pragmas=_PRAGMAS, statements=_STATEMENTS,
                                    linked={"msg": "messages"}, linger_s=linger_s, batch_max=batch_max,
                                    on_error=_log_write_error)
        # Several readers: a report reads its independent parts at once, on all cores.
        self._reader = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="ledger-reader")
        self._caller: ThreadPoolExecutor | None = None  # `call`: rare (the report schedule)
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        # Conversation -> sequence number of its latest queued turn: a first read of a
        # conversation with turns not yet committed must be ordered after them.
        self._pending_turns: dict[str, int] = {}
        from ...ledger.history import LedgerHistory

        self.history = LedgerHistory(self)

    @classmethod
    def from_config(cls, config: Any) -> "Ledger":
        """`[ledger] path` in the config file, else `TIERBOT_DATA_DIR/ledger.sqlite3`."""
        path = config.section("ledger").get("path") or config.data_dir / "ledger.sqlite3"
        return cls(Path(path), tz=config.tz)

    @property
    def writer_pid(self) -> int:
        """The writer process (benchmarks count its CPU)."""
        return self._writer.pid

    # -- writing (never blocks the loop) -----------------------------------------------
    def _dropped(self, what: str) -> bool:
        if self._closed:  # a late event during shutdown: say so, never fail the caller for it
            log.warning(kv(event="ledger_closed_write_dropped", op=what))
        return self._closed

    def record_reply(self, event: Event, reply: Reply, turn: TurnContext | None = None) -> None:
        """Queue one handled message and its attempts."""
        if self._dropped("msg"):
            return
        row, attempts = reply_rows(event, reply, self.clock())
        self._writer.write_linked("msg", row, "attempt", attempts)

    async def record_event(self, kind: str, conversation_id: str = "", data: dict | None = None,
                           ts: float | None = None) -> None:
        """Record a non-reply event (handoff_opened, staff_reply, rating, breaker_open, ...)."""
        payload = event_payload(kind, data)
        if self._dropped("event"):
            return
        self._writer.write("event", (self.clock() if ts is None else float(ts), kind, conversation_id or "", payload))

    def append_turn(self, conversation_id: str, role: str, text: str, ts: float) -> None:
        if self._dropped("turn"):
            return
        self._writer.write("turn", (conversation_id, role, text, ts))
        pending = self._pending_turns
        pending[conversation_id] = self._writer.last_write
        if len(pending) > 4096:  # forget conversations whose turns are all committed
            acked = self._writer.acked
            for conv in [c for c, seq in pending.items() if seq <= acked]:
                del pending[conv]

    def has_pending_turns(self, conversation_id: str) -> bool:
        seq = self._pending_turns.get(conversation_id)
        if seq is None:
            return False
        if seq <= self._writer.acked:
            del self._pending_turns[conversation_id]
            return False
        return True

    async def recent_turns(self, conversation_id: str, limit: int) -> list[tuple[str, str, float]]:
        """(role, text, ts) of a conversation's latest turns, oldest first, including turns
        queued but not yet committed. Read by the writer process: after those turns when
        there are any, else on its reader connection (not held up by a busy writer)."""
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        rows = await self._writer.query(
            "SELECT role, text, ts FROM turns WHERE conversation_id = ? ORDER BY id DESC LIMIT ?",
            (conversation_id, limit), ordered=self.has_pending_turns(conversation_id))
        return [tuple(r) for r in reversed(rows)]  # type: ignore[misc]

    # -- reading ------------------------------------------------------------------------
    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in one write transaction, after everything queued before it is
        committed (e.g. the report schedule's claim of a day). Rare: on a thread."""
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        await self._writer.flush()
        if self._caller is None:
            self._caller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-call")
        return await asyncio.get_running_loop().run_in_executor(self._caller, self._call_sync, fn)

    def _call_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "wconn", None)
        if conn is None:
            conn = self._local.wconn = connect(self.path)
            self._rconns.append(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            value = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return value

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (asking for the commit now)."""
        if self._closed:
            return
        await self._writer.flush()

    async def committed(self) -> None:
        """Durability barrier: returns once every write queued before it is committed.

        For callers that must not make an outcome durable elsewhere (e.g. mark an update
        answered in another database) before its ledger record is: a kill -9 between the
        two would otherwise lose the record. Unlike `flush` it does not cut the writer's
        linger short, so waiting costs no extra commit. Never blocks the event loop.
        Returns at once when the ledger is closed (everything queued was committed on
        close). If a write fails for good it is logged and the barrier is released all
        the same.
        """
        if self._closed:
            return
        await self._writer.committed()

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, fresh: bool = True) -> T:
        """Run `fn(conn)` on a reader thread (its own connection; for reports).

        `fresh` first waits for queued writes, so the read sees them.
        """
        if fresh:
            await self.flush()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._read_sync, fn)

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, readonly=True)
            self._rconns.append(conn)
        conn.execute("BEGIN")  # one snapshot for the whole read
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking read on a fresh connection: for start-up only (e.g. seeding budgets)."""
        conn = connect(self.path, readonly=True)
        try:
            return fn(conn)
        finally:
            conn.close()

    # -- spend ------------------------------------------------------------------------------
    @staticmethod
    def spend_query(conn: sqlite3.Connection, start: float, end: float) -> dict[str, float]:
        """Known spend per provider between two times (unknown prices are not counted)."""
        rows = conn.execute(
            "SELECT provider, SUM(cost_usd) FROM attempts WHERE ts >= ? AND ts < ? "
            "AND cost_usd IS NOT NULL GROUP BY provider", (start, end))
        return {p: float(s or 0.0) for p, s in rows}

    async def spend_on(self, day: dt.date, tz: ZoneInfo, provider: str | None = None) -> float:
        from ...ledger.days import day_bounds  # bot.ledger imports this module

        start, end = day_bounds(day, tz)
        spend = await self.read(lambda c: self.spend_query(c, start, end))
        return spend.get(provider, 0.0) if provider else sum(spend.values())

    async def spend_today(self, provider: str | None = None) -> float:
        """Known spend today (TIERBOT_TZ) in USD, overall or for one provider."""
        tz = self.tz
        return await self.spend_on(dt.datetime.fromtimestamp(self.clock(), tz).date(), tz, provider)

    async def spend_between(self, start: float, end: float) -> dict[str, float]:
        return await self.read(lambda c: self.spend_query(c, start, end))

    async def events_between(self, kind: str, start: float, end: float) -> list[tuple[float, dict]]:
        rows = await self.read(lambda c: c.execute(
            "SELECT ts, data FROM events WHERE kind = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (kind, start, end)).fetchall())
        return [(ts, json.loads(d) if d else {}) for ts, d in rows]

    def spend_and_events_now(self, kind: str, start: float, end: float) -> tuple[dict[str, float], list[dict]]:
        """Blocking: today's spend and events of one kind at start-up (seeding budgets)."""
        def read(conn: sqlite3.Connection) -> tuple[dict[str, float], list[dict]]:
            events = [json.loads(d) if d else {} for (d,) in conn.execute(
                "SELECT data FROM events WHERE kind = ? AND ts >= ? AND ts < ?", (kind, start, end))]
            return self.spend_query(conn, start, end), events

        return self.read_now(read)

    # -- report runs (once-only claims of a report date) ----------------------------------
    async def claim_report(self, day: str, now: float) -> str:
        def claim(conn: sqlite3.Connection) -> str:
            if conn.execute("SELECT COUNT(*) FROM report_runs").fetchone()[0] == 0:
                conn.execute("INSERT INTO report_runs (report_date, claimed_at) VALUES (?, ?)", (day, now))
                return "first start"
            if conn.execute("SELECT 1 FROM report_runs WHERE report_date >= ?", (day,)).fetchone():
                return "done"
            conn.execute("INSERT INTO report_runs (report_date, claimed_at) VALUES (?, ?)", (day, now))
            return "claimed"

        return await self.call(claim)

    async def release_report(self, day: str) -> None:
        await self.call(lambda c: c.execute(
            "DELETE FROM report_runs WHERE report_date = ? AND posted_at IS NULL", (day,)))

    async def report_posted(self, day: str, now: float) -> None:
        await self.call(lambda c: c.execute(
            "UPDATE report_runs SET posted_at = ? WHERE report_date = ?", (now, day)))

    # -- lifecycle ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Commit everything queued, then stop the writer process and the threads."""
        if self._closed:
            return
        self._closed = True
        await self._writer.aclose()
        await asyncio.to_thread(self._shutdown_threads)

    def close_sync(self) -> None:
        """For callers without a loop (CLI teardown after asyncio.run)."""
        if not self._closed:
            self._closed = True
            self._writer.close_sync()
            self._shutdown_threads()

    def _shutdown_threads(self) -> None:
        self._reader.shutdown(wait=True)
        if self._caller is not None:
            self._caller.shutdown(wait=True)
        for conn in self._rconns:  # nothing runs on them any more
            conn.close()


def _log_write_error(text: str) -> None:
    log.error(kv(event="ledger_write_failed", error=redact(text)))


