"""Polling mode (`tierbot poll`): getUpdates long polling with the same inbox guarantees."""
from __future__ import annotations

import asyncio

from adapters.durable import DurableStore
from adapters.telegram import TelegramAdapter
from fakes.telegram_api import FakeTelegram, text_update
from telegram_harness import EchoTier, inbox_rows, make_bot, make_config


async def run_poller(config, tier, until, timeout=60.0):
    bot = make_bot(config, tier)
    store = DurableStore.in_dir(config.data_dir)
    adapter = TelegramAdapter.from_config(bot, config, store)
    stop = asyncio.Event()
    await adapter.start()
    task = asyncio.create_task(adapter.poll(stop))
    try:
        await asyncio.wait_for(until(), timeout)
    finally:
        stop.set()
        await task
        await adapter.stop(timeout=2)
        store.close()


async def test_polling_answers_and_confirms_offsets_only_after_recording(tmp_path):
    async with FakeTelegram() as tg:
        tg.webhook = {"url": "https://old.example.com/hook"}  # polling must remove it first
        config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_POLL_TIMEOUT_S="1",
                             TELEGRAM_STREAM_DRAFTS="false")
        for i in (10, 11):
            tg.push_update(text_update(i, f"m{i}"))
        tier = EchoTier()

        async def answered():
            await tg.wait_for(lambda f: len(f.texts()) == 2)
            tg.push_update(text_update(12, "m12"))
            await tg.wait_for(lambda f: len(f.texts()) == 3)

        await run_poller(config, tier, answered)
    assert tg.texts() == ["echo: m10", "echo: m11", "echo: m12"]
    assert tg.sent("deleteWebhook") and tg.webhook == {}
    offsets = [int(p.get("offset") or 0) for p in tg.sent("getUpdates")]
    assert offsets[0] == 0 and 12 in offsets and 13 in offsets  # each batch confirmed after recording
    assert [k for k, s in inbox_rows(tmp_path / "data")] == ["telegram:10", "telegram:11", "telegram:12"]


async def test_poller_restart_does_not_answer_twice(tmp_path):
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_POLL_TIMEOUT_S="1")
        tg.push_update(text_update(20, "hello"))
        await run_poller(config, EchoTier(), lambda: tg.wait_for(lambda f: f.texts()))
        # Telegram never got the confirming offset (the worker stopped): it delivers 20 again
        tg.push_update(text_update(20, "hello"))
        tg.push_update(text_update(21, "again"))
        tier = EchoTier()
        await run_poller(config, tier, lambda: tg.wait_for(lambda f: len(f.texts()) == 2))
    assert tg.texts() == ["echo: hello", "echo: again"]
    assert [e.text for e in tier.calls] == ["again"]


async def test_poll_survives_telegram_errors(tmp_path):
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_POLL_TIMEOUT_S="0")
        tg.fail_next("getUpdates", 502)
        tg.fail_next("getUpdates", 429, retry_after=1)
        tg.push_update(text_update(30, "are you up?"))
        await run_poller(config, EchoTier(), lambda: tg.wait_for(lambda f: f.texts()))
    assert tg.texts() == ["echo: are you up?"]


async def test_tierbot_poll_command_answers_and_stops_on_sigterm(tmp_path):
    """The Procfile's worker: `tierbot poll` as a real process."""
    import os
    import signal
    import sys

    async with FakeTelegram() as tg:
        env = {**{k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))},
               "TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url,
               "TIERBOT_DATA_DIR": str(tmp_path / "data"), "TELEGRAM_POLL_TIMEOUT_S": "1",
               "TIERBOT_LOG_LEVEL": "WARNING"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "poll", env=env, cwd=str(tmp_path),
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            tg.push_update(text_update(1, "/start"))
            await tg.wait_for(lambda f: f.texts(), timeout=120)  # a process start on a loaded machine
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-1500:]
    assert tg.texts()[0].startswith("Hi Ann!")
    assert inbox_rows(tmp_path / "data") == [("telegram:1", "done")]
