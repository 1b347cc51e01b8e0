"""Nothing lost: restarts mid-answer, redelivery across restarts, Telegram 429 and 5xx,
and replies that cannot be delivered yet."""
from __future__ import annotations

import asyncio
import time

import pytest

from adapters.durable import DurableStore
from fake_clock import FakeClock
from fakes.telegram_api import FakeTelegram, text_update
from polling import until
from telegram_harness import EchoTier, inbox_rows, make_bot, make_config, post_update, running, settled


@pytest.fixture
async def tg():
    async with FakeTelegram() as fake:
        yield fake


async def crash(server) -> None:
    """Die like a killed process: in-flight answers vanish, nothing is drained or released."""
    tasks = list(server.telegram._tasks.values())
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    server.telegram.accepting = False


async def test_update_recorded_but_unanswered_is_answered_once_after_restart(tg, tmp_path):
    data = tmp_path / "data"
    config = make_config(tg.base_url, data, TELEGRAM_LEASE_S="0.3", TELEGRAM_STREAM_DRAFTS="false")
    stuck = EchoTier()
    stuck.gate = asyncio.Event()  # the first process never finishes its answer
    async with running(make_bot(config, stuck), config) as (client, server):
        assert (await post_update(client, text_update(1, "first"))).status == 200
        assert (await post_update(client, text_update(2, "second"))).status == 200
        await until(lambda: stuck.calls, what="the first answer in progress")
        await crash(server)
    assert tg.texts() == []
    assert inbox_rows(data) == [("telegram:1", "pending"), ("telegram:2", "pending")]

    fresh = EchoTier()
    async with running(make_bot(config, fresh), config) as (client, server):
        await tg.wait_for(lambda f: len(f.texts()) == 2, timeout=60)
        # Telegram redelivers the update it had already sent: still answered once
        assert (await post_update(client, text_update(2, "second"))).status == 200
        await settled(server)
    assert tg.texts() == ["echo: first", "echo: second"]  # once each, in order
    assert inbox_rows(data) == [("telegram:1", "done"), ("telegram:2", "done")]


async def test_redelivery_after_restart_is_not_answered_again(tg, tmp_path):
    data = tmp_path / "data"
    config = make_config(tg.base_url, data)
    async with running(make_bot(config, EchoTier()), config) as (client, _):
        await post_update(client, text_update(5, "hello"))
        await tg.wait_for(lambda f: f.texts())
    tier = EchoTier()
    async with running(make_bot(config, tier), config) as (client, server):
        assert (await post_update(client, text_update(5, "hello"))).status == 200
        await settled(server)
    assert tg.texts() == ["echo: hello"] and tier.calls == []


async def test_429_retry_after_is_honoured(tg, tmp_path):
    tg.fail_next("sendMessage", 429, retry_after=1)
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier()), config) as (client, _):
        await post_update(client, text_update(1, "hi"))
        await tg.wait_for(lambda f: f.texts(), timeout=60)
    tries = [c for c in tg.calls if c.method == "sendMessage"]
    assert [c.status for c in tries] == [429, 200]
    assert tries[1].at - tries[0].at >= 0.95  # waited as told, not earlier
    assert tg.texts() == ["echo: hi"]


async def test_5xx_is_retried_with_backoff(tg, tmp_path):
    tg.fail_next("sendMessage", 502, times=2)
    tg.fail_next("sendMessage", 500)
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier()), config) as (client, server):
        server.telegram.outbox.backoff_base_s = 0.05
        await post_update(client, text_update(1, "hi"))
        await tg.wait_for(lambda f: f.texts(), timeout=60)
    tries = [c for c in tg.calls if c.method == "sendMessage"]
    assert [c.status for c in tries] == [502, 502, 500, 200]  # the growing backoff: test_leases_backoff.py
    assert tg.texts() == ["echo: hi"]


async def test_reply_kept_while_telegram_is_unreachable_and_sent_after_restart(tmp_path):
    data = tmp_path / "data"
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, data)
        tg.fail_next("sendMessage", 500, times=1000)  # Telegram down for this whole run
        async with running(make_bot(config, EchoTier()), config, drain_timeout_s=0.3) as (client, server):
            server.telegram.outbox.backoff_base_s = 0.02
            server.telegram.outbox.backoff_max_s = 0.05
            await post_update(client, text_update(1, "still there?"))
            await tg.wait_for(lambda f: len(f.sent("sendMessage", ok_only=False)) >= 3, timeout=60)
        assert tg.texts() == []
    store = DurableStore.in_dir(data)
    try:
        [(state, text)] = store.query("SELECT state, json_extract(payload, '$.text') FROM outbox")
    finally:
        store.close()
    assert (state, text) == ("pending", "echo: still there?")
    # Telegram is back (a new server); the kept reply goes out once, the update is not re-answered
    async with FakeTelegram() as tg2:
        config2 = make_config(tg2.base_url, data)
        tier = EchoTier()
        async with running(make_bot(config2, tier), config2) as (_, server):
            await tg2.wait_for(lambda f: f.texts(), timeout=60)
            await settled(server)
        assert tg2.texts() == ["echo: still there?"] and tier.calls == []


