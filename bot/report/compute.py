"""The daily report's figures, computed with SQL over the ledger.

Everything here runs on the ledger's reader threads (the report's independent parts on
several connections at once) and returns plain data (dicts, lists, numbers, strings) that
every output format renders from. The sums come from the covering indexes of schema v4
(see `scan`): no part sorts the day's rows, so a day of a million messages reports in a
fraction of a second. Costs come from the attempts (what each provider was actually paid,
failed attempts included); an attempt whose price is unknown is counted as unknown, never
as $0.

Customer traffic and staff questions are apart: messages, conversations, tier shares,
latency, cost per 1,000 messages, FAQ figures describe customers; staff questions to the
bot (route "staff") are their own line, so customer cost + staff cost = what the
providers were paid (the spend table, the chart, the budget).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ..ledger.days import day_bounds
from ..secrets import redact
from . import scan as S
from .scan import STAFF_SQL

__all__ = ["ReportInputs", "compute_report", "compute_day", "day_latency", "day_conversations", "day_lists",
           "past_week", "past_chart", "day_knowledge", "merge", "headline", "PARTS", "CHART_DAYS", "TOP_N"]

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
    """The figures compared day to day (customer traffic; staff questions apart)."""
    return _headline(conn, S.scan_day(conn, start, end), start, end)


def _headline(conn: sqlite3.Connection, scan: S.DayScan, start: float, end: float) -> dict[str, Any]:
    n = scan.customer_messages
    cache = sum(v[0] for k, v in scan.messages.items() if k[0] == "cache")
    fallback = sum(v[0] for k, v in scan.messages.items() if k[3])
    customer = S.customer_attempts(scan)
    cost = math.fsum(v[3] for v in customer.values())
    unknown = sum(v[4] for v in customer.values())
    handoffs = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'handoff_opened' AND ts >= ? AND ts < ?",
                            (start, end)).fetchone()[0]
    staff = _staff(scan)
    return {
        "messages": n,
        "conversations": S.conversations(conn, start, end) if scan.all_messages else 0,
        "cost_usd": cost,
        "unknown_price_attempts": unknown,
        "cost_per_1000": cost / n * 1000 if n else 0.0,
        "cache_share": _share(cache, n),
        "fallback_rate": _share(fallback, n),
        "handoffs": handoffs,
        "staff_questions": staff["questions"],
        "staff_cost_usd": staff["cost_usd"],
        "spend_usd": math.fsum(v[3] for v in scan.attempts.values()),
    }


def _staff(scan: S.DayScan) -> dict[str, Any]:
    """Staff questions to the bot: how many, and what their attempts cost."""
    atts = scan.staff_attempts.values()
    unknown = sum(v[4] for v in atts)
    return {"questions": sum(v[0] for v in scan.staff_messages.values()),
            "cost_usd": math.fsum(v[3] for v in atts), "unknown_price_attempts": unknown,
            "price_unknown": unknown > 0,
            "input_tokens": sum(v[1] for v in atts), "output_tokens": sum(v[2] for v in atts)}


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


def past_week(conn: sqlite3.Connection, inputs: ReportInputs) -> list[dict[str, Any]]:
    """The headline figures of each of the 7 days before the report's day."""
    keys = S.message_keys(conn), S.attempt_keys(conn)
    week = []
    for i in range(1, AVG_DAYS + 1):
        start, end = day_bounds(inputs.day - dt.timedelta(days=i), inputs.tz)
        scan = S.scan_day(conn, start, end, msg_keys=keys[0], att_keys=keys[1])
        week.append(_headline(conn, scan, start, end))
    return week


def past_chart(conn: sqlite3.Connection, inputs: ReportInputs) -> list[dict[str, tuple[float, int]]]:
    """What each provider was paid on the chart's days before the report's day (the
    report's own day comes from `compute_day`, see `merge`)."""
    return provider_spend(conn, chart_days(inputs.day)[:-1], inputs.tz)


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
            total = count = 0
            for key in S.message_keys(conn):
                if key[0] == "llm" and key[1] == first and not key[3]:
                    t, c = conn.execute(
                        "SELECT TOTAL(cost_usd), COUNT(cost_usd) FROM messages INDEXED BY messages_groups "
                        "WHERE tier IS ? AND provider IS ? AND model IS ? AND fallback IS ? AND ts >= ? AND ts < ?",
                        (*key, week_start, end)).fetchone()
                    total, count = total + t, count + c
            if count:
                avg, basis = total / count, "the last 7 days' answers"
        if avg is None and inputs.price_fallback is not None:
            avg = inputs.price_fallback(first)
            basis = "the price book" if avg is not None else None
    saved = 0.0 if cache_answers == 0 else (avg * cache_answers if avg is not None else None)
    return {"cache_answers": cache_answers, "first_provider": first, "avg_cost_per_answer": avg,
            "basis": basis, "saved_usd": saved}


