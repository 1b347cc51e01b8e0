"""Every figure of the daily report equals the same figure computed independently, in
plain Python, from the records that were written into the ledger."""
from __future__ import annotations

import datetime as dt
import json
import math
import random
import statistics
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

import pytest

from bot import Attempt, Event, Reply
from bot.ledger import Ledger, day_bounds
from bot.pricing import PriceBook
from bot.report import ReportInputs, compute_report, render_report

TZ = ZoneInfo("America/Los_Angeles")
DAY = dt.date(2026, 11, 1)  # DST ends that night in Los Angeles: a 25-hour day
FIRST = DAY - dt.timedelta(days=15)
PRICES = PriceBook.load()
QUESTIONS = ["Do you ship to Mars?", "do you ship to mars?", "  DO YOU SHIP TO MARS?  ", "can I pay in gold",
             "Can I pay in gold", "what is your cat's name", "is the shop haunted", "who are you",
             "why is the sky blue", "do you sell boats", "are you open on sundays", "hello??", "x" * 300]
FAQ = ["hours", "shipping", "returns", "payment"]


def generate(seed: int = 7):
    """Messages and events over 16 days, with failovers, unknown prices and handoffs."""
    rng = random.Random(seed)
    messages, events = [], []
    for offset in range(16):
        day = FIRST + dt.timedelta(days=offset)
        if offset == 9:
            continue  # a day the bot was down: no records at all
        start, end = day_bounds(day, TZ)
        for i in range(rng.randint(25, 60)):
            ts = rng.uniform(start, end - 1e-3)
            conv = f"c{rng.randint(1, 40)}"
            kind = rng.choices(["cache", "llm", "template"], [3, 5, 2])[0]
            m = {"ts": ts, "conv": conv, "tier": kind, "provider": None, "model": None, "attempts": [],
                 "latency": round(rng.uniform(1, 2000), 3), "question": rng.choice(QUESTIONS), "meta": {}}
            if kind == "cache":  # as the FAQ tier records it
                m.update(provider="cache", model="faq", meta={"faq_entry": rng.choice(FAQ)})
                m["attempts"].append(("cache", "faq", "ok", 0, 0, 0.0))
            elif kind == "template":
                m["meta"] = {"template": "generic"}
                if rng.random() < 0.15:
                    m["meta"]["handoff_requested"] = True
                elif rng.random() < 0.15:
                    m["meta"] = {"template": "rate_limited", "rate_limited": "silent"}
            else:
                if rng.random() < 0.3:
                    failed = rng.choice(["rate_limited", "timeout", "server_error"])
                    m["attempts"].append(("groq", "llama-3.3-70b-versatile", failed, 0, 0, 0.0))
                    provider, model = rng.choice([("gemini", "gemini-2.5-flash"), ("claude", "claude-mystery")])
                    if provider == "claude" and failed == "rate_limited":  # as the chain marks it
                        m["meta"] = {"paid_because": "free_limited"}
                elif rng.random() < 0.1:
                    m["attempts"].append(("groq", "llama-3.3-70b-versatile", "skipped:budget", 0, 0, 0.0))
                    provider, model = "gemini", "gemini-2.5-flash"
                else:
                    provider, model = "groq", "llama-3.3-70b-versatile"
                tin, tout = rng.randint(50, 3000), rng.randint(5, 600)
                m["attempts"].append((provider, model, "ok", tin, tout, PRICES.cost(provider, model, tin, tout)))
                m["provider"], m["model"] = provider, model
            messages.append(m)
        for j in range(rng.randint(0, 6)):
            conv, ts = f"c{rng.randint(1, 40)}", rng.uniform(start, end - 600)
            events.append((ts, "handoff_opened", conv, None))
            if rng.random() < 0.8:
                first = ts + rng.uniform(5, 900)
                events.append((first, "staff_reply", conv, None))
                events.append((first + 30, "staff_reply", conv, None))
                events.append((first + 60, "rating", conv, {"rating": rng.randint(1, 5)}))
        for j in range(rng.randint(0, 3)):
            events.append((rng.uniform(start, end), "breaker_open", "",
                           {"provider": "groq", "model": "llama-3.3-70b-versatile",
                            "reason": rng.choice(["rate_limited", "timeout"])}))
    messages.sort(key=lambda m: m["ts"])
    return messages, events


def reply_of(m) -> Reply:
    reply = Reply(text="a", tier=m["tier"], provider=m["provider"], model=m["model"],
                  latency_ms=m["latency"], meta=m["meta"])
    for p, model, outcome, tin, tout, cost in m["attempts"]:
        reply.charge(Attempt(p, model, outcome, input_tokens=tin, output_tokens=tout, cost_usd=cost))
    reply.fallback = any(a.outcome != "ok" for a in reply.attempts)
    return reply


async def fill(path, messages, events) -> Ledger:
    now = [0.0]
    ledger = Ledger(path, tz=TZ, clock=lambda: now[0])
    for m in messages:
        now[0] = m["ts"]
        ledger.record_reply(Event("telegram", m["conv"], "u-" + m["conv"], m["question"]), reply_of(m))
    for ts, kind, conv, data in events:
        await ledger.record_event(kind, conv, data, ts=ts)
    await ledger.flush()
    return ledger


