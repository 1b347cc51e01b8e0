"""The ledger records every handled message durably, without holding up the reply."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from zoneinfo import ZoneInfo

import pytest

from bot import Attempt, Event, Reply, SupportBot
from bot.app import build_bot
from bot.config import Config
from bot.ledger import Ledger, LedgerHistory, LedgerListener
from bot.pricing import PriceBook
from bot.rendering import Renderer, load_business_profile
from bot.report import ReportInputs, compute_report
from bot.templates_tier import TemplateTier
from bot.turn import Turn


def ev(text: str, conv: str = "c1", platform: str = "telegram") -> Event:
    return Event(platform=platform, conversation_id=conv, user_id="u-" + conv, text=text)


class PricedChain:
    """Stands in for the LLM chain: groq is rate limited, then an answer from `model`,
    each attempt priced by the real shipped price book."""

    name = "llm"

    def __init__(self, prices: PriceBook, model: str = "llama-3.3-70b-versatile") -> None:
        self.prices, self.model = prices, model

    async def answer(self, event, turn):
        turn.record(Attempt("groq", "llama-3.1-8b-instant", "rate_limited", 3.0, detail="429"))
        cost = self.prices.cost("groq", self.model, 1234, 567)
        turn.record(Attempt("groq", self.model, "ok", 250.0, input_tokens=1234, output_tokens=567, cost_usd=cost))
        return Reply(text="priced answer", tier="llm", provider="groq", model=self.model)


def make_bot(path, *tiers) -> tuple[SupportBot, Ledger]:
    ledger = Ledger(path)
    bot = SupportBot([*tiers, TemplateTier(Renderer(profile=load_business_profile(None)))], history=ledger.history,
                     listeners=[LedgerListener(ledger)], resources=[ledger])
    return bot, ledger


def rows(path, sql, *params):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def test_each_message_is_one_record_with_its_attempts_tokens_and_exact_cost(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    bot, ledger = make_bot(db, PricedChain(PriceBook.load()))
    async with bot:
        reply = await bot.handle(ev("where is my parcel?"))
    # 1234 input and 567 output tokens at $0.59 / $0.79 per million (bot/data/prices.toml).
    expected = (1234 * 0.59 + 567 * 0.79) / 1_000_000
    assert reply.cost_usd == pytest.approx(expected, rel=1e-12)
    [msg] = rows(db, "SELECT platform, conversation_id, user_id, tier, provider, model, fallback, "
                     "input_tokens, output_tokens, cost_usd, question, cache_hit FROM messages")
    assert msg[:9] == ("telegram", "c1", "u-c1", "llm", "groq", "llama-3.3-70b-versatile", 1, 1234, 567)
    assert msg[9] == pytest.approx(expected, rel=1e-12)
    assert msg[10:] == ("where is my parcel?", 0)
    attempts = rows(db, "SELECT seq, provider, model, outcome, detail, input_tokens, output_tokens, cost_usd "
                        "FROM attempts ORDER BY seq")
    assert attempts[0] == (0, "groq", "llama-3.1-8b-instant", "rate_limited", "429", 0, 0, 0.0)
    assert attempts[1][:7] == (1, "groq", "llama-3.3-70b-versatile", "ok", None, 1234, 567)


async def test_unknown_price_is_stored_as_null_and_flagged_never_zero(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    prices = PriceBook.load()
    bot, ledger = make_bot(db, PricedChain(prices, model="some-new-model"))
    async with bot:
        reply = await bot.handle(ev("hi"))
        assert reply.cost_usd is None
        report = await ledger.read(lambda c: compute_report(c, ReportInputs(dt.date.today(), ZoneInfo("UTC"))))
    assert rows(db, "SELECT cost_usd FROM messages") == [(None,)]
    assert rows(db, "SELECT cost_usd FROM attempts WHERE model = 'some-new-model'") == [(None,)]
    assert report["totals"]["price_unknown"] and report["totals"]["unknown_price_attempts"] == 1
    [row] = [r for r in report["spend"] if r["model"] == "some-new-model"]
    assert row["price_unknown"]


async def test_template_and_handoff_meta_are_recorded(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    bot, _ = make_bot(db)
    async with bot:
        await bot.handle(ev("I want a refund"))
        await bot.handle(ev("let me talk to a human please", conv="c2"))
    got = rows(db, "SELECT conversation_id, tier, template, handoff_requested, json_extract(meta, '$.template') "
                   "FROM messages ORDER BY id")
    assert got[0][:2] == ("c1", "template") and got[0][2] == got[0][4] != "generic"
    assert got[1][1] == "template" and got[1][3] == 1


async def test_a_locked_database_does_not_hold_up_replies_and_loses_nothing(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    bot, ledger = make_bot(db)
    async with bot:
        await bot.handle(ev("warm up"))
        await ledger.flush()
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # e.g. another process vacuuming
        try:
            t0 = time.perf_counter()
            for i in range(20):
                reply = await bot.handle(ev(f"question {i}", conv=f"x{i}"))
                assert reply.text
            # A reply that waited for the lock would wait its 5 s busy timeout: 20 of them
            # 100 s. The margin under that is for a loaded machine (0.1 s idle).
            assert time.perf_counter() - t0 < 5.0
            await asyncio.sleep(0.3)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await ledger.flush()
    assert rows(db, "SELECT COUNT(*) FROM messages") == [(21,)]


async def test_history_survives_a_restart_and_reads_see_queued_turns(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    bot, ledger = make_bot(db)
    async with bot:
        await bot.handle(ev("my order number is 4711", conv="conv-a"))
    bot2, ledger2 = make_bot(db)
    async with bot2:
        turns = await ledger2.history.recent("conv-a", 10)
        assert [t.role for t in turns] == ["user", "assistant"]
        assert turns[0].text == "my order number is 4711"
        # A turn queued but not yet committed is seen by the next read of a cold conversation.
        fresh = LedgerHistory(ledger2)
        await fresh.append("conv-b", Turn("user", "first", 1.0))
        await fresh.append("conv-b", Turn("assistant", "second", 2.0))
        assert [t.text for t in await fresh.recent("conv-b", 10)] == ["first", "second"]
        assert [t.text for t in await fresh.recent("conv-b", 1)] == ["second"]


async def test_concurrent_first_reads_of_a_conversation_do_not_duplicate_turns(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    try:
        for i in range(3):
            ledger.append_turn("c", "user", f"t{i}", float(i))
        history = LedgerHistory(ledger)
        a, b = await asyncio.gather(history.recent("c", 10), history.recent("c", 10))
        await history.append("c", Turn("assistant", "t3", 3.0))
        assert [t.text for t in a] == [t.text for t in b] == ["t0", "t1", "t2"]
        assert [t.text for t in await history.recent("c", 10)] == ["t0", "t1", "t2", "t3"]
    finally:
        await ledger.aclose()


async def test_record_event_rejects_bad_input_and_records_nothing(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    try:
        with pytest.raises(ValueError, match="kind"):
            await ledger.record_event("")
        with pytest.raises(ValueError, match="JSON"):
            await ledger.record_event("rating", "c1", {"rating": object()})
        with pytest.raises(ValueError, match="dict"):
            await ledger.record_event("rating", "c1", [5])  # type: ignore[arg-type]
        await ledger.record_event("rating", "c1", {"rating": 5}, ts=123.0)
        await ledger.flush()
        got = await ledger.read(lambda c: c.execute("SELECT ts, kind, conversation_id, data FROM events").fetchall())
    finally:
        await ledger.aclose()
    assert got == [(123.0, "rating", "c1", json.dumps({"rating": 5}))]


async def test_spend_today_counts_the_operators_day_only(tmp_path):
    tz = ZoneInfo("America/New_York")
    # 23:30 local on Nov 24 and 00:30 local on Nov 25 are both Nov 25 in UTC.
    late = dt.datetime(2026, 11, 24, 23, 30, tzinfo=tz).timestamp()
    early = dt.datetime(2026, 11, 25, 0, 30, tzinfo=tz).timestamp()
    now = [late]
    ledger = Ledger(tmp_path / "l.sqlite3", tz=tz, clock=lambda: now[0])
    try:
        for ts, provider, cost in ((late, "groq", 0.25), (early, "groq", 0.5), (early, "claude", 1.0)):
            now[0] = ts
            ledger.record_reply(ev("q"), Reply("a", "llm", provider, "m", attempts=[
                Attempt(provider, "m", "ok", cost_usd=cost), Attempt("gemini", "g", "ok", cost_usd=None)]))
        now[0] = early + 60
        assert await ledger.spend_today() == pytest.approx(1.5)
        assert await ledger.spend_today("groq") == pytest.approx(0.5)
        assert await ledger.spend_today("gemini") == 0.0
        now[0] = late
        assert await ledger.spend_today("groq") == pytest.approx(0.25)
    finally:
        await ledger.aclose()


async def test_plugin_wires_history_listener_gate_and_services(base_env):
    env = dict(base_env)
    bot = build_bot(Config.from_env(env, dotenv=False), plugins=("bot.ledger.plugin:install",))
    async with bot:
        assert isinstance(bot.history, LedgerHistory)
        assert bot.services["budget"] in bot.services["provider_gates"]
        await bot.handle(ev("hello", conv="p1"))
        await bot.services["ledger"].record_event("handoff_opened", "p1")
        assert await bot.services["ledger"].spend_today() == 0.0
    # A second process on the same data dir sees the conversation.
    bot2 = build_bot(Config.from_env(env, dotenv=False), plugins=("bot.ledger.plugin:install",))
    async with bot2:
        assert [t.role for t in await bot2.history.recent("p1", 5)] == ["user", "assistant"]
    path = Config.from_env(env, dotenv=False).data_dir / "ledger.sqlite3"
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "SELECT kind, conversation_id FROM events") == [("handoff_opened", "p1")]


async def test_events_after_close_are_dropped_without_failing_the_caller(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    await ledger.aclose()
    await ledger.record_event("staff_reply", "c1")  # must not raise
