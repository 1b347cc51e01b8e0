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

Scenarios 5-8 (issue #11: fail over first, paid providers, no customer as a probe) put three
kinds of rows side by side: "old" = the build before fail-over-first (`--old`, default
0ab2a32), run in a child process from a copy of that revision's code against the same fakes
and driver; the current build (default and, in 5, speed first: TIERBOT_FREE_WAIT_S=0); naive.

 5. 30 % random 429s with `Retry-After: 1` on every provider (every announced window honoured?
    counted on the bot's side: requests sent while a Retry-After it had received still ran);
    the paid provider's (claude's) share;
 6. groq answering every request with 429 `Retry-After: 1` for 5 s under a steady 40 msg/s
    (open loop, 3 s before, 4 s after): requests reaching groq inside the window, first groq
    answer after it;
 7. fast fakes (groq/gemini/claude 50/80/120 ms), production timeouts, the primary black-holed:
    cold start (fresh bot) and warm start (a bot that served traffic on groq, then saw it die
    until its breaker opened; measured from there: what each probe costs its customer);
 8. the primary refusing connections, against gemini alone.
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
# `--child` runs put an older build's tree first (see `old_tree`): "old" rows are that code.
BOT_TREE = os.environ.get("STORM_BOT_TREE") or str(REPO)
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, BOT_TREE)

import aiohttp  # noqa: E402

from bot import Event  # noqa: E402
from bot.app import build_bot  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.llm.prompt import PromptBuilder  # noqa: E402
from bot.rendering import Renderer  # noqa: E402
from fakes.llm_servers import Behaviour, RemoteFakes  # noqa: E402
from pipeline_bench import CLAUDE_MODEL, GEMINI_MODEL, GROQ_MODEL, TEXT, Naive, pct  # noqa: E402

sys.path.insert(0, BOT_TREE)  # (pipeline_bench put the current tree first again)

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
    starts: list[float] = field(default_factory=list)  # monotonic start time per message

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
            run.starts.append(t0)
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
        self.paid_because: Counter[str] = Counter()   # Reply.meta["paid_because"]
        self.left_probe_ms: list[float] = []           # waits on probes the message left (probe_background)
        self.rate_waits = 0                            # messages that waited (all limited / before paid)

    async def ask(self, i: int) -> str:
        r = await self.bot.handle(Event(platform="bench", conversation_id=f"s{next(_conv)}", user_id="u", text=TEXT))
        if r.meta.get("paid_because"):
            self.paid_because[r.meta["paid_because"]] += 1
        self.left_probe_ms += [a.latency_ms for a in r.attempts if a.outcome == "probe_background"]
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



# -- fail over first, paid providers, no customer as a probe (issue #11) ---------------------
FAST = {"groq": 0.05, "gemini": 0.08, "claude": 0.12}  # "fast fakes" for the probe scenarios
OLD_REV = "0ab2a32"  # main before fail-over-first (same-model waits, probes keep their customer)
STEADY_RATE = 40.0


def watch_sends(chain: Chain) -> dict[str, tuple[list[float], list[tuple[float, float]]]]:
    """Per provider: when the bot sent each request, and when it received a 429 with a
    Retry-After (and how long) — bench instrumentation on our own objects, as `watch_groq`."""
    out: dict[str, tuple[list[float], list[tuple[float, float]]]] = {}
    llm = chain.bot.services["llm"]
    for p, model in (("groq", GROQ_MODEL), ("gemini", GEMINI_MODEL), ("claude", CLAUDE_MODEL)):
        sends: list[float] = []
        told: list[tuple[float, float]] = []
        provider, breaker = llm.providers[p], chain.breakers.get(p, model)

        def timed(complete: Any, sends: list[float] = sends) -> Any:
            async def call(*a: Any, **kw: Any) -> Any:
                sends.append(time.monotonic())
                return await complete(*a, **kw)
            return call

        def failed(failure: Any, told: list[tuple[float, float]] = told) -> Any:
            def call(outcome: str, retry_after: float | None = None, *a: Any, **kw: Any) -> None:
                if outcome == "rate_limited" and retry_after:
                    told.append((time.monotonic(), retry_after))
                failure(outcome, retry_after, *a, **kw)
            return call

        provider.complete, breaker.failure = timed(provider.complete), failed(breaker.failure)
        out[p] = (sends, told)
    return out


def sent_inside_waits(sends: list[float], told: list[tuple[float, float]]) -> int:
    """Requests the bot sent while a Retry-After it had received was still running."""
    return sum(1 for t in sends if any(r < t < r + ra for r, ra in told))


