"""CPU per streamed Groq call: one SDK model per chunk vs the chunks read as plain JSON.

Both ways use the real groq SDK (aiohttp transport) against the fake Groq running in its
own process, so the CPU measured (this process only: `time.process_time`) is the
client's. Rounds alternate between the two ways; medians are reported.

    python bench/groq_stream_bench.py [--calls 400] [--rounds 6] [--words 150]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from bot.llm.providers.base import Message, Request  # noqa: E402
from bot.llm.providers.groq import GroqProvider  # noqa: E402
from fakes.llm_servers import KEYS, RemoteFakes, ok, spawn_fakes  # noqa: E402

MODEL = "llama-3.1-8b-instant"
WIDTH = 40


async def sdk_models(p: GroqProvider, request: Request) -> int:
    """The previous way: the SDK's stream, one pydantic model per chunk."""
    from bot.llm.providers.groq import openai_messages

    n = 0
    chunks = await p.client.chat.completions.create(model=MODEL, messages=openai_messages(request),
                                                    max_tokens=request.max_tokens, stream=True, timeout=10)
    async with chunks:
        async for chunk in chunks:
            for choice in chunk.choices:
                if choice.delta.content:
                    n += 1
    return n


async def plain_json(p: GroqProvider, request: Request) -> int:
    """The shipped way: `GroqProvider.stream`."""
    n = 0
    async for item in p.stream(MODEL, request, 10):
        if isinstance(item, str):
            n += 1
    return n


async def round_(way, p: GroqProvider, calls: int) -> tuple[float, int]:
    request = Request(system="You are a support bot.", messages=(Message("user", "Where is my parcel?"),), max_tokens=512)
    queue = iter(range(calls))
    counts: list[int] = []

    async def worker() -> None:
        for _ in queue:
            counts.append(await way(p, request))

    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(WIDTH)))
    return (time.process_time() - start) / calls * 1000, min(counts)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--words", type=int, default=150, help="words (= chunks) in each streamed answer")
    args = ap.parse_args()
    proc, env = spawn_fakes()
    try:
        fakes = RemoteFakes(env)
        await fakes.set_default("groq", ok(" ".join(["word"] * args.words)))
        p = GroqProvider(KEYS["groq"], env["GROQ_BASE_URL"], pool=WIDTH)
        try:
            await round_(plain_json, p, 40)  # warm-up: connections, imports
            await round_(sdk_models, p, 40)
            results: dict[str, list[float]] = {"sdk_models": [], "plain_json": []}
            for r in range(args.rounds):
                for way in ((sdk_models, plain_json) if r % 2 == 0 else (plain_json, sdk_models)):
                    ms, chunks = await round_(way, p, args.calls)
                    results[way.__name__].append(ms)
            before, after = statistics.median(results["sdk_models"]), statistics.median(results["plain_json"])
            print(f"{args.calls} streamed calls x {args.rounds} rounds, {chunks} text chunks each (at least), "
                  f"{WIDTH} in flight; load average {os.getloadavg()[0]:.1f}")
            for name, values in results.items():
                print(f"  {name:10}  CPU/call median {statistics.median(values):.2f} ms  "
                      f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
            print(f"  plain_json / sdk_models = {after / before:.2f}")
        finally:
            await p.aclose()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
