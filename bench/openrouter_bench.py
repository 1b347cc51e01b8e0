"""OpenRouter as the primary with its upstream failing: the tierbot chain and the naive
chain side by side in one run.

  .venv/bin/python bench/openrouter_bench.py [--n 600] [--quick]

Fake OpenRouter and Groq (tests/fakes/llm_servers.py, real wire formats) run in a child
process so the bot under test has its own core. Both answer in 300 ms when healthy; an
OpenRouter failure (502 naming its upstream, 402 out of credits) comes after 100 ms (the
upstream was tried first). Each scenario sends N messages at concurrency 50 (a fresh
conversation each, LLM plugin only) with the chain `openrouter,groq`, one model each:

 0. OpenRouter healthy (the baseline);
 1. every OpenRouter request answered 502 with `error.metadata.provider_name` (its upstream down);
 2. every OpenRouter request answered 402 (the account out of credits);
 3. 30 % of OpenRouter requests answered 502, at random.

tierbot runs with its production settings (deadline 12 s, attempt timeout 6 s, breaker
threshold 3 / cooldown 10 s). The naive chain is bench/pipeline_bench.py's pattern: the
`openai` SDK on its defaults (max_retries=2, which retries 502s with backoff), then the
`groq` SDK, 0.5 s sleep between providers, no breaker. Reported: share answered by an LLM,
who answered, p50/p99/max latency, requests that reached OpenRouter, and (tierbot) the
reasons its attempts recorded.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import groq  # noqa: E402
import openai  # noqa: E402

from bot import Event  # noqa: E402
from bot.app import build_bot  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.llm.prompt import PromptBuilder  # noqa: E402
from bot.rendering import Renderer  # noqa: E402
from fakes.llm_servers import Behaviour, RemoteFakes, spawn_fakes  # noqa: E402
from pipeline_bench import GROQ_MODEL, TEXT, pct  # noqa: E402

OR_MODEL = "openai/gpt-oss-20b"
LATENCY, FAIL_LATENCY = 0.3, 0.1
WIDTH = 50
_conv = itertools.count()


def healthy() -> Behaviour:
    return Behaviour(latency=LATENCY, cost=0.00002)


def upstream_down() -> Behaviour:
    return Behaviour("upstream_error", status=502, upstream="DeepInfra", latency=FAIL_LATENCY)


def no_credits() -> Behaviour:
    return Behaviour("out_of_credits", latency=FAIL_LATENCY)


SCENARIOS = {
    "0 healthy": lambda n, rnd: [],
    "1 upstream 502 on every request": lambda n, rnd: None,
    "2 out of credits (402)": lambda n, rnd: None,
    "3 30 % random upstream 502": lambda n, rnd: [upstream_down() if rnd.random() < 0.3 else healthy()
                                                  for _ in range(4 * n)],
}
DEFAULTS = {"0 healthy": healthy, "1 upstream 502 on every request": upstream_down,
            "2 out of credits (402)": no_credits, "3 30 % random upstream 502": healthy}


class Tierbot:
    def __init__(self, env: dict[str, str]) -> None:
        e = {**env, "TIERBOT_DATA_DIR": "/tmp/tierbot-openrouter-bench", "TIERBOT_CHAIN": "openrouter,groq",
             "TIERBOT_OPENROUTER_MODELS": OR_MODEL, "TIERBOT_GROQ_MODELS": GROQ_MODEL}
        self.bot = build_bot(Config.from_env(e), plugins=("bot.llm.plugin:install",))
        self.reasons: Counter[str] = Counter()

    async def ask(self) -> str:
        r = await self.bot.handle(Event(platform="bench", conversation_id=f"o{next(_conv)}", user_id="u", text=TEXT))
        self.reasons.update(a.outcome for a in r.attempts if a.provider == "openrouter")
        return r.provider or r.tier

    async def aclose(self) -> None:
        await self.bot.aclose()


class Naive:
    """The openai SDK on its defaults against OpenRouter, then the groq SDK; any exception
    moves on after a 0.5 s sleep."""

    def __init__(self, env: dict[str, str], system: str) -> None:
        self.system = system
        self.reasons: Counter[str] = Counter()
        self.openrouter = openai.AsyncOpenAI(api_key=env["OPENROUTER_API_KEY"], base_url=env["OPENROUTER_BASE_URL"],
                                             timeout=2.0)
        self.groq = groq.AsyncGroq(api_key=env["GROQ_API_KEY"], base_url=env["GROQ_BASE_URL"], timeout=2.0)

    async def ask(self) -> str:
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": TEXT}]
        for name, client, model in (("openrouter", self.openrouter, OR_MODEL), ("groq", self.groq, GROQ_MODEL)):
            try:
                await client.chat.completions.create(model=model, max_tokens=512, messages=messages)
                return name
            except Exception as e:  # noqa: BLE001 - the naive pattern
                if name == "openrouter":
                    self.reasons[type(e).__name__] += 1
                await asyncio.sleep(0.5)
        return "template"

    async def aclose(self) -> None:
        await self.openrouter.close()
        await self.groq.close()


async def drive(ask, n: int) -> tuple[list[float], list[str], float]:
    lat: list[float] = []
    who: list[str] = []
    it = iter(range(n))

    async def worker() -> None:
        for _ in it:
            t0 = time.monotonic()
            w = await ask()
            lat.append((time.monotonic() - t0) * 1000)
            who.append(w)
            await asyncio.sleep(0)

    t0 = time.monotonic()
    await asyncio.gather(*[worker() for _ in range(WIDTH)])
    return lat, who, time.monotonic() - t0


async def main(n: int) -> None:
    logging.disable(logging.ERROR)  # one line per failed attempt would drown the table
    proc, env = spawn_fakes()
    fakes = RemoteFakes(env)
    system = PromptBuilder(Renderer.from_config(Config.from_env({}, dotenv=False))).system
    rows: list[str] = []
    try:
        for scenario, script in SCENARIOS.items():
            for label in ("tierbot", "naive"):
                await fakes.reset()
                await fakes.set_default("groq", Behaviour(latency=LATENCY))
                await fakes.set_default("openrouter", DEFAULTS[scenario]())
                behaviours = script(n, random.Random(7))
                if behaviours:
                    await fakes.script("openrouter", *behaviours)
                client = Tierbot(env) if label == "tierbot" else Naive(env, system)
                try:
                    lat, who, wall = await drive(client.ask, n)
                finally:
                    await client.aclose()
                reached = await fakes.count("openrouter")
                c = Counter(who)
                llm = 100 * (c["openrouter"] + c["groq"]) / len(who)
                reasons = ", ".join(f"{k} {v}" for k, v in client.reasons.most_common())
                rows.append(f"| {scenario} | {label} | {len(who)} | {llm:.1f} % | {c['openrouter']} / {c['groq']} / "
                            f"{c['template']} | {statistics.median(lat):.0f} | {pct(lat, 0.99):.0f} | {max(lat):.0f} | "
                            f"{reached} | {reasons or '-'} | {wall:.1f} |")
                print(rows[-1], flush=True)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    print("\n| scenario | chain | messages | LLM answered | openrouter / groq / templates | p50 ms | p99 ms | "
          "max ms | requests to OpenRouter | OpenRouter outcomes | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="messages per scenario and chain (default 600)")
    ap.add_argument("--quick", action="store_true", help="200 messages per scenario and chain")
    args = ap.parse_args()
    asyncio.run(main(200 if args.quick else args.n))
