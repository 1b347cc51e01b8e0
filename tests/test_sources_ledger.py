"""What the LLM was given (Reply.sources) is recorded in the ledger — embedded and
PostgreSQL — and the daily report says how many answers were grounded in the knowledge
base and which sources were used most."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from bot import Event, SupportBot
from bot.config import Config
from bot.models import Attempt, Reply, Source
from bot.report import ReportInputs, compute_report, render_report, slack_message
from bot.storage.backend import Storage
from bot.storage.sqlite.ledger import Ledger
from fakes import llm_servers as F
from fakes.llm_bot import llm_env
from servers import pg_session_url, pg_url  # noqa: F401 - fixtures
from test_retrieval import GIFT_CARDS, seed

UTC = ZoneInfo("UTC")


def _reply(tier: str, sources: tuple[Source, ...] = ()) -> Reply:
    return Reply(text="a", tier=tier, provider="groq" if tier == "llm" else None, model="m" if tier == "llm" else None,
                 attempts=[Attempt("groq", "m", "ok", input_tokens=10)] if tier == "llm" else [], sources=sources)


async def test_the_pipeline_records_sources_and_the_report_counts_grounded_answers(tmp_path):
    async with F.FakeProviders() as fp:
        data = tmp_path / "data"
        seed(data, tmp_path, gift_cards=GIFT_CARDS)
        env = llm_env(fp, data, chain="groq", deadline=5, attempt=3, TIERBOT_LEARNED_CACHE="off")
        async with SupportBot.from_env(env) as bot:
            first = await bot.handle(Event("test", "a", "a", "how long is a gift card valid for?"))
            second = await bot.handle(Event("test", "b", "b", "can I pay with a gift card and a credit card?"))
            staff = await bot.handle(Event("slack", "s", "s", "how long is a gift card valid for?", route="staff"))
        async with SupportBot.from_env({**env, "TIERBOT_RAG_PASSAGES": "0"}) as bot:
            plain = await bot.handle(Event("test", "c", "c", "is the shop open on sundays?"))
    assert first.sources and second.sources and staff.sources and plain.tier == "llm" and not plain.sources

    conn = sqlite3.connect(data / "ledger.sqlite3")
    rows = {q: (s, json.loads(m)) for q, s, m in conn.execute("SELECT question, sources, meta FROM messages")}
    conn.close()
    ids, meta = rows["how long is a gift card valid for?"]
    assert ids == "\n".join(s.id for s in first.sources)
    assert meta["sources"] == [[s.id, s.title] for s in first.sources]  # the titles, for the report
    assert rows["is the shop open on sundays?"][0] is None and "sources" not in rows["is the shop open on sundays?"][1]

    ledger = Ledger(data / "ledger.sqlite3", tz=UTC)
    try:
        report = await ledger.read(lambda c: compute_report(c, ReportInputs(dt.datetime.now(UTC).date(), UTC)))
    finally:
        await ledger.aclose()
    k = report["knowledge"]
    assert (k["grounded"], k["llm_answers"], k["share"]) == (2, 3, pytest.approx(2 / 3))  # the staff question apart
    both = {s.id for s in first.sources} & {s.id for s in second.sources}
    top = k["top_sources"][0]
    assert top["id"] in both and top["count"] == 2
    assert top["title"] == next(s.title for s in first.sources if s.id == top["id"])
    text = render_report(report, "text")
    assert "Answers grounded in the knowledge base: 66.7% (2 of 3 LLM answers" in text
    assert f"     2  {top['id']}  {top['title']}" in text
    assert "Answers grounded in the knowledge base: 66.7%" in render_report(report, "markdown")
    assert top["title"] in render_report(report, "html")
    blocks = slack_message(report)
    assert any("grounded in the knowledge base" in json.dumps(b) for b in blocks)


async def test_a_v4_ledger_is_migrated_and_keeps_its_replies(tmp_path):
    from bot.storage.sqlite.ledger_schema import MIGRATIONS, migrate

    path = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=4)
    conn.execute("INSERT INTO messages (ts, platform, conversation_id, user_id, tier, fallback, input_tokens, "
                 "output_tokens, latency_ms, question) VALUES (1.0, 't', 'c', 'u', 'llm', 0, 1, 1, 5.0, 'old')")
    conn.close()
    ledger = Ledger(path, tz=UTC)
    try:
        assert ledger.migrated_from == 4 and len(MIGRATIONS) >= 5
        ledger.record_reply(Event("t", "c", "u", "new"), _reply("llm", (Source("kb:1", "Gift cards"),)))
        await ledger.flush()
        rows = await ledger.read(lambda c: c.execute("SELECT question, sources FROM messages ORDER BY id").fetchall())
    finally:
        await ledger.aclose()
    assert rows == [("old", None), ("new", "kb:1")]


async def test_postgres_records_sources_too(pg_url):  # noqa: F811
    import asyncpg

    storage = Storage(Config.from_env({"DATABASE_URL": pg_url}, dotenv=False))
    await storage.astart()
    ledger = storage.ledger()
    try:
        ledger.record_reply(Event("t", "pg-sources", "u", "q"),
                            _reply("llm", (Source("faq:x", "Hours — é"), Source("kb:y", "Gift cards"))))
        ledger.record_reply(Event("t", "pg-sources", "u", "q2"), _reply("template"))
        await ledger.committed()
    finally:
        await ledger.aclose()
        await storage.aclose()
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch("SELECT question, sources, meta FROM messages WHERE conversation_id = 'pg-sources' "
                                "ORDER BY id")
    finally:
        await conn.close()
    assert [(r["question"], r["sources"]) for r in rows] == [("q", "faq:x\nkb:y"), ("q2", None)]
    assert json.loads(rows[0]["meta"])["sources"] == [["faq:x", "Hours — é"], ["kb:y", "Gift cards"]]
