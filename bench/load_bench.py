"""Web server under load: Telegram updates through POST /telegram/webhook.

Method
- `tierbot serve` runs in its own process with the whole plugin set (ledger, FAQ cache,
  LLM chain, handoff, metrics, rate limit), pointed at local fakes in this process:
  the fake Telegram Bot API (tests/fakes/telegram_api.py) and fake Groq/Gemini/Claude
  (tests/fakes/llm_servers.py) whose Groq answers after `--llm-latency` (0.3 s).
- An open-loop generator POSTs real-format Update JSON at a fixed rate (each update
  from its own private chat, so the per-customer rate limit never triggers and every
  update must produce exactly one sendMessage). Open loop: a slow server does not slow
  the generator down, so queueing shows up as latency, as it would in production.
- Measured: webhook errors (non-200 or connection errors), exactly-once (each chat got
  exactly one sendMessage; none missing, none doubled), latency from the webhook POST
  to the fake Telegram receiving sendMessage (p50/p99), the server's peak RSS (VmHWM),
  and CPU seconds of both processes (the fakes and generator share this process, so a
  saturated generator would be visible rather than blamed on the server).
- Each server process is warmed up first (250 updates at 25/s, not measured).
- Side by side: `--variant NAME:KEY=VALUE,...` (repeatable) starts one server per variant
  with those settings in its environment, e.g. `before:PYTHONPATH=/tmp/before` to run an
  older tree; the ramp steps of all variants are interleaved (rate 1 on each, then rate
  2, ...) so a change in the machine's other load hits both sides alike.
- Ramps: short steps at higher rates until a step fails (errors > 0.1 %,
  missing/doubled replies, or p99 > 5 s), to find where it breaks.
- Also recorded per step: Bot API calls per update by method, the server's CPU share,
  and the load average (other work on the machine shows up there, not in our figures).
- `--profile DIR`: py-spy samples the server during each main run (collapsed stacks of
  the thread holding the GIL), for "where does the CPU go".

Bounded: the main run is `--seconds` (60) long, each ramp step `--step-seconds` (10),
each followed by at most `--settle` (15) / `--main-settle` (60) seconds for the backlog.

    python bench/load_bench.py              # one variant (the shipped defaults), ~6 minutes
    python bench/load_bench.py --quick      # 5 s at 50/s, no ramp: a smoke test
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from fakes.llm_servers import FakeProviders, ok  # noqa: E402
from fakes.telegram_api import FakeTelegram, text_update  # noqa: E402
from fakes.procs import free_port, wait_http  # noqa: E402

SECRET = "bench-webhook-secret-0123456789"
# Questions are made unique (random words) so neither the FAQ cache nor the learned
# cache can answer them: in "llm" mode every update must go through the LLM chain.
WORDS = ("linen wool zipper lining sleeve collar hem seam button pocket strap buckle sole heel lace "
         "velvet denim cotton silk cashmere fleece hood cuff waist ankle knee shoulder stitch dye "
         "pattern stripe check floral plain pleat ruffle fringe sequin embroidery patch logo").split()


def question(i: int) -> str:
    rnd = random.Random(i)
    return f"Would the {' '.join(rnd.sample(WORDS, 4))} go well with {' '.join(rnd.sample(WORDS, 3))}?"



def proc_status(pid: int, field: str) -> int:
    """A /proc/<pid>/status field in kB (VmHWM: peak RSS, VmRSS: current)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        out = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
        return out
    except OSError:
        return []


def tree_cpu_s(pid: int) -> float:
    """CPU of the server and the processes it started (e.g. a database writer process)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            total += proc_cpu_s(p) if p == pid else tree_cpu_s(p)
        except OSError:  # exited meanwhile
            pass
    return total


def proc_wait_s(pid: int) -> float:
    """Seconds the server's event-loop thread spent runnable but waiting for a CPU
    (/proc/<pid>/schedstat, field 2): how much the machine's other work held it back."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))]



