"""The ledger: one SQLite file (WAL) holding every reply, every attempt, non-reply
events and conversation turns.

Writes never block the event loop: they are queued to one writer thread that commits
them in batches (one fsync-free WAL commit per batch, not per row). Reads that must see
everything queued so far (conversation history) run on that same thread, in order;
heavy reads (reports) run on a separate reader thread with its own connection, so a
report over a million rows never holds up a customer's reply.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ..logs import kv
from ..models import Event, Reply
from ..secrets import redact
from ..turn import TurnContext
from .days import day_bounds
from .schema import migrate

__all__ = ["Ledger", "LedgerClosed", "LedgerListener", "connect"]

log = logging.getLogger("tierbot.ledger")
T = TypeVar("T")

BATCH_MAX = 2000  # ops per commit: bounds one transaction's size under a burst
# After the first queued write the writer waits this long for more: one commit (and one
# trip for the GIL) per few hundred messages under load instead of one per message.
# It is also the most a write waits before it is committed.
LINGER_S = 0.005
READERS = 3

_INSERT_MESSAGE = """INSERT INTO messages (ts, platform, conversation_id, user_id, tier, provider,
    model, fallback, input_tokens, output_tokens, cost_usd, latency_ms, question, meta,
    cache_hit, template, faq_entry, handoff_requested)
    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"""
_INSERT_MESSAGE_ID = _INSERT_MESSAGE.replace("(ts,", "(id, ts,").replace("VALUES (?,", "VALUES (?,?,")
_INSERT_ATTEMPT = """INSERT INTO attempts (message_id, seq, provider, model, outcome, detail,
    latency_ms, input_tokens, output_tokens, cost_usd, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)"""
_INSERT_EVENT = "INSERT INTO events (ts, kind, conversation_id, data) VALUES (?,?,?,?)"
_INSERT_TURN = "INSERT INTO turns (conversation_id, role, text, ts) VALUES (?,?,?,?)"

# Keys the FAQ tier may use in Reply.meta to name the entry that answered.
FAQ_META_KEYS = ("faq_id", "faq_entry", "entry")


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


def _meta_json(meta: dict[str, Any]) -> str | None:
    return json.dumps(meta, default=str, ensure_ascii=False) if meta else None


def _faq_entry(meta: dict[str, Any]) -> str | None:
    for key in FAQ_META_KEYS:
        if meta.get(key) is not None:
            return str(meta[key])
    return None


_STOP = object()


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
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()
        # Several readers: a report reads its independent parts at once, on all cores.
        self._reader = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="ledger-reader")
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        # Conversations with turns queued but not yet committed: only their first read
        # must go through the writer thread; every other read uses the reader.
        self._pending_turns: dict[str, int] = {}
        self._pending_lock = threading.Lock()
        from .history import LedgerHistory

        self.history = LedgerHistory(self)

    @classmethod
    def from_config(cls, config: Any) -> "Ledger":
        """`[ledger] path` in the config file, else `TIERBOT_DATA_DIR/ledger.sqlite3`."""
        path = config.section("ledger").get("path") or config.data_dir / "ledger.sqlite3"
        return cls(Path(path), tz=config.tz)

    # -- writing (never blocks the loop) -----------------------------------------------
    def _put(self, op: Any) -> None:
        if self._closed:
            if op[0] == "call":  # somebody awaits an answer: tell them
                raise LedgerClosed("the ledger is closed")
            # A late event during shutdown: say so, but never fail the caller for it.
            log.warning(kv(event="ledger_closed_write_dropped", op=op[0]))
            return
        self._queue.put(op)

    def record_reply(self, event: Event, reply: Reply, turn: TurnContext | None = None) -> None:
        """Queue one handled message and its attempts."""
        ts = self.clock()
        meta = reply.meta or {}
        row = (
            ts, event.platform, event.conversation_id, event.user_id, reply.tier,
            reply.provider, reply.model, int(reply.fallback), reply.input_tokens,
            reply.output_tokens, reply.cost_usd, reply.latency_ms, event.text or "",
            _meta_json(meta), int(reply.tier == "cache"),
            str(meta["template"]) if reply.tier == "template" and meta.get("template") else None,
            _faq_entry(meta) if reply.tier == "cache" else None,
            int(bool(meta.get("handoff_requested"))),
        )
        attempts = [
            (i, a.provider, a.model or "", a.outcome, redact(a.detail) if a.detail else None,
             a.latency_ms, a.input_tokens, a.output_tokens, a.cost_usd, ts)
            for i, a in enumerate(reply.attempts)
        ]
        self._put(("msg", row, attempts))

    async def record_event(self, kind: str, conversation_id: str = "", data: dict | None = None,
                           ts: float | None = None) -> None:
        """Record a non-reply event (handoff_opened, staff_reply, rating, breaker_open, ...)."""
        if not isinstance(kind, str) or not kind.strip():
            raise ValueError("event kind must be a non-empty string")
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"event data must be a dict, got {type(data).__name__}")
        try:
            payload = json.dumps(data, ensure_ascii=False) if data is not None else None
        except (TypeError, ValueError) as e:
            raise ValueError(f"event data must be JSON-serialisable: {e}") from None
        self._put(("event", (self.clock() if ts is None else float(ts), kind, conversation_id or "", payload)))

    def append_turn(self, conversation_id: str, role: str, text: str, ts: float) -> None:
        if self._closed:
            return self._put(("turn", ()))
        with self._pending_lock:
            self._pending_turns[conversation_id] = self._pending_turns.get(conversation_id, 0) + 1
        self._put(("turn", (conversation_id, role, text, ts)))

    def has_pending_turns(self, conversation_id: str) -> bool:
        return conversation_id in self._pending_turns

    def _turns_done(self, batch: list[Any]) -> None:
        with self._pending_lock:
            for op in batch:
                if op[0] == "turn":
                    conv = op[1][0]
                    left = self._pending_turns.get(conv, 0) - 1
                    if left > 0:
                        self._pending_turns[conv] = left
                    else:
                        self._pending_turns.pop(conv, None)

    # -- reading ------------------------------------------------------------------------
    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer thread, after everything queued before it."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._put(("call", fn, fut, loop))
        return await fut

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self.call(lambda conn: None)

    async def committed(self) -> None:
        """Durability barrier: returns once every write queued before it is committed.

        For callers that must not make an outcome durable elsewhere (e.g. mark an update
        answered in another database) before its ledger record is: a kill -9 between the
        two would otherwise lose the record. Unlike `flush` it does not cut the writer's
        linger short, so waiting costs no extra commit; the writer wakes each loop once
        per batch however many barriers it holds. Never blocks the event loop. Returns at
        once when the ledger is closed (everything queued was committed on close). If a
        write fails for good it is logged and the barrier is released all the same.
        """
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.put(("barrier", fut, loop))
        await fut

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, fresh: bool = True) -> T:
        """Run `fn(conn)` on the reader thread (its own connection; for reports).

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
        start, end = day_bounds(day, tz)
        spend = await self.read(lambda c: self.spend_query(c, start, end))
        return spend.get(provider, 0.0) if provider else sum(spend.values())

    async def spend_today(self, provider: str | None = None) -> float:
        """Known spend today (TIERBOT_TZ) in USD, overall or for one provider."""
        tz = self.tz
        return await self.spend_on(dt.datetime.fromtimestamp(self.clock(), tz).date(), tz, provider)

    # -- writer thread ------------------------------------------------------------------------
    def _write_loop(self) -> None:
        conn = connect(self.path)
        try:
            while True:
                batch = [self._queue.get()]
                if self.linger_s and batch[0] is not _STOP and batch[0][0] not in ("call", "barrier"):
                    time.sleep(self.linger_s)  # let a burst gather (someone awaiting a call goes first)
                while len(batch) < self.batch_max:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(op is _STOP for op in batch)
                self._commit([op for op in batch if op is not _STOP], conn)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, batch: list[Any], conn: sqlite3.Connection) -> None:
        results: list[tuple[Any, Any, BaseException | None, Any]] = []
        for wait in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, None):
            results = []
            try:
                # IMMEDIATE: the write lock from the start, so message ids can be assigned here.
                conn.execute("BEGIN IMMEDIATE")
                self._apply_batch(conn, batch, results)
                conn.execute("COMMIT")
                break
            except sqlite3.OperationalError as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if wait is None or "locked" not in str(e) and "busy" not in str(e):
                    results = self._commit_one_by_one(batch, conn, e)
                    break
                # Another process holds the write lock longer than busy_timeout: keep the batch.
                time.sleep(wait)
            except Exception as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                results = self._commit_one_by_one(batch, conn, e)
                break
        # Barriers are settled after the commit whatever its outcome (a write that failed
        # for good was logged; holding its callers forever would help nobody).
        results.extend((op[1], op[2], None, None) for op in batch if op[0] == "barrier")
        by_loop: dict[Any, list[tuple[Any, BaseException | None, Any]]] = {}
        for fut, loop, err, value in results:
            by_loop.setdefault(loop, []).append((fut, err, value))
        for loop, items in by_loop.items():  # one wake-up per event loop per batch
            try:
                loop.call_soon_threadsafe(_settle_all, items)
            except RuntimeError:  # the loop is gone; nobody is waiting any more
                pass

    def _commit_one_by_one(self, batch: list[Any], conn: sqlite3.Connection, error: Exception) -> list:
        """One bad op must not lose the batch: apply each in its own transaction."""
        log.warning(kv(event="ledger_batch_failed", error=type(error).__name__, ops=len(batch)))
        results: list = []
        for op in batch:
            if op[0] == "barrier":
                continue
            try:
                conn.execute("BEGIN")
                self._apply(conn, op, results)
                conn.execute("COMMIT")
            except Exception as e1:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                log.error(kv(event="ledger_write_failed", op=op[0], error=redact(str(e1))))
                if op[0] == "call":
                    results.append((op[2], op[3], e1, None))
        return results

    @staticmethod
    def _apply_batch(conn: sqlite3.Connection, batch: list[tuple], results: list) -> None:
        """All ops of a batch, rows of a kind inserted together (executemany), in order
        wherever it matters: every write queued before a call is applied before it runs."""
        messages: list[tuple] = []
        attempts: list[tuple] = []
        events: list[tuple] = []
        turns: list[tuple] = []
        # Inside a write transaction nobody else can insert: ids can be handed out here,
        # so messages and their attempts go in with one executemany each.
        next_id = [None]

        def flush() -> None:
            if messages:
                conn.executemany(_INSERT_MESSAGE_ID, messages)
                messages.clear()
            for rows, sql in ((attempts, _INSERT_ATTEMPT), (events, _INSERT_EVENT), (turns, _INSERT_TURN)):
                if rows:
                    conn.executemany(sql, rows)
                    rows.clear()

        for op in batch:
            kind = op[0]
            if kind == "msg":
                if next_id[0] is None:
                    next_id[0] = (conn.execute("SELECT MAX(id) FROM messages").fetchone()[0] or 0) + 1
                message_id = next_id[0]
                next_id[0] += 1
                messages.append((message_id, *op[1]))
                attempts.extend((message_id, *a) for a in op[2])
            elif kind == "turn":
                turns.append(op[1])
            elif kind == "event":
                events.append(op[1])
            elif kind == "barrier":  # settled after the commit, by `_commit`
                continue
            else:
                flush()
                next_id[0] = None  # a call may write messages itself
                Ledger._apply(conn, op, results)
        flush()

    @staticmethod
    def _apply(conn: sqlite3.Connection, op: tuple, results: list) -> None:
        kind = op[0]
        if kind == "msg":
            message_id = conn.execute(_INSERT_MESSAGE, op[1]).lastrowid
            if op[2]:
                conn.executemany(_INSERT_ATTEMPT, [(message_id, *a) for a in op[2]])
        elif kind == "event":
            conn.execute(_INSERT_EVENT, op[1])
        elif kind == "turn":
            conn.execute(_INSERT_TURN, op[1])
        elif kind == "call":
            try:
                value = op[1](conn)
            except Exception as e:  # the caller's error, not the batch's
                results.append((op[2], op[3], e, None))
            else:
                results.append((op[2], op[3], None, value))

    # -- lifecycle ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Commit everything queued, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        await asyncio.to_thread(self._reader.shutdown, wait=True)
        for conn in self._rconns:  # no reads are running any more
            conn.close()

    def close_sync(self) -> None:
        """For callers without a loop (CLI teardown after asyncio.run)."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._writer.join()
            self._reader.shutdown(wait=True)


def _settle_all(items: list[tuple[asyncio.Future, BaseException | None, Any]]) -> None:
    for fut, err, value in items:
        if fut.done():  # the caller was cancelled meanwhile
            continue
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(value)
