"""One asyncpg pool per process for `DATABASE_URL`, shared by the ledger and the
handoff repository.

Started by `start()` (the bot's start-up, `tierbot db upgrade`, `tierbot check`) or
lazily by the first query: it connects, migrates under the advisory lock (so N
processes starting together migrate once) and refuses a schema newer than it knows.
An unreachable server is one `StorageUnavailable` naming the URL with its password
masked. `sslmode` in the URL is honoured by asyncpg itself.

Every wait on the server is bounded (`PgTimeouts`): a server that stops answering
without closing its connections (a black-holed network) must not hold a customer's
reply, the ledger's writer or a pool slot. A statement that timed out or was cancelled
terminates its connection rather than returning it to the pool: asyncpg would otherwise
wait, on release, for its CancelRequest to a server that does not answer.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from ...config import Config
from ...logs import kv
from ..settings import ServerUrl, StorageUnavailable
from .migrations import SchemaError, check_version, migrate

__all__ = ["PgDatabase", "PgTimeouts", "DatabaseDown", "CONNECTION_ERRORS", "clean"]

log = logging.getLogger("tierbot.storage.postgres")

class DatabaseDown(StorageUnavailable):
    """A reply-path statement gave up (the server is unreachable or too slow); logged
    once per outage by `PgDatabase`, so callers degrade quietly."""


# What "the server is gone for now" looks like (retry later), as opposed to a bad statement.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncio.TimeoutError, asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
    StorageUnavailable,  # the first connection of a lazily started pool failed
)


@dataclass(frozen=True)
class PgTimeouts:
    """How long any one wait on PostgreSQL may take (see README, "Scaling out")."""

    command_s: float = 10.0  # any statement, and asyncpg's cancel of it
    acquire_s: float = 5.0  # waiting for a pooled connection
    reply_s: float = 1.0  # a read or write a customer's reply waits for (history, open handoff)
    probe_s: float = 1.0  # while down, reply-path statements fail at once between probes

    @classmethod
    def from_config(cls, config: Config) -> "PgTimeouts":
        return cls(command_s=config.get_float("TIERBOT_PG_COMMAND_TIMEOUT_S", cls.command_s, minimum=0.05),
                   acquire_s=config.get_float("TIERBOT_PG_ACQUIRE_TIMEOUT_S", cls.acquire_s, minimum=0.05),
                   reply_s=config.get_float("TIERBOT_PG_REPLY_TIMEOUT_S", cls.reply_s, minimum=0.05))


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
                 connect_timeout_s: float = 10.0, migrate: bool = True,
                 timeouts: PgTimeouts | None = None) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout_s = connect_timeout_s
        self.auto_migrate = migrate
        self.timeouts = timeouts or PgTimeouts()
        self._down_since: float | None = None  # monotonic; set by a reply-path failure
        self._last_probe = 0.0
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
                                                 timeout=self.connect_timeout_s, reset=_keep_session,
                                                 command_timeout=self.timeouts.command_s)
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

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, waited for at most `acquire_s`. Leaving the block by any
        error but a statement PostgreSQL refused (a timeout, a cancellation, a lost
        socket) terminates the connection: its protocol state is unknown, and releasing
        it would wait for the server to acknowledge a cancel."""
        pool = await self.pool()
        conn = await pool.acquire(timeout=self.timeouts.acquire_s)
        try:
            yield conn
        except asyncpg.PostgresError:
            raise
        except BaseException:
            conn.terminate()
            raise
        finally:
            await pool.release(conn)

    async def reply_path(self, what: str, op: Any) -> Any:
        """Run `op(conn)` for a customer's reply: bounded by `reply_s` in all (acquire
        included). An unreachable or stalled server raises `DatabaseDown`, logged once
        per outage; while down, statements fail at once except one probe per `probe_s`,
        so an outage costs a reply at most one `reply_s`."""
        now = time.monotonic()
        if self._down_since is not None:
            if now - self._last_probe < self.timeouts.probe_s:
                raise DatabaseDown(f"the database at {self.masked} is unreachable ({what} skipped)")
            self._last_probe = now
        try:
            async with asyncio.timeout(self.timeouts.reply_s):
                async with self.connection() as conn:
                    result = await op(conn)
        except CONNECTION_ERRORS as e:
            self.went_down(e, what)
            raise DatabaseDown(f"the database at {self.masked} is unreachable ({what} skipped)") from None
        self.came_back()
        return result

    def went_down(self, e: BaseException, what: str) -> None:
        self._last_probe = time.monotonic()
        if self._down_since is None:
            self._down_since = self._last_probe
            log.error(kv(event="database_unreachable", url=self.masked, op=what,
                         error=self.url.scrub(f"{type(e).__name__}: {e}"),
                         action="replying without history and open-handoff lookups until it answers"))

    def came_back(self) -> None:
        if self._down_since is not None:
            log.warning(kv(event="database_back", url=self.masked,
                           after_s=round(time.monotonic() - self._down_since, 1)))
            self._down_since = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

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
