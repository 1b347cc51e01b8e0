"""The daily report over 1,000,000 ledger records: before and after schema v4's covering
indexes, side by side in one run, and what those indexes cost every insert.

For each layout — the million messages over 20 days (~50,000 a day), and all of them on
the report's day — the same rows (plus their attempts and events) are written into two
ledgers: one at schema v3 (the indexes the old report code was written for) and one at
v4. Then, in alternating rounds, every format is rendered on a freshly opened ledger:
"before" is the report package as it was at --before (default: the commit before this
change), checked out from git into a temporary directory and run against the v3 ledger;
"after" is this tree against the v4 ledger. Each round runs in its own process, the
formats in a rotated order, and build (the SQL) and render (Jinja) are timed apart.

Insert cost: the rows/s of the bulk insert (executemany, one transaction, as the bench
generator writes) into v3 and v4, and the messages/s of the ledger's own writer (a child
process, bot/sqlite_writer.py)
(Ledger.record_reply + flush) with v4's indexes and with them dropped.

    python bench/report_bench.py [--quick] [--records N] [--repeats R] [--before REV]

The row generator (the one bench/ledger_bench.py used to have: same distribution, same
seed) is split into building the rows and inserting them, so the insert is timed on its
own and the schema version can be chosen.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot import Attempt, Event, Reply  # noqa: E402
from bot.ledger import Ledger, day_bounds, migrate  # noqa: E402

FORMATS = ("html", "text", "markdown", "json", "slack")
DEFAULT_BEFORE = "6a6ad25"  # main before the v4 indexes and the staff line
QUESTIONS = ["where is my order", "I want a refund", "what are your opening hours", "do you ship abroad",
             "my card was declined", "how do I reset my password", "can I change my address",
             "is the blue one in stock", "talk to a human", "what's your return policy"]
PROVIDERS = [("groq", "llama-3.3-70b-versatile", 0.59, 0.79), ("gemini", "gemini-2.5-flash", 0.30, 2.50),
             ("claude", "claude-haiku-4-5", 1.0, 5.0)]
# Indexes schema v4 adds, and the v3 ones it replaces (for the writer without v4's indexes).
V4_INDEXES = ("messages_groups", "messages_ts_conversation", "messages_faq", "messages_questions",
              "messages_staff", "attempts_groups")
V3_INDEXES = ("CREATE INDEX messages_ts ON messages(ts)", "CREATE INDEX messages_tier_ts ON messages(tier, ts)")


# -- rows ---------------------------------------------------------------------------------
def build_rows(n: int, days: list[dt.date], tz: ZoneInfo, seed: int = 1) -> tuple[list, list, list]:
    """The distribution: 30 % cache, 55 % LLM (15 % of them after a
    failover), 15 % templates; a handoff, staff reply and rating on 1 % of messages."""
    rng = random.Random(seed)
    msgs, atts, evs = [], [], []
    spans = [day_bounds(d, tz) for d in days]
    times = sorted(s + (e - s) * rng.random() for s, e in (spans[i % len(spans)] for i in range(n)))
    for i, ts in enumerate(times, 1):
        r = rng.random()
        conv = f"c{rng.randrange(n // 4 + 1)}"
        q = QUESTIONS[rng.randrange(len(QUESTIONS))]
        lat = rng.uniform(1, 3000)
        if r < 0.3:
            msgs.append((i, ts, "telegram", conv, "u", "cache", "cache", "faq", 0, 0, 0, 0.0, lat, q,
                         '{"faq_entry": "e%d"}' % rng.randrange(40), 1, None, f"e{rng.randrange(40)}", 0))
            atts.append((i, 0, "cache", "faq", "ok", None, lat, 0, 0, 0.0, ts))
        elif r < 0.85:
            fallback = rng.random() < 0.15
            seq = 0
            if fallback:
                atts.append((i, 0, "groq", PROVIDERS[0][1], rng.choice(["rate_limited", "timeout"]), None,
                             5.0, 0, 0, 0.0, ts))
                seq = 1
            p, m, pin, pout = PROVIDERS[rng.randrange(1, 3)] if fallback else PROVIDERS[0]
            tin, tout = rng.randrange(200, 3000), rng.randrange(20, 400)
            cost = (tin * pin + tout * pout) / 1e6
            atts.append((i, seq, p, m, "ok", None, lat, tin, tout, cost, ts))
            msgs.append((i, ts, "telegram", conv, "u", "llm", p, m, int(fallback), tin, tout, cost, lat, q, None,
                         0, None, None, 0))
        else:
            msgs.append((i, ts, "telegram", conv, "u", "template", None, None, 0, 0, 0, 0.0, lat,
                         f"{q} #{rng.randrange(500)}", '{"template": "generic"}', 0, "generic", None, 0))
        if rng.random() < 0.01:
            evs.append((ts, "handoff_opened", conv, None))
            evs.append((ts + rng.uniform(10, 600), "staff_reply", conv, None))
            evs.append((ts + 900, "rating", conv, json.dumps({"rating": rng.randint(1, 5)})))
    return msgs, atts, evs


def insert(path: Path, version: int, rows: tuple[list, list, list], chunk: int = 50_000) -> float:
    """Write the rows into a new ledger at schema `version`; seconds spent inserting."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn, target=version)
    conn.execute("PRAGMA synchronous=OFF")
    msgs, atts, evs = rows
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    for lo in range(0, max(len(msgs), len(atts), len(evs)), chunk):
        conn.executemany("INSERT INTO messages (id, ts, platform, conversation_id, user_id, tier, provider, model, "
                         "fallback, input_tokens, output_tokens, cost_usd, latency_ms, question, meta, cache_hit, "
                         "template, faq_entry, handoff_requested) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         msgs[lo:lo + chunk])
        conn.executemany("INSERT INTO attempts (message_id, seq, provider, model, outcome, detail, latency_ms, "
                         "input_tokens, output_tokens, cost_usd, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         atts[lo:lo + chunk])
        conn.executemany("INSERT INTO events (ts, kind, conversation_id, data) VALUES (?,?,?,?)", evs[lo:lo + chunk])
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.execute("ANALYZE")  # as bench/ledger_bench.py does (the v4 code names its indexes anyway)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return elapsed


# -- report timing, one process per round -------------------------------------------------
WORKER = r"""
import asyncio, datetime as dt, json, sys, time
from pathlib import Path
from zoneinfo import ZoneInfo
root, path, day, tz, formats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")
sys.path.insert(0, root)
import bot
assert Path(bot.__file__).resolve().is_relative_to(Path(root).resolve()), bot.__file__
from bot.config import Config
from bot.ledger import Ledger
from bot.report import ReportService
from bot.report.render import render_report, slack_message

async def main():
    zone, day_ = ZoneInfo(tz), dt.date.fromisoformat(day)
    config = Config({"TIERBOT_TZ": tz, "TIERBOT_DATA_DIR": str(Path(path).parent)})
    out = {}
    for fmt in formats:
        ledger = Ledger(Path(path), tz=zone)  # freshly opened: new reader connections, cold caches
        service = ReportService(ledger, config)
        t0 = time.perf_counter()
        report = await service.build(day_)
        t1 = time.perf_counter()
        if fmt == "slack":
            slack_message(report, config.templates_dir)
        else:
            render_report(report, fmt, config.templates_dir)
        t2 = time.perf_counter()
        out[fmt] = [t1 - t0, t2 - t1]
        await ledger.aclose()
    print(json.dumps(out))

asyncio.run(main())
"""


def run_round(root: Path, path: Path, day: dt.date, tz: str, formats: list[str]) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(root), str(path), day.isoformat(), tz, ",".join(formats)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=path.parent)
    if proc.returncode:
        raise RuntimeError(f"report worker failed ({root}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def checkout(rev: str, dest: Path) -> Path:
    """The report code as it was at `rev` (bot/ and templates/), from git."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "bot", "templates"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def parts_once(path: Path, day: dt.date, tz: ZoneInfo) -> dict[str, float]:
    """Each part of the new report alone, one after another on one fresh connection."""
    from bot.storage.sqlite.ledger import connect
    from bot.report.compute import PARTS, ReportInputs

    conn = connect(path, readonly=True)
    inputs = ReportInputs(day, tz)
    out = {}
    for part in PARTS:
        t0 = time.perf_counter()
        part(conn, inputs)
        out[part.__name__] = time.perf_counter() - t0
    conn.close()
    return out


# -- the ledger's writer ----------------------------------------------------------------------
async def writer_rate(path: Path, n: int, with_v4: bool) -> float:
    """Messages/s through Ledger.record_reply until committed, on a fresh ledger (v4 indexes
    kept or dropped)."""
    ledger = Ledger(path)
    if not with_v4:
        def drop(conn: sqlite3.Connection) -> None:
            for name in V4_INDEXES:
                conn.execute(f"DROP INDEX {name}")
            for sql in V3_INDEXES:
                conn.execute(sql)
        await ledger.call(drop)
    rng = random.Random(3)
    now = [time.time()]
    ledger.clock = lambda: now[0]
    events, replies = [], []
    for i in range(n):
        ev = Event("telegram", f"c{rng.randrange(n // 4)}", "u", QUESTIONS[i % len(QUESTIONS)])
        kind = rng.random()
        if kind < 0.3:
            reply = Reply("a", "cache", "cache", "faq", meta={"faq_entry": f"e{rng.randrange(40)}"},
                          attempts=[Attempt("cache", "faq", "ok", 1.0)])
        elif kind < 0.85:
            reply = Reply("a", "llm", "groq", "llama-3.3-70b-versatile", meta={"route": "customer"},
                          attempts=[Attempt("groq", "llama-3.3-70b-versatile", "ok", 300.0, None, 900, 120, 0.0006)])
        else:
            reply = Reply("a", "template", meta={"template": "generic"})
        reply.latency_ms = rng.uniform(1, 3000)
        events.append(ev)
        replies.append(reply)
    await ledger.flush()
    t0 = time.perf_counter()
    for ev, reply in zip(events, replies):
        now[0] += 0.01
        ledger.record_reply(ev, reply)
    await ledger.flush()
    rate = n / (time.perf_counter() - t0)
    await ledger.aclose()
    return rate


# -- main -----------------------------------------------------------------------------------------
def fmt_s(values: list[float]) -> str:
    return f"{values[0]:.2f} / {statistics.median(values):.2f}"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100,000 records, 1 round (a smoke run)")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of before/after (alternating)")
    ap.add_argument("--before", default=DEFAULT_BEFORE, help="git revision for the 'before' code")
    ap.add_argument("--writer", type=int, default=60_000, help="messages per ledger-writer round")
    args = ap.parse_args()
    records, repeats, writer_n = ((100_000, 1, 10_000) if args.quick else (args.records, args.repeats, args.writer))
    tz_name = "Europe/Berlin"
    tz, day = ZoneInfo(tz_name), dt.date(2026, 11, 20)
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, load average at start "
          f"{os.getloadavg()[0]:.1f}; before = {args.before}")

    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "before").mkdir()
        old = checkout(args.before, tmp / "before")

        print(f"\n## Ledger writer (child process): Ledger.record_reply until committed, {writer_n:,} messages a round "
              "(median of 3 alternating rounds)")
        rates: dict[bool, list[float]] = {True: [], False: []}
        for r in range(3):
            for with_v4 in (False, True) if r % 2 == 0 else (True, False):
                path = tmp / f"writer-{r}-{with_v4}" / "ledger.sqlite3"
                path.parent.mkdir()
                rates[with_v4].append(await writer_rate(path, writer_n, with_v4))
        a, b = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"   without v4 indexes {a:,.0f} msg/s   with {b:,.0f} msg/s   ratio {b / a:.2f}   "
              f"(rounds {[round(x) for x in rates[False]]} / {[round(x) for x in rates[True]]})")

        layouts = ((f"{records:,} over 20 days", [day - dt.timedelta(days=i) for i in range(20)]),
                   (f"all {records:,} on the report's day", [day]))
        sides = ("before", "after")  # the old code on v3, this code on v4
        for n_layout, (label, days) in enumerate(layouts):
            rows = build_rows(records, days, tz)
            paths = {side: tmp / f"{side}-{n_layout}" / "ledger.sqlite3" for side in sides}
            ins: dict[str, float] = {}
            for side in sides if n_layout % 2 == 0 else sides[::-1]:
                paths[side].parent.mkdir()
                ins[side] = insert(paths[side], 3 if side == "before" else 4, rows)
            total_rows = sum(len(x) for x in rows)
            size = {s: p.stat().st_size / 1e6 for s, p in paths.items()}
            print(f"\n## {label}: {len(rows[0]):,} messages, {len(rows[1]):,} attempts, {len(rows[2]):,} events")
            print(f"   bulk insert: v3 {total_rows / ins['before']:,.0f} rows/s ({ins['before']:.1f} s, "
                  f"{size['before']:.0f} MB)   v4 {total_rows / ins['after']:,.0f} rows/s ({ins['after']:.1f} s, "
                  f"{size['after']:.0f} MB)   ratio {ins['before'] / ins['after']:.2f}")
            del rows
            times: dict[str, dict[str, list[list[float]]]] = {side: {} for side in sides}
            for r in range(repeats):
                order = list(FORMATS[r % len(FORMATS):] + FORMATS[:r % len(FORMATS)])
                for side in sides if r % 2 == 0 else sides[::-1]:
                    got = run_round(old if side == "before" else REPO, paths[side], day, tz_name, order)
                    for fmt, t in got.items():
                        times[side].setdefault(fmt, []).append(t)
            print(f"   report, seconds: first / median of {repeats}, each on a freshly opened ledger; "
                  "then the medians of build (SQL) + render (Jinja)")
            print(f"   {'format':9s} {'before':>12s} {'after':>12s} {'ratio':>6s}   "
                  f"{'before build + render':>22s} {'after build + render':>21s}")
            for fmt in FORMATS:
                tot = {side: [sum(x) for x in times[side][fmt]] for side in sides}
                med = {side: (statistics.median(x[0] for x in times[side][fmt]),
                              statistics.median(x[1] for x in times[side][fmt])) for side in sides}
                print(f"   {fmt:9s} {fmt_s(tot['before']):>12s} {fmt_s(tot['after']):>12s} "
                      f"{statistics.median(tot['before']) / statistics.median(tot['after']):6.1f}   "
                      + "  ".join(f"{med[side][0]:>14.3f} + {med[side][1]:.3f}" for side in sides))
            parts = parts_once(paths["after"], day, tz)
            print("   after, each part alone on one connection (s): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
            for p in paths.values():
                for f in p.parent.iterdir():
                    f.unlink()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