async def storm_retry_after(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int,
                            variants: tuple = ()) -> list[Run]:
    """30 % random 429s with Retry-After: 1 on every provider; the paid provider's share."""
    runs = []
    for who, extra in variants:
        await fakes.healthy()
        for k, p in enumerate(PROVIDERS):
            await fakes.script(p, *random_storm(11 + k, 3 * n + 500, p, 1.0))
        label = f"{who}, 30 % 429 `Retry-After: 1` on all"
        if extra is None:
            run = await naive_run(env, system, label, n_naive)
        else:
            chain = Chain(env, **extra)
            watched = watch_sends(chain)
            run = await drive(label, chain.ask, n)
            await chain.aclose()
            inside = {p: sent_inside_waits(*watched[p]) for p in PROVIDERS}
            run.notes.append("sent while a received Retry-After ran: " + ", ".join(
                f"{p} {inside[p]} of {len(watched[p][0])}" for p in PROVIDERS))
            if chain.paid_because:
                run.notes.append(f"paid because free limited: {chain.paid_because['free_limited']}")
        run.notes.append(f"paid (claude) share {run.share('claude'):.1f} %")
        sent = sum([len(await fakes.log(p)) for p in PROVIDERS])
        run.notes.append(f"{sent / run.n:.2f} provider requests/msg")
        runs.append(run)
    return runs


async def steady(label: str, ask: Callable[[int], Awaitable[str]], rate: float, duration: float) -> Run:
    """Open loop: one message every 1/rate s whatever the replies do (a steady arrival rate)."""
    run = Run(label)
    loop_start = time.monotonic()

    async def one(i: int) -> None:
        t0 = time.monotonic()
        who = await ask(i)
        t1 = time.monotonic()
        run.lat_ms.append((t1 - t0) * 1000)
        run.who.append(who)
        run.ends.append(t1)
        run.starts.append(t0)

    tasks = []
    for i in range(int(rate * duration)):
        delay = loop_start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    run.wall_s = time.monotonic() - loop_start
    return run


async def groq_limited_window(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int,
                              variants: tuple = (), before_s: float = 3.0, window_s: float = 5.0,
                              after_s: float = 4.0) -> list[Run]:
    """Groq answers every request with 429 Retry-After: 1 for 5 s under a steady 40 msg/s."""
    runs = []
    for who, extra in variants:
        await fakes.healthy()
        marks: dict[str, float] = {}

        async def timeline() -> None:
            await asyncio.sleep(before_s)
            await fakes.set_default("groq", Behaviour("rate_limited", retry_after=1.0))
            marks["from"] = time.monotonic()
            await asyncio.sleep(window_s)
            await fakes.set_default("groq", Behaviour(latency=LATENCY["groq"]))
            marks["to"] = time.monotonic()

        label = f"{who}, groq 429 `Retry-After: 1` for {window_s:g} s at {STEADY_RATE:g} msg/s"
        tl = asyncio.create_task(timeline())
        total = before_s + window_s + after_s
        if extra is None:
            nv = NaiveAsk(env, system)
            run = await steady(label, nv.ask_who, STEADY_RATE, total)
            await nv.aclose()
        else:
            chain = Chain(env, **extra)
            run = await steady(label, chain.ask, STEADY_RATE, total)
            await chain.aclose()
        await tl
        log = await fakes.log("groq")
        inside = [t for t, k in log if marks["from"] <= t < marks["to"]]
        first_ok = next((t for t, k in log if k == "ok" and t >= marks["to"]), None)
        during = [lat for lat, t0, t1 in zip(run.lat_ms, run.starts, run.ends) if t1 > marks["from"] and t0 < marks["to"]]
        run.notes.append(f"{len(inside)} requests reached groq inside the window")
        run.notes.append(f"msgs that met the window: n={len(during)}, p99 {pct(during, 0.99):.0f} ms")
        run.notes.append("first groq answer after the window: " + (
            f"{first_ok - marks['to']:.2f} s" if first_ok is not None else "none"))
        runs.append(run)
    return runs


