"""Pipeline overhead and failover, measured side by side in one run.

  /work/venv/bin/python bench/pipeline_bench.py [--quick]
  /work/venv/bin/python bench/pipeline_bench.py --overhead [--before REV] [--rounds 3]

`--overhead` runs only scenario 1; `--before REV` also measures the code of git revision
REV (extracted to a temporary directory), alternating with the working tree round by
round, so a change is measured before/after side by side in one run.

Fake Groq/Gemini/Claude servers run in a separate process (tests/fakes/llm_servers.py,
real wire formats, 0 ms answers unless scripted), so the client under test has its
own core. Scenarios:
 1. overhead: a bare `AsyncGroq` call, a thin pipeline (the LLM chain alone) and the
    default setup (`SupportBot.from_env()` with a data directory: FAQ cache, gates,
    ledger, history, metrics; chain = groq), one message at a time, interleaved message
    by message; CPU per message counts this process and the processes it started (the
    ledger's writer process). Each measurement runs in its own client process;
    messages/s at 50 in flight for the bare call and the thin pipeline;
 2. failover: primary black-holed / refusing connections, before and after its
    breaker opens, vs a healthy single-provider baseline;
 3. the naive pattern (each provider in turn on any exception, fixed 0.5 s sleep
    between tries, no breaker, SDK default retries, 2 s timeout) on the same scenarios;
 4. hedging: a primary with a 3 % slow tail, hedging off vs on;
 5. 30 % random 429s (Retry-After 0.1 s) on the primary: how much traffic stays there.
Bounded: about two minutes; everything stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

REPO = Path(__file__).resolve().parent.parent
# A client process measures the code of TIERBOT_BENCH_TREE (an older revision), if set.
TREE = Path(os.environ.get("TIERBOT_BENCH_TREE") or REPO)
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(TREE))

import aiohttp  # noqa: E402
import anthropic  # noqa: E402
import groq  # noqa: E402

from bot import Event  # noqa: E402
from bot.app import build_bot  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.llm.prompt import PromptBuilder  # noqa: E402
from bot.rendering import Renderer  # noqa: E402
from fakes.llm_servers import Behaviour, RemoteFakes, black_hole, ok, spawn_fakes  # noqa: E402

GROQ_MODEL, GEMINI_MODEL, CLAUDE_MODEL = "llama-3.3-70b-versatile", "gemini-2.5-flash", "claude-haiku-4-5"
TEXT = "Hi, where is my order #1234? It was due yesterday."


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Result:
    def __init__(self, name: str, lat_ms: list[float], rate: float | None = None, note: str = "") -> None:
        self.name, self.lat, self.rate, self.note = name, lat_ms, rate, note

    @property
    def p50(self) -> float:
        return statistics.median(self.lat)

    p99_override: float | None = None

    @property
    def p99(self) -> float:
        return self.p99_override if self.p99_override is not None else pct(self.lat, 0.99)

    def row(self) -> str:
        rate = f"{self.rate:,.0f}" if self.rate else "—"
        return f"| {self.name} | {len(self.lat)} | {self.p50:.2f} | {self.p99:.2f} | {rate} | {self.note} |"


async def sequential(fn: Callable[[int], Awaitable[object]], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def concurrent(fn: Callable[[int], Awaitable[object]], n: int, width: int) -> tuple[list[float], float]:
    lat: list[float] = []
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            t0 = time.perf_counter()
            await fn(i)
            lat.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(width)])
    return lat, n / (time.perf_counter() - t0)


def make_bot(env: dict[str, str], **extra: str):
    e = {**env, "TIERBOT_DATA_DIR": "/tmp/tierbot-bench", "TIERBOT_GROQ_MODELS": GROQ_MODEL,
         "TIERBOT_GEMINI_MODELS": GEMINI_MODEL, "TIERBOT_CLAUDE_MODELS": CLAUDE_MODEL, **extra}
    return build_bot(Config.from_env(e), plugins=("bot.llm.plugin:install",))


_conversations = itertools.count()


def event(i: int) -> Event:
    # A fresh conversation (and customer) per message: the request sent is the same size as
    # the bare call's, and no per-customer rate limit applies.
    c = next(_conversations)
    return Event(platform="bench", conversation_id=f"b{c}", user_id=f"u{c}", text=TEXT)


# -- the naive pattern many bots ship ------------------------------------------------------
class Naive:
    """Each provider in turn on any exception, fixed sleep between tries, no breaker,
    SDK default retries (max_retries=2), a 2 s timeout per call."""

    def __init__(self, env: dict[str, str], system: str) -> None:
        self.system = system
        self.groq = groq.AsyncGroq(api_key=env["GROQ_API_KEY"], base_url=env["GROQ_BASE_URL"], timeout=2.0)
        self.claude = anthropic.AsyncAnthropic(api_key=env["ANTHROPIC_API_KEY"], base_url=env["ANTHROPIC_BASE_URL"],
                                               timeout=2.0)
        self.gemini_url = f"{env['GEMINI_BASE_URL']}/v1beta/models/{GEMINI_MODEL}:generateContent"
        self.gemini_key = env["GEMINI_API_KEY"]
        self.session: aiohttp.ClientSession | None = None

    async def ask(self, text: str) -> str:
        for call in (self._groq, self._gemini, self._claude):
            try:
                return await call(text)
            except Exception:
                await asyncio.sleep(0.5)
        return "template"

    async def _groq(self, text: str) -> str:
        r = await self.groq.chat.completions.create(model=GROQ_MODEL, max_tokens=512, messages=[
            {"role": "system", "content": self.system}, {"role": "user", "content": text}])
        return r.choices[0].message.content

    async def _gemini(self, text: str) -> str:
        self.session = self.session or aiohttp.ClientSession()
        body = {"systemInstruction": {"parts": [{"text": self.system}]},
                "contents": [{"role": "user", "parts": [{"text": text}]}]}
        async with self.session.post(self.gemini_url, json=body, headers={"x-goog-api-key": self.gemini_key},
                                     timeout=aiohttp.ClientTimeout(total=2.0)) as r:
            r.raise_for_status()
            data = await r.json()
        return data["candidates"][0]["content"]["parts"][0]["text"]

    async def _claude(self, text: str) -> str:
        m = await self.claude.messages.create(model=CLAUDE_MODEL, max_tokens=512, system=self.system,
                                              messages=[{"role": "user", "content": text}])
        return m.content[0].text

    async def aclose(self) -> None:
        await self.groq.close()
        await self.claude.close()
        if self.session:
            await self.session.close()


async def main(quick: bool) -> None:
    n = 400 if quick else 2000
    proc, env = spawn_fakes()
    fakes = RemoteFakes(env)
    results: dict[str, list[Result]] = {}
    try:
        async with asyncio.timeout(600):
            system = PromptBuilder(Renderer.from_config(Config.from_env({}))).system

            # 1. overhead ----------------------------------------------------------------
            (res,) = [run_client(None, env, n)]
            results["overhead"] = overhead_rows(res)

            # 2. failover ------------------------------------------------------------------
            base = make_bot(env, TIERBOT_CHAIN="gemini")
            baseline = Result("healthy gemini alone (baseline)", await sequential(lambda i: base.handle(event(i)), n // 2))
            await base.aclose()
            fo: list[Result] = [baseline]
            for label, primary_env, behaviour in (
                    ("black-holed", {}, black_hole()),
                    ("refusing connections", {"GROQ_BASE_URL": dead_url()}, ok())):
                await fakes.set_default("groq", behaviour)
                # Before: a breaker that never opens, so every message meets the dead primary.
                before = make_bot({**env, **primary_env}, TIERBOT_CHAIN="groq,gemini", TIERBOT_ATTEMPT_TIMEOUT_S="0.5",
                                  TIERBOT_BREAKER_THRESHOLD="1000000")
                lat, _ = await concurrent(lambda i: before.handle(event(i)), 20, 10)
                fo.append(Result(f"groq {label}, breaker not yet open", lat, note="attempt timeout 0.5 s"))
                await before.aclose()
                after = make_bot({**env, **primary_env}, TIERBOT_CHAIN="groq,gemini", TIERBOT_ATTEMPT_TIMEOUT_S="0.5")
                for i in range(3):
                    await after.handle(event(i))
                assert after.services["breakers"].state("groq") == "open"
                sent = await fakes.count("groq")
                lat = await sequential(lambda i: after.handle(event(i)), n // 2)
                extra = statistics.median(lat) - baseline.p50
                fo.append(Result(f"groq {label}, breaker open", lat,
                                 note=f"+{extra:.2f} ms p50 vs baseline; {await fakes.count('groq') - sent} requests to groq"))
                await after.aclose()
                await fakes.set_default("groq", ok())
            results["failover"] = fo

            # 3. naive -------------------------------------------------------------------------
            naive = Naive(env, system)
            nv = [Result("naive, healthy groq", await sequential(lambda i: naive.ask(TEXT), n // 2))]
            await fakes.set_default("groq", black_hole())
            lat, _ = await concurrent(lambda i: naive.ask(TEXT), 10, 10)
            nv.append(Result("naive, groq black-holed", lat, note="every message, forever"))
            await fakes.set_default("groq", ok())
            await naive.aclose()
            naive = Naive({**env, "GROQ_BASE_URL": dead_url()}, system)
            lat, _ = await concurrent(lambda i: naive.ask(TEXT), 10, 10)
            nv.append(Result("naive, groq refusing connections", lat, note="every message, forever"))
            await naive.aclose()
            results["naive"] = nv

            # 4. hedging --------------------------------------------------------------------------
            hm = 300 if quick else 600
            hedge: list[Result] = []
            for on in (False, True):
                await fakes.reset()
                b = make_bot(env, TIERBOT_CHAIN="groq,gemini", TIERBOT_HEDGING="true" if on else "false")
                await sequential(lambda i: b.handle(event(i)), 50)  # warm: latency window filled
                tail = [Behaviour(latency=0.5) if i % 33 == 7 else Behaviour(latency=0.002) for i in range(hm)]
                await fakes.script("groq", *tail)
                lat = await sequential(lambda i: b.handle(event(i)), hm)
                extra_req = await fakes.count("gemini")
                hedge.append(Result(f"3 % slow tail (0.5 s), hedging {'on' if on else 'off'}", lat,
                                    note=f"extra requests: {extra_req} ({100 * extra_req / (hm + 50):.1f} %)"))
                await b.aclose()
            results["hedging"] = hedge

            # 5. 30 % random 429s on the primary (Retry-After 0.1 s) -------------------------
            rl: list[Result] = []
            m = 150 if quick else 300
            rnd = random.Random(7)
            storm = [Behaviour("rate_limited", retry_after=0.1) if rnd.random() < 0.3 else Behaviour()
                     for _ in range(m * 3)]
            for label in ("tierbot chain", "naive"):
                await fakes.reset()
                await fakes.script("groq", *storm)
                if label == "naive":
                    nv2 = Naive(env, system)
                    lat = await sequential(lambda i: nv2.ask(TEXT), m)
                    await nv2.aclose()
                else:
                    b = make_bot(env, TIERBOT_CHAIN="groq,gemini,claude")
                    lat = await sequential(lambda i: b.handle(event(i)), m)
                    await b.aclose()
                moved = await fakes.count("gemini") + await fakes.count("claude")
                rl.append(Result(f"{label}, 30 % random 429 on groq", lat,
                                 note=f"{100 * (m - moved) / m:.1f} % answered by groq"))
            results["rate limits"] = rl
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)

    print(f"\npython {sys.version.split()[0]}, groq {groq.__version__}, anthropic {anthropic.__version__}, "
          f"aiohttp {aiohttp.__version__}, {os.cpu_count()} cores; n={n}")
    for section, rows in results.items():
        print(f"\n### {section}\n| scenario | messages | p50 ms | p99 ms | msgs/s (50 in flight) | note |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(r.row())


# -- 1. overhead, measured in client processes ----------------------------------------------
def proc_cpu_s(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of the processes this one started and that still run (the ledger's
    writer process)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                total += proc_cpu_s(int(pid))
            except OSError:  # exited meanwhile
                pass
    return total


async def overhead_client(env: dict[str, str], n: int) -> dict[str, dict[str, float]]:
    """A bare SDK call, the thin pipeline and the default setup, interleaved message by message."""
    from bot import SupportBot

    system = PromptBuilder(Renderer.from_config(Config.from_env({}))).system
    bare_http = groq.DefaultAsyncHttpxClient(limits=groq._base_client.httpx.Limits(
        max_connections=100, max_keepalive_connections=100))
    bare = groq.AsyncGroq(api_key=env["GROQ_API_KEY"], base_url=env["GROQ_BASE_URL"], max_retries=0,
                          http_client=bare_http)
    thin = make_bot(env, TIERBOT_CHAIN="groq")
    data_dir = tempfile.mkdtemp(prefix="tierbot-overhead-")
    full = SupportBot.from_env({**env, "TIERBOT_DATA_DIR": data_dir, "TIERBOT_CHAIN": "groq",
                                "TIERBOT_GROQ_MODELS": GROQ_MODEL})

    async def bare_call(i: int) -> None:
        await bare.chat.completions.create(model=GROQ_MODEL, max_tokens=512, messages=[
            {"role": "system", "content": system}, {"role": "user", "content": TEXT}])

    def bot_call(bot: Any) -> Callable[[int], Awaitable[None]]:
        async def call(i: int) -> None:
            r = await bot.handle(event(i))
            assert r.provider == "groq", (r.tier, r.attempts)
        return call

    calls = {"bare": bare_call, "thin": bot_call(thin), "default": bot_call(full)}
    for call in calls.values():
        await sequential(call, 200)
    await asyncio.sleep(0.05)
    lat: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    # Only the default setup has a writer process: its CPU over the run is the default's.
    k0 = children_cpu_s()
    for i in range(n):
        for name, call in calls.items():
            c0, t0 = time.process_time(), time.perf_counter()
            await call(i)
            lat[name].append((time.perf_counter() - t0) * 1000)
            cpu[name].append((time.process_time() - c0) * 1000)
    await asyncio.sleep(0.05)  # the last commit (after the writer's linger)
    writer_ms = (children_cpu_s() - k0) * 1000 / n
    out: dict[str, dict[str, float]] = {}
    for name in calls:
        rate = max([(await concurrent(calls[name], n // 2, 50))[1] for _ in range(2)])
        # Added latency as the median of message-by-message differences with the bare call
        # made just before it: load from elsewhere on the machine cancels out better than
        # in a difference of two medians.
        added = statistics.median(x - b for x, b in zip(lat[name], lat["bare"]))
        out[name] = {"p50": statistics.median(lat[name]), "p99": pct(lat[name], 0.99), "added": added,
                     "cpu": statistics.mean(cpu[name]), "writer": writer_ms if name == "default" else 0.0,
                     "rate": rate}
    await thin.aclose()
    await full.aclose()
    await bare.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return out


def run_client(tree: Path | None, env: dict[str, str], n: int) -> dict[str, dict[str, float]]:
    """Measure scenario 1 in a fresh process (of `tree`'s code, else this tree's)."""
    child_env = {**os.environ, "TIERBOT_BENCH_ENV": json.dumps(env)}
    child_env.pop("TIERBOT_BENCH_TREE", None)
    if tree is not None:
        child_env["TIERBOT_BENCH_TREE"] = str(tree)
    proc = subprocess.run([sys.executable, __file__, "--client", "--n", str(n)], env=child_env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"overhead client failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def overhead_rows(res: dict[str, dict[str, float]], label: str = "") -> list[Result]:
    """Table rows for one client's figures (latency lists are summarised as p50/p99)."""
    bare = res["bare"]
    rows = []
    for name, title in (("bare", "bare `AsyncGroq` call"), ("thin", "thin pipeline (LLM chain only)"),
                        ("default", "default setup (`SupportBot.from_env()`, data dir)")):
        r = res[name]
        note = f"CPU/msg {r['cpu']:.2f} ms"
        if name != "bare":
            note += (f"; {r['added']:+.2f} ms added (median paired difference), "
                     f"CPU {r['cpu'] / bare['cpu']:.2f}x the bare call")
        if name == "default":
            note += (f", {(r['cpu'] + r['writer']) / bare['cpu']:.2f}x with the writer process "
                     f"({r['writer']:.2f} ms/msg)")
        row = Result(f"{label}{title}", [r["p50"], r["p50"]], r["rate"], note)
        row.p99_override = r["p99"]
        rows.append(row)
    return rows


