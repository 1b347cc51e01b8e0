"""The daily report's figures, computed with SQL over the ledger.

Everything here runs on the ledger's reader threads (the day itself and the earlier
days on two connections at once), in a few scans of the day's rows, and returns plain data (dicts, lists, numbers, strings) that every output format renders
from. Costs come from the attempts (what each provider was actually paid, failed
attempts included); an attempt whose price is unknown is counted as unknown, never
as $0.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ..ledger.days import day_bounds
from ..secrets import redact

__all__ = ["ReportInputs", "compute_report", "compute_day", "day_latency", "past_days", "merge", "headline",
           "CHART_DAYS", "TOP_N"]

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


def past_days(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, Any]:
    """The part of the report about earlier days (comparison and chart): independent of
    the day's own figures, so it can run on a second connection at the same time."""
    week = [headline(conn, *day_bounds(inputs.day - dt.timedelta(days=i), inputs.tz))
            for i in range(1, AVG_DAYS + 1)]
    return {"week": week, "chart": chart_data(conn, inputs.day, inputs.tz)}


def comparison(week: list[dict[str, Any]], today: dict[str, Any]) -> list[dict]:
    prev = week[0]
    active = [h for h in week if h["messages"]]  # days before the bot existed don't drag the mean down
    rows = []
    for key, label, kind in COMPARED:
        avg = statistics.fmean(h[key] for h in active) if active else None
        rows.append({"key": key, "label": label, "kind": kind, "today": today[key],
                     "previous": prev[key] if prev["messages"] else None, "avg7": avg,
                     "delta_prev": _delta(today[key], prev[key] if prev["messages"] else None),
                     "delta_avg7": _delta(today[key], avg)})
    return rows


def cache_savings(conn: sqlite3.Connection, inputs: ReportInputs, start: float, end: float,
                  cache_answers: int, first_counts: dict[str, int],
                  clean: dict[str, tuple[float, int]]) -> dict[str, Any]:
    """Cache answers priced at what the chain's first provider costs per answer on average.

    The first provider is the configured one, else the provider tried first most often
    that day. Its average is over its answers without a failover (`clean`: provider ->
    (sum, count) of priced answers that day), else over the last 7 days, else the price book.
    """
    first = inputs.first_provider or (
        min(first_counts, key=lambda p: (-first_counts[p], p)) if first_counts else None)
    avg, basis = None, None
    if first:
        total, count = clean.get(first, (0.0, 0))
        if count:
            avg, basis = total / count, "that day's answers"
        else:
            week_start = day_bounds(inputs.day - dt.timedelta(days=AVG_DAYS - 1), inputs.tz)[0]
            row = conn.execute(
                "SELECT AVG(cost_usd), COUNT(*) FROM messages WHERE tier = 'llm' AND ts >= ? AND ts < ? "
                "AND provider = ? AND fallback = 0 AND cost_usd IS NOT NULL", (week_start, end, first)).fetchone()
            if row[1]:
                avg, basis = float(row[0]), "the last 7 days' answers"
        if avg is None and inputs.price_fallback is not None:
            avg = inputs.price_fallback(first)
            basis = "the price book" if avg is not None else None
    saved = 0.0 if cache_answers == 0 else (avg * cache_answers if avg is not None else None)
    return {"cache_answers": cache_answers, "first_provider": first, "avg_cost_per_answer": avg,
            "basis": basis, "saved_usd": saved}