# -- the independent computation -------------------------------------------------------
def on(day, items, key=lambda x: x["ts"]):
    start, end = day_bounds(day, TZ)
    return [x for x in items if start <= key(x) < end]


def attempts_of(ms):
    return [a for m in ms for a in m["attempts"]]


def headline(ms, evs):
    n = len(ms)
    known = [a[5] for a in attempts_of(ms) if a[5] is not None]
    return {"messages": n, "conversations": len({m["conv"] for m in ms}),
            "cost_usd": sum(known), "cost_per_1000": sum(known) / n * 1000 if n else 0.0,
            "cache_share": sum(m["tier"] == "cache" for m in ms) / n if n else 0.0,
            "fallback_rate": sum(any(a[2] != "ok" for a in m["attempts"]) for m in ms) / n if n else 0.0,
            "handoffs": sum(e[1] == "handoff_opened" for e in evs)}


def rank(values, pct):
    values = sorted(values)
    return values[max(1, math.ceil(pct / 100 * len(values))) - 1]


@pytest.fixture
async def data(tmp_path):
    messages, events = generate()
    ledger = await fill(tmp_path / "ledger.sqlite3", messages, events)
    caps = {"groq": 0.001, "overall": 1.0}
    report = await ledger.read(lambda c: compute_report(c, ReportInputs(DAY, TZ, caps=caps)))
    yield messages, events, report, ledger
    await ledger.aclose()


async def test_totals_tiers_models_and_spend_match(data):
    messages, events, r, _ = data
    ms = on(DAY, messages)
    evs = on(DAY, events, key=lambda e: e[0])
    assert 25 <= len(ms) <= 60
    want = headline(ms, evs)
    t = r["totals"]
    for key, value in want.items():
        assert t[key] == pytest.approx(value, rel=1e-9), key
    atts = attempts_of(ms)
    assert t["input_tokens"] == sum(a[3] for a in atts) and t["output_tokens"] == sum(a[4] for a in atts)
    unknown = sum(a[5] is None for a in atts)
    assert unknown > 0 and t["unknown_price_attempts"] == unknown and t["price_unknown"]

    tiers = Counter(m["tier"] for m in ms)
    assert {row["tier"]: row["count"] for row in r["by_tier"]} == tiers
    assert all(row["share"] == pytest.approx(tiers[row["tier"]] / len(ms)) for row in r["by_tier"])
    models = Counter((m["provider"], m["model"]) for m in ms if m["tier"] == "llm")
    assert {(row["provider"], row["model"]): row["count"] for row in r["by_model"]} == models

    spend = defaultdict(lambda: [0, 0, 0, 0.0, 0])
    for p, model, outcome, tin, tout, cost in atts:
        if p == "cache":  # the cache is not a paid provider
            continue
        s = spend[(p, model)]
        s[0] += 1; s[1] += tin; s[2] += tout; s[4] += cost is None
        s[3] += cost or 0.0
    got = {(row["provider"], row["model"]): [row["attempts"], row["input_tokens"], row["output_tokens"],
                                              row["cost_usd"], row["unknown_price_attempts"]] for row in r["spend"]}
    assert got.keys() == spend.keys()
    for key, s in spend.items():
        assert got[key][:3] == s[:3] and got[key][4] == s[4]
        assert got[key][3] == pytest.approx(s[3], rel=1e-9, abs=1e-15)
    mystery = next(row for row in r["spend"] if row["model"] == "claude-mystery")
    assert mystery["price_unknown"] and mystery["cost_usd"] == 0.0


async def test_paid_answers_because_free_providers_were_limited_match(data):
    messages, events, r, _ = data
    ms = on(DAY, messages)
    want = Counter((m["provider"], m["model"]) for m in ms if m["meta"].get("paid_because"))
    assert sum(want.values()) > 0  # the generated day has some
    got = {(row["provider"], row["model"]): row["paid_for_limits"] for row in r["by_model"] if row["paid_for_limits"]}
    assert got == want and r["totals"]["paid_for_limits"] == sum(want.values())
    for fmt in ("text", "markdown", "html"):
        assert f"{sum(want.values())} because the free providers were rate-limited" in render_report(r, fmt)


async def test_failovers_breakers_latency_match(data):
    messages, events, r, _ = data
    ms = on(DAY, messages)
    fails = Counter((a[0], a[2]) for a in attempts_of(ms) if a[2] != "ok")
    assert {(row["provider"], row["reason"]): row["count"] for row in r["failovers"]} == fails
    breakers = Counter((e[3]["provider"], e[3]["model"], e[3]["reason"])
                       for e in on(DAY, events, key=lambda e: e[0]) if e[1] == "breaker_open")
    assert {(b["provider"], b["model"], b["reason"]): b["count"] for b in r["breakers"]} == breakers
    for row in r["latency"]:
        lat = [m["latency"] for m in ms if m["tier"] == row["tier"]]
        assert row["count"] == len(lat)
        assert row["p50_ms"] == pytest.approx(rank(lat, 50)) and row["p95_ms"] == pytest.approx(rank(lat, 95))


