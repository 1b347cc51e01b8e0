"""The daily report's figures, computed with SQL over the ledger.

Everything here runs on the ledger's reader thread against one read snapshot, and
returns plain data (dicts, lists, numbers, strings) that every output format renders
from. Costs come from the attempts (what each provider was actually paid, failed
attempts included); an attempt whose price is unknown is counted as unknown, never
as $0.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ..ledger.days import day_bounds
from ..secrets import redact

__all__ = ["ReportInputs", "compute_report", "nearest_rank", "CHART_DAYS", "TOP_N"]

CHART_DAYS = 14
# Template answers that are not answers to a question (so not FAQ candidates).
NOT_QUESTIONS = ("rate_limited",)
# Tiers that record attempts under their own name but are not paid providers.
NOT_PROVIDERS = ("cache",)
TOP_N = 10
AVG_DAYS = 7


@dataclass
class ReportInputs:
    """What the report needs besides the ledger."""

    day: dt.date
    tz: ZoneInfo
    caps: dict[str, float] = field(default_factory=dict)
    # provider -> average cost of one answer, from the price book (used only when the
    # ledger has no priced answers by the chain's first provider).
    price_fallback: Callable[[str], float | None] | None = None
    first_provider: str | None = None  # configured; else inferred from the ledger
    now: float | None = None


def nearest_rank(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _marks(values: tuple) -> str:
    return ", ".join("?" * len(values))


def _share(n: int, total: int) -> float:
    return n / total if total else 0.0


def headline(conn: sqlite3.Connection, start: float, end: float) -> dict[str, Any]:
    """The figures compared day to day."""
    n, convs, cache, fallback = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT conversation_id), COALESCE(SUM(cache_hit), 0), "
        "COALESCE(SUM(fallback), 0) FROM messages WHERE ts >= ? AND ts < ?", (start, end)).fetchone()
    cost, unknown = conn.execute(
        "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(cost_usd IS NULL), 0) FROM attempts "
        "WHERE ts >= ? AND ts < ?", (start, end)).fetchone()
    handoffs = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'handoff_opened' AND ts >= ? AND ts < ?",
                            (start, end)).fetchone()[0]
    return {
        "messages": n,
        "conversations": convs,
        "cost_usd": float(cost),
        "unknown_price_attempts": unknown,
        "cost_per_1000": float(cost) / n * 1000 if n else 0.0,
        "cache_share": _share(cache, n),
        "fallback_rate": _share(fallback, n),
        "handoffs": handoffs,
    }


COMPARED = (  # (key, label, how to show it)
    ("messages", "Messages", "int"),
    ("conversations", "Conversations", "int"),
    ("cost_usd", "Cost (USD)", "usd"),
    ("cost_per_1000", "Cost per 1,000 messages (USD)", "usd"),
    ("cache_share", "Answered by cache", "pct"),
    ("fallback_rate", "Replies with a failover", "pct"),
    ("handoffs", "Handoffs", "int"),
)


def _delta(now: float, then: float | None) -> float | None:
    if then is None or then == 0:
        return None
    return (now - then) / then


def comparison(conn: sqlite3.Connection, day: dt.date, tz: ZoneInfo, today: dict[str, Any]) -> list[dict]:
    prev = headline(conn, *day_bounds(day - dt.timedelta(days=1), tz))
    week = [headline(conn, *day_bounds(day - dt.timedelta(days=i), tz)) for i in range(1, AVG_DAYS + 1)]
    active = [h for h in week if h["messages"]]  # days before the bot existed don't drag the mean down
    rows = []
    for key, label, kind in COMPARED:
        avg = statistics.fmean(h[key] for h in active) if active else None
        rows.append({"key": key, "label": label, "kind": kind, "today": today[key],
                     "previous": prev[key] if prev["messages"] else None, "avg7": avg,
                     "delta_prev": _delta(today[key], prev[key] if prev["messages"] else None),
                     "delta_avg7": _delta(today[key], avg)})
    return rows


def _first_provider(conn: sqlite3.Connection, start: float, end: float) -> str | None:
    row = conn.execute(
        "SELECT a.provider, COUNT(*) c FROM messages m JOIN attempts a ON a.message_id = m.id "
        "WHERE m.ts >= ? AND m.ts < ? AND m.tier = 'llm' AND a.seq = 0 "
        "GROUP BY a.provider ORDER BY c DESC, a.provider LIMIT 1", (start, end)).fetchone()
    return row[0] if row else None


def cache_savings(conn: sqlite3.Connection, inputs: ReportInputs, start: float, end: float,
                  cache_answers: int) -> dict[str, Any]:
    """Cache answers priced at what the chain's first provider costs per answer on average."""
    week_start = day_bounds(inputs.day - dt.timedelta(days=AVG_DAYS - 1), inputs.tz)[0]
    first = inputs.first_provider or _first_provider(conn, start, end) or _first_provider(conn, week_start, end)
    avg, basis = None, None
    if first:
        for basis_name, s in (("that day's answers", start), ("the last 7 days' answers", week_start)):
            row = conn.execute(
                "SELECT AVG(cost_usd), COUNT(*) FROM messages WHERE ts >= ? AND ts < ? AND tier = 'llm' "
                "AND provider = ? AND fallback = 0 AND cost_usd IS NOT NULL", (s, end, first)).fetchone()
            if row[1]:
                avg, basis = float(row[0]), basis_name
                break
        if avg is None and inputs.price_fallback is not None:
            avg = inputs.price_fallback(first)
            basis = "the price book" if avg is not None else None
    saved = 0.0 if cache_answers == 0 else (avg * cache_answers if avg is not None else None)
    return {"cache_answers": cache_answers, "first_provider": first, "avg_cost_per_answer": avg,
            "basis": basis, "saved_usd": saved}