async def run_step(tg: FakeTelegram, base: str, rate: float, seconds: float, first_id: int,
                   settle: float) -> dict:
    """POST `rate` updates/s for `seconds`; wait up to `settle` s for the answers."""
    n = int(rate * seconds)
    posted: dict[int, float] = {}  # chat id -> when the POST started
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=400)
    timeout = aiohttp.ClientTimeout(total=30)
    calls_before = len(tg.calls)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        async def post(i: int) -> None:
            chat = 10_000_000 + first_id + i
            update = text_update(first_id + i, question(first_id + i), chat_id=chat)
            posted[chat] = time.monotonic()
            try:
                async with http.post(base + "/telegram/webhook", data=json.dumps(update),
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET,
                                              "Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        errors.append(f"http {r.status}")
            except Exception as e:  # connection refused/reset, timeout
                errors.append(type(e).__name__)

        start = time.monotonic()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        send_done = time.monotonic()

    def answered() -> dict[int, list[float]]:
        got: dict[int, list[float]] = {}
        for c in tg.calls[calls_before:]:
            if c.method == "sendMessage" and c.status == 200:
                chat = int(c.params["chat_id"])
                if chat in posted:
                    got.setdefault(chat, []).append(c.at)
        return got

    end = time.monotonic() + settle
    while time.monotonic() < end and len(answered()) < len(posted):
        await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)  # any duplicate would show up now
    got = answered()
    latencies = [times[0] - posted[chat] for chat, times in got.items()]
    per_method: dict[str, int] = {}
    for c in tg.calls[calls_before:]:
        if c.params.get("chat_id") is not None and int(c.params["chat_id"]) in posted:
            per_method[c.method] = per_method.get(c.method, 0) + 1
    return {
        "rate": rate, "seconds": seconds, "updates": n,
        "offered_rate": round(n / (send_done - start), 1) if send_done > start else rate,
        "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
        "answered": len(got), "missing": len(posted) - len(got),
        "doubled": sum(1 for t in got.values() if len(t) > 1),
        "p50_ms": round(pct(latencies, 50) * 1000, 1), "p99_ms": round(pct(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1) if latencies else float("nan"),
        "bot_api_calls_per_update": {m: round(k / max(1, n), 2) for m, k in sorted(per_method.items())},
    }


MAIN_FIRST_ID = 500_000_000


async def transport_compare(tg: FakeTelegram, calls: int, concurrency: int = 50) -> dict:
    """CPU per Bot API call through python-telegram-bot with its default transport (httpx)
    and with ours (adapters/telegram_http.py, aiohttp), side by side against the same fake."""
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from adapters.telegram_http import AiohttpRequest

    out = {}
    for name, request in (("httpx (PTB default)", HTTPXRequest(connection_pool_size=concurrency)),
                          ("aiohttp (adapters/telegram_http.py)", AiohttpRequest(connection_pool_size=concurrency))):
        bot = Bot(tg.token, base_url=f"{tg.base_url}/bot", request=request)
        await bot.initialize()
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await bot.send_message(chat_id=7_000_000 + i, text=f"transport check {i}")

        await asyncio.gather(*(one(i) for i in range(100)))  # warm-up
        cpu, t = time.process_time(), time.monotonic()
        await asyncio.gather(*(one(i) for i in range(calls)))
        out[name] = {"calls": calls, "cpu_ms_per_call": round((time.process_time() - cpu) / calls * 1000, 3),
                     "calls_per_s": round(calls / (time.monotonic() - t))}
        await bot.shutdown()
    return out


def account(data_dir: Path, first_id: int, step: dict) -> dict:
    """Where each update of the main run is, read from the server's own inbox/outbox."""
    from adapters.durable import DurableStore

    store = DurableStore.in_dir(data_dir)
    try:
        inbox = dict(store.query(
            "SELECT state, COUNT(*) FROM inbox WHERE CAST(substr(key, 10) AS INTEGER) BETWEEN ? AND ? "
            "GROUP BY state", (first_id, first_id + 99_999_999)))
        queued = store.query("SELECT COUNT(*) FROM outbox WHERE state='pending' AND CAST(chat_id AS INTEGER) BETWEEN ? AND ?",
                             (10_000_000 + first_id, 10_000_000 + first_id + 99_999_999))[0][0]
    finally:
        store.close()
    recorded = sum(inbox.values())
    return {"accepted": step["updates"] - step["errors"], "recorded": recorded,
            "answered_and_delivered": step["answered"], "answered_reply_queued": queued,
            "recorded_not_yet_answered": inbox.get("pending", 0), "failed": inbox.get("failed", 0),
            "lost": step["updates"] - step["errors"] - recorded}


def failed(step: dict) -> bool:
    return (step["errors"] > 0.001 * step["updates"] or step["missing"] > 0 or step["doubled"] > 0
            or step["p99_ms"] > 5000)


async def start_server(tg: FakeTelegram, fp: FakeProviders, *, llm: bool, env_extra: dict[str, str] | None = None):
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="tierbot-load-")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    if llm:
        env.update(fp.env())
    env.update({"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE_URL": tg.base_url,
                "TELEGRAM_WEBHOOK_SECRET": SECRET, "TIERBOT_DATA_DIR": data_dir, "PORT": str(port),
                "TIERBOT_LOG_LEVEL": "ERROR", "TIERBOT_GROQ_TRANSPORT": "aiohttp", **(env_extra or {})})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", env=env, cwd=data_dir,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    proc.data_dir = data_dir  # type: ignore[attr-defined]
    await wait_http(base + "/healthz")
    # Warm-up, not measured: the first messages pay one-off costs (lazy model and client
    # set-up, connection pools), several seconds in all.
    await run_step(tg, base, 25, 10, 900_000_000 + port * 1000, 15)
    return proc, base


