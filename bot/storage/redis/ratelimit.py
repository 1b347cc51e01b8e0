"""Per-customer rate limits in Redis: one sliding window per customer for every process.

The check is one script run inside Redis (atomic: two processes cannot both take the
last place in a window), timed by the Redis server's own clock so processes on
machines whose clocks differ still agree. Verdicts are the gate's: "ok", "notice"
(the first message over the limit), "silent"."""
from __future__ import annotations

import uuid

from .shared import SharedState

__all__ = ["SharedRateLimit"]

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local ttl = math.ceil(window * 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('DEL', KEYS[2])
  return 0
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then
  return 1
end
return 2
"""
_VERDICTS = ("ok", "notice", "silent")


class SharedRateLimit:
    """`bot.storage.shared.RateWindows` on Redis."""

    def __init__(self, shared: SharedState, *, messages: int, window_s: float) -> None:
        self.shared = shared
        self.messages = messages
        self.window_s = window_s
        self._script = shared.client.register_script(_SCRIPT)

    async def check(self, customer: str) -> str | None:
        """The verdict, or None when Redis is lost (the caller decides per process)."""
        keys = [self.shared.key("rl", customer), self.shared.key("rl-notified", customer)]
        args = [self.window_s, self.messages, uuid.uuid4().hex]
        result = await self.shared.run("rate limit", lambda _client: self._script(keys=keys, args=args))
        return None if result is None else _VERDICTS[int(result)]
