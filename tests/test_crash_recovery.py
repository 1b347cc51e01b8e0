"""kill -9 in the middle of load: a real `tierbot serve` process, fake Telegram and fake
LLM providers on 127.0.0.1. Updates stream in through the webhook; the process is
killed outright while replies are in flight; Telegram redelivers what it never got a
200 for (and, as it may, some it did); the process starts again.

Promises checked: every update that got a 200 is answered, none lost; none twice except
a reply Telegram accepted in the last moment before the kill, while its outbox row was
still leased for sending (the Bot API has no idempotency key); the ledger is a sound
SQLite file with no half-written reply (no attempt without its message, no message
without its attempts) and no reply missing.

No wall-clock window decides anything: the kill lands when replies are both out and in
flight (watched, not timed), and the duplicate allowance is read from the dead process's
outbox on disk, not from when calls arrived."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from collections import Counter

import aiohttp
import pytest

from fakes.llm_servers import FakeProviders, ok
from fakes.telegram_api import FakeTelegram, text_update
from fakes.procs import free_port, wait_http, wait_settled

SECRET = "crash-test-secret_0123456789"
RATE = 80.0  # updates per second
SENT_BEFORE_KILL = 10  # replies out when the kill lands...
IN_FLIGHT_AT_KILL = 10  # ...and acknowledged updates not answered yet
OUTSTANDING = 40  # like a real client, the load waits when this many are unanswered
AFTER_KILL = 40  # updates posted to the dead process (refused: Telegram redelivers them)
MAX_UPDATES = 2_000  # the kill condition must come long before (fails clearly otherwise)
START_TIMEOUT = 120.0  # a loaded 2-core machine can take this long to start a process


async def post(http: aiohttp.ClientSession, base: str, update_id: int) -> int | None:
    """The webhook's status, or None when the connection failed (the process is gone)."""
    try:
        async with http.post(f"{base}/telegram/webhook", data=json.dumps(
                text_update(update_id, f"question {update_id}: where is my order?", chat_id=10_000 + update_id)),
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


@pytest.mark.timeout(600)  # two process starts and a recovery, on a loaded machine
async def test_kill_9_mid_load_then_restart_answers_every_acked_update_exactly_once(tmp_path):
    data = tmp_path / "data"
    async with FakeTelegram() as tg, FakeProviders() as fp:
        for s in fp.servers.values():
            s.default = ok("Your order is on its way.", latency=0.25)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**{k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))},
               **fp.env(), "TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url,
               "TELEGRAM_WEBHOOK_SECRET": SECRET, "TIERBOT_DATA_DIR": str(data), "PORT": str(port),
               "TIERBOT_LOG_LEVEL": "WARNING", "TELEGRAM_LEASE_S": "1", "TELEGRAM_STREAM_DRAFTS": "false",
               "TIERBOT_GROQ_MODELS": "llama-3.3-70b-versatile", "TIERBOT_GEMINI_MODELS": "gemini-2.5-flash",
               "TIERBOT_CLAUDE_MODELS": "claude-haiku-4-5"}

        async def start() -> asyncio.subprocess.Process:
            p = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", env=env, cwd=str(tmp_path),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await wait_http(base + "/healthz", timeout=START_TIMEOUT)
            return p

        status: dict[int, int | None] = {}
        proc = await start()
        try:
            async with aiohttp.ClientSession() as http:
                async def send(i: int) -> None:
                    status[i] = await post(http, base, i)

                await send(1)  # warm: the first reply has gone out before the load starts
                await tg.wait_for(lambda f: f.texts(10_001), timeout=START_TIMEOUT)

                def answered() -> set[str]:
                    return {str(p["chat_id"]) for p in tg.sent()}

                def unanswered() -> int:
                    return sum(1 for s in status.values() if s == 200) - len(answered())

                def mid_flight() -> bool:
                    return len(answered()) > SENT_BEFORE_KILL and unanswered() >= IN_FLIGHT_AT_KILL

                tasks = []
                i = 1
                killed_at: int | None = None
                # Updates stream in at RATE until replies are both out and in flight, whatever
                # the machine's speed (a stalled first second only moves the kill later).
                while killed_at is None or i < killed_at + AFTER_KILL:
                    if killed_at is None and unanswered() >= OUTSTANDING:
                        await tg.wait_for(lambda f: unanswered() < OUTSTANDING, timeout=START_TIMEOUT)
                    i += 1
                    assert i <= MAX_UPDATES, f"never mid-flight: {len(answered())} answered of {i} posted"
                    tasks.append(asyncio.create_task(send(i)))
                    if killed_at is None and mid_flight():
                        proc.kill()  # SIGKILL: no drain, no lease release, no flush
                        killed_at, kill_time = i, time.monotonic()
                    await asyncio.sleep(1 / RATE)
                await asyncio.gather(*tasks)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        updates = i
        acked = sorted(i for i, s in status.items() if s == 200)
        answered_before = Counter(str(p["chat_id"]) for p in tg.sent())
        assert 10 < len(acked) < updates, f"the kill did not land mid-load: {len(acked)} acked"
        assert SENT_BEFORE_KILL < len(answered_before) < len(acked), \
            "the kill should catch replies both sent and in flight"
        # What the dead process left: rows still pending in its outbox. Those it had leased
        # were being sent at the kill; Telegram may have accepted one before "sent" committed.
        with contextlib.closing(sqlite3.connect(data / "messages.db")) as outbox:
            left = outbox.execute("SELECT chat_id, lease_until, attempts, last_error FROM outbox").fetchall()
            leased = {str(r[0]) for r in outbox.execute(
                "SELECT chat_id FROM outbox WHERE state='pending' AND lease_until > 0")}
        # Only the dead process has sent so far: a chat in the window was answered by it.
        in_flight_window = leased & {str(p["chat_id"]) for p in tg.sent()}
        # Telegram may redeliver an update it did get a 200 for (its response was lost):
        # a few answered for sure, and a few acked but not answered yet.
        done = [i for i in acked if str(10_000 + i) in answered_before and str(10_000 + i) not in in_flight_window]
        not_yet = [i for i in acked if str(10_000 + i) not in answered_before]
        assert done and not_yet, (done, not_yet)
        twice_told = done[:5] + not_yet[-5:]

        # Restart. Telegram redelivers every update it got no 200 for, and (as it may after a
        # lost response) a few it did get a 200 for.
        proc = await start()
        try:
            async with aiohttp.ClientSession() as http:
                redeliver = [i for i in range(1, updates + 1) if status[i] != 200] + twice_told
                results = await asyncio.gather(*(post(http, base, i) for i in redeliver))
                assert all(r == 200 for r in results), Counter(results)

                def all_answered(f: FakeTelegram) -> bool:
                    return len({str(p["chat_id"]) for p in f.sent()}) >= updates
                await tg.wait_for(all_answered, timeout=START_TIMEOUT)
                # Once nothing is pending in the inbox or the outbox (the first process's
                # leases included), nothing more will be sent: a duplicate, if the code
                # made one, has been sent by now.
                await wait_settled(data, timeout=START_TIMEOUT)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 120)

    per_chat = Counter(str(p["chat_id"]) for p in tg.sent())
    twice = {c: n for c, n in per_chat.items() if n > 1}
    # The one duplicate the design cannot rule out: Telegram accepted a sendMessage in the
    # last moments before the kill, before the outbox could commit "sent" (the Bot API has
    # no idempotency key). Any other duplicate — a redelivered update, a recovered reply
    # sent twice, a reply sent but never marked — is a bug.
    outside = {c: n for c, n in twice.items() if c not in in_flight_window}
    sends = [(c.params.get("chat_id"), round(c.at - kill_time, 3), c.status) for c in tg.calls
             if c.method == "sendMessage" and str(c.params.get("chat_id")) in outside]
    assert not outside, (f"answered more than once outside the in-flight window: {outside}; sends (chat, "
                         f"s after the kill, status): {sends}; outbox rows at death: "
                         f"{[r for r in left if str(r[0]) in outside]}")
    assert all(n == 2 for n in twice.values()), twice
    assert not any(str(10_000 + i) in twice for i in twice_told), "a redelivered update was answered again"
    assert set(per_chat) == {str(10_000 + i) for i in range(1, updates + 1)}
    assert set(tg.texts()) == {"Your order is on its way."}

    db = sqlite3.connect(data / "ledger.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = db.execute("SELECT COUNT(*) FROM attempts a LEFT JOIN messages m ON m.id = a.message_id "
                             "WHERE m.id IS NULL").fetchone()[0]
        assert orphans == 0, f"{orphans} attempts without their message"
        bare = db.execute("SELECT COUNT(*) FROM messages m WHERE m.tier = 'llm' AND NOT EXISTS "
                          "(SELECT 1 FROM attempts a WHERE a.message_id = m.id)").fetchone()[0]
        assert bare == 0, f"{bare} LLM replies recorded without their attempts"
        gaps = db.execute("SELECT COUNT(*) FROM (SELECT message_id, COUNT(*) n, MAX(seq) hi, MIN(seq) lo "
                          "FROM attempts GROUP BY message_id) WHERE hi - lo + 1 != n").fetchone()[0]
        assert gaps == 0, f"{gaps} replies with missing attempts"
        # Every reply a customer got is in the ledger, including those computed in the last
        # milliseconds before the kill: an update is marked answered in the inbox (another
        # file) only after the ledger has committed its record.
        recorded = {r[0] for r in db.execute("SELECT DISTINCT conversation_id FROM messages")}
        missing = set(per_chat) - recorded
        assert not missing, f"{len(missing)} replies missing from the ledger: {sorted(missing)[:10]}"
    finally:
        db.close()