async def probes_black_hole(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int,
                            variants: tuple = ()) -> list[Run]:
    """Fast fakes; the primary black-holed. Cold: a fresh bot. Warm: a bot that has served
    traffic on the primary, then seen it go dark until its breaker opened (not measured);
    measured from there, so what shows is what each probe costs its customer."""
    runs = []

    async def fast() -> None:
        await fakes.reset()
        for p in PROVIDERS:
            await fakes.set_default(p, Behaviour(latency=FAST[p]))

    for who, extra in variants:
        if who.startswith("baseline"):
            await fast()
            base = Chain(env, TIERBOT_CHAIN="gemini", **PROD)
            runs.append(await drive("baseline: healthy gemini alone (fast fakes)", base.ask, n // 2))
            await base.aclose()
            continue
        for start in ("cold", "warm"):
            await fast()
            chain = Chain(env, **{**PROD, **extra})
            if start == "warm":
                await drive("warm-up", chain.ask, 300)
                await fakes.set_default("groq", Behaviour("black_hole"))
                t_end = time.monotonic() + 30
                while chain.breakers.host("groq").state != "open" and time.monotonic() < t_end:
                    await drive("warm-up", chain.ask, 50)
                chain.left_probe_ms.clear()
                chain.opened.clear()
            else:
                await fakes.set_default("groq", Behaviour("black_hole"))
            sent_before = len(await fakes.log("groq"))
            run = await drive(f"{who}, groq black-holed, {start} start", chain.ask, n)
            await chain.aclose()
            sent = len(await fakes.log("groq")) - sent_before
            slow = [x for x in run.lat_ms if x > 500]
            run.notes.append(f"{sent} requests into dead groq; msgs over 500 ms: {len(slow)}")
            if chain.left_probe_ms:
                run.notes.append(f"{len(chain.left_probe_ms)} msgs left a probe after at most "
                                 f"{max(chain.left_probe_ms):.0f} ms")
            runs.append(run)
    return runs


async def primary_refused(fakes: Fakes, env: dict[str, str], system: str, n: int, n_naive: int,
                          variants: tuple = ()) -> list[Run]:
    """The primary refuses connections; compared with the second provider alone."""
    from fakes.llm_servers import dead_url

    runs = []
    dead = {**env, "GROQ_BASE_URL": dead_url()}
    for who, extra in variants:
        await fakes.healthy()
        if who.startswith("baseline"):
            base = Chain(env, TIERBOT_CHAIN="gemini")
            runs.append(await drive("baseline: healthy gemini alone", base.ask, n))
            await base.aclose()
            continue
        if extra is None:
            run = await naive_run(dead, system, f"{who}, groq refused", n_naive)
        else:
            chain = Chain(dead, **extra)
            run = await drive(f"{who}, groq refused", chain.ask, n)
            await chain.aclose()
        runs.append(run)
    return runs


NEW_SCENARIOS = {"5": ("5. 30 % random 429s with `Retry-After: 1` on every provider: paid share", storm_retry_after,
                       (("tierbot default", {}), ("tierbot speed first (TIERBOT_FREE_WAIT_S=0)",
                                                  {"TIERBOT_FREE_WAIT_S": "0"}), ("naive", None))),
                 "6": ("6. groq 429 `Retry-After: 1` for 5 s under a steady 40 msg/s", groq_limited_window,
                       (("tierbot", {}), ("naive", None))),
                 "7": ("7. primary black-holed, fast fakes (groq/gemini/claude 50/80/120 ms), production timeouts",
                       probes_black_hole, (("baseline", {}), ("tierbot", {}))),
                 "8": ("8. primary refused", primary_refused,
                       (("baseline", {}), ("tierbot", {}), ("naive", None)))}


def old_tree(rev: str) -> str:
    """The code of `rev` (bot and what it imports), extracted once under /tmp."""
    dest = Path(f"/tmp/tierbot-storm-old-{rev}")
    if not (dest / "bot").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "bot", "templates", "faq_cache",
                                  "adapters"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return str(dest)


async def old_rows(key: str, env: dict[str, str], n: int, n_naive: int, rev: str) -> list[Run]:
    """Scenario `key` with the code of `rev`, in a child process (same fakes, same driver)."""
    child_env = {**os.environ, "STORM_BOT_TREE": old_tree(rev)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", key, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env=child_env)
    out, _ = await proc.communicate(json.dumps({"env": env, "n": n, "n_naive": n_naive, "rev": rev}).encode())
    runs = [Run(**r) for r in json.loads(out.decode().strip().splitlines()[-1])]
    for r in runs:
        r.label = f"old ({rev}): {r.label}"
    return runs


async def child(key: str) -> None:
    job = json.loads(sys.stdin.read())
    fakes = Fakes(job["env"])
    system = PromptBuilder(Renderer.from_config(Config.from_env({}))).system
    _, fn, _ = NEW_SCENARIOS[key]
    runs = await fn(fakes, job["env"], system, job["n"], job["n_naive"], variants=(("tierbot", {}),))
    print(json.dumps([r.__dict__ for r in runs]), flush=True)


async def main(quick: bool, only: set[str], old_rev: str = OLD_REV) -> None:
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
            for key, (title, fn, variants) in NEW_SCENARIOS.items():
                if not only or key in only:
                    base = tuple(v for v in variants if v[0].startswith("baseline"))
                    rest = tuple(v for v in variants if not v[0].startswith("baseline"))
                    rows = await fn(fakes, env, system, n, n // 4, variants=base)
                    rows += await old_rows(key, env, n, n // 4, old_rev)
                    rows += await fn(fakes, env, system, n, n // 4, variants=rest)
                    sections[title] = rows
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
    ap.add_argument("--old", default=OLD_REV, help="the build the 'old' rows of scenarios 5-8 run (a git revision)")
    ap.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_fakes:
        asyncio.run(_serve_fakes())
    elif args.child:
        logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
        asyncio.run(child(args.child))
    else:
        # INFO logs on, as in production, but sent nowhere (their cost is counted).
        logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
        asyncio.run(main(args.quick, {x.strip() for x in args.only.split(",") if x.strip()}, args.old))