async def stop_server(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    return proc.returncode


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def measured(proc, tg, base, rate, seconds, first_id, settle, profile: Path | None = None) -> dict:
    spy = None
    if profile is not None:  # py-spy samples the server from outside (collapsed stacks, GIL holders only)
        spy = await asyncio.create_subprocess_exec(
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "--gil", "--format", "raw", "--rate", "200",
            "--duration", str(int(seconds)), "-o", str(profile), "--pid", str(proc.pid),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    load_before = load_average()
    cpu_s, cpu_b, t1 = proc_cpu_s(proc.pid), time.process_time(), time.monotonic()
    tree_s = tree_cpu_s(proc.pid)
    wait_s = proc_wait_s(proc.pid)
    step = await run_step(tg, base, rate, seconds, first_id, settle)
    wall = time.monotonic() - t1
    step["server_cpu_ms_per_update"] = round((proc_cpu_s(proc.pid) - cpu_s) / max(1, step["updates"]) * 1000, 1)
    step["server_cpu_share"] = round((proc_cpu_s(proc.pid) - cpu_s) / wall, 2)
    # with the processes the server started (their CPU is not in the server's own figure)
    step["server_tree_cpu_ms_per_update"] = round((tree_cpu_s(proc.pid) - tree_s) / max(1, step["updates"]) * 1000, 1)
    step["bench_cpu_share"] = round((time.process_time() - cpu_b) / wall, 2)
    # share of the wall time the server's loop thread was ready to run but had no CPU
    step["server_loop_cpu_wait_share"] = round((proc_wait_s(proc.pid) - wait_s) / wall, 2)
    step["peak_rss_mb"] = round(proc_status(proc.pid, "VmHWM") / 1024, 1)
    step["load_average_before_after"] = [load_before, load_average()]
    step["failed"] = failed(step)
    if spy is not None:
        await spy.wait()
    return step


async def ramps(tg, fp, rates, args, variants: list[tuple[str, dict[str, str]]]) -> dict[str, list[dict]]:
    """One server per variant, all started first; each rate is then run on every variant in
    turn (interleaved, so a change in the machine's other load hits both sides alike).
    A variant stops at its first failing step."""
    servers = {}
    try:
        for name, env_extra in variants:
            servers[name] = await start_server(tg, fp, llm=True, env_extra=env_extra)
        steps: dict[str, list[dict]] = {name: [] for name, _ in variants}
        first_id = 1
        for rate in rates:
            for name, (proc, base) in servers.items():
                if steps[name] and steps[name][-1]["failed"]:
                    continue
                step = await measured(proc, tg, base, rate, args.step_seconds, first_id, args.settle)
                step["variant"] = name
                first_id += 10_000_000
                steps[name].append(step)
                print(json.dumps(step), flush=True)
        return steps
    finally:
        for proc, _ in servers.values():
            await stop_server(proc)


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """"name" or "name:KEY=VALUE,KEY=VALUE": server settings for one side of a comparison."""
    name, _, rest = spec.partition(":")
    env = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--variant {spec!r}: expected KEY=VALUE, got {pair!r}")
        env[key.strip()] = value.strip()
    return name.strip() or "default", env


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--main-settle", type=float, default=60, help="max seconds to wait for the main run's backlog")
    ap.add_argument("--llm-latency", type=float, default=0.3)
    ap.add_argument("--ramp", default="100,150,200,300,400",
                    help="comma list of rates for the LLM ramp ('' = none)")
    ap.add_argument("--step-seconds", type=float, default=10)
    ap.add_argument("--settle", type=float, default=15)
    ap.add_argument("--variant", action="append", default=None, metavar="NAME[:KEY=VALUE,...]",
                    help="server settings to compare side by side (repeatable), e.g. "
                         "'before:TELEGRAM_CONCURRENCY=64,TELEGRAM_TYPING_DELAY_S=0.3,TELEGRAM_DRAFT_DELAY_S=0'; "
                         "default: one run with the shipped defaults")
    ap.add_argument("--templates-ramp", action="store_true",
                    help="also ramp the server without provider keys (cache/templates answer)")
    ap.add_argument("--skip-main", action="store_true", help="ramps only")
    ap.add_argument("--skip-transport", action="store_true", help="no PTB transport comparison")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="py-spy the server during each main run (collapsed stacks of GIL holders in DIR)")
    ap.add_argument("--quick", action="store_true", help="5 s at 50/s, ramp 25,50 of 3 s: a smoke test")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    if args.quick:
        args.rate, args.seconds, args.ramp, args.step_seconds, args.main_settle = 50, 5, "25,50", 3, 30
    rates = [float(r) for r in args.ramp.split(",") if r.strip()]
    variants = [parse_variant(v) for v in (args.variant or ["default"])]

    # SIGTERM/SIGINT cancel the run, so the servers it started are stopped on the way out.
    main_task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    results: dict = {"config": vars(args), "load_average_start": load_average()}
    async with FakeTelegram() as tg, FakeProviders() as fp:
        fp.groq.default = ok("Thanks for asking! Here is what I found for you.", latency=args.llm_latency)
        # 0. The Telegram transport alone (this process's CPU includes the fake's share,
        #    the same for both, so the difference is the client side).
        if not args.skip_transport:
            results["transport"] = await transport_compare(tg, 500 if args.quick else 3000)
            print(json.dumps(results["transport"]), flush=True)
        # 1. Ramps: where does it stop keeping up? Through the LLM chain, once per variant;
        #    optionally with templates only (no provider keys), which isolates the server +
        #    Telegram + durability cost.
        if rates:
            if args.templates_ramp:
                proc_steps = []
                proc, base = await start_server(tg, fp, llm=False)
                try:
                    first_id = 1
                    for rate in rates:
                        step = await measured(proc, tg, base, rate, args.step_seconds, first_id, args.settle)
                        step["variant"] = "templates"
                        first_id += 10_000_000
                        proc_steps.append(step)
                        print(json.dumps(step), flush=True)
                        if step["failed"]:
                            break
                finally:
                    await stop_server(proc)
                results["ramp_templates"] = proc_steps
            for name, steps in (await ramps(tg, fp, rates, args, variants)).items():
                results[f"ramp_llm_{name}"] = steps
        # 2. The main run: --rate for --seconds through the LLM chain, once per variant.
        for n, (name, env_extra) in enumerate([] if args.skip_main else variants):
            first_id = MAIN_FIRST_ID + n * 100_000_000 // 4
            proc, base = await start_server(tg, fp, llm=True, env_extra=env_extra)
            profile = None
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                profile = Path(args.profile) / f"main-{name}.txt"
            try:
                rss_idle = proc_status(proc.pid, "VmRSS")
                main_step = await measured(proc, tg, base, args.rate, args.seconds, first_id, args.main_settle,
                                           profile)
                main_step["idle_rss_mb"] = round(rss_idle / 1024, 1)
                main_step["variant"] = name
                results[f"main_{name}"] = main_step
                print(json.dumps(main_step), flush=True)
            finally:
                results[f"server_exit_code_{name}"] = await stop_server(proc)
            # 3. Accounting after the graceful stop: every accepted update is either answered
            #    or still recorded for the next start; none is lost.
            results[f"main_accounting_{name}"] = account(Path(proc.data_dir), first_id, main_step)
            print(json.dumps(results[f"main_accounting_{name}"]), flush=True)
        results["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps({k: v for k, v in results.items()
                      if k != "transport" and not k.startswith(("main_", "ramp_"))}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