async def overhead_only(rounds: int, n: int, before: str | None) -> None:
    proc, env = spawn_fakes()
    trees: list[tuple[str, Path | None]] = [("after", None)]
    tmp = None
    try:
        if before:
            tmp = Path(tempfile.mkdtemp(prefix="tierbot-before-"))
            archive = subprocess.run(["git", "-C", str(REPO), "archive", before], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
            trees.insert(0, (f"before ({before})", tmp))
        runs: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label, _ in trees}
        for r in range(rounds):
            for label, tree in trees:
                runs[label].append(await asyncio.to_thread(run_client, tree, env, n))
                print(f"round {r + 1}/{rounds} {label}: {summary(runs[label][-1])}", flush=True)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\npython {sys.version.split()[0]}, groq {groq.__version__}, {os.cpu_count()} cores; "
          f"{n} messages per variant per round, {rounds} rounds")
    print("\n| code | round | default: added ms | default: CPU x bare | with writer process | writer ms/msg "
          "| thin: added ms | thin: CPU x bare | bare p50 ms | bare CPU ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, results in runs.items():
        for i, res in enumerate(results):
            print(f"| {label} | {i + 1} | {row_figures(res)} |")


def figures(res: dict[str, dict[str, float]]) -> tuple[float, ...]:
    b, t, d = res["bare"], res["thin"], res["default"]
    return (d["added"], d["cpu"] / b["cpu"], (d["cpu"] + d["writer"]) / b["cpu"], d["writer"],
            t["added"], t["cpu"] / b["cpu"], b["p50"], b["cpu"])


def row_figures(res: dict[str, dict[str, float]]) -> str:
    f = figures(res)
    return (f"{f[0]:+.2f} | {f[1]:.2f} | {f[2]:.2f} | {f[3]:.2f} | {f[4]:+.2f} | {f[5]:.2f} | "
            f"{f[6]:.2f} | {f[7]:.2f}")


def summary(res: dict[str, dict[str, float]]) -> str:
    f = figures(res)
    return f"default {f[0]:+.2f} ms added, CPU {f[1]:.2f}x ({f[2]:.2f}x with writer); thin {f[4]:+.2f} ms, {f[5]:.2f}x"


def dead_url() -> str:
    from fakes.llm_servers import dead_url as d

    return d()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    ap.add_argument("--overhead", action="store_true", help="scenario 1 only")
    ap.add_argument("--before", metavar="REV", help="with --overhead: also measure git revision REV")
    ap.add_argument("--rounds", type=int, default=3, help="with --overhead: client runs per code version")
    ap.add_argument("--n", type=int, default=0, help="messages per variant (default 2000, --quick 400)")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    # INFO logs are on, as in production, but go nowhere (their formatting cost is counted).
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
    count = args.n or (400 if args.quick else 2000)
    if args.client:
        print(json.dumps(asyncio.run(overhead_client(json.loads(os.environ["TIERBOT_BENCH_ENV"]), count))))
    elif args.overhead:
        asyncio.run(overhead_only(args.rounds, count, args.before))
    else:
        asyncio.run(main(args.quick))
