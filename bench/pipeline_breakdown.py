"""Where the default setup's overhead goes: the LLM chain alone, then with one plugin at a
time, then all of them, beside a bare `AsyncGroq` call, interleaved message by message.

  python bench/pipeline_breakdown.py [N]      # N messages per variant (default 500)

Prints p50 latency, CPU per message in this process (and × the bare call), and the CPU of
the ledger's writer process in each variant's message window. The writer's CPU lands a few
ms after a message (its linger), so each message is followed by a 6 ms pause. Used for
BENCHMARKS.md "Pipeline overhead, default setup"; figures are for orientation (one process,
one run), the side-by-side targets come from `pipeline_bench.py --overhead`.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import groq  # noqa: E402

from bot import Event  # noqa: E402
from bot.app import PLUGINS, build_bot  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.llm.prompt import PromptBuilder  # noqa: E402
from bot.rendering import Renderer  # noqa: E402
from fakes.llm_servers import spawn_fakes  # noqa: E402

MODEL = "llama-3.3-70b-versatile"
TEXT = "Hi, where is my order #1234? It was due yesterday."
LLM = "bot.llm.plugin:install"
_ids = itertools.count()


def children_cpu_s() -> float:
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
    return total


async def main(n: int) -> None:
    proc, env = spawn_fakes()
    try:
        system = PromptBuilder(Renderer.from_config(Config.from_env({}))).system
        bare = groq.AsyncGroq(api_key=env["GROQ_API_KEY"], base_url=env["GROQ_BASE_URL"], max_retries=0)
        sets: dict[str, tuple[str, ...] | None] = {"LLM chain only": (LLM,)}
        for p in PLUGINS:
            if p != LLM:
                sets[f"+ {p.split(':')[0]}"] = tuple(x for x in PLUGINS if x in (p, LLM))
        sets["default (all plugins)"] = None
        bots = {}
        for name, plugins in sets.items():
            e = {**env, "TIERBOT_DATA_DIR": tempfile.mkdtemp(prefix="tierbot-breakdown-"),
                 "TIERBOT_CHAIN": "groq", "TIERBOT_GROQ_MODELS": MODEL}
            bots[name] = build_bot(Config.from_env(e), plugins=plugins)

        async def call(name: str) -> None:
            if name == "bare":
                await bare.chat.completions.create(model=MODEL, max_tokens=512, messages=[
                    {"role": "system", "content": system}, {"role": "user", "content": TEXT}])
                return
            i = next(_ids)
            r = await bots[name].handle(Event(platform="bench", conversation_id=f"b{i}", user_id=f"u{i}", text=TEXT))
            assert r.provider == "groq", (r.tier, r.attempts)

        names = ["bare", *bots]
        for name in names:
            for _ in range(100):
                await call(name)
        lat = {k: [] for k in names}
        cpu = {k: [] for k in names}
        writer = dict.fromkeys(names, 0.0)
        for _ in range(n):
            for name in names:
                w0 = children_cpu_s()
                c0, t0 = time.process_time(), time.perf_counter()
                await call(name)
                lat[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                await asyncio.sleep(0.006)  # the writer's linger ends inside this message's window
                writer[name] += children_cpu_s() - w0
        b = statistics.mean(cpu["bare"])
        print(f"| variant | p50 ms | CPU ms/msg | CPU × bare | writer ms/msg | with writer × bare |\n|---|---|---|---|---|---|")
        for name in names:
            m, w = statistics.mean(cpu[name]), writer[name] / n
            print(f"| {name} | {1000 * statistics.median(lat[name]):.2f} | {1000 * m:.2f} | {m / b:.2f} | "
                  f"{1000 * w:.2f} | {(m + w) / b:.2f} |")
        for bot in bots.values():
            await bot.aclose()
        await bare.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
