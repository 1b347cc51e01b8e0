"""Embedded (SQLite) vs server (PostgreSQL + Redis) storage, side by side in one run.

  .venv/bin/python bench/storage_bench.py [--messages N] [--rounds R] [--concurrency C]

One bot process, the whole default pipeline with no LLM keys (cache and templates
answer), so what differs between the two is the storage: the ledger (reply + attempts,
two history turns), the handoff gate's lookup and template streak, the rate limit,
the budget. Each round runs both backends, alternating which goes first (the machine
is shared and noisy):
  - latency: messages one at a time, p50/p99 of `SupportBot.handle`;
  - throughput: N messages with C in flight, messages/s and CPU per message, counting
    this process, the embedded ledger's writer process, and for the server backend the
    PostgreSQL backends serving this process's connections (from /proc) and the Redis
    server (INFO's used_cpu_*: the whole server, so another user of the shared Redis
    would count against us).
Customers: 1,000 distinct user ids (the rate limit never triggers). Needs PostgreSQL on
127.0.0.1:5432 (trust) and Redis on 127.0.0.1:6379; a database of its own is created
and dropped, Redis keys go under a prefix of their own and are deleted.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
import redis  # noqa: E402

from bot import Event  # noqa: E402
from bot.app import build_bot  # noqa: E402
from bot.config import Config  # noqa: E402
from servers import create_database, drop_database  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Backend:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env

    def bot(self):
        return build_bot(Config.from_env(self.env, dotenv=False))

    async def server_cpu(self, bot) -> float:
        """CPU of the helper processes serving this bot (see the module docstring)."""
        total = 0.0
        ledger = bot.services["ledger"]
        if hasattr(ledger, "writer_pid"):
            total += proc_cpu(ledger.writer_pid)
        storage = bot.services["storage"]
        if storage.database is not None:
            pool = await storage.database.pool()
            pids = await pool.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            total += sum(proc_cpu(r["pid"]) for r in pids)
        if storage.shared is not None:
            info = await storage.shared.client.info("cpu")
            total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return total


def event(i: int) -> Event:
    return Event(platform="telegram", conversation_id=f"c{i % 1000}", user_id=f"u{i % 1000}",
                 text="what are your opening hours" if i % 3 else f"question number {i} about something")


async def latency(backend: Backend, n: int) -> list[float]:
    async with backend.bot() as bot:
        for i in range(50):  # warm: history loaded, statements prepared, FAQ fitted
            await bot.handle(event(i))
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            await bot.handle(event(10_000 + i))
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def throughput(backend: Backend, n: int, concurrency: int) -> tuple[float, float, float]:
    """(messages/s, CPU ms per message in this process, CPU ms per message in helpers)."""
    async with backend.bot() as bot:
        for i in range(50):
            await bot.handle(event(i))
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await bot.handle(event(20_000 + i))

        c0, s0 = self_cpu(), await backend.server_cpu(bot)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        await bot.services["ledger"].committed()
        wall = time.perf_counter() - t0
        c1, s1 = self_cpu(), await backend.server_cpu(bot)
    return n / wall, (c1 - c0) * 1000 / n, (s1 - s0) * 1000 / n


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--latency-messages", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    db_url = await asyncio.to_thread(create_database, "tierbot_bench")
    prefix = f"tierbot-bench:{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="tierbot-storage-bench-"))
    base = {"PATH": os.environ.get("PATH", ""), "TIERBOT_RATE_LIMIT": "100000", "TIERBOT_LOG_LEVEL": "WARNING"}
    try:
        results: dict[str, dict[str, list[float]]] = {}
        for r in range(args.rounds):
            backends = [Backend("embedded", {**base, "TIERBOT_DATA_DIR": str(tmp / f"e{r}")}),
                        Backend("server", {**base, "TIERBOT_DATA_DIR": str(tmp / f"s{r}"), "DATABASE_URL": db_url,
                                           "REDIS_URL": REDIS_URL, "TIERBOT_REDIS_PREFIX": prefix})]
            if r % 2:
                backends.reverse()
            for b in backends:
                lat = await latency(b, args.latency_messages)
                rate, cpu, helpers = await throughput(b, args.messages, args.concurrency)
                row = results.setdefault(b.name, {})
                row.setdefault("p50", []).append(statistics.median(lat))
                row.setdefault("p99", []).append(sorted(lat)[int(len(lat) * 0.99) - 1])
                row.setdefault("rate", []).append(rate)
                row.setdefault("cpu", []).append(cpu)
                row.setdefault("helpers", []).append(helpers)
                print(f"round {r + 1} {b.name:9s} p50 {statistics.median(lat):6.2f} ms  "
                      f"p99 {row['p99'][-1]:6.2f} ms  {rate:7.1f} msg/s  CPU/msg: process {cpu:5.2f} ms "
                      f"+ helpers {helpers:5.2f} ms = {cpu + helpers:5.2f} ms", flush=True)
        e, s = results["embedded"], results["server"]
        med = statistics.median
        print(f"\nmedians over {args.rounds} rounds (N={args.messages}, C={args.concurrency}):")
        for name, row in results.items():
            print(f"  {name:9s} p50 {med(row['p50']):.2f} ms  p99 {med(row['p99']):.2f} ms  "
                  f"{med(row['rate']):.1f} msg/s  CPU/msg {med(row['cpu']) + med(row['helpers']):.2f} ms "
                  f"(process {med(row['cpu']):.2f} + helpers {med(row['helpers']):.2f})")
        print(f"  server / embedded: added p50 {med(s['p50']) - med(e['p50']):+.2f} ms, "
              f"CPU/msg x{(med(s['cpu']) + med(s['helpers'])) / (med(e['cpu']) + med(e['helpers'])):.2f}, "
              f"msg/s x{med(s['rate']) / med(e['rate']):.2f}")
    finally:
        await asyncio.to_thread(drop_database, db_url)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    asyncio.run(main())