def latency(conn: sqlite3.Connection, start: float, end: float) -> dict[str, dict[str, float]]:
    """Exact nearest-rank p50/p95 of customer latency per tier."""
    return S.latency_percentiles(conn, start, end)


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


def chart_days(day: dt.date) -> list[dt.date]:
    return [day - dt.timedelta(days=i) for i in range(CHART_DAYS - 1, -1, -1)]


def provider_spend(conn: sqlite3.Connection, days: list[dt.date], tz: ZoneInfo,
                   att_keys: list[tuple] | None = None) -> list[dict[str, tuple[float, int]]]:
    """For each day: provider -> (what it was paid, attempts of unknown price)."""
    keys = att_keys if att_keys is not None else S.attempt_keys(conn)
    query = ("SELECT TOTAL(cost_usd), COUNT(*) - COUNT(cost_usd) FROM attempts INDEXED BY attempts_groups "
             "WHERE provider IS ? AND model IS ? AND outcome IS ? AND seq IS ? AND ts >= ? AND ts < ?")
    out = []
    for d in days:
        span = day_bounds(d, tz)
        by_provider: dict[str, list] = {}
        for key in keys:
            cost, unk = conn.execute(query, (*key, *span)).fetchone()
            if cost or unk:
                row = by_provider.setdefault(key[0], [[], 0])
                row[0].append(cost)
                row[1] += unk
        out.append({p: (math.fsum(costs), unk) for p, (costs, unk) in by_provider.items()})
    return out


def _chart(days: list[dt.date], per_day: list[dict[str, tuple[float, int]]]) -> dict[str, Any]:
    series: dict[str, list[float]] = {}
    unknown = [0] * len(days)
    unknown_by: dict[str, int] = {}
    for i, spend in enumerate(per_day):
        for provider, (cost, unk) in spend.items():
            if cost or unk:
                series.setdefault(provider, [0.0] * len(days))[i] = cost
                unknown[i] += unk
                if unk:
                    unknown_by[provider] = unknown_by.get(provider, 0) + unk
    return {"days": [d.isoformat() for d in days], "series": dict(sorted(series.items())),
            "unknown_price_attempts": unknown, "unknown_by_provider": unknown_by}


def compute_report(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, Any]:
    """The whole report from one connection. The `PARTS` are independent, so a caller
    with several connections can run them at once (`ReportService` does)."""
    return merge(*(part(conn, inputs) for part in PARTS))


def merge(day: dict[str, Any], lat: dict[str, dict[str, float]], convs: int, lists: dict[str, Any],
          week: list[dict[str, Any]], chart_spend: list[dict[str, tuple[float, int]]],
          knowledge: dict[str, Any]) -> dict[str, Any]:
    totals = {**day["totals"], "conversations": convs}
    llm_answers = next((t["count"] for t in day["by_tier"] if t["tier"] == "llm"), 0)
    knowledge = {**knowledge, "llm_answers": llm_answers,
                 "share": knowledge["grounded"] / llm_answers if llm_answers else None}
    latencies = [{"tier": t["tier"], "count": t["count"], **lat.get(t["tier"], {})} for t in day["by_tier"]]
    spend = day["provider_spend"]
    chart = _chart(chart_days(dt.date.fromisoformat(day["date"])), [*chart_spend, spend])
    day = {k: v for k, v in day.items() if k != "provider_spend"}
    return {**day, "totals": totals, **lists, "latency": latencies, "compare": comparison(week, totals),
            "chart": chart, "knowledge": knowledge}


def day_latency(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, dict[str, float]]:
    """p50/p95 per tier for the report's day (reads every latency of the day)."""
    return latency(conn, *day_bounds(inputs.day, inputs.tz))


def day_conversations(conn: sqlite3.Connection, inputs: ReportInputs) -> int:
    """Distinct customer conversations on the report's day."""
    return S.conversations(conn, *day_bounds(inputs.day, inputs.tz))


