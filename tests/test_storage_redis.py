"""REDIS_URL as a user meets it, over a real Redis: one rate limit and one budget for
every process, each cap's alert sent once, and a Redis lost while running costs no
customer an answer (per-process fallback, one loud line) and is used again when back."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from zoneinfo import ZoneInfo

import pytest

from bot.app import build_bot
from bot.budget import BudgetGate
from bot.config import Config
from bot.models import Attempt, Event, Reply
from bot.storage.backend import Storage
from bot.storage.redis.budget import SharedBudget
from bot.storage.redis.shared import SharedState
from bot.storage.settings import StorageSettings, StorageUnavailable
from servers import redis_prefix  # noqa: F401 - fixture

PASSWORD = "r3dis-Pa55word"


class Proxy:
    """A TCP relay to a real server (Redis, PostgreSQL) that the test can cut and restore
    (a lost server), or black-hole: connections stay open and new ones are accepted, but
    nothing is forwarded either way (a server behind a dead network path, no RST)."""

    def __init__(self, target_port: int = 6379) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.blackholed = False
        self.torn: set[asyncio.StreamWriter] = set()  # lost bytes while black-holed: dead for good
        self.dropped_bytes = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    client: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.blackholed or client in self.torn:
                    self.torn.add(client)  # its stream lost bytes: it never answers again
                    self.dropped_bytes += len(data)
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        if self.blackholed:  # accepted, never answered
            self.torn.add(writer)
            try:
                while data := await reader.read(65536):
                    self.dropped_bytes += len(data)
            except (ConnectionError, OSError):
                pass
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer, writer), self._pipe(up_reader, writer, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    def blackhole(self) -> None:
        self.blackholed = True

    def forward(self) -> None:
        """Forward again: new connections and those that lost nothing work; the others stay dead."""
        self.blackholed = False

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        self.torn.clear()
        await self.server.wait_closed()


def _env(tmp_path, url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {"TIERBOT_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": url, "TIERBOT_REDIS_PREFIX": prefix,
            "PATH": "", **extra}


def _bot(env: dict[str, str]):
    return build_bot(Config.from_env(env, dotenv=False), plugins=("bot.ratelimit:install",))


def _msg(i: int) -> Event:
    return Event(platform="telegram", conversation_id="c1", user_id="u1", text=f"question {i}")


def _verdict(reply: Reply) -> str:
    return (reply.meta or {}).get("rate_limited", "ok")


def test_both_redis_schemes_are_accepted_and_others_refused():
    for scheme in ("redis", "rediss"):
        s = StorageSettings.from_config(Config.from_env({"REDIS_URL": f"{scheme}://:{PASSWORD}@h:6380/0"},
                                                        dotenv=False))
        assert s.kind == "server" and PASSWORD not in " ".join(s.describe())
    with pytest.raises(Exception, match="must start with redis:// or rediss://"):
        StorageSettings.from_config(Config.from_env({"REDIS_URL": "http://h:6379"}, dotenv=False))


async def test_an_unreachable_redis_stops_the_start_naming_the_masked_url(tmp_path):
    storage = Storage(Config.from_env(_env(tmp_path, f"redis://:{PASSWORD}@127.0.0.1:1/0", "x:"), dotenv=False))
    with pytest.raises(StorageUnavailable) as e:
        await storage.astart()
    assert "redis://:***@127.0.0.1:1/0" in str(e.value) and PASSWORD not in str(e.value)
    await storage.aclose()


async def test_one_rate_limit_holds_across_processes(tmp_path, redis_prefix):
    url, prefix = redis_prefix
    env = _env(tmp_path, url, prefix, TIERBOT_RATE_LIMIT="3")
    async with _bot(env) as a, _bot(env) as b:
        replies = [await (a if i % 2 == 0 else b).handle(_msg(i)) for i in range(6)]
    # Alone, each process would have let 3 through (6 in all): together, 3 and one notice.
    assert [_verdict(r) for r in replies] == ["ok", "ok", "ok", "notice", "silent", "silent"]
    assert replies[3].text and replies[4].text == ""


async def test_redis_lost_while_running_keeps_answering_and_resumes(tmp_path, redis_prefix, caplog):
    url, prefix = redis_prefix
    proxy = Proxy(int(url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    env = _env(tmp_path, f"redis://127.0.0.1:{proxy.port}/0", prefix, TIERBOT_RATE_LIMIT="3")
    async with _bot(env) as bot:
        shared = bot.services["storage"].shared  # type: ignore[attr-defined]
        now = [0.0]
        shared.clock = lambda: now[0]
        assert _verdict(await bot.handle(_msg(0))) == "ok"  # counted in Redis
        await proxy.cut()
        with caplog.at_level(logging.WARNING, logger="tierbot.storage.redis"):
            lost = [await bot.handle(_msg(i)) for i in range(1, 5)]
            # Per process from the loss on: 3 more pass, then the notice. Nobody waits or goes unanswered.
            assert [_verdict(r) for r in lost] == ["ok", "ok", "ok", "notice"]
            assert sum("redis_unreachable" in r.getMessage() for r in caplog.records) == 1
            await proxy.start()  # Redis is back
            now[0] += 5.0  # past the retry interval
            assert _verdict(await bot.handle(_msg(5))) == "ok"  # Redis had 1: this is its 2nd
            assert sum("redis_back" in r.getMessage() for r in caplog.records) == 1
    await proxy.cut()
    async with _bot(_env(tmp_path, url, prefix, TIERBOT_RATE_LIMIT="3")) as other:
        assert _verdict(await other.handle(_msg(6))) == "ok"  # the 3rd in the shared window
        assert _verdict(await other.handle(_msg(7))) == "notice"


class Posts:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, blocks, text) -> None:
        self.calls.append(text)


def _costly(cost: float) -> Reply:
    return Reply(text="a", tier="llm", provider="groq", model="m", cost_usd=cost,
                 attempts=[Attempt(provider="groq", model="m", outcome="ok", cost_usd=cost)])


async def test_a_budget_cap_holds_across_processes_and_alerts_once(redis_prefix):
    url, prefix = redis_prefix
    settings = StorageSettings.from_config(Config.from_env({"REDIS_URL": url}, dotenv=False))
    clients = [SharedState(settings.redis, prefix=prefix) for _ in range(2)]  # type: ignore[arg-type]
    now = [dt.datetime(2026, 12, 3, 12, tzinfo=ZoneInfo("UTC")).timestamp()]
    gates = [BudgetGate({"overall": 1.0}, ZoneInfo("UTC"), clock=lambda: now[0], shared=SharedBudget(c))
             for c in clients]
    posts = Posts()
    for g in gates:
        g.set_alert_poster(posts)
    event = Event(platform="telegram", conversation_id="c", user_id="u", text="q")
    try:
        await gates[0].on_reply(event, _costly(0.6), None)  # type: ignore[arg-type]
        assert gates[1].skip_reason("groq", "m") is None
        await gates[1].on_reply(event, _costly(0.5), None)  # type: ignore[arg-type]
        # Each alone spent less than the cap; together they passed it.
        assert gates[1].skip_reason("groq", "m") == "budget"
        now[0] += 2.0
        await gates[0].on_reply(event, Reply(text="hi", tier="cache"), None)  # type: ignore[arg-type]
        assert gates[0].skip_reason("groq", "m") == "budget"
        for g in gates:
            await g.aclose()
        assert len(posts.calls) == 1 and "cap" in posts.calls[0]
    finally:
        for c in clients:
            await c.aclose()
