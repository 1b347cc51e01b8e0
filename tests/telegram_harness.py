"""Shared pieces for the Telegram and server tests: a bot with scriptable tiers, a
config pointing at the fake Bot API, and a running server over real HTTP."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from adapters.durable import DurableStore
from adapters.server import Server
from bot.config import Config
from bot.models import Event, Reply
from bot.pipeline import SupportBot
from bot.rendering import Renderer
from bot.templates_tier import TemplateTier
from bot.turn import TurnContext
from fakes.telegram_api import TOKEN, FakeTelegram

SECRET = "webhook-secret_0123456789"


class EchoTier:
    """Stands in for the LLM chain: answers "echo: <text>", optionally slowly or blocked."""

    name = "llm"

    def __init__(self, delay: float = 0.0, text: str | None = None) -> None:
        self.delay = delay
        self.text = text
        self.calls: list[Event] = []
        self.gate: asyncio.Event | None = None  # when set to an unset Event, answers wait for it

    async def answer(self, event: Event, turn: TurnContext) -> Reply:
        self.calls.append(event)
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return Reply(text=self.text or f"echo: {event.text}", tier="llm", provider="fakeprov", model="m1")


class StreamingEcho(EchoTier):
    """A streaming tier: yields the answer word by word, then the authoritative Reply."""

    def __init__(self, words: list[str], final: str | None = None, chunk_delay: float = 0.01) -> None:
        super().__init__()
        self.words = words
        self.final = final
        self.chunk_delay = chunk_delay

    async def answer(self, event: Event, turn: TurnContext) -> Reply:
        self.calls.append(event)
        return Reply(text=self.final or "".join(self.words), tier="llm", provider="fakeprov", model="m1")

    async def stream(self, event: Event, turn: TurnContext) -> AsyncIterator[str | Reply]:
        self.calls.append(event)
        for w in self.words:
            await asyncio.sleep(self.chunk_delay)
            yield w
        yield Reply(text=self.final or "".join(self.words), tier="llm", provider="fakeprov", model="m1")


def make_config(base_url: str, data_dir: Path, **extra: str) -> Config:
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": base_url,
           "TELEGRAM_WEBHOOK_SECRET": SECRET, "TIERBOT_DATA_DIR": str(data_dir),
           "TELEGRAM_DRAFT_INTERVAL_S": "0", "TELEGRAM_DRAFT_DELAY_S": "0", **extra}
    return Config.from_env(env, dotenv=False)


def make_bot(config: Config, *tiers: object, services: dict | None = None) -> SupportBot:
    renderer = Renderer.from_config(config)
    return SupportBot([*tiers, TemplateTier(renderer)],  # type: ignore[list-item]
                      services={"config": config, "renderer": renderer, **(services or {})})


@asynccontextmanager
async def running(bot: SupportBot, config: Config, **server_kw) -> AsyncIterator[tuple[TestClient, Server]]:
    """The real aiohttp app on 127.0.0.1 (ephemeral port), closed (drained) on exit."""
    server = Server(bot, config, **server_kw)
    client = TestClient(TestServer(server.app))
    await client.start_server()
    try:
        yield client, server
    finally:
        await client.close()
        if server._store is not None and server._owns_store:
            server._store.close()


async def post_update(client: TestClient, update: dict | bytes, secret: str | None = SECRET):
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    import json
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    return await client.post("/telegram/webhook", data=body, headers=headers)


async def settled(server: Server, timeout: float = 60.0) -> None:
    """Wait until the server's Telegram side is quiet: no update being answered, nothing
    left to send. From then on nothing more goes out, so a duplicate would be visible."""
    tg = server.telegram
    assert tg is not None
    end = asyncio.get_running_loop().time() + timeout
    while tg.in_progress:
        assert asyncio.get_running_loop().time() < end, f"{tg.in_progress} updates still being answered"
        await asyncio.sleep(0.01)
    assert await tg.outbox.wait_idle(max(0.0, end - asyncio.get_running_loop().time())), "replies left unsent"


def inbox_rows(data_dir: Path) -> list[tuple]:
    store = DurableStore.in_dir(data_dir)
    try:
        return store.query("SELECT key, state FROM inbox ORDER BY key")
    finally:
        store.close()


__all__ = ["EchoTier", "StreamingEcho", "FakeTelegram", "SECRET", "make_config", "make_bot", "running",
           "post_update", "inbox_rows", "settled"]