def day_lists(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, Any]:
    """FAQ candidates (questions only the templates answered) and the most used FAQ entries."""
    span = day_bounds(inputs.day, inputs.tz)
    # Counted over every template answer from the covering index (no table reads), then
    # staff questions taken out. A question loses count only if staff asked it, so the
    # customers' top N is within the top N + (distinct staff questions) of all.
    staff = Counter(dict(conn.execute(
        f"SELECT {_QUESTION} q, COUNT(*) FROM messages INDEXED BY messages_staff WHERE {STAFF_SQL} "
        f"AND ts >= ? AND ts < ? AND {_CANDIDATE} GROUP BY q", (*span, *NOT_QUESTIONS)).fetchall()))
    counted = [(q, c - staff.get(q, 0)) for q, c in conn.execute(
        f"SELECT {_QUESTION} q, COUNT(*) c FROM messages INDEXED BY messages_questions "
        f"WHERE ts >= ? AND ts < ? AND {_CANDIDATE} GROUP BY q ORDER BY c DESC, q LIMIT ?",
        (*span, *NOT_QUESTIONS, TOP_N + len(staff)))]
    top = sorted(((q, c) for q, c in counted if c > 0), key=lambda qc: (-qc[1], qc[0]))[:TOP_N]
    unanswered = [{"question": redact(q), "count": c} for q, c in top]
    faq = S.faq_counts(conn, *span)
    faq_top = [{"entry": e, "count": c} for e, c in sorted(faq.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]]
    return {"unanswered": unanswered, "faq_top": faq_top}


_QUESTION = "lower(trim(question))"
# A template answer to a question nobody else could answer (the partial index's WHERE first).
_CANDIDATE = (f"tier = 'template' AND handoff_requested = 0 AND trim(question) != '' "
              f"AND COALESCE(template, '') NOT IN ({_marks(NOT_QUESTIONS)})")


def day_knowledge(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, Any]:
    """Customer LLM answers given the operator's knowledge (Reply.sources) and the sources
    given most often (each counted once per answer it was given to). Its own report part
    (it reads every grounded answer of the day): the ids come from the partial covering
    index of grounded answers (schema v5), one per line; titles from one row's meta per top
    source. Staff questions are taken out, as everywhere in the customer figures. `merge`
    adds the share of the day's customer LLM answers."""
    span = day_bounds(inputs.day, inputs.tz)
    staff = Counter("\n".join(s for (s,) in conn.execute(
        f"SELECT sources FROM messages INDEXED BY messages_staff WHERE {STAFF_SQL} AND ts >= ? AND ts < ? "
        "AND sources IS NOT NULL", span)).split("\n"))
    staff_answers = conn.execute(
        f"SELECT COUNT(*) FROM messages INDEXED BY messages_staff WHERE {STAFF_SQL} AND ts >= ? AND ts < ? "
        "AND sources IS NOT NULL", span).fetchone()[0]
    rows = [s for (s,) in conn.execute("SELECT sources FROM messages INDEXED BY messages_sources "
                                       "WHERE sources IS NOT NULL AND ts >= ? AND ts < ?", span)]
    counts = Counter("\n".join(rows).split("\n")) if rows else Counter()
    counts.subtract(staff)
    top = sorted(((sid, n) for sid, n in counts.items() if n > 0 and sid), key=lambda r: (-r[1], r[0]))[:TOP_N]
    return {"grounded": len(rows) - staff_answers,
            "top_sources": [{"id": sid, "title": redact(_source_title(conn, span, sid)), "count": n} for sid, n in top]}


def _source_title(conn: sqlite3.Connection, span: tuple[float, float], source_id: str) -> str:
    row = conn.execute(
        "SELECT meta FROM messages INDEXED BY messages_sources WHERE sources IS NOT NULL AND ts >= ? AND ts < ? "
        "AND instr(char(10) || sources || char(10), char(10) || ? || char(10)) > 0 LIMIT 1",
        (*span, source_id)).fetchone()
    try:
        pairs = json.loads(row[0]).get("sources", []) if row and row[0] else []
        return next((str(title) for sid, title in pairs if sid == source_id), "")
    except (ValueError, TypeError, AttributeError):
        return ""


