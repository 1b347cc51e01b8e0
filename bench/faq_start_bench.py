"""FAQ matcher start-up and memory: cold start (process start to first reply), when the FAQ
model is ready, and the memory the semantic encoder adds — lexical vs semantic, and "before"
(any other checkout of tierbot, e.g. main before the no-wait change) side by side in one run.

Each case is a fresh process (`python -c CHILD`): it builds the bot from the environment with
all 10,003 Banking77 variants in its FAQ (a model stored beforehand, as `tierbot faq import`
leaves it) and the LLM chain pointed at the fake providers (answering in 0 ms, in another
process), sends one FAQ question at once, and reports: time from process start (the parent's
Popen) to the first reply, that reply's own latency and tier, when the FAQ model was in memory,
and peak RSS after 200 more lookups (ru_maxrss).

    python bench/faq_start_bench.py [--data DIR] [--before PATH_TO_OTHER_CHECKOUT] [--runs 3]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

PREPARE = textwrap.dedent("""
    import csv, sys
    from collections import defaultdict
    from faq_cache.entries import FaqEntry
    from faq_cache.store import FaqStore
    by = defaultdict(list)
    with open(sys.argv[2], encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            by[r["category"]].append(" ".join(r["text"].split()))
    kw = {} if sys.argv[3] == "-" else {"semantic": sys.argv[3] == "semantic"}
    store = FaqStore(sys.argv[1], **kw)
    store.import_entries([FaqEntry(k, "answer for " + k, v) for k, v in by.items()])
    m = store.matcher()
    print(getattr(m, "kind", "lexical"))
    store.close()
""")

CHILD = textwrap.dedent("""
    import asyncio, json, os, resource, sys, time
    t_imports = time.perf_counter()
    from bot import Event
    from bot.pipeline import SupportBot

    async def main():
        t0 = time.perf_counter()
        bot = SupportBot.from_env()
        t_built = time.perf_counter()
        reply = await bot.handle(Event("bench", "c0", "u", "I still have not received my new card, how long does it take?"))
        t_reply = time.perf_counter()
        print(json.dumps({"stage": "first_reply", "tier": reply.tier, "latency_ms": reply.latency_ms,
                          "build_ms": (t_built - t0) * 1000}), flush=True)
        store = bot.services["faq"]
        tier = bot.services.get("faq_tier")
        if tier is not None and hasattr(tier, "ready"):
            await tier.ready(120)
        else:
            store.matcher()
        t_ready = time.perf_counter()
        m = store.current_matcher()
        qs = json.loads(sys.argv[1])
        for q in qs:
            m.match(q)
        print(json.dumps({"stage": "ready", "ready_after_reply_ms": (t_ready - t_reply) * 1000,
                          "kind": getattr(m, "kind", "lexical"), "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "torch": "torch" in sys.modules}), flush=True)
        await bot.aclose()

    asyncio.run(main())
""")


def run_case(code_dir: Path, data_dir: Path, env_extra: dict[str, str], fakes_env: dict[str, str],
             questions: list[str]) -> dict:
    env = {**os.environ, **fakes_env, "TIERBOT_DATA_DIR": str(data_dir), "PYTHONPATH": str(code_dir),
           "TIERBOT_CHAIN": "groq", **env_extra}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(questions)], cwd=code_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(proc.stdout.readline())
    t_first = time.perf_counter()
    second = json.loads(proc.stdout.readline())
    proc.communicate(timeout=300)
    return {**first, **second, "start_to_first_reply_ms": (t_first - t0) * 1000}


def main(argv: list[str] | None = None) -> int:
    from fakes.llm_servers import spawn_fakes

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--before", type=Path, default=None, help="another checkout of tierbot to compare with")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    train = args.data / "banking77" / "train.csv"
    with train.open(encoding="utf-8", newline="") as f:
        questions = [" ".join(r["text"].split()) for r in csv.DictReader(f)][::50]
    cases = [("after, lexical", REPO, {"TIERBOT_FAQ_MATCHER": "lexical"}, "lexical"),
             ("after, semantic", REPO, {"TIERBOT_FAQ_MATCHER": "semantic"}, "semantic")]
    if args.before:
        cases.insert(0, ("before", args.before.resolve(), {}, "-"))
    proc, fakes_env = spawn_fakes()
    results: dict[str, list[dict]] = {name: [] for name, *_ in cases}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dirs = {}
            for name, code, env_extra, kind in cases:
                d = Path(tmp) / name.replace(" ", "_").replace(",", "")
                t = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", PREPARE, str(d / "faq" / "store"), str(train), kind],
                                     cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True,
                                     text=True, timeout=1800)
                if out.returncode:
                    raise SystemExit(out.stderr)
                print(f"{name}: fitted a {out.stdout.strip()} model on 10,003 variants in "
                      f"{time.perf_counter() - t:.0f} s (stored; each run below loads it)", flush=True)
                dirs[name] = d
            for _ in range(args.runs):  # interleaved, so machine load hits every case alike
                for name, code, env_extra, _kind in cases:
                    results[name].append(run_case(code, dirs[name], env_extra, fakes_env, questions))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    print(f"\n## Cold start, {args.runs} runs each, interleaved; load average {os.getloadavg()[0]:.1f} on 2 cores")
    print("| case | process start -> first reply (ms) | first reply's latency (ms) | tier of first reply | "
          "model ready after the first reply (ms) | peak RSS (MB) | matcher | torch imported |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rs in results.items():
        med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
        print(f"| {name} | {med('start_to_first_reply_ms'):.0f} ({min(r['start_to_first_reply_ms'] for r in rs):.0f}-"
              f"{max(r['start_to_first_reply_ms'] for r in rs):.0f}) | {med('latency_ms'):.0f} | "
              f"{', '.join(sorted({r['tier'] for r in rs}))} | {med('ready_after_reply_ms'):.0f} | "
              f"{med('maxrss_mb'):.0f} | {rs[0]['kind']} | {any(r['torch'] for r in rs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
