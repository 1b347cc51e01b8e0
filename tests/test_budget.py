"""Daily caps move traffic off a provider that has spent its budget, alert once, and
survive a restart (spend is read back from the ledger)."""
from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

import fakes.llm_servers as F
from bot import Attempt, Event, Reply
from bot.app import build_bot
from bot.budget import OVERALL, BudgetGate, load_caps
from bot.config import Config, ConfigError
from bot.ledger import Ledger
from fakes.llm_bot import llm_env

# The fake Groq answers 20 input + 7 output tokens; llama-3.3-70b-versatile costs
# $0.59 / $0.79 per million (bot/data/prices.toml).
GROQ_REPLY_USD = (20 * 0.59 + 7 * 0.79) / 1_000_000


class Posts:
    def __init__(self) -> None:
        self.calls: list[tuple[list, str]] = []

    async def __call__(self, blocks, text):
        self.calls.append((blocks, text))


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "tierbot.toml"
    path.write_text(text)
    return str(path)


def ev(i: int) -> Event:
    return Event(platform="telegram", conversation_id=f"c{i}", user_id=f"u{i}", text="what are your delivery times?")


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


def real_bot(env):
    return build_bot(Config.from_env(env, dotenv=False),
                     plugins=("bot.ledger.plugin:install", "bot.llm.plugin:install"))


async def test_cap_moves_traffic_to_the_next_provider_alerts_once_and_survives_restart(fp, tmp_path):
    cap = GROQ_REPLY_USD * 2.5  # reached by the third Groq reply
    env = llm_env(fp, tmp_path / "data", TIERBOT_CONFIG=write_config(tmp_path, f"[budget.providers]\ngroq = {cap!r}\n"))
    posts = Posts()
    async with real_bot(env) as bot:
        bot.services["budget"].set_alert_poster(posts)
        replies = [await bot.handle(ev(i)) for i in range(6)]
        ledger = bot.services["ledger"]
        assert await ledger.spend_today("groq") == pytest.approx(3 * GROQ_REPLY_USD, rel=1e-9)
    assert [r.provider for r in replies] == ["groq"] * 3 + ["gemini"] * 3
    assert [(a.provider, a.outcome) for a in replies[3].attempts] == [("groq", "skipped:budget"), ("gemini", "ok")]
    assert len(fp.groq.requests) == 3  # no request reached Groq after the cap
    assert len(posts.calls) == 1 and "groq" in posts.calls[0][1] and "cap" in posts.calls[0][1]

    # Restart: the spend comes back from the ledger, Groq stays skipped, no second alert.
    posts2 = Posts()
    async with real_bot(env) as bot:
        bot.services["budget"].set_alert_poster(posts2)
        reply = await bot.handle(ev(10))
        assert reply.provider == "gemini"
        alerts = await bot.services["ledger"].read(lambda c: c.execute(
            "SELECT data FROM events WHERE kind = 'budget_alert'").fetchall())
    assert len(fp.groq.requests) == 3 and posts2.calls == []
    assert [json.loads(d)["scope"] for (d,) in alerts] == ["groq"]


async def test_overall_cap_sends_everything_to_the_templates(fp, tmp_path):
    env = llm_env(fp, tmp_path / "data", TIERBOT_DAILY_BUDGET_USD=repr(GROQ_REPLY_USD * 1.5))
    async with real_bot(env) as bot:
        replies = [await bot.handle(ev(i)) for i in range(3)]
    assert [r.tier for r in replies] == ["llm", "llm", "template"]
    assert [a.outcome for a in replies[2].attempts] == ["skipped:budget"] * 3
    assert replies[2].text  # the customer still gets an answer


def unit_gate(tmp_path, caps, now):
    ledger = Ledger(tmp_path / "l.sqlite3", clock=lambda: now[0])
    gate = BudgetGate(caps, ZoneInfo("Europe/Berlin"), ledger=ledger, clock=lambda: now[0])
    return gate, ledger


def reply_from(provider: str, cost: float | None) -> Reply:
    return Reply("a", "llm", provider, "m", attempts=[Attempt(provider, "m", "ok", cost_usd=cost)])