def compute_day(conn: sqlite3.Connection, inputs: ReportInputs) -> dict[str, Any]:
    """The report's own day, except latency percentiles, conversations and the top lists
    (`day_latency`, `day_conversations`, `day_lists`: separate so they can run at once)."""
    start, end = day_bounds(inputs.day, inputs.tz)
    span = (start, end)
    scan = S.scan_day(conn, start, end)

    # Customer messages by tier/provider/model/fallback.
    tiers: Counter[str] = Counter()
    models: Counter[tuple[str, str]] = Counter()
    clean: dict[str, tuple[float, int]] = {}
    fallback_n = requested = 0
    for (tier, provider, model, fallback), (n, req, cost, priced) in scan.messages.items():
        tiers[tier] += n
        fallback_n += n if fallback else 0
        requested += req
        if tier == "llm":
            models[(provider, model)] += n
            if not fallback and priced:
                total, count = clean.get(provider, (0.0, 0))
                clean[provider] = (total + cost, count + priced)
    n = sum(tiers.values())

    # Attempts: what each provider was paid (customers' and staff's), failovers; the
    # customers' own for tokens, cost and who was tried first.
    spend_rows: dict[tuple[str, str], list] = {}
    fails: Counter[tuple[str, str]] = Counter()
    spent_by: dict[str, list[float]] = {}
    unknown_by: Counter[str] = Counter()
    for (provider, model, outcome, _seq), (k, i, o, c, u) in scan.attempts.items():
        spent_by.setdefault(provider, []).append(c)
        unknown_by[provider] += u
        if outcome != "ok":
            fails[(provider, outcome)] += k
        if not model or provider in NOT_PROVIDERS:
            continue
        row = spend_rows.setdefault((provider, model), [0, 0, 0, [], 0])
        row[0] += k; row[1] += i; row[2] += o; row[3].append(c); row[4] += u
    customer = S.customer_attempts(scan)
    first_counts: Counter[str] = Counter()
    for (provider, model, _outcome, seq), row in customer.items():
        if seq == 0 and model and provider not in NOT_PROVIDERS:
            first_counts[provider] += row[0]
    cost_total = math.fsum(v[3] for v in customer.values())
    unknown = sum(v[4] for v in customer.values())
    staff = _staff(scan)

    handoff = handoffs(conn, start, end)
    handoff["requested"] = requested
    totals = {
        "messages": n, "conversations": None,  # filled in by `merge` from `day_conversations`
        "cost_usd": cost_total,
        "unknown_price_attempts": unknown, "cost_per_1000": cost_total / n * 1000 if n else 0.0,
        "cache_share": _share(tiers.get("cache", 0), n), "fallback_rate": _share(fallback_n, n),
        "handoffs": handoff["opened"],
        "input_tokens": sum(v[1] for v in customer.values()),
        "output_tokens": sum(v[2] for v in customer.values()),
        "price_unknown": unknown > 0,
        "staff_questions": staff["questions"], "staff_cost_usd": staff["cost_usd"],
        # customer + staff: what the providers were paid (= the spend table, the budget)
        "spend_usd": math.fsum(v[3] for v in scan.attempts.values()),
        "spend_unknown_price_attempts": sum(v[4] for v in scan.attempts.values()),
    }
    by_tier = [{"tier": t, "count": c, "share": _share(c, n)}
               for t, c in sorted(tiers.items(), key=lambda kv: (-kv[1], kv[0]))]
    paid_for_limits = _paid_for_limits(conn, scan, span)
    totals["paid_for_limits"] = sum(paid_for_limits.values())
    by_model = [{"provider": p, "model": m, "count": c, "share": _share(c, n),
                 "paid_for_limits": paid_for_limits.get((p, m), 0)}
                for (p, m), c in sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))]
    spend = [{"provider": p, "model": m, "attempts": a, "input_tokens": i, "output_tokens": o,
              "cost_usd": math.fsum(c), "unknown_price_attempts": u, "price_unknown": u > 0}
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

    caps = inputs.caps
    budget = [{"scope": s, "cap_usd": cap,
               "spent_usd": totals["spend_usd"] if s == "overall" else math.fsum(spent_by.get(s, ()))}
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
        "staff": staff,
        "budget": {"caps": budget, "alerts": alerts},
        "provider_spend": {p: (math.fsum(costs), unknown_by.get(p, 0)) for p, costs in spent_by.items()},
    }


# Answered by a paid provider because the free ones were rate-limited: the chain marks the
# reply (bot/llm/chain.py, meta "paid_because"). Such a reply always has a failed or skipped
# attempt before it, so only the day's LLM failover replies are read, one index stretch each.
_PAID_FOR_LIMITS = (f"SELECT COUNT(*) FROM messages INDEXED BY messages_groups WHERE {S._match(S.MESSAGE_KEY)} "
                    "AND ts >= ? AND ts < ? AND instr(COALESCE(meta, ''), '\"paid_because\"') > 0 "
                    f"AND NOT {STAFF_SQL}")


def _paid_for_limits(conn: sqlite3.Connection, scan: S.DayScan, span: tuple[float, float]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for key in scan.messages:
        tier, provider, model, fallback = key
        if tier == "llm" and fallback:
            count = conn.execute(_PAID_FOR_LIMITS, (*key, *span)).fetchone()[0]
            if count:
                out[(provider, model)] += count
    return out


# The report's independent parts, in `merge`'s argument order.
PARTS: tuple[Callable[[sqlite3.Connection, ReportInputs], Any], ...] = (
    compute_day, day_latency, day_conversations, day_lists, past_week, past_chart, day_knowledge)
