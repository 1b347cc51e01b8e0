"""Graceful shutdown: SIGTERM stops new work, finishes the replies in flight, then exits."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import aiohttp
import pytest

from fakes.llm_servers import FakeProviders, ok
from fakes.telegram_api import FakeTelegram, text_update
from telegram_harness import SECRET, EchoTier, inbox_rows, make_bot, make_config, post_update, running
from fakes.procs import free_port as _free_port, wait_http as _wait_http, wait_settled
from polling import until


async def test_drain_finishes_in_flight_replies_and_refuses_new_updates(tmp_path):
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false")
        tier = EchoTier(delay=0.5)
        async with running(make_bot(config, tier), config) as (client, server):
            for i in (1, 2, 3):
                assert (await post_update(client, text_update(i, f"q{i}", chat_id=40 + i))).status == 200
            await until(lambda: len(tier.calls) == 3, what="three answers in progress")
            drain = asyncio.create_task(server.drain())
            await until(lambda: server.draining, what="draining")
            late = await post_update(client, text_update(9, "too late", chat_id=49))
            assert late.status == 503
            await drain
            assert sorted(tg.texts()) == ["echo: q1", "echo: q2", "echo: q3"]  # done before drain returned
    assert [k for k, _ in inbox_rows(tmp_path / "data")] == ["telegram:1", "telegram:2", "telegram:3"]


@pytest.mark.timeout(600)  # starting a process on a loaded machine
async def test_tierbot_serve_on_sigterm_answers_what_it_accepted_then_exits(tmp_path):
    """The real `tierbot serve` process, real LLM chain (fake Groq answering in 1.5 s)."""
    async with FakeTelegram() as tg, FakeProviders() as fp:
        fp.groq.default = ok("Your parcel left our warehouse today.", latency=1.5)
        port = _free_port()
        env = {**os.environ, **fp.env(), "TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url,
               "TELEGRAM_WEBHOOK_SECRET": SECRET, "TIERBOT_DATA_DIR": str(tmp_path / "data"),
               "PORT": str(port), "TIERBOT_LOG_LEVEL": "WARNING"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", env=env, cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_http(base + "/healthz")
            async with aiohttp.ClientSession() as http:
                async with http.post(base + "/telegram/webhook", data=json.dumps(text_update(1, "where is my parcel?")),
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET,
                                              "Content-Type": "application/json"}) as r:
                    assert r.status == 200
            await until(lambda: fp.groq.requests, what="the answer is being produced")  # it takes 1.5 s
            assert tg.texts() == []
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert tg.texts(42) == ["Your parcel left our warehouse today."]
    assert inbox_rows(tmp_path / "data") == [("telegram:1", "done")]


@pytest.mark.timeout(600)  # two process starts on a loaded machine
async def test_kill_9_mid_answer_then_restart_answers_each_update_once(tmp_path):
    """A process killed outright (no drain) loses nothing: the restart answers what it had accepted."""
    async with FakeTelegram() as tg, FakeProviders() as fp:
        fp.groq.default = ok("slow answer", latency=5.0)
        port = _free_port()
        env = {**os.environ, **fp.env(), "TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url,
               "TELEGRAM_WEBHOOK_SECRET": SECRET, "TIERBOT_DATA_DIR": str(tmp_path / "data"),
               "PORT": str(port), "TIERBOT_LOG_LEVEL": "WARNING", "TELEGRAM_LEASE_S": "1"}
        base = f"http://127.0.0.1:{port}"

        async def start():
            p = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", env=env, cwd=str(tmp_path),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            await _wait_http(base + "/healthz")
            return p

        proc = await start()
        try:
            async with aiohttp.ClientSession() as http:
                for i in (1, 2, 3):
                    async with http.post(base + "/telegram/webhook",
                                         data=json.dumps(text_update(i, f"question {i}", chat_id=60 + i)),
                                         headers={"X-Telegram-Bot-Api-Secret-Token": SECRET,
                                                  "Content-Type": "application/json"}) as r:
                        assert r.status == 200
            await until(lambda: len(fp.groq.requests) == 3, what="all three answers in progress")
        finally:
            proc.kill()  # SIGKILL: no drain, no lease release
            await proc.wait()
        assert tg.texts() == []

        # Whichever provider answers (a restarted process sends at most 2 first attempts to
        # a provider that has not answered yet: TIERBOT_SLOW_START), the answer is the same.
        for provider in (fp.groq, fp.gemini, fp.claude):
            provider.default = ok("fast answer")
        proc = await start()
        try:
            await tg.wait_for(lambda f: len(f.texts()) == 3, timeout=120)
            await wait_settled(tmp_path / "data")  # nothing more to send: a duplicate would be out
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 120)
        assert sorted(tg.texts()) == ["fast answer"] * 3
        assert sorted(str(p["chat_id"]) for p in tg.sent()) == ["61", "62", "63"]
    assert inbox_rows(tmp_path / "data") == [("telegram:1", "done"), ("telegram:2", "done"), ("telegram:3", "done")]