async def test_the_cap_resets_at_midnight_in_the_operators_time_zone(tmp_path):
    tz = ZoneInfo("Europe/Berlin")
    now = [dt.datetime(2026, 11, 24, 23, 50, tzinfo=tz).timestamp()]
    gate, ledger = unit_gate(tmp_path, {"groq": 1.0}, now)
    posts = Posts()
    gate.set_alert_poster(posts)
    try:
        await gate.on_reply(ev(1), reply_from("groq", 0.6), None)
        assert gate.skip_reason("groq", "m") is None
        await gate.on_reply(ev(1), reply_from("groq", 0.6), None)
        assert gate.skip_reason("groq", "m") == "budget"
        assert gate.skip_reason("gemini", "m") is None
        await gate.on_reply(ev(1), reply_from("groq", 0.6), None)  # still over: no second alert
        await gate.aclose()
        assert len(posts.calls) == 1
        now[0] += 15 * 60  # 00:05 the next day, Berlin time
        assert gate.skip_reason("groq", "m") is None
        await gate.on_reply(ev(1), reply_from("groq", 1.2), None)
        await gate.aclose()
        assert gate.skip_reason("groq", "m") == "budget" and len(posts.calls) == 2  # one per cap per day
    finally:
        await ledger.aclose()


async def test_unknown_prices_are_not_counted_as_spend(tmp_path):
    now = [1_800_000_000.0]
    gate, ledger = unit_gate(tmp_path, {OVERALL: 0.5}, now)
    try:
        for _ in range(5):
            await gate.on_reply(ev(1), reply_from("claude", None), None)
        assert gate.skip_reason("claude", "x") is None and gate.total() == 0.0
    finally:
        await ledger.aclose()


async def test_restart_seeds_spend_and_alerts_from_the_ledger(tmp_path):
    now = [dt.datetime(2026, 11, 24, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()]
    gate, ledger = unit_gate(tmp_path, {"groq": 1.0, OVERALL: 5.0}, now)
    ledger.record_reply(ev(1), reply_from("groq", 0.7))
    ledger.record_reply(ev(1), reply_from("gemini", 0.2))
    await ledger.record_event("budget_alert", data={"scope": "groq"})
    await ledger.flush()
    gate.seed_from_ledger()
    assert gate.spent == pytest.approx({"groq": 0.7, "gemini": 0.2})
    assert gate.alerted == {"groq"}
    await ledger.aclose()


@pytest.mark.parametrize("env, toml, message", [
    ({"TIERBOT_DAILY_BUDGET_USD": "lots"}, "", "TIERBOT_DAILY_BUDGET_USD must be a number"),
    ({"TIERBOT_DAILY_BUDGET_USD": "-1"}, "", "greater than 0"),
    ({}, "[budget.providers]\ngroq = \"x\"\n", r"\[budget.providers\] groq must be a number"),
    ({}, "[budget]\nproviders = 3\n", "must be a table"),
])
def test_bad_caps_are_clear_config_errors(tmp_path, env, toml, message):
    env = {"TIERBOT_DATA_DIR": str(tmp_path), **env}
    if toml:
        env["TIERBOT_CONFIG"] = write_config(tmp_path, toml)
    with pytest.raises(ConfigError, match=message):
        load_caps(Config.from_env(env, dotenv=False))


def test_caps_from_env_and_config(tmp_path):
    env = {"TIERBOT_DAILY_BUDGET_USD": "12.5",
           "TIERBOT_CONFIG": write_config(tmp_path, "[budget.providers]\nclaude = 2\ngroq = 0.5\n")}
    assert load_caps(Config.from_env(env, dotenv=False)) == {OVERALL: 12.5, "claude": 2.0, "groq": 0.5}


async def test_spend_by_another_process_sharing_the_ledger_is_taken_in(tmp_path):
    now = [dt.datetime(2026, 11, 24, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()]
    gate, ledger = unit_gate(tmp_path, {"groq": 1.0}, now)
    posts = Posts()
    gate.set_alert_poster(posts)
    try:
        # Another worker process answered with Groq and wrote to the same ledger.
        other = Ledger(tmp_path / "l.sqlite3", clock=lambda: now[0])
        other.record_reply(ev(2), reply_from("groq", 0.9))
        await other.aclose()
        mine = reply_from("groq", 0.2)  # this process: $0.20, recorded like the ledger listener does
        ledger.record_reply(ev(1), mine)
        await gate.on_reply(ev(1), mine, None)
        assert gate.skip_reason("groq", "m") is None  # not re-read yet
        now[0] += 31
        await gate.on_reply(ev(1), reply_from("gemini", 0.01), None)
        await gate.aclose()  # waits for the re-read
        assert gate.spent["groq"] == pytest.approx(1.1)
        assert gate.skip_reason("groq", "m") == "budget" and len(posts.calls) == 1
    finally:
        await ledger.aclose()
