"""Ledger and report: does recording every message slow the pipeline, and how long does
the daily report take over a million ledger records?

Part 1 — throughput, side by side in one run. The same SupportBot handles the same
messages (N conversations, several messages each, C at a time) without the ledger, with
the ledger as it was before (writer *thread* in this process, history loads on reader
threads; bot/ledger/store.py + history.py loaded from git at BEFORE_REV) and with the
ledger now (writer *process*, bot/sqlite_writer.py), each with durable history + reply
listener + budget gate; rounds rotate the order so machine noise hits all alike. CPU per
message is this process's (all threads, fake servers included) plus, separately, the
writer process's (from /proc), so moving work out of the process is not counted as
saving it. Two pipelines:
  - templates only: the cheapest reply there is, so the ledger's share of the cost is
    as large as it can ever be;
  - the real LLM chain (groq SDK over HTTP) against the local fake Groq server.
Also measured: what the event loop itself pays per recorded message (building the rows
and queueing them / sending them to the writer process).

The report over 1,000,000 ledger records is bench/report_bench.py.

    python bench/ledger_bench.py [--quick] [--llm-only] [--rounds N] | --diagnose
"""
from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bot import Event, SupportBot  # noqa: E402
from bot.app import build_bot  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.ledger import Ledger  # noqa: E402
from bot.rendering import Renderer, load_business_profile  # noqa: E402
from bot.templates_tier import TemplateTier  # noqa: E402

QUESTIONS = ["where is my order", "I want a refund", "what are your opening hours", "do you ship abroad",
             "my card was declined", "how do I reset my password", "can I change my address",
             "is the blue one in stock", "talk to a human", "what's your return policy"]


# -- part 1 -----------------------------------------------------------------------------
# The ledger as it was before its writer moved into a child process (a writer thread in
# this process, history loads on reader threads), loaded from git so both run side by side.
BEFORE_REV = "85f2f66"


def load_thread_ledger(rev: str = BEFORE_REV) -> type:
    """bot/ledger/store.py + history.py as of `rev`, as modules of the bot.ledger package."""
    import importlib.util
    import subprocess

    def load(name: str, path: str, replace: tuple[str, str] | None = None):
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True,
                             capture_output=True, text=True).stdout
        if replace:
            src = src.replace(*replace)
        spec = importlib.util.spec_from_loader(f"bot.ledger.{name}", loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "bot.ledger"
        sys.modules[spec.name] = mod
        exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)
        return mod

    load("_thread_history", "bot/ledger/history.py")
    store = load("_thread_store", "bot/ledger/store.py", ("from .history import", "from ._thread_history import"))
    return store.Ledger


def install_thread_ledger(parts) -> None:
    """The ledger plugin, wired the same way, with the thread-writer ledger."""
    from bot.ledger.plugin import install

    install(parts, ledger_cls=load_thread_ledger())


PLUGIN = {"thread writer (before)": "__main__:install_thread_ledger",
          "process writer (now)": "bot.ledger.plugin:install"}
VARIANTS = ("without ledger", *PLUGIN)


