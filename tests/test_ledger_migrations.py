"""A ledger written by an older tierbot is upgraded in place, keeping every record."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from bot.ledger import LATEST_VERSION, Ledger, SchemaError, migrate
from bot.report import ReportInputs, compute_report

DAY = dt.date(2026, 3, 10)
TS = dt.datetime(2026, 3, 10, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def make_v1_ledger(path) -> None:
    """The layout shipped as schema version 1, with data in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    ins = ("INSERT INTO messages (id, ts, platform, conversation_id, user_id, tier, provider, model, fallback, "
           "input_tokens, output_tokens, cost_usd, latency_ms, question, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    conn.execute(ins, (1, TS, "telegram", "c1", "u1", "cache", None, None, 0, 0, 0, 0.0, 2.0, "opening hours?",
                       json.dumps({"faq_id": "hours"})))
    conn.execute(ins, (2, TS + 1, "telegram", "c2", "u2", "template", None, None, 1, 0, 0, 0.0, 5.0,
                       "talk to a human", json.dumps({"template": "human", "handoff_requested": True})))
    conn.execute(ins, (3, TS + 2, "telegram", "c3", "u3", "llm", "groq", "llama", 0, 100, 50, 0.002, 300.0,
                       "where is my order", "not json {"))
    conn.execute("INSERT INTO attempts VALUES (3, 0, 'groq', 'llama', 'ok', NULL, 290.0, 100, 50, 0.002)")
    conn.execute("INSERT INTO events (ts, kind, conversation_id, data) VALUES (?, 'handoff_opened', 'c2', NULL)",
                 (TS + 3,))
    conn.execute("INSERT INTO turns (conversation_id, role, text, ts) VALUES ('c3', 'user', 'where is my order', ?)",
                 (TS + 2,))
    conn.close()