def latency(conn: sqlite3.Connection, start: float, end: float, tiers: list[dict]) -> list[dict]:
    out = []
    for t in tiers:
        n = t["count"]
        row = {"tier": t["tier"], "count": n}
        for pct in (50, 95):
            rank = max(1, math.ceil(pct / 100 * n))
            row[f"p{pct}_ms"] = conn.execute(
                "SELECT latency_ms FROM messages WHERE ts >= ? AND ts < ? AND tier = ? "
                "ORDER BY latency_ms LIMIT 1 OFFSET ?", (start, end, t["tier"], rank - 1)).fetchone()[0]
        out.append(row)
    return out


def handoffs(conn: sqlite3.Connection, start: float, end: float) -> dict[str, Any]:
    counts = dict(conn.execute(
        "SELECT kind, COUNT(*) FROM events WHERE ts >= ? AND ts < ? AND kind IN "
        "('handoff_opened', 'handoff_taken', 'handoff_resolved', 'staff_reply') GROUP BY kind",
        (start, end)).fetchall())
    waits = [first - opened for opened, first in conn.execute(
        "SELECT o.ts, (SELECT MIN(s.ts) FROM events s WHERE s.conversation_id = o.conversation_id "
        "AND s.kind = 'staff_reply' AND s.ts >= o.ts) FROM events o "
        "WHERE o.kind = 'handoff_opened' AND o.ts >= ? AND o.ts < ?", (start, end)) if first is not None]
    requested = conn.execute("SELECT COUNT(*) FROM messages WHERE ts >= ? AND ts < ? AND handoff_requested = 1",
                             (start, end)).fetchone()[0]
    ratings = [r for (r,) in conn.execute(
        "SELECT CAST(json_extract(data, '$.rating') AS INTEGER) FROM events "
        "WHERE kind = 'rating' AND ts >= ? AND ts < ? AND json_valid(data)", (start, end)) if r is not None]
    return {
        "requested": requested,
        "opened": counts.get("handoff_opened", 0),
        "taken": counts.get("handoff_taken", 0),
        "resolved": counts.get("handoff_resolved", 0),
        "staff_replies": counts.get("staff_reply", 0),
        "answered": len(waits),
        "median_staff_response_s": statistics.median(waits) if waits else None,
        "ratings": {"count": len(ratings), "average": statistics.fmean(ratings) if ratings else None,
                    "distribution": {str(k): ratings.count(k) for k in range(1, 6)}},
    }


def chart_data(conn: sqlite3.Connection, day: dt.date, tz: ZoneInfo) -> dict[str, Any]:
    """Cost per provider for each of the last 14 days (ending with the report's day)."""
    days = [day - dt.timedelta(days=i) for i in range(CHART_DAYS - 1, -1, -1)]
    series: dict[str, list[float]] = {}
    unknown = [0] * len(days)
    unknown_by: dict[str, int] = {}
    for i, d in enumerate(days):
        for provider, cost, unk in conn.execute(
                "SELECT provider, COALESCE(SUM(cost_usd), 0), SUM(cost_usd IS NULL) FROM attempts "
                "WHERE ts >= ? AND ts < ? GROUP BY provider", day_bounds(d, tz)):
            if cost or unk:
                series.setdefault(provider, [0.0] * len(days))[i] = float(cost)
                unknown[i] += unk
                if unk:
                    unknown_by[provider] = unknown_by.get(provider, 0) + unk
    return {"days": [d.isoformat() for d in days], "series": dict(sorted(series.items())),
            "unknown_price_attempts": unknown, "unknown_by_provider": unknown_by}