async def test_handoffs_staff_response_and_ratings_match(data):
    messages, events, r, _ = data
    evs = on(DAY, events, key=lambda e: e[0])
    opened = [e for e in evs if e[1] == "handoff_opened"]
    waits = []
    for ts, _, conv, _ in opened:
        replies = [e[0] for e in events if e[1] == "staff_reply" and e[2] == conv and e[0] >= ts]
        if replies:
            waits.append(min(replies) - ts)
    ratings = [e[3]["rating"] for e in evs if e[1] == "rating"]
    h = r["handoffs"]
    assert h["opened"] == len(opened) and h["answered"] == len(waits)
    assert h["median_staff_response_s"] == (pytest.approx(statistics.median(waits)) if waits else None)
    assert h["ratings"]["count"] == len(ratings)
    assert h["ratings"]["distribution"] == {str(k): ratings.count(k) for k in range(1, 6)}
    if ratings:
        assert h["ratings"]["average"] == pytest.approx(statistics.fmean(ratings))
    ms = on(DAY, messages)
    assert h["requested"] == sum(bool(m["meta"].get("handoff_requested")) for m in ms)


async def test_faq_candidates_top_entries_and_cache_savings_match(data):
    messages, events, r, _ = data
    ms = on(DAY, messages)
    asked = Counter(m["question"].strip(" ").lower() for m in ms
                    if m["tier"] == "template" and not m["meta"].get("handoff_requested")
                    and m["meta"]["template"] != "rate_limited")
    want = sorted(asked.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(row["question"], row["count"]) for row in r["unanswered"]] == want
    faq = Counter(m["meta"]["faq_entry"] for m in ms if m["tier"] == "cache")
    assert [(row["entry"], row["count"]) for row in r["faq_top"]] == sorted(faq.items(), key=lambda kv: (-kv[1], kv[0]))

    first = Counter(m["attempts"][0][0] for m in ms if m["tier"] == "llm").most_common(1)[0][0]
    clean = [m["attempts"][-1][5] for m in ms if m["tier"] == "llm" and m["provider"] == first
             and len(m["attempts"]) == 1]
    s = r["cache_savings"]
    assert s["first_provider"] == first == "groq"
    assert s["avg_cost_per_answer"] == pytest.approx(statistics.fmean(clean), rel=1e-9)
    assert s["saved_usd"] == pytest.approx(statistics.fmean(clean) * faq.total(), rel=1e-9)


async def test_previous_day_and_seven_day_average_match(data):
    messages, events, r, _ = data

    def day_headline(day):
        return headline(on(day, messages), on(day, events, key=lambda e: e[0]))

    prev = day_headline(DAY - dt.timedelta(days=1))
    week = [day_headline(DAY - dt.timedelta(days=i)) for i in range(1, 8)]
    active = [h for h in week if h["messages"]]
    assert len(active) == 6  # the down day is left out of the average, not counted as zero
    for row in r["compare"]:
        key = row["key"]
        assert row["previous"] == pytest.approx(prev[key], rel=1e-9), key
        assert row["avg7"] == pytest.approx(statistics.fmean(h[key] for h in active), rel=1e-9), key
        if prev[key]:
            assert row["delta_prev"] == pytest.approx((row["today"] - prev[key]) / prev[key], rel=1e-9)


async def test_chart_and_budget_match(data):
    messages, events, r, _ = data
    chart = r["chart"]
    days = [DAY - dt.timedelta(days=i) for i in range(13, -1, -1)]
    assert chart["days"] == [d.isoformat() for d in days]
    for provider, series in chart["series"].items():
        for d, got in zip(days, series):
            want = sum(a[5] or 0.0 for a in attempts_of(on(d, messages)) if a[0] == provider)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-15), (provider, d)
    assert set(chart["series"]) == {"groq", "gemini", "claude"}
    assert chart["series"]["claude"] == [0.0] * 14  # claude-mystery has no price: unknown, not $0 spend...
    assert sum(chart["unknown_price_attempts"]) > 0  # ...and flagged as unknown
    window = [m for d in days for m in on(d, messages)]
    assert chart["unknown_by_provider"] == {"claude": sum(a[5] is None for a in attempts_of(window))}
    ms = on(DAY, messages)
    groq = sum(a[5] for a in attempts_of(ms) if a[0] == "groq" and a[5] is not None)
    caps = {b["scope"]: b for b in r["budget"]["caps"]}
    assert caps["groq"]["spent_usd"] == pytest.approx(groq) and caps["groq"]["capped"] == (groq >= 0.001)
    assert caps["overall"]["spent_usd"] == pytest.approx(r["totals"]["cost_usd"])


async def test_every_format_carries_the_same_figures(data):
    messages, events, r, _ = data
    assert json.loads(render_report(r, "json")) == json.loads(json.dumps(r))
    t = r["totals"]
    for fmt in ("text", "markdown", "html"):
        out = render_report(r, fmt)
        assert f"{t['messages']:,}" in out and r["date"] in out
        assert "price unknown" in out.lower()
        assert r["unanswered"][0]["question"][:20] in out