def child_cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by another process (all its threads), from /proc."""
    if pid is None:
        return 0.0
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError):
        return 0.0
    return total / 1e9


async def drive(bot: SupportBot, n: int, conversations: int, concurrency: int, tag: str) -> dict[str, float]:
    """Messages/s, CPU µs per message of this process (all threads, fake servers included),
    of the writer process if there is one, and voluntary context switches per message."""
    import resource

    events = [Event("telegram", f"{tag}-c{i % conversations}", f"u{i % conversations}",
                    QUESTIONS[i % len(QUESTIONS)]) for i in range(n)]
    sem = asyncio.Semaphore(concurrency)
    # Messages of one conversation in order, like a real chat (a customer waits for the answer).
    by_conv: dict[str, list[Event]] = {}
    for e in events:
        by_conv.setdefault(e.conversation_id, []).append(e)

    async def conversation(evs: list[Event]) -> None:
        for e in evs:
            async with sem:
                await bot.handle(e)

    ledger = bot.services.get("ledger")
    pid = getattr(ledger, "writer_pid", None)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0, c0, w0 = time.perf_counter(), time.process_time(), child_cpu_s(pid)
    await asyncio.gather(*(conversation(evs) for evs in by_conv.values()))
    if ledger is not None:
        await ledger.flush()  # count the writes as done only when committed
    elapsed, cpu, wcpu = time.perf_counter() - t0, time.process_time() - c0, child_cpu_s(pid) - w0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"rate": n / elapsed, "cpu": cpu / n * 1e6, "writer": wcpu / n * 1e6,
            "vcsw": (r1.ru_nvcsw - r0.ru_nvcsw) / n}


async def loop_cost(ledger_cls: type, n: int = 20_000) -> float:
    """What the event loop itself pays per message: building the rows and queueing them."""
    from bot import Attempt, Reply

    tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    ledger = ledger_cls(tmp / "ledger.sqlite3")
    event = Event("telegram", "c1", "u1", "where is my order?")
    reply = Reply("a", "llm", "groq", "llama-3.3-70b-versatile", meta={"route": "customer"},
                  attempts=[Attempt("groq", "llama-3.3-70b-versatile", "ok", 200.0, None, 900, 120, 0.0006)])
    t0 = time.perf_counter()
    for i in range(n):
        ledger.record_reply(event, reply)
        ledger.append_turn("c1", "user", event.text, 1.0)
        ledger.append_turn("c1", "assistant", reply.text, 2.0)
        if i % 100 == 99:
            await asyncio.sleep(0)  # let the loop send what it queued, as it does when serving
    elapsed = time.perf_counter() - t0
    await ledger.aclose()
    return elapsed / n * 1e6


def make_bot(pipeline: str, variant: str, data_dir: Path, fp, concurrency: int) -> SupportBot:
    from fakes.llm_bot import llm_env

    ledger = () if variant == "without ledger" else (PLUGIN[variant],)
    if pipeline == "templates only":
        if not ledger:
            return SupportBot([TemplateTier(Renderer(profile=load_business_profile(None)))])
        return build_bot(Config({"TIERBOT_DATA_DIR": str(data_dir)}), plugins=ledger)
    env = llm_env(fp, data_dir, deadline=10, attempt=5, chain="groq", TIERBOT_LLM_POOL=str(concurrency * 2))
    return build_bot(Config(env), plugins=(*ledger, "bot.llm.plugin:install"))


PIPELINES = ("templates only", "LLM chain (fake Groq over HTTP)")


async def throughput(rounds: int, n: int, conversations: int, concurrency: int,
                     pipelines: tuple[str, ...] = PIPELINES) -> dict:
    import fakes.llm_servers as F

    results: dict[str, dict[str, list[dict]]] = {}
    async with F.FakeProviders() as fp:
        for pipeline in pipelines:
            res = results.setdefault(pipeline, {v: [] for v in VARIANTS})
            for r in range(rounds):
                k = r % len(VARIANTS)  # rotate the order: each variant goes first as often
                for variant in VARIANTS[k:] + VARIANTS[:k]:
                    bot = make_bot(pipeline, variant, Path(tempfile.mkdtemp(prefix="ledger-bench-")), fp, concurrency)
                    async with bot:
                        await drive(bot, min(200, n), conversations, concurrency, f"warm{r}")
                        count = n if pipeline == "templates only" else max(300, n // 3)
                        res[variant].append(await drive(bot, count, conversations, concurrency, f"r{r}"))
                    fp.groq.requests.clear()
    return results


class SqliteThread:
    """Diagnosis: a thread in this process committing small SQLite batches every 5 ms
    (about what the ledger's writer thread did), with no other tie to the pipeline."""

    def __init__(self, path: Path) -> None:
        import threading

        self.path, self.stop = path, threading.Event()
        self.thread = threading.Thread(target=self.run, name="sqlite-thread", daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (a, b, c, d)")
        i = 0
        while not self.stop.wait(0.005):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t VALUES (?,?,?,?)", [(i, "x" * 40, 1.5, None)] * 8)
            conn.execute("COMMIT")
            i += 1
        conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


async def diagnose(rounds: int, n: int) -> None:
    """Which part of the thread-writer ledger costs the event loop CPU on the LLM path?"""
    import os
    import threading

    import fakes.llm_servers as F
    from bot.history import MemoryHistory

    variants = ("without ledger", "without + sqlite thread", "thread writer (before)",
                "thread writer, history in memory", "process writer (now)")
    out: dict[str, list[dict]] = {v: [] for v in variants}
    print(f"\n## Diagnosis: LLM chain, {n} messages x {rounds} rounds (median); load {os.getloadavg()[0]:.1f}")
    async with F.FakeProviders() as fp:
        for r in range(rounds):
            k = r % len(variants)
            for v in variants[k:] + variants[:k]:
                tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
                base = {"without + sqlite thread": "without ledger",
                        "thread writer, history in memory": "thread writer (before)"}.get(v, v)
                bot = make_bot("LLM", base, tmp, fp, 20)
                if v == "thread writer, history in memory":
                    bot.history = MemoryHistory()  # no history loads on the reader threads
                noise = SqliteThread(tmp / "noise.sqlite3") if v == "without + sqlite thread" else None
                async with bot:
                    await drive(bot, 200, 300, 20, f"warm{r}")
                    main = time.pthread_getcpuclockid(threading.main_thread().ident)
                    m0 = time.clock_gettime(main)
                    res = await drive(bot, n, 300, 20, f"r{r}")
                    res["main"] = (time.clock_gettime(main) - m0) / n * 1e6
                    out[v].append(res)
                if noise:
                    noise.close()
                fp.groq.requests.clear()
    print(f"{'variant':36s} {'msg/s':>6s} {'loop thread':>11s} {'process':>8s} {'+writer':>8s} {'vcsw/msg':>8s}")
    for v, rs in out.items():
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        print(f"{v:36s} {med['rate']:6.0f} {med['main']:9.0f}us {med['cpu']:6.0f}us {med['writer']:6.0f}us "
              f"{med['vcsw']:8.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the script)")
    ap.add_argument("--part1-only", action="store_true", help="(kept for old command lines: part 1 is all there is)")
    ap.add_argument("--llm-only", action="store_true", help="part 1: the LLM pipeline only")
    ap.add_argument("--rounds", type=int, help="part 1 / diagnosis: rounds per variant")
    ap.add_argument("--diagnose", action="store_true",
                    help="only: where the thread writer's extra CPU on the LLM path came from")
    args = ap.parse_args()
    n, rounds = (600, 2) if args.quick else (3000, 6)
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    if args.diagnose:
        return await diagnose(args.rounds or (2 if args.quick else 5), 300 if args.quick else 1000)

    await part1(n, args.rounds or rounds, PIPELINES[1:] if args.llm_only else PIPELINES)


async def part1(n: int, rounds: int, pipelines: tuple[str, ...] = PIPELINES) -> None:
    import os

    print(f"\n## Part 1: messages/s through SupportBot.handle, {n} messages ({max(300, n // 3)} through "
          f"the LLM chain), 300 conversations, 20 concurrent, {rounds} rounds in rotating order (median); "
          f"load average before: {os.getloadavg()[0]:.1f}")
    res = await throughput(rounds, n, 300, 20, pipelines)
    print(f"{'pipeline / ledger':48s} {'msg/s':>7s} {'CPU/msg':>9s} {'+writer proc':>12s} {'= total':>9s} "
          f"{'vcsw/msg':>8s}")
    for pipeline, by_variant in res.items():
        print(pipeline)
        for variant, rs in by_variant.items():
            med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
            total = statistics.median(x["cpu"] + x["writer"] for x in rs)
            print(f"  {variant:46s} {med['rate']:7.0f} {med['cpu']:7.0f}us {med['writer']:10.0f}us "
                  f"{total:7.0f}us {med['vcsw']:8.1f}")
            print(f"  {'':46s} per round: msg/s {[round(x['rate']) for x in rs]}, "
                  f"total CPU/msg {[round(x['cpu'] + x['writer']) for x in rs]}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    from bot.ledger import Ledger

    print("loop-thread cost of recording one message (record_reply + 2 turns, no commit wait): "
          f"thread writer {await loop_cost(load_thread_ledger()):.1f} us, "
          f"process writer {await loop_cost(Ledger):.1f} us")


if __name__ == "__main__":
    asyncio.run(main())
