"""One asyncpg pool per process for `DATABASE_URL`, shared by the ledger and the
handoff repository.

Started by `start()` (the bot's start-up, `tierbot db upgrade`, `tierbot check`) or
lazily by the first query: it connects, migrates under the advisory lock (so N
processes starting together migrate once) and refuses a schema newer than it knows.
An unreachable server is one `StorageUnavailable` naming the URL with its password
masked. `sslmode` in the URL is honoured by asyncpg itself.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from ...logs import kv
from ..settings import ServerUrl, StorageUnavailable
from .migrations import SchemaError, check_version, migrate

__all__ = ["PgDatabase", "CONNECTION_ERRORS", "clean"]

log = logging.getLogger("tierbot.storage.postgres")

# What "the server is gone for now" looks like (retry later), as opposed to a bad statement.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncio.TimeoutError, asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
    StorageUnavailable,  # the first connection of a lazily started pool failed
)


def clean(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; customers can send one. Keep everything else."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset on release (UNLISTEN, RESET ALL, ...: one more round trip per
    query). No store leaves session state behind: the only advisory lock (migrations) is
    released explicitly, nothing LISTENs or SETs."""


class PgDatabase:
    def __init__(self, url: ServerUrl, *, min_size: int = 1, max_size: int = 10,
                 connect_timeout_s: float = 10.0, migrate: bool = True) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout_s = connect_timeout_s
        self.auto_migrate = migrate
        self._pool: asyncpg.Pool | None = None
        self._lock: asyncio.Lock | None = None
        self.schema_before: int | None = None

    @property
    def masked(self) -> str:
        return self.url.masked

    def unavailable(self, e: BaseException) -> StorageUnavailable:
        text = self.url.scrub(f"{type(e).__name__}: {e}")
        return StorageUnavailable(f"cannot use the database at {self.masked} ({self.url.var}): {text}")

    async def start(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._pool is not None:
                return self._pool
            try:
                pool = await asyncpg.create_pool(self.url.url, min_size=self.min_size, max_size=self.max_size,
                                                 timeout=self.connect_timeout_s, reset=_keep_session)
            except Exception as e:
                raise self.unavailable(e) from None
            try:
                async with pool.acquire() as conn:
                    if self.auto_migrate:
                        self.schema_before, after = await migrate(conn)
                        if after != self.schema_before:
                            log.info(kv(event="database_migrated", url=self.masked,
                                        from_version=self.schema_before, to_version=after))
                    else:
                        self.schema_before = await check_version(conn)
            except SchemaError:
                await pool.close()
                raise
            except Exception as e:
                await pool.close()
                raise self.unavailable(e) from None
            self._pool = pool
            return pool

    async def pool(self) -> asyncpg.Pool:
        return self._pool if self._pool is not None else await self.start()

    async def ping(self) -> str | None:
        """None when the database answers, else why not (masked)."""
        try:
            pool = await self.pool()
            await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=5.0)
            return None
        except Exception as e:
            return self.url.scrub(f"{type(e).__name__}: {e}")

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10.0)
            except Exception:
                pool.terminate()
