"""Per-customer rate limit: one polite notice, then silence, and never an LLM call."""
from __future__ import annotations

import pytest

from bot.app import build_bot
from bot.config import Config, ConfigError
from bot.models import Event
from bot.ratelimit import RateLimitGate, RateLimitSettings
from bot.rendering import Renderer
from fakes.telegram_api import FakeTelegram, text_update
from telegram_harness import EchoTier, make_bot, make_config, post_update, running, settled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ev(user: str = "u1", platform: str = "telegram") -> Event:
    return Event(platform=platform, conversation_id=user, user_id=user, text="hi")


def test_limit_then_one_notice_then_silence_until_the_window_frees():
    clock = Clock()
    gate = RateLimitGate(RateLimitSettings(messages=3, window_s=60), clock=clock)
    verdicts = []
    for _ in range(6):
        verdicts.append(gate.check(ev()))
        clock.now += 1
    assert verdicts == ["ok", "ok", "ok", "notice", "silent", "silent"]
    clock.now = 1000.0 + 60.5  # the first message left the window: room for one
    assert [gate.check(ev()), gate.check(ev()), gate.check(ev())] == ["ok", "notice", "silent"]


def test_customers_are_limited_separately():
    gate = RateLimitGate(RateLimitSettings(messages=1, window_s=60), clock=Clock())
    assert [gate.check(ev("a")), gate.check(ev("b")), gate.check(ev("a"))] == ["ok", "ok", "notice"]
    assert gate.check(ev("a", platform="slack")) == "ok"  # same id, another platform: another customer


def test_settings_from_env_and_file(tmp_path):
    assert RateLimitSettings.from_config(Config.from_env({}, dotenv=False)) == RateLimitSettings(10, 60.0)
    env = {"TIERBOT_RATE_LIMIT": "3", "TIERBOT_RATE_WINDOW_S": "10"}
    assert RateLimitSettings.from_config(Config.from_env(env, dotenv=False)) == RateLimitSettings(3, 10.0)
    f = tmp_path / "c.toml"
    f.write_text("[ratelimit]\nmessages = 5\nwindow_s = 30\n")
    assert RateLimitSettings.from_config(Config.from_env({"TIERBOT_CONFIG": str(f)}, dotenv=False)) == \
        RateLimitSettings(5, 30.0)
    with pytest.raises(ConfigError, match="TIERBOT_RATE_LIMIT"):
        RateLimitSettings.from_config(Config.from_env({"TIERBOT_RATE_LIMIT": "lots"}, dotenv=False))


async def test_plugin_puts_the_gate_before_the_llm_and_records_the_event(tmp_path):
    events = []

    class Ledger:
        async def record_event(self, kind, conversation_id="", data=None, ts=None):
            events.append((kind, conversation_id, data["verdict"]))

    def with_ledger_and_llm(parts):
        parts.services["ledger"] = Ledger()
        parts.llm.append(llm)

    llm = EchoTier()
    import sys
    import types
    mod = types.ModuleType("_rl_test_plugin")
    mod.install = with_ledger_and_llm
    sys.modules["_rl_test_plugin"] = mod
    config = Config.from_env({"TIERBOT_DATA_DIR": str(tmp_path), "TIERBOT_RATE_LIMIT": "2"}, dotenv=False)
    async with build_bot(config, plugins=("_rl_test_plugin:install", "bot.ratelimit:install")) as bot:
        replies = [await bot.handle(ev("c1")) for _ in range(4)]
    assert [r.text.startswith("echo") for r in replies] == [True, True, False, False]
    assert "faster than I can answer" in replies[2].text and replies[3].text == ""
    assert len(llm.calls) == 2
    assert events == [("rate_limited", "c1", "notice"), ("rate_limited", "c1", "silent")]


async def test_telegram_customer_over_the_limit_gets_one_notice_and_no_llm_call(tmp_path):
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false")
        llm = EchoTier()
        gate = RateLimitGate(RateLimitSettings(messages=10, window_s=60), Renderer.from_config(config))
        async with running(make_bot(config, gate, llm), config) as (client, server):
            for i in range(1, 15):
                assert (await post_update(client, text_update(i, f"q{i}"))).status == 200
            other = text_update(100, "I am someone else", chat_id=77)
            await post_update(client, other)
            await tg.wait_for(lambda f: len(f.texts(42)) == 11 and f.texts(77), timeout=60)
            await settled(server)
    texts = tg.texts(42)
    assert texts[:10] == [f"echo: q{i}" for i in range(1, 11)]
    assert len(texts) == 11 and "faster than I can answer" in texts[10]
    assert len([e for e in llm.calls if e.user_id == "42"]) == 10
    assert tg.texts(77) == ["echo: I am someone else"]