async def test_blocked_by_user_is_parked_not_retried_and_next_messages_flow(tg, tmp_path):
    tg.fail_next("sendMessage", 403)
    data = tmp_path / "data"
    config = make_config(tg.base_url, data)
    async with running(make_bot(config, EchoTier()), config) as (client, server):
        await post_update(client, text_update(1, "one"))
        await tg.wait_for(lambda f: f.sent("sendMessage", ok_only=False))
        await post_update(client, text_update(2, "two"))
        await tg.wait_for(lambda f: f.texts())
        failed = server.telegram.store.query("SELECT state, last_error FROM outbox")
    assert len([c for c in tg.calls if c.method == "sendMessage"]) == 2
    assert tg.texts() == ["echo: two"]
    assert failed[0][0] == "failed" and "blocked" in failed[0][1]


async def test_messages_to_one_chat_keep_their_order_through_retries(tg, tmp_path):
    tg.fail_next("sendMessage", 502)
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false")
    async with running(make_bot(config, EchoTier()), config) as (client, server):
        server.telegram.outbox.backoff_base_s = 0.1
        for i in range(1, 6):
            await post_update(client, text_update(i, f"m{i}"))
        await tg.wait_for(lambda f: len(f.texts()) == 5, timeout=60)
    assert tg.texts() == [f"echo: m{i}" for i in range(1, 6)]


async def test_two_processes_sharing_the_outbox_send_each_row_once(tg, tmp_path):
    """Web and worker share a data dir: the lease makes each queued reply leave once."""
    data = tmp_path / "data"
    tg.latency["sendMessage"] = 1.2  # still in flight when the other process looks
    config = make_config(tg.base_url, data)
    bot_a, bot_b = make_bot(config, EchoTier()), make_bot(config, EchoTier())
    async with running(bot_a, config) as (_, a), running(bot_b, config) as (_, b):
        for i in range(20):
            await a.telegram.send(str(100 + i), f"note {i}")
        await tg.wait_for(lambda f: len(f.texts()) >= 20, timeout=60)
        await settled(a)
        await settled(b)
    assert sorted(tg.texts()) == sorted(f"note {i}" for i in range(20))


async def test_server_starts_while_telegram_is_unreachable_and_answers_once_connected(tg, tmp_path):
    tg.fail_next("getMe", 502)  # Telegram is down when the server starts
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier()), config) as (client, _):
        assert (await post_update(client, text_update(1, "anyone?"))).status == 200  # recorded anyway
        await tg.wait_for(lambda f: f.texts(), timeout=60)
    assert [c.status for c in tg.calls if c.method == "getMe"][:2] == [502, 200]
    assert tg.texts() == ["echo: anyone?"]


async def test_rejected_token_is_a_configuration_error(tg, tmp_path):
    from adapters.telegram import TelegramAdapter
    from bot.config import ConfigError

    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_BOT_TOKEN="999:not-the-right-token")
    store = DurableStore.in_dir(tmp_path / "data")
    adapter = TelegramAdapter.from_config(make_bot(config, EchoTier()), config, store)
    try:
        with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
            await adapter.start()
    finally:
        await adapter.stop(timeout=0.1)
        store.close()


async def test_a_large_backlog_left_by_a_crash_is_answered_promptly_after_restart(tg, tmp_path):
    from adapters.inbox import Inbox
    import json as _json

    data = tmp_path / "data"
    store = DurableStore.in_dir(data)
    # Recorded by a process that died an hour ago: its leases have long run out.
    crashed = Inbox(store, lease_s=30, owner="crashed-process", clock=FakeClock(time.time() - 3600))
    for i in range(1, 1201):
        await crashed.record(f"telegram:{i}", _json.dumps(text_update(i, f"q{i}", chat_id=1000 + i)))
    store.close()
    # Leases of 600 s: the recovery loop looks again only after 30 s (its longest interval).
    config = make_config(tg.base_url, data, TELEGRAM_STREAM_DRAFTS="false", TELEGRAM_LEASE_S="600")
    async with running(make_bot(config, EchoTier()), config) as (_, server):
        # All of it is taken up in the first look, not one batch (500) per look: well
        # within the 30 s a second look would need, however slow the machine.
        await until(lambda: not server.telegram.store.query(
            "SELECT 1 FROM inbox WHERE owner='crashed-process' LIMIT 1"), timeout=25,
            what="the whole backlog claimed at start")
        await tg.wait_for(lambda f: len(f.texts()) == 1200, timeout=120)
    assert len(set(tg.texts())) == 1200
