"""Staff questions to the bot (route "staff", asked from Slack) are their own line in the
daily report: the customer figures describe customers only, and customer cost + staff
cost still add up to what the providers were paid."""
from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from bot import Attempt, Event, Reply
from bot.app import build_bot
from bot.config import Config
from bot.ledger import Ledger, day_bounds
from bot.report import ReportInputs, compute_report, render_report, slack_message

UTC = ZoneInfo("UTC")
DAY = dt.date(2026, 5, 4)
START = day_bounds(DAY, UTC)[0]
GROQ = "llama-3.3-70b-versatile"


def llm(cost: float | None, latency: float, route: str, tin: int = 100, tout: int = 10, fail: bool = False) -> Reply:
    attempts = [Attempt("groq", GROQ, "timeout")] if fail else []
    attempts.append(Attempt("groq", GROQ, "ok", latency, None, tin, tout, cost))
    reply = Reply("a", "llm", "groq", GROQ, latency_ms=latency, meta={"route": route}, attempts=attempts)
    reply.fallback = fail
    return reply


async def record(ledger: Ledger, now: list[float], ts: float, event: Event, reply: Reply) -> None:
    now[0] = ts
    ledger.record_reply(event, reply)


@pytest.fixture
async def report(tmp_path):
    now = [START]
    ledger = Ledger(tmp_path / "ledger.sqlite3", tz=UTC, clock=lambda: now[0])
    t = START + 3600
    # Customers: 6 messages in 3 conversations (c1 also asks the day before).
    customer = [
        ("c1", llm(0.001, 100.0, "customer")),
        ("c1", llm(0.002, 300.0, "customer", tin=200, fail=True)),
        ("c2", llm(None, 500.0, "customer")),  # a model with no known price
        ("c2", Reply("t", "template", latency_ms=40.0, meta={"template": "generic"})),
        ("c3", Reply("f", "cache", "cache", "faq", latency_ms=2.0, meta={"faq_entry": "hours"},
                     attempts=[Attempt("cache", "faq", "ok", 2.0)])),
        ("c3", Reply("f", "cache", "cache", "faq", latency_ms=3.0, meta={"faq_entry": "hours"},
                     attempts=[Attempt("cache", "faq", "ok", 3.0)])),
    ]
    for i, (conv, reply) in enumerate(customer):
        q = "can I pay in gold" if reply.tier == "template" else "where is my order"
        await record(ledger, now, t + i, Event("telegram", conv, "u-" + conv, q), reply)
    # Staff: an LLM answer (as the chain records it), a template answer marked by
    # the pipeline, a cache answer, and one recorded before routes were stamped (a Slack
    # message with no route in its meta). Latencies far above the customers' and equal
    # to one of them, so the percentiles show whether staff were left out.
    staff = [
        ("slack:C1:1.0", llm(0.5, 9000.0, "staff", tin=5000, tout=500)),
        ("slack:C1:1.0", llm(0.25, 100.0, "staff", tin=2500, tout=250)),
        ("slack:C1:2.0", Reply("t", "template", latency_ms=9500.0, meta={"template": "generic", "route": "staff"})),
        ("slack:C2:3.0", Reply("f", "cache", "cache", "faq", latency_ms=9600.0,
                               meta={"faq_entry": "refunds", "route": "staff"},
                               attempts=[Attempt("cache", "faq", "ok", 9600.0)])),
        ("slack:C3:4.0", Reply("t", "template", latency_ms=9700.0, meta={"template": "generic"})),
    ]
    for i, (conv, reply) in enumerate(staff):
        await record(ledger, now, t + 100 + i, Event("slack", conv, "U1", "can I pay in gold"), reply)
    # The day before: 2 customer messages and a staff question.
    before = START - 3600
    await record(ledger, now, before, Event("telegram", "c1", "u-c1", "hi"), llm(0.004, 100.0, "customer"))
    await record(ledger, now, before + 1, Event("telegram", "c9", "u-c9", "hi"), llm(0.006, 100.0, "customer"))
    await record(ledger, now, before + 2, Event("slack", "slack:C1:0.5", "U1", "hi"), llm(1.0, 100.0, "staff"))
    await ledger.flush()
    r = await ledger.read(lambda c: compute_report(c, ReportInputs(DAY, UTC, caps={"overall": 10.0})))
    yield r, ledger
    await ledger.aclose()


