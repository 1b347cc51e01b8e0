"""One Redis client per process, and the rule every shared-state caller follows when
Redis does not answer: fall back to per-process state at once, say so once, loudly, and
try Redis again after `retry_s` (one caller at a time), so a lost Redis never makes a
customer wait or go unanswered, and shared state resumes when it is back."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...logs import kv
from ..settings import ServerUrl, StorageUnavailable

__all__ = ["SharedState", "DEFAULT_PREFIX"]

log = logging.getLogger("tierbot.storage.redis")
T = TypeVar("T")

DEFAULT_PREFIX = "tierbot:"
LOST = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class SharedState:
    def __init__(self, url: ServerUrl, *, prefix: str = DEFAULT_PREFIX, timeout_s: float = 0.5,
                 retry_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.prefix = prefix
        self.retry_s = retry_s
        self.clock = clock
        # Short timeouts: a message waits at most this long for Redis before falling back.
        self.client = aioredis.Redis.from_url(url.url, socket_timeout=timeout_s,
                                              socket_connect_timeout=timeout_s, retry_on_timeout=False)
        self._down = False
        self._retry_at = 0.0

    @property
    def masked(self) -> str:
        return self.url.masked

    @property
    def available(self) -> bool:
        """False while Redis is known lost (callers use their per-process state)."""
        return not self._down

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        try:
            await self.client.ping()
        except Exception as e:
            raise StorageUnavailable(f"cannot use Redis at {self.masked} ({self.url.var}): "
                                     f"{self.url.scrub(f'{type(e).__name__}: {e}')}") from None

    async def ping(self) -> str | None:
        try:
            await self.client.ping()
            return None
        except Exception as e:
            return self.url.scrub(f"{type(e).__name__}: {e}")

    async def run(self, what: str, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T | None:
        """`fn(client)`, or None when Redis is lost (then: per-process fallback)."""
        if self._down:
            now = self.clock()
            if now < self._retry_at:
                return None
            self._retry_at = now + self.retry_s  # one try per retry_s; the rest fall back meanwhile
        try:
            result = await fn(self.client)
        except LOST as e:
            self._lost(what, e)
            return None
        if self._down:
            self._down = False
            log.warning(kv(event="redis_back", url=self.masked, action="shared limits and budget resume"))
        return result

    def _lost(self, what: str, e: BaseException) -> None:
        self._retry_at = self.clock() + self.retry_s
        if not self._down:
            self._down = True
            log.error(kv(event="redis_unreachable", url=self.masked, during=what,
                         error=self.url.scrub(f"{type(e).__name__}: {e}"),
                         action="rate limits and budget fall back to per-process until Redis answers"))

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        except Exception:  # closing a client whose server is gone
            pass


