"""CPU per streamed Groq call, three ways, all through the real groq SDK (aiohttp transport):

  sdk_models   `create(stream=True)`: the typed request transform, one SDK model per chunk;
  plain_json   `with_streaming_response`, chunks read as plain JSON, typed `messages`;
  shipped      `GroqProvider.stream`: plain JSON chunks, and the messages sent in
               `extra_body`, past the SDK's typed request transform.

The fake Groq runs in its own process, so the CPU measured (this process only:
`time.process_time`) is the client's. The request carries `--history` earlier turns, as a
conversation does. Rounds rotate the order; medians are reported.

    python bench/groq_stream_bench.py [--calls 400] [--rounds 6] [--words 150] [--history 10]
                                      [--against GITREF]

`--against GITREF` adds a fourth way, `shipped@GITREF`: `GroqProvider.stream` as the file
bot/llm/providers/groq.py was at that commit (loaded beside today's, sharing its helpers),
to check that a refactor of the provider costs no CPU.
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
    """Chunks as plain JSON, the messages still through the SDK's typed transform."""
    from bot.llm.providers.groq import openai_messages, sse_data

    n = 0
    async with p.client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=openai_messages(request), max_tokens=request.max_tokens,
            stream=True, timeout=10) as response:
        async for data in sse_data(response.iter_lines(), response.http_response.request):
            for choice in data.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    n += 1
    return n


async def shipped(p: GroqProvider, request: Request) -> int:
    """`GroqProvider.stream`."""
    n = 0
    async for item in p.stream(MODEL, request, 10):
        if isinstance(item, str):
            n += 1
    return n


def provider_at(ref: str, key: str, base_url: str) -> GroqProvider:
    """A GroqProvider built from bot/llm/providers/groq.py as it was at git `ref`."""
    import importlib.util
    import subprocess

    source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:bot/llm/providers/groq.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("bot.llm.providers._groq_at_ref", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "bot.llm.providers"
    exec(compile(source, f"groq.py@{ref}", "exec"), module.__dict__)
    return module.GroqProvider(key, base_url, pool=WIDTH)


async def round_(way, p: GroqProvider, calls: int, history: int) -> tuple[float, int]:
    turns = [Message("user" if i % 2 == 0 else "assistant",
                     f"Message {i} of the conversation, about an order that has not arrived yet.")
             for i in range(history)]
    request = Request(system="You are a support bot. " * 40,
                      messages=(*turns, Message("user", "Where is my parcel?")), max_tokens=512)
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
    ap.add_argument("--history", type=int, default=10, help="earlier turns sent with each question")
    ap.add_argument("--against", metavar="GITREF", help="also time GroqProvider.stream as it was at this commit")
    args = ap.parse_args()
    proc, env = spawn_fakes()
    try:
        fakes = RemoteFakes(env)
        await fakes.set_default("groq", ok(" ".join(["word"] * args.words)))
        p = GroqProvider(KEYS["groq"], env["GROQ_BASE_URL"], pool=WIDTH)
        old = provider_at(args.against, KEYS["groq"], env["GROQ_BASE_URL"]) if args.against else None
        try:
            ways: tuple = (sdk_models, plain_json, shipped)
            if old is not None:
                async def at_ref(_: GroqProvider, request: Request) -> int:
                    return await shipped(old, request)

                at_ref.__name__ = f"shipped@{args.against}"
                ways += (at_ref,)
            for way in ways:  # warm-up: connections, imports
                await round_(way, p, 40, args.history)
            results: dict[str, list[float]] = {way.__name__: [] for way in ways}
            for r in range(args.rounds):
                for way in ways[r % len(ways):] + ways[:r % len(ways)]:
                    ms, chunks = await round_(way, p, args.calls, args.history)
                    results[way.__name__].append(ms)
            before = statistics.median(results["sdk_models"])
            print(f"{args.calls} streamed calls x {args.rounds} rounds, {chunks} text chunks each (at least), "
                  f"{args.history} earlier turns, {WIDTH} in flight; load average {os.getloadavg()[0]:.1f}")
            for name, values in results.items():
                median = statistics.median(values)
                print(f"  {name:10}  CPU/call median {median:.2f} ms = {median / before:.2f} of sdk_models  "
                      f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
        finally:
            await p.aclose()
            if old is not None:
                await old.aclose()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
