"""Operating the storage: `/readyz` reports the database and Redis (503 when one is
lost, 200 again when it is back), `tierbot check` names the backend and whether each
server answers, never showing a password."""
from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from adapters.server import Server
from bot.app import build_bot
from bot.cli import main
from bot.config import Config
from servers import pg_session_url, pg_url, redis_prefix  # noqa: F401 - fixtures
from test_storage_redis import Proxy

PASSWORD = "s3cret-Pa55word"


async def _ready(config: Config) -> tuple[int, dict]:
    bot = build_bot(config, plugins=("bot.ledger.plugin:install", "bot.ratelimit:install"))
    async with bot:
        client = TestClient(TestServer(Server(bot, config).app))
        await client.start_server()
        try:
            resp = await client.get("/readyz")
            return resp.status, await resp.json()
        finally:
            await client.close()


async def test_readiness_on_the_embedded_backend(tmp_path):
    status, body = await _ready(Config.from_env({"TIERBOT_DATA_DIR": str(tmp_path)}, dotenv=False))
    assert (status, body) == (200, {"status": "ok", "backend": "embedded", "stores": {}})


async def test_readiness_reports_the_database_and_a_lost_redis(tmp_path, pg_url, redis_prefix):
    url, prefix = redis_prefix
    proxy = Proxy(int(url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    config = Config.from_env({"TIERBOT_DATA_DIR": str(tmp_path), "DATABASE_URL": pg_url,
                              "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "TIERBOT_REDIS_PREFIX": prefix},
                             dotenv=False)
    bot = build_bot(config, plugins=("bot.ledger.plugin:install", "bot.ratelimit:install"))
    async with bot:
        client = TestClient(TestServer(Server(bot, config).app))
        await client.start_server()
        try:
            resp = await client.get("/readyz")
            assert resp.status == 200
            assert await resp.json() == {"status": "ok", "backend": "server",
                                         "stores": {"postgresql": "ok", "redis": "ok"}}
            await proxy.cut()
            resp = await client.get("/readyz")
            assert resp.status == 503
            assert (await resp.json())["stores"] == {"postgresql": "ok", "redis": "unavailable"}
            assert (await client.get("/healthz")).status == 200  # alive all the same
            await proxy.start()
            resp = await client.get("/readyz")
            assert resp.status == 200
        finally:
            await client.close()
            await proxy.cut()


def test_check_names_the_backend_and_a_database_that_does_not_answer(monkeypatch, capsys, pg_url):
    monkeypatch.setenv("DATABASE_URL", f"postgres://tierbot:{PASSWORD}@127.0.0.1:1/tierbot")
    assert main(["check", "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    assert "storage: server" in out and "postgres://tierbot:***@127.0.0.1:1/tierbot: DOES NOT ANSWER" in out
    assert PASSWORD not in out
    monkeypatch.setenv("DATABASE_URL", pg_url)
    main(["check", "--timeout", "1"])
    out = capsys.readouterr().out
    assert f"PostgreSQL {pg_url}: answers" in out


def test_check_on_the_embedded_backend(capsys):
    main(["check", "--timeout", "1"])
    out = capsys.readouterr().out
    assert "storage: embedded" in out and "embedded SQLite" in out