def compute_report(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, Any]:
    start, end = day_bounds(inputs.day, inputs.tz)
    span = (start, end)
    totals = headline(conn, start, end)
    n = totals["messages"]
    in_tok, out_tok = conn.execute(
        "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0) FROM attempts "
        "WHERE ts >= ? AND ts < ?", span).fetchone()
    totals.update(input_tokens=in_tok, output_tokens=out_tok,
                  price_unknown=totals["unknown_price_attempts"] > 0)

    by_tier = [{"tier": t, "count": c, "share": _share(c, n)} for t, c in conn.execute(
        "SELECT tier, COUNT(*) c FROM messages WHERE ts >= ? AND ts < ? GROUP BY tier ORDER BY c DESC, tier", span)]
    by_model = [{"provider": p, "model": m, "count": c, "share": _share(c, n)} for p, m, c in conn.execute(
        "SELECT provider, model, COUNT(*) c FROM messages WHERE ts >= ? AND ts < ? AND tier = 'llm' "
        "GROUP BY provider, model ORDER BY c DESC, provider, model", span)]
    spend = [{"provider": p, "model": m, "attempts": a, "input_tokens": i, "output_tokens": o,
              "cost_usd": float(c), "unknown_price_attempts": u, "price_unknown": u > 0}
             for p, m, a, i, o, c, u in conn.execute(
        "SELECT provider, model, COUNT(*), SUM(input_tokens), SUM(output_tokens), COALESCE(SUM(cost_usd), 0), "
        "SUM(cost_usd IS NULL) FROM attempts WHERE ts >= ? AND ts < ? AND model != '' "
        f"AND provider NOT IN ({_marks(NOT_PROVIDERS)}) GROUP BY provider, model ORDER BY provider, model",
        (*span, *NOT_PROVIDERS))]
    failovers = [{"provider": p, "reason": r, "count": c} for p, r, c in conn.execute(
        "SELECT provider, outcome, COUNT(*) c FROM attempts WHERE ts >= ? AND ts < ? AND outcome != 'ok' "
        "GROUP BY provider, outcome ORDER BY c DESC, provider, outcome", span)]
    breakers = []
    for data, c in conn.execute("SELECT data, COUNT(*) FROM events WHERE kind = 'breaker_open' "
                                "AND ts >= ? AND ts < ? GROUP BY data", span):
        d = json.loads(data) if data else {}
        breakers.append({"provider": d.get("provider", "?"), "model": d.get("model", ""),
                         "reason": d.get("reason", ""), "count": c})
    merged: dict[tuple, int] = {}
    for b in breakers:
        key = (b["provider"], b["model"], b["reason"])
        merged[key] = merged.get(key, 0) + b["count"]
    breakers = [{"provider": p, "model": m, "reason": r, "count": c}
                for (p, m, r), c in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))]

    unanswered = [{"question": redact(q), "count": c} for q, c in conn.execute(
        "SELECT lower(trim(question)) q, COUNT(*) c FROM messages WHERE ts >= ? AND ts < ? "
        "AND tier = 'template' AND handoff_requested = 0 AND trim(question) != '' "
        f"AND COALESCE(template, '') NOT IN ({_marks(NOT_QUESTIONS)}) "
        "GROUP BY q ORDER BY c DESC, q LIMIT ?", (*span, *NOT_QUESTIONS, TOP_N))]
    faq_top = [{"entry": e, "count": c} for e, c in conn.execute(
        "SELECT faq_entry, COUNT(*) c FROM messages WHERE ts >= ? AND ts < ? AND tier = 'cache' "
        "AND faq_entry IS NOT NULL GROUP BY faq_entry ORDER BY c DESC, faq_entry LIMIT ?", (*span, TOP_N))]

    caps = inputs.caps
    spent_by = {p: float(c) for p, c in conn.execute(
        "SELECT provider, SUM(cost_usd) FROM attempts WHERE ts >= ? AND ts < ? AND cost_usd IS NOT NULL "
        "GROUP BY provider", span)}
    budget = [{"scope": s, "cap_usd": cap,
               "spent_usd": sum(spent_by.values()) if s == "overall" else spent_by.get(s, 0.0)}
              for s, cap in sorted(caps.items())]
    for b in budget:
        b["capped"] = b["spent_usd"] >= b["cap_usd"]
        b["used"] = b["spent_usd"] / b["cap_usd"]
    alerts = [{"scope": json.loads(d or "{}").get("scope"), "ts": ts} for ts, d in conn.execute(
        "SELECT ts, data FROM events WHERE kind = 'budget_alert' AND ts >= ? AND ts < ? ORDER BY ts", span)]

    return {
        "date": inputs.day.isoformat(),
        "tz": str(inputs.tz),
        "totals": totals,
        "by_tier": by_tier,
        "by_model": by_model,
        "spend": spend,
        "cache_savings": cache_savings(conn, inputs, start, end,
                                       next((t["count"] for t in by_tier if t["tier"] == "cache"), 0)),
        "failovers": failovers,
        "breakers": breakers,
        "latency": latency(conn, start, end, by_tier),
        "handoffs": handoffs(conn, start, end),
        "budget": {"caps": budget, "alerts": alerts},
        "unanswered": unanswered,
        "faq_top": faq_top,
        "compare": comparison(conn, inputs.day, inputs.tz, totals),
        "chart": chart_data(conn, inputs.day, inputs.tz),
    }