async def test_customer_figures_leave_staff_questions_out(report):
    r, _ = report
    t = r["totals"]
    assert t["messages"] == 6 and t["conversations"] == 3
    assert {row["tier"]: row["count"] for row in r["by_tier"]} == {"llm": 3, "template": 1, "cache": 2}
    assert r["by_model"] == [{"provider": "groq", "model": GROQ, "count": 3, "share": 0.5,
                              "paid_for_limits": 0}]
    assert t["cost_usd"] == pytest.approx(0.003) and t["unknown_price_attempts"] == 1
    assert t["cost_per_1000"] == pytest.approx(0.003 / 6 * 1000)
    assert (t["input_tokens"], t["output_tokens"]) == (400, 30)
    assert t["cache_share"] == pytest.approx(2 / 6) and t["fallback_rate"] == pytest.approx(1 / 6)
    lat = {row["tier"]: row for row in r["latency"]}
    assert (lat["llm"]["p50_ms"], lat["llm"]["p95_ms"]) == (300.0, 500.0)  # not 9000
    assert (lat["template"]["p50_ms"], lat["template"]["p95_ms"]) == (40.0, 40.0)
    assert (lat["cache"]["p50_ms"], lat["cache"]["p95_ms"]) == (2.0, 3.0)
    assert r["faq_top"] == [{"entry": "hours", "count": 2}]  # the staff's "refunds" is not a customer's
    assert r["unanswered"] == [{"question": "can i pay in gold", "count": 1}]  # staff asked it 2 more times
    assert r["cache_savings"]["cache_answers"] == 2


async def test_staff_questions_are_their_own_line_and_spend_adds_up(report):
    r, _ = report
    t, s = r["totals"], r["staff"]
    assert s["questions"] == 5 == t["staff_questions"]
    assert s["cost_usd"] == pytest.approx(0.75) and (s["input_tokens"], s["output_tokens"]) == (7500, 750)
    assert t["spend_usd"] == pytest.approx(t["cost_usd"] + s["cost_usd"]) == pytest.approx(0.753)
    assert math.fsum(row["cost_usd"] for row in r["spend"]) == pytest.approx(t["spend_usd"])
    assert r["budget"]["caps"][0]["spent_usd"] == pytest.approx(0.753)  # the budget counts what was paid
    assert r["chart"]["series"]["groq"][-1] == pytest.approx(0.753)
    compare = {row["key"]: row for row in r["compare"]}
    assert compare["messages"]["previous"] == 2 and compare["conversations"]["previous"] == 2
    assert compare["cost_usd"]["previous"] == pytest.approx(0.010)  # not the staff's $1


async def test_every_format_shows_the_staff_line(report):
    r, _ = report
    for fmt in ("text", "markdown", "html"):
        out = render_report(r, fmt)
        assert "Staff questions" in out and "$0.7500" in out and "$0.7530" in out, fmt
    assert json.loads(render_report(r, "json"))["staff"]["questions"] == 5
    blocks, _ = slack_message(r)
    fields = [f["text"] for b in blocks for f in b.get("fields", [])]
    assert any(f.startswith("*Staff questions*\n5, $0.7500") for f in fields)


async def test_a_staff_question_through_the_bot_is_recorded_as_staff(tmp_path):
    """The pipeline marks the route on whatever tier answers (here the templates), so the
    report tells a staff question from a customer's."""
    bot = build_bot(Config({"TIERBOT_DATA_DIR": str(tmp_path)}), plugins=("bot.ledger.plugin:install",))
    async with bot:
        await bot.handle(Event("telegram", "c1", "u1", "do you sell boats"))
        await bot.handle(Event("slack", "slack:C1:9.9", "U1", "what do we say about boats?", route="staff"))
        ledger = bot.services["ledger"]
        await ledger.flush()
        metas = await ledger.read(lambda c: [json.loads(m or "{}") for (m,) in
                                             c.execute("SELECT meta FROM messages ORDER BY id")])
        today = dt.datetime.fromtimestamp(ledger.clock(), ledger.tz).date()
        r = await ledger.read(lambda c: compute_report(c, ReportInputs(today, ledger.tz)))
    assert "route" not in metas[0] and metas[1]["route"] == "staff"
    assert r["totals"]["messages"] == 1 and r["staff"]["questions"] == 1


async def test_conversation_ids_with_any_characters_are_counted_exactly(tmp_path):
    now = [START + 60]
    ledger = Ledger(tmp_path / "ledger.sqlite3", tz=UTC, clock=lambda: now[0])
    for conv in ("a\x1fb", "a", "b", "a\x1fb", "", "ü,;|"):
        ledger.record_reply(Event("telegram", conv, "u", "q"), Reply("t", "template", meta={"template": "generic"}))
    await ledger.flush()
    r = await ledger.read(lambda c: compute_report(c, ReportInputs(DAY, UTC)))
    await ledger.aclose()
    assert r["totals"]["conversations"] == 5


async def test_staff_sql_matches_the_index_and_old_rows(tmp_path):
    """The staff test is the partial index's own expression (a query with different text
    would not be served by it, and INDEXED BY would fail)."""
    from bot.storage.sqlite.ledger_schema import STAFF_SQL

    ledger = Ledger(tmp_path / "ledger.sqlite3")
    await ledger.aclose()
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    rows = [("slack", None), ("slack", '{"template": "generic"}'), ("slack", '{"route": "customer"}'),
            ("telegram", '{"route": "staff"}'), ("telegram", None), ("telegram", "not json {\"route\""),
            ("slack", "not json {")]
    got = [conn.execute(f"SELECT {STAFF_SQL} FROM (SELECT ? AS platform, ? AS meta)", row).fetchone()[0]
           for row in rows]
    conn.close()
    assert [bool(g) for g in got] == [True, True, False, True, False, False, True]
