"""Provider storms: the tierbot chain and the naive pattern, side by side in one run.

  /work/venv/bin/python bench/storm_bench.py [--quick]

Fake Groq/Gemini/Claude servers (tests/fakes/llm_servers.py, real wire formats) run in
a child process so the bot under test has its own core; that child also keeps a log of
every request (arrival time on the system-wide monotonic clock, and what it was
answered), which is where "no request reached it" is measured. Providers answer like
slow-ish real LLMs: groq 300 ms, gemini 600 ms, claude 900 ms. Every scenario sends
2,000 messages at concurrency 50 (fresh conversation each, LLM plugin only: no cache):

 0. all healthy (what slow start costs at a cold start, and that nothing sends extra);
 1. 30 % random 429s on every provider, independently per request — with `Retry-After: 1`;
    with no quota hint at all (the shape Gemini/Vertex send for shared-capacity 429s); and
    with each provider's real "a quota ran out" shape (Groq TPM, Gemini QuotaFailure +
    RetryInfo, Anthropic requests-per-minute), where pausing is the right answer;
 2. the primary black-holed (accepts, never answers) for the first 5 s, then healthy;
 2b. the primary healthy for 4 s, black-holed for 5 s, then healthy again (the usual case);
 3. the primary answering 429 with `Retry-After: 5` for 20 s, then healthy;
 4. all three providers black-holed.
Each tierbot scenario runs twice: "old" (TIERBOT_STALL_DETECTION=false, TIERBOT_SLOW_START=0:
only timeouts and the breaker) and the defaults (stall detection and slow start on).

Shortened so the run stays bounded, and said in BENCHMARKS.md: deadline 4 s (default
12), attempt timeout 1.5 s (default 6), breaker cooldown 2 s (default 10). Scenarios 2 and
2b also run with the production deadline and attempt timeout (12 s, 6 s).

The naive pattern (bench/pipeline_bench.py's `Naive`: each provider in turn on any
exception, SDK default retries, 2 s timeout, no breaker, no deadline) runs the same
scenarios with a fixed 2 s sleep between tries. Where it is slow it gets fewer
messages (the count is printed), because 2,000 of them would take many minutes.
Whole run: about eight and a half minutes (`--quick`: 400 messages; `--only 2,2b` for some scenarios).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bot import Event  # noqa: E402
from bot.app import build_bot  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.llm.prompt import PromptBuilder  # noqa: E402
from bot.rendering import Renderer  # noqa: E402
from fakes.llm_servers import Behaviour, RemoteFakes  # noqa: E402
from pipeline_bench import CLAUDE_MODEL, GEMINI_MODEL, GROQ_MODEL, TEXT, Naive, pct  # noqa: E402

LATENCY = {"groq": 0.3, "gemini": 0.6, "claude": 0.9}
PROVIDERS = ("groq", "gemini", "claude")
WIDTH = 50
DEADLINE_S, ATTEMPT_S, COOLDOWN_S = 4.0, 1.5, 2.0
NAIVE_SLEEP_S = 2.0
LIMIT = 1 - 0.3 ** 3
OLD = {"TIERBOT_STALL_DETECTION": "false", "TIERBOT_SLOW_START": "0"}   # timeouts and breaker only
PROD = {"TIERBOT_DEADLINE_S": "12", "TIERBOT_ATTEMPT_TIMEOUT_S": "6"}    # production timeouts
VARIANTS = (("old", OLD), ("new", {}))


# -- fake servers in a child process, with a request log ------------------------------
def _logged(cls: type) -> type:
    """A fake provider that also remembers (arrival, behaviour kind) for each request."""
    from aiohttp import web

    class Logged(cls):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.log: list[tuple[float, str]] = []

        def _next(self, model: str) -> Behaviour:
            b = super()._next(model)
            self.log.append((time.monotonic(), b.kind))
            return b

        def reset_state(self) -> None:
            super().reset_state()
            self.log.clear()

        def _control_routes(self) -> list:
            async def get_log(request: web.Request) -> web.Response:
                return web.json_response({"log": self.log})

            return [*super()._control_routes(), web.get("/_fake/log", get_log)]

    return Logged


async def _serve_fakes() -> None:
    from fakes.llm_servers import FakeAnthropic, FakeGemini, FakeGroq, FakeProviders

    fp = FakeProviders()
    fp.groq, fp.gemini, fp.claude = _logged(FakeGroq)(), _logged(FakeGemini)(), _logged(FakeAnthropic)()
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # clients hanging up on black holes
    async with fp:
        print(json.dumps(fp.env()), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


class Fakes(RemoteFakes):
    async def log(self, provider: str) -> list[tuple[float, str]]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{self.urls[provider]}/_fake/log") as r:
                return [tuple(x) for x in (await r.json())["log"]]

    async def healthy(self) -> None:
        await self.reset()
        for p in PROVIDERS:
            await self.set_default(p, Behaviour(latency=LATENCY[p]))


# -- running messages ---------------------------------------------------------------------
@dataclass
class Run:
    label: str
    lat_ms: list[float] = field(default_factory=list)
    who: list[str] = field(default_factory=list)       # provider, or "template"
    ends: list[float] = field(default_factory=list)    # monotonic end time per message
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.lat_ms)

    def share(self, *who: str) -> float:
        return 100 * sum(1 for w in self.who if w in who) / max(1, self.n)

    def row(self) -> str:
        c = Counter(self.who)
        split = " / ".join(f"{c.get(p, 0)}" for p in (*PROVIDERS, "template"))
        return (f"| {self.label} | {self.n} | {self.share(*PROVIDERS):.1f} % | {split} | "
                f"{statistics.median(self.lat_ms):.0f} | {pct(self.lat_ms, 0.99):.0f} | {max(self.lat_ms):.0f} | "
                f"{self.wall_s:.1f} | {'; '.join(self.notes)} |")


async def drive(label: str, ask: Callable[[int], Awaitable[str]], n: int, width: int = WIDTH) -> Run:
    run = Run(label)
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            t0 = time.monotonic()
            who = await ask(i)
            t1 = time.monotonic()
            run.lat_ms.append((t1 - t0) * 1000)
            run.who.append(who)
            run.ends.append(t1)
            # Yield, as separate requests would: a reply that never awaits anything real (the
            # templates, breakers open) would otherwise let one worker hog the loop.
            await asyncio.sleep(0)

    t0 = time.monotonic()
    await asyncio.gather(*[worker() for _ in range(width)])
    run.wall_s = time.monotonic() - t0
    return run


_conv = itertools.count()


class Chain:
    """The tierbot bot (LLM plugin only), with breaker openings timed."""

    def __init__(self, env: dict[str, str], **extra: str) -> None:
        e = {**env, "TIERBOT_DATA_DIR": "/tmp/tierbot-storm", "TIERBOT_GROQ_MODELS": GROQ_MODEL,
             "TIERBOT_GEMINI_MODELS": GEMINI_MODEL, "TIERBOT_CLAUDE_MODELS": CLAUDE_MODEL,
             "TIERBOT_DEADLINE_S": str(DEADLINE_S), "TIERBOT_ATTEMPT_TIMEOUT_S": str(ATTEMPT_S),
             "TIERBOT_BREAKER_COOLDOWN_S": str(COOLDOWN_S), **extra}
        self.bot = build_bot(Config.from_env(e), plugins=("bot.llm.plugin:install",))
        self.breakers = self.bot.services["breakers"]
        self.opened: list[tuple[float, str, str]] = []
        self.breakers.on_open(lambda b, reason: self.opened.append((time.monotonic(), b.provider, b.model)))

    async def ask(self, i: int) -> str:
        r = await self.bot.handle(Event(platform="bench", conversation_id=f"s{next(_conv)}", user_id="u", text=TEXT))
        return r.provider or r.tier

    async def aclose(self) -> None:
        await self.bot.aclose()


class NaiveAsk(Naive):
    """bench/pipeline_bench.py's naive client, with the fixed sleep set to 2 s and the
    answering provider reported (it has no other notion of a tier)."""

    async def ask_who(self, i: int) -> str:
        for name, call in (("groq", self._groq), ("gemini", self._gemini), ("claude", self._claude)):
            try:
                await call(TEXT)
                return name
            except Exception:
                await asyncio.sleep(NAIVE_SLEEP_S)
        return "template"


async def naive_run(env: dict[str, str], system: str, label: str, n: int) -> Run:
    nv = NaiveAsk(env, system)
    try:
        return await drive(label, nv.ask_who, n)
    finally:
        await nv.aclose()


def random_storm(seed: int, count: int, provider: str, retry_after: float | None, quota: str = "") -> list[Behaviour]:
    rnd = random.Random(seed)
    return [Behaviour("rate_limited", retry_after=retry_after, quota=quota) if rnd.random() < 0.3
            else Behaviour(latency=LATENCY[provider]) for _ in range(count)]


def early_requests(log: list[tuple[float, str]], wait: float) -> tuple[int, int]:
    """Requests that arrived while a wait announced by an earlier 429 was running: (early,
    in flight). One arriving within 50 ms of the 429 was sent before it could be read."""
    sent_429 = [t for t, k in log if k == "rate_limited"]
    early = in_flight = 0
    for t, _ in log:
        prior = [x for x in sent_429 if x < t]
        if not prior:
            continue
        since = t - prior[-1]
        if since < 0.05:
            in_flight += 1
        elif any(x + 0.05 <= t < x + wait for x in prior):
            early += 1
    return early, in_flight


async def later(delay: float, fn: Callable[[], Awaitable[Any]]) -> float:
    await asyncio.sleep(delay)
    await fn()
    return time.monotonic()


# -- scenarios ------------------------------------------------------------------------------
async def storm_429(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int) -> list[Run]:
    from fakes.llm_servers import EXHAUSTED_WAIT

    runs = []
    shapes = ((1.0, "", "Retry-After: 1"), (None, "none", "no quota hint"),
              (None, "exhausted", "quota ran out: Groq TPM 7.66 s, Gemini 39 s, Claude 20 s"))
    for retry_after, quota, tag in shapes:
        for who, extra in (*VARIANTS, *((("naive", None),) if quota != "exhausted" else ())):
            # (naive skipped when quotas run out: its SDKs would sleep out 8-39 s per 429)
            await fakes.healthy()
            for k, p in enumerate(PROVIDERS):
                await fakes.script(p, *random_storm(11 + k, 3 * n + 500, p, retry_after, quota))
            label = f"{'tierbot ' + who if extra is not None else who}, 30 % 429 on all ({tag})"
            if extra is not None:
                chain = Chain(env, **extra)
                run = await drive(label, chain.ask, n)
                await chain.aclose()
            else:
                run = await naive_run(env, system, label, n_naive)
            logs = {p: await fakes.log(p) for p in PROVIDERS}
            sent = sum(len(v) for v in logs.values())
            run.notes.append(f"limit {100 * LIMIT:.1f} %; {sent / run.n:.2f} provider requests/msg")
            if quota == "exhausted":
                counts = {p: early_requests(logs[p], EXHAUSTED_WAIT[p]) for p in PROVIDERS}
                run.notes.append("requests while an announced wait ran (+in flight): " + ", ".join(
                    f"{p} {e} (+{f})" for p, (e, f) in counts.items()))
                run.notes.append("429s sent: " + ", ".join(
                    f"{p} {sum(1 for _, k in logs[p] if k == 'rate_limited')}" for p in PROVIDERS))
            runs.append(run)
    return runs


async def healthy(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int) -> list[Run]:
    runs = []
    for who, extra in VARIANTS:
        await fakes.healthy()
        chain = Chain(env, **extra)
        run = await drive(f"tierbot {who}, all healthy (cold start)", chain.ask, n)
        await chain.aclose()
        sent = sum([len(await fakes.log(p)) for p in PROVIDERS])
        run.notes.append(f"{sent} provider requests for {run.n} messages ({sent / run.n:.3f}/msg)")
        runs.append(run)
    return runs


async def black_hole_then_back(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int,
                               outage_s: float = 5.0) -> list[Run]:
    """The primary black-holed from the first message for `outage_s`, then healthy."""
    runs = []
    await fakes.healthy()
    base = Chain(env, TIERBOT_CHAIN="gemini")
    baseline = await drive("baseline: healthy gemini alone", base.ask, n // 4)
    await base.aclose()
    runs.append(baseline)
    for who, extra in (*[(f"tierbot {w}{t}", {**e, **te}) for t, te in (("", {}), (", 6 s timeouts", PROD))
                         for w, e in VARIANTS], ("naive", None)):
        runs.append(await outage_run(fakes, env, system, who, extra, n, n_naive, healthy_s=0.0, outage_s=outage_s))
    return runs


async def black_hole_mid_run(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int,
                             healthy_s: float = 4.0, outage_s: float = 5.0) -> list[Run]:
    """The primary healthy for `healthy_s`, black-holed for `outage_s`, then healthy again."""
    runs = []
    for who, extra in (*[(f"tierbot {w}{t}", {**e, **te}) for t, te in (("", {}), (", 6 s timeouts", PROD))
                         for w, e in VARIANTS], ("naive", None)):
        runs.append(await outage_run(fakes, env, system, who, extra, n, n_naive, healthy_s=healthy_s,
                                     outage_s=outage_s))
    return runs


async def outage_run(fakes: Fakes, env: dict[str, str], system: str, who: str, extra: dict[str, str] | None,
                     n: int, n_naive: int, *, healthy_s: float, outage_s: float) -> Run:
    await fakes.healthy()
    if not healthy_s:
        await fakes.set_default("groq", Behaviour("black_hole"))
    chain = Chain(env, **extra) if extra is not None else None
    cooldown_at_recovery: list[float] = []
    marks: dict[str, float] = {}

    async def go_dark() -> None:
        await fakes.set_default("groq", Behaviour("black_hole"))

    async def recover() -> None:
        await fakes.set_default("groq", Behaviour(latency=LATENCY["groq"]))
        if chain is not None:
            cooldown_at_recovery.append(chain.breakers.host("groq").current_cooldown)

    async def timeline() -> None:
        if healthy_s:
            marks["dark"] = await later(healthy_s, go_dark)
        else:
            marks["dark"] = time.monotonic()
        marks["back"] = await later(outage_s, recover)

    start = time.monotonic()
    tl = asyncio.create_task(timeline())
    what = "black-holed from the start" if not healthy_s else f"healthy {healthy_s:g} s, then black-holed"
    label = f"{who}, groq {what} {outage_s:g} s then back"
    samples: list[tuple[float, float]] = []  # (when, the host breaker's cooldown then)
    if chain is not None:
        sampler = asyncio.create_task(sample_cooldown(chain, samples))
        run = await drive(label, chain.ask, n)
        sampler.cancel()
        await chain.aclose()
    else:
        run = await naive_run(env, system, label, n_naive)
    await tl
    dark, recovered = marks["dark"], marks["back"]
    log = await fakes.log("groq")
    into_dark = [t for t, k in log if dark <= t < recovered]
    first_ok = next((t for t, k in log if k == "ok" and t >= recovered), None)
    # Messages that met the outage: started before the primary came back, ended after it went dark.
    met = [lat for lat, e in zip(run.lat_ms, run.ends) if e - lat / 1000 < recovered and e > dark]
    if met:
        run.notes.append(f"msgs that met the outage: n={len(met)}, p50 {statistics.median(met):.0f} ms, "
                         f"p99 {pct(met, 0.99):.0f} ms, max {max(met):.0f} ms")
    if chain is not None:
        opened = [t for t, p, m in chain.opened if p == "groq" and t >= dark]
        if opened:
            t_open = min(opened)
            after = [lat for lat, e in zip(run.lat_ms, run.ends) if e - lat / 1000 > t_open + 0.01
                     and e < recovered]
            run.notes.append(f"breaker open {t_open - dark:.2f} s after groq went dark")
            if after:
                run.notes.append(f"started while open: p50 {statistics.median(after):.0f} ms, "
                                 f"p99 {pct(after, 0.99):.0f} ms (n={len(after)})")
        stalls = chain.bot.services["llm"].hosts["groq"].stalls
        run.notes.append(f"stalls declared: {stalls}")
    run.notes.append(f"{len(into_dark)} requests reached groq while dead")
    if first_ok is not None:
        on_groq = sum(1 for t, k in log if k == "ok" and t >= recovered)
        current = ""
        if cooldown_at_recovery:
            last = max((c for t, c in samples if t < first_ok), default=0.0)
            current = (f", {cooldown_at_recovery[0]:g} s when groq recovered, "
                       f"{last:g} s before the first answer")
        run.notes.append(f"first groq answer {first_ok - recovered:.2f} s after recovery "
                         f"(cooldown: base {COOLDOWN_S:g} s{current}); {on_groq} msgs on groq after")
    else:
        run.notes.append("no groq answer after recovery within the run")
    sent = sum([len(await fakes.log(p)) for p in PROVIDERS])
    run.notes.append(f"{sent / run.n:.2f} provider requests/msg")
    return run


def watch_groq(chain: Chain) -> tuple[list[float], list[float]]:
    """When the bot sent each groq request, and when it was told a 429 (bench
    instrumentation on our own objects: the provider's `complete` and the breaker)."""
    sends: list[float] = []
    told: list[float] = []
    provider = chain.bot.services["llm"].providers["groq"]
    breaker = chain.breakers.get("groq", GROQ_MODEL)
    complete, failure = provider.complete, breaker.failure

    async def timed_complete(*a: Any, **kw: Any) -> Any:
        sends.append(time.monotonic())
        return await complete(*a, **kw)

    def timed_failure(outcome: str, *a: Any, **kw: Any) -> None:
        if outcome == "rate_limited":
            told.append(time.monotonic())
        failure(outcome, *a, **kw)

    provider.complete, breaker.failure = timed_complete, timed_failure
    return sends, told


async def sample_cooldown(chain: Chain, out: list[tuple[float, float]]) -> None:
    while True:
        out.append((time.monotonic(), chain.breakers.host("groq").current_cooldown))
        await asyncio.sleep(0.05)


async def retry_after_window(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int,
                             window_s: float = 20.0, retry_after: float = 5.0) -> list[Run]:
    runs = []
    for who, extra in (*VARIANTS, ("naive", None)):
        await fakes.healthy()
        await fakes.set_default("groq", Behaviour("rate_limited", retry_after=retry_after))
        back = asyncio.create_task(later(window_s, lambda: fakes.set_default("groq", Behaviour(latency=LATENCY["groq"]))))
        label = f"{'tierbot ' + who if extra is not None else who}, groq 429 Retry-After {retry_after:g} for {window_s:g} s"
        if extra is not None:
            chain = Chain(env, **extra)
            sends, told = watch_groq(chain)
            run = await drive(label, chain.ask, n)
            await chain.aclose()
            early_sends = sum(1 for t in sends if any(r <= t < r + retry_after for r in told))
            run.notes.append(f"bot side: {len(told)} 429s received, {early_sends} of {len(sends)} groq requests "
                             f"sent while a Retry-After was running")
        else:
            run = await naive_run(env, system, label, n_naive)
        await back
        log = await fakes.log("groq")
        # A request "in flight" when a 429 was sent (sent before the client could know)
        # arrives within a few ms of it; anything later but before Retry-After passed is early.
        sent_429 = [t for t, k in log if k == "rate_limited"]
        early, in_flight, gaps, early_at = 0, 0, [], []
        for t, _ in log:
            prior = [s for s in sent_429 if s < t]
            if not prior:
                continue
            since = t - prior[-1]
            if since < 0.05:
                in_flight += 1
            elif since < retry_after:
                early += 1
                early_at.append(round(since, 3))
            else:
                gaps.append(since)
        run.notes.append(f"{len(sent_429)} 429s sent; requests arriving before Retry-After passed: {early} "
                         f"{early_at[:5] if early_at else ''} (+{in_flight} within 50 ms of a 429, already in flight)")
        if gaps:
            run.notes.append(f"shortest wait after a 429: {min(gaps):.2f} s")
        run.notes.append(f"window ran {min(window_s, run.wall_s):.0f} s of the run's {run.wall_s:.0f} s")
        runs.append(run)
    return runs


async def all_down(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int) -> list[Run]:
    runs = []
    for who, extra in (*VARIANTS, ("naive", None)):
        await fakes.healthy()
        for p in PROVIDERS:
            await fakes.set_default(p, Behaviour("black_hole"))
        label = f"{'tierbot ' + who if extra is not None else who}, all three black-holed"
        if extra is not None:
            chain = Chain(env, **extra)
            run = await drive(label, chain.ask, n)
            await chain.aclose()
            over = sum(1 for x in run.lat_ms if x > DEADLINE_S * 1000)
            run.notes.append(f"deadline {DEADLINE_S:g} s: {over} messages over it")
        else:
            run = await naive_run(env, system, label, n_naive)
        sent = sum([len(await fakes.log(p)) for p in PROVIDERS])
        run.notes.append(f"{sent} requests into dead providers")
        runs.append(run)
    return runs


async def main(quick: bool, only: set[str]) -> None:
    n = 400 if quick else 2000
    proc = subprocess.Popen([sys.executable, __file__, "--serve-fakes"], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True)
    env = json.loads(proc.stdout.readline())
    fakes = Fakes(env)
    system = PromptBuilder(Renderer.from_config(Config.from_env({}))).system
    sections: dict[str, list[Run]] = {}
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(900):
            if not only or "0" in only:
                sections["0. all healthy"] = await healthy(fakes, env, system, n, 0)
            if not only or "1" in only:
                sections["1. 30 % random 429s on every provider"] = await storm_429(fakes, env, system, n, n // 4)
            if not only or "2" in only:
                sections["2. primary black-holed, then back"] = await black_hole_then_back(
                    fakes, env, system, n, n // 4)
            if not only or "2b" in only:
                sections["2b. primary black-holed mid-run, then back"] = await black_hole_mid_run(
                    fakes, env, system, n, n, healthy_s=4.0 * n / 2000)
            if not only or "3" in only:
                sections["3. primary 429 with Retry-After: 5 for 20 s"] = await retry_after_window(
                    fakes, env, system, n, n // 4)
            if not only or "4" in only:
                sections["4. all providers down"] = await all_down(fakes, env, system, n, WIDTH)
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)
    import anthropic
    import groq

    print(f"\npython {sys.version.split()[0]}, groq {groq.__version__}, anthropic {anthropic.__version__}, "
          f"aiohttp {aiohttp.__version__}, {os.cpu_count()} cores; concurrency {WIDTH}; "
          f"fake latency groq/gemini/claude {'/'.join(f'{LATENCY[p] * 1000:.0f}' for p in PROVIDERS)} ms; "
          f"deadline {DEADLINE_S:g} s, attempt timeout {ATTEMPT_S:g} s, cooldown {COOLDOWN_S:g} s; "
          f"naive sleep {NAIVE_SLEEP_S:g} s; total {time.monotonic() - t0:.0f} s")
    for title, runs in sections.items():
        print(f"\n### {title}\n| run | msgs | LLM share | groq / gemini / claude / template | p50 ms | p99 ms | "
              f"max ms | wall s | notes |\n|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            print(r.row())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="400 messages per scenario (a smoke run)")
    ap.add_argument("--only", default="", help="comma list of scenarios (0, 1, 2, 2b, 3, 4) to run")
    ap.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_fakes:
        asyncio.run(_serve_fakes())
    else:
        # INFO logs on, as in production, but sent nowhere (their cost is counted).
        logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
        asyncio.run(main(args.quick, {x.strip() for x in args.only.split(",") if x.strip()}))
