"""Real PostgreSQL and Redis for the storage contract tests (never mocks).

PostgreSQL: 127.0.0.1:5432, trust auth, user postgres or root. Each test session
creates its own uniquely named database and drops it at the end; each test starts
from empty tables. Redis: 127.0.0.1:6379, a unique key prefix per test, whose keys are
deleted afterwards (never FLUSHALL/FLUSHDB: the server is shared).

When a server does not answer, its tests are skipped with a one-line reason — unless
TIERBOT_REQUIRE_SERVERS=1 (set by .ci/run), where that is a failure.
"""
from __future__ import annotations

import asyncio
import os
import uuid

import pytest

PG_HOST = os.environ.get("TIERBOT_TEST_PG_HOST", "127.0.0.1:5432")
REDIS_TEST_URL = os.environ.get("TIERBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_USERS = ("postgres", "root")
TABLES = ("attempts", "messages", "events", "turns", "report_runs", "handoffs", "conversation_flags")


def unavailable(reason: str) -> None:
    if os.environ.get("TIERBOT_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (TIERBOT_REQUIRE_SERVERS=1: the server tests must run here)")
    pytest.skip(reason)


async def _admin() -> tuple[str, object]:
    import asyncpg

    last: Exception | None = None
    for user in PG_USERS:
        url = f"postgresql://{user}@{PG_HOST}/postgres"
        try:
            return url, await asyncpg.connect(url, timeout=3)
        except Exception as e:  # noqa: BLE001 - try the next user, report the last reason
            last = e
    raise ConnectionError(f"{type(last).__name__}: {last}")


def create_database(prefix: str = "tierbot_test") -> str:
    """A new empty database; returns its URL (drop it with `drop_database`)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def go() -> str:
        admin_url, conn = await _admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
        finally:
            await conn.close()  # type: ignore[attr-defined]
        return admin_url.rsplit("/", 1)[0] + f"/{name}"

    return asyncio.run(go())


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]

    async def go() -> None:
        _, conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        finally:
            await conn.close()  # type: ignore[attr-defined]

    asyncio.run(go())


@pytest.fixture(scope="session")
def pg_session_url():
    try:
        url = create_database()
    except Exception as e:  # noqa: BLE001
        unavailable(f"PostgreSQL at {PG_HOST} does not answer ({str(e).splitlines()[0][:120]})")
    yield url
    drop_database(url)


@pytest.fixture
def pg_url(pg_session_url):
    """The session's database with every tierbot table empty."""
    import asyncpg

    async def empty() -> None:
        conn = await asyncpg.connect(pg_session_url)
        try:
            existing = [t for t in TABLES if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", t)]
            if existing:
                await conn.execute(f"TRUNCATE {', '.join(existing)} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(empty())
    return pg_session_url


@pytest.fixture
def fresh_pg_url():
    """A database of its own (migration tests), dropped afterwards."""
    try:
        url = create_database("tierbot_mig")
    except Exception as e:  # noqa: BLE001
        unavailable(f"PostgreSQL at {PG_HOST} does not answer ({str(e).splitlines()[0][:120]})")
    yield url
    drop_database(url)


@pytest.fixture
def redis_prefix():
    """(REDIS_URL, a key prefix of this test's own); its keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001
        client.close()
        unavailable(f"Redis at {REDIS_TEST_URL} does not answer ({type(e).__name__})")
    prefix = f"tierbot-test:{uuid.uuid4().hex[:12]}:"
    yield REDIS_TEST_URL, prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()
