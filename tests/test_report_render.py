"""The report in every format, from the command line and for Slack."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest

from bot import Attempt, Event, Reply
from bot.cli import main
from bot.ledger import Ledger
from bot.report import ReportInputs, compute_report, render_report, slack_message


async def filled_ledger(path) -> Ledger:
    ledger = Ledger(path)
    ledger.record_reply(Event("telegram", "c1", "u1", "<!channel> *everyone* look <https://evil.example|here>"),
                        Reply("t", "template", meta={"template": "generic"}))
    ledger.record_reply(Event("telegram", "c2", "u2", "where is my order?"),
                        Reply("a", "llm", "groq", "llama-3.3-70b-versatile", latency_ms=200, attempts=[
                            Attempt("groq", "llama-3.3-70b-versatile", "ok", input_tokens=1000, output_tokens=100,
                                    cost_usd=0.000669)]))
    ledger.record_reply(Event("telegram", "c3", "u3", "and now?"),
                        Reply("a", "llm", "claude", "claude-unpriced", latency_ms=400, attempts=[
                            Attempt("groq", "llama-3.3-70b-versatile", "timeout"),
                            Attempt("claude", "claude-unpriced", "ok", input_tokens=10, output_tokens=5,
                                    cost_usd=None)]))
    await ledger.flush()
    return ledger


@pytest.fixture
async def report(tmp_path):
    ledger = await filled_ledger(tmp_path / "l.sqlite3")
    today = dt.datetime.now(dt.timezone.utc).date()
    r = await ledger.read(lambda c: compute_report(c, ReportInputs(today, ZoneInfo("UTC"), caps={"groq": 0.0005})))
    await ledger.aclose()
    return r


def test_slack_blocks_are_valid_and_customer_text_cannot_ping_anyone(report):
    blocks, text = slack_message(report)
    assert "3 messages" in text and "price unknown" in text
    assert 1 <= len(blocks) <= 50
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    for b in blocks:
        assert b["type"] in ("header", "section", "context")
        for t in ([b["text"]] if "text" in b else []) + b.get("fields", []) + b.get("elements", []):
            assert t["type"] in ("mrkdwn", "plain_text") and 0 < len(t["text"]) <= 3000
        assert len(b.get("fields", [])) <= 10
    whole = json.dumps(blocks)
    assert "<!channel>" not in whole and "&lt;!channel&gt;" in whole
    assert "<https://evil" not in whole
    assert "reached" in whole  # the groq cap of $0.0005 was passed
    assert any("Price unknown" in b.get("text", {}).get("text", "") for b in blocks)


def test_text_and_markdown_show_unknown_prices_and_the_failover(report):
    for fmt in ("text", "markdown"):
        out = render_report(report, fmt)
        assert "price unknown" in out.lower()
        assert "claude-unpriced" in out and "timeout" in out
        assert "$0.000669" in out  # known cost, exactly
        assert "where is my order?" not in out  # answered by the LLM: not an FAQ candidate
    with pytest.raises(ValueError, match="unknown report format"):
        render_report(report, "pdf")


async def test_cli_writes_each_format_to_a_file(tmp_path):
    ledger = await filled_ledger(tmp_path / "data" / "ledger.sqlite3")
    await ledger.aclose()
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    for fmt in ("text", "markdown", "json", "html"):
        out = tmp_path / f"r.{fmt}"
        # main() calls asyncio.run: run it in a worker thread, away from the test's loop.
        code = await asyncio.to_thread(main, ["report", "--date", day, "--format", fmt, "--out", str(out)])
        assert code == 0
        body = out.read_text()
        assert day in body
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["messages"] == 3
    assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html>")


def test_cli_rejects_a_bad_date_and_names_the_format(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bot", "report", "--date", "24/11/2026"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2 and "YYYY-MM-DD" in proc.stderr
    assert not (tmp_path / "data" / "ledger.sqlite3").exists()  # nothing was created


def test_cli_without_a_ledger_says_where_it_looked(tmp_path, capsys):
    assert main(["report"]) == 1
    err = capsys.readouterr().err
    assert "no ledger yet" in err and "TIERBOT_DATA_DIR" in err
    assert not (tmp_path / "data" / "ledger.sqlite3").exists()