def latency(conn: sqlite3.Connection, start: float, end: float) -> dict[str, dict[str, float]]:
    """Nearest-rank p50/p95 per tier, ranked inside SQLite (one scan, one sort)."""
    out: dict[str, dict[str, float]] = {}
    for tier, value, rn, n in conn.execute(
            "SELECT tier, latency_ms, rn, n FROM ("
            " SELECT tier, latency_ms, ROW_NUMBER() OVER (PARTITION BY tier ORDER BY latency_ms) rn,"
            "        COUNT(*) OVER (PARTITION BY tier) n"
            " FROM messages WHERE ts >= ? AND ts < ?)"
            " WHERE rn = MAX(1, (50 * n + 99) / 100) OR rn = MAX(1, (95 * n + 99) / 100)", (start, end)):
        row = out.setdefault(tier, {})
        if rn == max(1, (50 * n + 99) // 100):
            row["p50_ms"] = value
        if rn == max(1, (95 * n + 99) // 100):
            row["p95_ms"] = value
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
    ratings = [r for (r,) in conn.execute(
        "SELECT CAST(json_extract(data, '$.rating') AS INTEGER) FROM events "
        "WHERE kind = 'rating' AND ts >= ? AND ts < ? AND json_valid(data)", (start, end)) if r is not None]
    return {
        "requested": 0,  # filled from the messages scan
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
    """The whole report from one connection. `compute_day`, `day_latency` and `past_days`
    are independent, so a caller with several connections can run them at once."""
    return merge(compute_day(conn, inputs), day_latency(conn, inputs), past_days(conn, inputs))


def merge(day: dict[str, Any], lat: dict[str, dict[str, float]], past: dict[str, Any]) -> dict[str, Any]:
    latencies = [{"tier": t["tier"], "count": t["count"], **lat.get(t["tier"], {})} for t in day["by_tier"]]
    return {**day, "latency": latencies, "compare": comparison(past["week"], day["totals"]),
            "chart": past["chart"]}


def day_latency(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, dict[str, float]]:
    """p50/p95 per tier for the report's day (the single most expensive query: a sort)."""
    return latency(conn, *day_bounds(inputs.day, inputs.tz))


def compute_day(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, Any]:
    """Everything about the report's own day except latency percentiles."""
    start, end = day_bounds(inputs.day, inputs.tz)
    span = (start, end)

    # One scan of the day's messages for everything grouped by tier/provider/model.
    tiers: Counter[str] = Counter()
    models: Counter[tuple[str, str]] = Counter()
    clean: dict[str, tuple[float, int]] = {}
    fallback_n = requested = 0
    for tier, provider, model, fallback, n, req, cost, priced in conn.execute(
            "SELECT tier, provider, model, fallback, COUNT(*), SUM(handoff_requested), SUM(cost_usd), "
            "COUNT(cost_usd) FROM messages WHERE ts >= ? AND ts < ? GROUP BY tier, provider, model, fallback", span):
        tiers[tier] += n
        fallback_n += n if fallback else 0
        requested += req or 0
        if tier == "llm":
            models[(provider, model)] += n
            if not fallback and priced:
                total, count = clean.get(provider, (0.0, 0))
                clean[provider] = (total + cost, count + priced)
    n = sum(tiers.values())
    conversations = conn.execute("SELECT COUNT(DISTINCT conversation_id) FROM messages WHERE ts >= ? AND ts < ?",
                                 span).fetchone()[0]

    # One scan of the day's attempts for spend, tokens, failovers and who was tried first.
    spend_rows: dict[tuple[str, str], list] = {}
    fails: Counter[tuple[str, str]] = Counter()
    first_counts: Counter[str] = Counter()
    spent_by: dict[str, float] = {}
    in_tok = out_tok = unknown = 0
    cost_total = 0.0
    for provider, model, outcome, first, k, i, o, c, u in conn.execute(
            "SELECT provider, model, outcome, seq = 0, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
            "COALESCE(SUM(cost_usd), 0), SUM(cost_usd IS NULL) FROM attempts WHERE ts >= ? AND ts < ? "
            "GROUP BY provider, model, outcome, seq = 0", span):
        in_tok, out_tok, unknown, cost_total = in_tok + i, out_tok + o, unknown + u, cost_total + c
        spent_by[provider] = spent_by.get(provider, 0.0) + c
        if outcome != "ok":
            fails[(provider, outcome)] += k
        if not model or provider in NOT_PROVIDERS:
            continue
        if first:
            first_counts[provider] += k
        row = spend_rows.setdefault((provider, model), [0, 0, 0, 0.0, 0])
        row[0] += k; row[1] += i; row[2] += o; row[3] += c; row[4] += u

    handoff = handoffs(conn, start, end)
    handoff["requested"] = requested
    totals = {
        "messages": n, "conversations": conversations, "cost_usd": float(cost_total),
        "unknown_price_attempts": unknown, "cost_per_1000": cost_total / n * 1000 if n else 0.0,
        "cache_share": _share(tiers.get("cache", 0), n), "fallback_rate": _share(fallback_n, n),
        "handoffs": handoff["opened"], "input_tokens": in_tok, "output_tokens": out_tok,
        "price_unknown": unknown > 0,
    }
    by_tier = [{"tier": t, "count": c, "share": _share(c, n)}
               for t, c in sorted(tiers.items(), key=lambda kv: (-kv[1], kv[0]))]
    by_model = [{"provider": p, "model": m, "count": c, "share": _share(c, n)}
                for (p, m), c in sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))]
    spend = [{"provider": p, "model": m, "attempts": a, "input_tokens": i, "output_tokens": o,
              "cost_usd": float(c), "unknown_price_attempts": u, "price_unknown": u > 0}
             for (p, m), (a, i, o, c, u) in sorted(spend_rows.items())]
    failovers = [{"provider": p, "reason": r, "count": c}
                 for (p, r), c in sorted(fails.items(), key=lambda kv: (-kv[1], kv[0]))]

    breakers: Counter[tuple[str, str, str]] = Counter()
    for data, c in conn.execute("SELECT data, COUNT(*) FROM events WHERE kind = 'breaker_open' "
                                "AND ts >= ? AND ts < ? GROUP BY data", span):
        d = json.loads(data) if data else {}
        breakers[(d.get("provider", "?"), d.get("model", ""), d.get("reason", ""))] += c
    breaker_rows = [{"provider": p, "model": m, "reason": r, "count": c}
                    for (p, m, r), c in sorted(breakers.items(), key=lambda kv: (-kv[1], kv[0]))]

    unanswered = [{"question": redact(q), "count": c} for q, c in conn.execute(
        "SELECT lower(trim(question)) q, COUNT(*) c FROM messages WHERE tier = 'template' AND ts >= ? AND ts < ? "
        "AND handoff_requested = 0 AND trim(question) != '' "
        f"AND COALESCE(template, '') NOT IN ({_marks(NOT_QUESTIONS)}) "
        "GROUP BY q ORDER BY c DESC, q LIMIT ?", (*span, *NOT_QUESTIONS, TOP_N))]
    faq_top = [{"entry": e, "count": c} for e, c in conn.execute(
        "SELECT faq_entry, COUNT(*) c FROM messages WHERE tier = 'cache' AND ts >= ? AND ts < ? "
        "AND faq_entry IS NOT NULL GROUP BY faq_entry ORDER BY c DESC, faq_entry LIMIT ?", (*span, TOP_N))]

    caps = inputs.caps
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
        "cache_savings": cache_savings(conn, inputs, start, end, tiers.get("cache", 0), first_counts, clean),
        "failovers": failovers,
        "breakers": breaker_rows,
        "handoffs": handoff,
        "budget": {"caps": budget, "alerts": alerts},
        "unanswered": unanswered,
        "faq_top": faq_top,
    }
