"""The durable outbox: a reply is on disk before we try to send it, and stays there
until the platform has accepted it.

Rate signals are honoured (`RetryLater`: a 429's retry_after pauses all sending for that
long), outages are retried with capped exponential backoff (`Transient`), and only a
request the platform says can never succeed (`Permanent`, e.g. the customer blocked the
bot) is parked as "failed" — with its error, never silently dropped. Messages to one chat
leave in order: only the oldest unsent message of each chat is eligible.

Rows are claimed under a lease, so two processes sharing the data dir (web + worker)
never send the same row at once. A reply written while there is room to send leases its
first row in the same transaction and is sent at once (`enqueue(..., send_now=True)`):
no separate claim round trip per reply. Under the load bench at 150 replies/s the claim
loop at 16 sends in flight was the bottleneck (answers waited seconds in the outbox while
the server had CPU to spare; BENCHMARKS.md, "Web server under load").
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.logs import kv
from bot.secrets import redact

from .durable import Clock, DurableStore
from .inbox import mark_done

__all__ = ["Outbox", "OutboxRow", "Call", "RetryLater", "Transient", "Permanent", "Sender"]

log = logging.getLogger("tierbot.outbox")

Call = tuple[str, dict[str, Any]]  # (method, parameters)


class RetryLater(Exception):
    """The platform asked us to wait (`retry_after` seconds) before sending again."""

    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(detail or f"retry after {retry_after}s")
        self.retry_after = retry_after


class Transient(Exception):
    """Worth retrying later: 5xx, timeouts, connection errors."""


class Permanent(Exception):
    """Will never succeed as sent (e.g. 400, 403 blocked by the user)."""


Sender = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (chat_id, method, params)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    platform: str
    chat_id: str
    method: str
    payload: dict[str, Any]
    attempts: int
    origin: float | None = None


class Outbox:
    def __init__(self, store: DurableStore, *, concurrency: int = 16, lease_s: float = 60.0,
                 backoff_base_s: float = 0.5, backoff_max_s: float = 60.0, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock
        self.senders: dict[str, Sender] = {}
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self._inflight: set[asyncio.Task[None]] = set()
        # Rows this process is sending or has sent and not yet deleted. The claim skips
        # them even when their lease has run out (a slow commit under load): without this
        # the same reply went out twice from one process.
        self._sending: set[int] = set()
        self._reserved = 0  # send slots promised to replies being written (enqueue with send_now)
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self.sent = 0  # counters for metrics and benchmarks
        self.retried = 0
        # Called with (platform, seconds from the customer's message to delivery).
        self.on_delivered: Callable[[str, float], None] | None = None

    def register(self, platform: str, sender: Sender) -> None:
        self.senders[platform] = sender

    # -- writing --------------------------------------------------------------------
    async def enqueue(self, platform: str, chat_id: str, calls: Sequence[Call], *,
                      done_key: str | None = None, origin: float | None = None,
                      send_now: bool = True) -> None:
        """Durably queue calls for one chat; with `done_key`, mark that inbox update
        answered in the same transaction. `origin`: when the message answered arrived.

        With `send_now`, while sending runs and has room, the first call is leased in the
        same transaction and sent straight away — unless that chat has older unsent rows
        (they go first, through the claim loop) or sending is paused by a 429."""
        now = self.clock()
        chat_id = str(chat_id)
        payloads = [(method, params, json.dumps(params, ensure_ascii=False)) for method, params in calls]
        direct = (send_now and bool(payloads) and self._runner is not None and not self._stopping
                  and platform in self.senders
                  and self._paused_until <= now and len(self._inflight) + self._reserved < self.concurrency)
        if direct:
            self._reserved += 1  # a send slot is kept for this row until the write commits

        def _write(db: sqlite3.Connection) -> OutboxRow | None:
            first: int | None = None
            for method, _, payload in payloads:
                cur = db.execute("INSERT INTO outbox(platform, chat_id, method, payload, created, origin, state, "
                                 "next_at) VALUES (?,?,?,?,?,?, 'pending', ?)",
                                 (platform, chat_id, method, payload, now, origin, now))
                first = cur.lastrowid if first is None else first
            if done_key is not None:
                mark_done(db, done_key, now)
            if not direct or first is None:
                return None
            older = db.execute("SELECT 1 FROM outbox WHERE state='pending' AND platform=? AND chat_id=? AND id<? "
                               "LIMIT 1", (platform, chat_id, first)).fetchone()
            if older is not None:
                return None
            # The lease runs from the commit, not from the call: the write may have waited
            # in the store's queue.
            db.execute("UPDATE outbox SET lease_until=? WHERE id=?", (self.clock() + self.lease_s, first))
            method, params, _ = payloads[0]
            return OutboxRow(first, platform, chat_id, method, params, 0, origin)

        # What follows the commit runs even if the caller is cancelled meanwhile: a row
        # leased here must be sent (or its lease given back), not left for lease_s.
        write = asyncio.ensure_future(self.store.run(_write))
        write.add_done_callback(lambda f: self._written(f, direct))
        await asyncio.shield(write)

    def _written(self, write: asyncio.Future[OutboxRow | None], direct: bool) -> None:
        if direct:
            self._reserved -= 1
        row = None if write.cancelled() or write.exception() is not None else write.result()
        if row is not None:
            if self._runner is not None and not self._stopping:
                self._start_send(row)
                return
            try:  # stopped while the reply was being written: the next start sends it at once
                self.store.run_sync(lambda db: db.execute("UPDATE outbox SET lease_until=0 WHERE id=?", (row.id,)))
            except Exception:
                log.exception("outbox: giving back a lease failed")
        self._wake.set()

    # -- sending --------------------------------------------------------------------
    def wake(self) -> None:
        """Look for due rows now (e.g. after a test's clock has moved on)."""
        self._wake.set()

    def start(self) -> None:
        if self._runner is None:
            self._stopping = False
            self._runner = asyncio.create_task(self._run(), name="tierbot-outbox")

    async def stop(self, *, flush_timeout: float = 0.0) -> None:
        """Try to deliver what is queued for up to `flush_timeout` s, then stop.
        Anything still undelivered stays on disk for the next start.

        The runner is asked to stop rather than cancelled: a claim cancelled while its
        transaction commits would leave rows leased to nobody for lease_s, and the next
        start would wait that long before sending them."""
        if flush_timeout > 0:
            await self.wait_idle(flush_timeout)
        if self._runner is not None:
            self._stopping = True
            self._wake.set()
            done, _ = await asyncio.wait({self._runner}, timeout=10.0)
            if not done:  # a store that stopped answering: give up on it
                self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending (or failed-and-parked). True if idle in time."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self._inflight and await self.pending_count() == 0:
                return True
            await asyncio.sleep(0.02)
        return False

    async def pending_count(self) -> int:
        return await self.store.run(
            lambda db: db.execute("SELECT COUNT(*) FROM outbox WHERE state='pending'").fetchone()[0])

    async def _claim(self, limit: int) -> tuple[list[OutboxRow], float | None]:
        """Lease the oldest due row of each chat that is not being sent; also return when
        the next not-yet-due row becomes due."""
        platforms = tuple(self.senders)
        busy = frozenset(self._sending)
        marks = ",".join("?" * len(platforms))

        def _tx(db: sqlite3.Connection) -> tuple[list[OutboxRow], float | None]:
            now = self.clock()  # when the claim runs, not when it was queued: see enqueue
            heads = ("SELECT o.id, o.platform, o.chat_id, o.method, o.payload, o.attempts, o.next_at, o.lease_until, "
                     "o.origin FROM outbox o JOIN (SELECT MIN(id) AS id FROM outbox WHERE state='pending' "
                     f"AND platform IN ({marks}) GROUP BY platform, chat_id) h ON o.id = h.id ORDER BY o.id")
            rows, next_due = [], None
            for r in db.execute(heads, platforms):
                if r[0] in busy:  # its chat's head is on its way already
                    continue
                due = max(r[6], r[7])
                if due > now:
                    next_due = due if next_due is None else min(next_due, due)
                    continue
                if len(rows) < limit:
                    rows.append(OutboxRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[8]))
            db.executemany("UPDATE outbox SET lease_until=? WHERE id=?", [(now + self.lease_s, r.id) for r in rows])
            return rows, next_due

        return await self.store.run(_tx)

    async def _release(self, ids: list[int]) -> None:
        """Give leases back (stopping): the next start sends these rows at once."""
        if ids:
            await self.store.run(lambda db: db.executemany(
                "UPDATE outbox SET lease_until=0 WHERE id=? AND state='pending'", [(i,) for i in ids]))

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            wait = 1.0
            pause = self._paused_until - self.clock()
            free = self.concurrency - len(self._inflight) - self._reserved
            if pause > 0:
                wait = pause
            elif free > 0 and self.senders:
                try:
                    rows, next_due = await self._claim(free)
                except Exception:
                    log.exception("outbox claim failed")
                    rows, next_due = [], self.clock() + 1.0
                if self._stopping:
                    await self._release([r.id for r in rows])
                    return
                for row in rows:
                    self._start_send(row)
                if next_due is not None:
                    wait = min(wait, max(0.0, next_due - self.clock()))
                if rows:
                    continue  # claim more as soon as there is room
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.005))
            except TimeoutError:
                pass

    def _start_send(self, row: OutboxRow) -> None:
        if row.id in self._sending:
            # Claimed and written-for-direct-send at once (its lease ran out while the write
            # waited for a slow commit): one send is on its way already.
            return
        task = asyncio.create_task(self._send(row))
        self._inflight.add(task)
        self._sending.add(row.id)
        task.add_done_callback(lambda t: (self._inflight.discard(t), self._sending.discard(row.id)))

    async def _send(self, row: OutboxRow) -> None:
        sender = self.senders[row.platform]
        try:
            await sender(row.chat_id, row.method, row.payload)
        except RetryLater as e:
            self._paused_until = max(self._paused_until, self.clock() + e.retry_after)
            await self._reschedule(row, e.retry_after, f"rate_limited retry_after={e.retry_after}")
        except Permanent as e:
            await self._park(row, str(e))
        except asyncio.CancelledError:
            await asyncio.shield(self._reschedule(row, 0.0, "cancelled"))
            raise
        except Exception as e:  # Transient and anything unexpected: keep and retry
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** row.attempts) * random.uniform(0.8, 1.2)
            await self._reschedule(row, delay, f"{type(e).__name__}: {e}")
        else:
            await self.store.run(lambda db: db.execute("DELETE FROM outbox WHERE id=?", (row.id,)))
            self.sent += 1
            if self.on_delivered is not None and row.origin is not None:
                self.on_delivered(row.platform, self.clock() - row.origin)
        finally:
            self._wake.set()

    async def _reschedule(self, row: OutboxRow, delay: float, error: str) -> None:
        self.retried += 1
        error = redact(error)[:500]
        log.warning(kv(outbox="retry", platform=row.platform, method=row.method, attempt=row.attempts + 1,
                       delay_s=round(delay, 2), error=error))
        next_at = self.clock() + delay
        await self.store.run(lambda db: db.execute(
            "UPDATE outbox SET attempts=attempts+1, next_at=?, lease_until=0, last_error=? WHERE id=?",
            (next_at, error, row.id)))

    async def _park(self, row: OutboxRow, error: str) -> None:
        error = redact(error)[:500]
        log.error(kv(outbox="failed", platform=row.platform, method=row.method, error=error))
        await self.store.run(lambda db: db.execute(
            "UPDATE outbox SET state='failed', attempts=attempts+1, lease_until=0, last_error=? WHERE id=?",
            (error, row.id)))