async def test_an_old_ledger_is_migrated_and_its_records_kept(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    make_v1_ledger(path)
    ledger = Ledger(path)
    try:
        assert ledger.migrated_from == 1
        got = await ledger.read(lambda c: c.execute(
            "SELECT id, cache_hit, template, faq_entry, handoff_requested FROM messages ORDER BY id").fetchall())
        assert got == [(1, 1, None, "hours", 0), (2, 0, "human", None, 1), (3, 0, None, None, 0)]
        assert await ledger.read(lambda c: c.execute("SELECT ts FROM attempts").fetchall()) == [(TS + 2,)]
        # Spend per day (which needs the new attempts.ts) works on the old records.
        assert await ledger.spend_on(DAY, ZoneInfo("UTC"), "groq") == pytest.approx(0.002)
        assert [t.text for t in await ledger.history.recent("c3", 5)] == ["where is my order"]
        report = await ledger.read(lambda c: compute_report(c, ReportInputs(DAY, ZoneInfo("UTC"))))
        assert report["totals"]["messages"] == 3
        assert report["faq_top"] == [{"entry": "hours", "count": 1}]
        assert report["handoffs"]["requested"] == 1 and report["handoffs"]["opened"] == 1
    finally:
        await ledger.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    conn.close()


async def test_opening_twice_does_not_migrate_again(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    first = Ledger(path)
    await first.aclose()
    second = Ledger(path)
    await second.aclose()
    assert (first.migrated_from, second.migrated_from) == (0, LATEST_VERSION)


def test_a_ledger_from_a_newer_tierbot_is_refused_untouched(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer than this tierbot"):
        Ledger(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 1
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("future",)]
    conn.close()


def test_a_failed_migration_step_leaves_the_previous_version(tmp_path, monkeypatch):
    from bot.storage.sqlite import ledger_schema as schema

    path = tmp_path / "ledger.sqlite3"
    make_v1_ledger(path)

    def broken(conn):
        conn.execute("ALTER TABLE messages ADD COLUMN cache_hit INTEGER")
        raise RuntimeError("disk full")

    monkeypatch.setattr(schema, "MIGRATIONS", (schema.MIGRATIONS[0], broken, *schema.MIGRATIONS[2:]))
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(RuntimeError, match="disk full"):
        schema.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    cols = [r[1] for r in conn.execute("PRAGMA table_info(messages)")]
    assert "cache_hit" not in cols
    conn.close()


def make_v3_ledger(path) -> None:
    """A ledger at schema version 3 (before the report's covering indexes), with customer
    messages, a staff question the LLM answered (route in its meta) and one recorded
    before routes were stamped (a Slack message, no route)."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=3)
    ins = ("INSERT INTO messages (id, ts, platform, conversation_id, user_id, tier, provider, model, fallback, "
           "input_tokens, output_tokens, cost_usd, latency_ms, question, meta, cache_hit, template, faq_entry, "
           "handoff_requested) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    rows = [
        (1, TS, "telegram", "c1", "u1", "cache", "cache", "faq", 0, 0, 0, 0.0, 2.0, "opening hours?",
         json.dumps({"faq_entry": "hours"}), 1, None, "hours", 0),
        (2, TS + 1, "telegram", "c1", "u1", "llm", "groq", "llama", 0, 100, 50, 0.002, 300.0, "where is my order",
         json.dumps({"route": "customer"}), 0, None, None, 0),
        (3, TS + 2, "telegram", "c2", "u2", "template", None, None, 0, 0, 0, 0.0, 5.0, "do you sell boats",
         "not json, but it says \"route\" {", 0, "generic", None, 0),
        (4, TS + 3, "slack", "slack:C1:1.0", "U1", "llm", "groq", "llama", 0, 1000, 500, 0.02, 900.0,
         "what is our refund policy", json.dumps({"route": "staff"}), 0, None, None, 0),
        (5, TS + 4, "slack", "slack:C1:2.0", "U1", "template", None, None, 0, 0, 0, 0.0, 950.0,
         "do you sell boats", json.dumps({"template": "generic"}), 0, "generic", None, 0),
    ]
    conn.executemany(ins, rows)
    conn.executemany("INSERT INTO attempts VALUES (?, 0, 'groq', 'llama', 'ok', NULL, ?, ?, ?, ?, ?)",
                     [(2, 290.0, 100, 50, 0.002, TS + 1), (4, 890.0, 1000, 500, 0.02, TS + 3)])
    conn.close()


async def test_a_v3_ledger_gets_the_report_indexes_and_staff_questions_apart(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    make_v3_ledger(path)
    ledger = Ledger(path)
    try:
        assert ledger.migrated_from == 3
        names = await ledger.read(lambda c: {n for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")})
        assert {"messages_groups", "messages_ts_conversation", "messages_faq", "messages_questions", "messages_staff",
                "attempts_groups"} <= names
        assert not names & {"messages_ts", "messages_tier_ts"}  # replaced: one index less to write per message
        report = await ledger.read(lambda c: compute_report(c, ReportInputs(DAY, ZoneInfo("UTC"))))
        t = report["totals"]
        assert (t["messages"], t["conversations"]) == (3, 2)
        assert report["staff"]["questions"] == 2 and report["staff"]["cost_usd"] == pytest.approx(0.02)
        assert t["cost_usd"] == pytest.approx(0.002) and t["spend_usd"] == pytest.approx(0.022)
        assert report["unanswered"] == [{"question": "do you sell boats", "count": 1}]
        assert report["faq_top"] == [{"entry": "hours", "count": 1}]
        assert {r["tier"]: r["p95_ms"] for r in report["latency"]} == {"cache": 2.0, "llm": 300.0, "template": 5.0}
        # A row whose meta is not JSON but mentions "route" is still written (the staff
        # index's test never parses text that is not JSON).
        await ledger.call(lambda c: c.execute(
            "INSERT INTO messages (ts, platform, conversation_id, user_id, tier, fallback, input_tokens, "
            "output_tokens, latency_ms, question, meta) VALUES (?, 'slack', 'x', 'u', 'template', 0, 0, 0, 1.0, "
            "'q', '{\"route\": broken')", (TS + 5,)))
        report = await ledger.read(lambda c: compute_report(c, ReportInputs(DAY, ZoneInfo("UTC"))))
        assert report["staff"]["questions"] == 3  # a Slack message with no readable route: staff
    finally:
        await ledger.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    conn.close()
