"""Per-customer rate limit: a gate tier in front of the cache and the LLM chain.

Within the limit (default 10 messages a minute per customer) the gate passes the event
on. Over it, the customer gets one polite notice (template `replies/rate_limited.j2`)
and then silence (an empty Reply, which adapters do not send) until the window has
room again — and no tier behind the gate, so no LLM, is ever asked.

Settings: TIERBOT_RATE_LIMIT (messages per window, 0 = off), TIERBOT_RATE_WINDOW_S
(default 60), or `[ratelimit] messages / window_s` in the config file.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .config import Config, ConfigError
from .logs import kv
from .models import Event, Reply
from .rendering import Renderer
from .turn import TurnContext

if TYPE_CHECKING:
    from .app import BotParts
    from .storage.shared import RateWindows

__all__ = ["RateLimitGate", "RateLimitSettings", "install"]

log = logging.getLogger("tierbot.ratelimit")

NOTICE_TEMPLATE = "replies/rate_limited.j2"
FALLBACK_NOTICE = "You're sending messages very quickly — please wait a minute and try again."


@dataclass(frozen=True)
class RateLimitSettings:
    messages: int = 10
    window_s: float = 60.0
    max_customers: int = 100_000  # memory bound: the least recently seen are forgotten

    @classmethod
    def from_config(cls, config: Config) -> "RateLimitSettings":
        section = config.section("ratelimit")
        try:
            messages = config.get_int("TIERBOT_RATE_LIMIT", int(section.get("messages", 10)), minimum=0)
            window = config.get_float("TIERBOT_RATE_WINDOW_S", float(section.get("window_s", 60.0)), minimum=1.0)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"[ratelimit] in the config file: {e}") from None
        return cls(messages=messages, window_s=window)


@dataclass
class _Window:
    accepted: deque[float] = field(default_factory=deque)
    notified: bool = False


class RateLimitGate:
    """A Tier: None (pass on) within the limit; the notice once, then "", over it."""

    name = "ratelimit"
    reads_history = False  # the pipeline reads the history meanwhile

    def __init__(self, settings: RateLimitSettings, renderer: Renderer | None = None, *,
                 services: dict[str, object] | None = None,
                 clock: Callable[[], float] = time.monotonic, shared: "RateWindows | None" = None) -> None:
        """`shared` (REDIS_URL): one window per customer for every process; while Redis is
        lost the gate counts in this process alone."""
        self.settings = settings
        self.renderer = renderer
        self.services = services if services is not None else {}
        self.clock = clock
        self.shared = shared
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def _window(self, key: str) -> _Window:
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = _Window()
            if len(self._windows) > self.settings.max_customers:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        return w

    def check(self, event: Event) -> str:
        """"ok", "notice" (first message over the limit) or "silent"."""
        s = self.settings
        if s.messages <= 0:
            return "ok"
        now = self.clock()
        w = self._window(f"{event.platform}:{event.user_id}")
        while w.accepted and w.accepted[0] <= now - s.window_s:
            w.accepted.popleft()
        if len(w.accepted) < s.messages:
            w.accepted.append(now)
            w.notified = False
            return "ok"
        if w.notified:
            return "silent"
        w.notified = True
        return "notice"

    async def answer(self, event: Event, turn: TurnContext) -> Reply | None:
        verdict = None
        if self.shared is not None and self.settings.messages > 0:
            verdict = await self.shared.check(f"{event.platform}:{event.user_id}")
        if verdict is None:
            verdict = self.check(event)
        if verdict == "ok":
            return None
        log.info(kv(ratelimit=verdict, platform=event.platform, conversation=event.conversation_id))
        await self._record(event, verdict)
        if verdict == "silent":
            return Reply(text="", tier="template", meta={"template": "rate_limited", "rate_limited": "silent"})
        return Reply(text=self._notice(), tier="template",
                     meta={"template": "rate_limited", "rate_limited": "notice"})

    def _notice(self) -> str:
        if self.renderer is not None:
            try:
                return self.renderer.render(NOTICE_TEMPLATE)
            except Exception:
                log.exception("rate-limit notice template failed to render")
        return FALLBACK_NOTICE

    async def _record(self, event: Event, verdict: str) -> None:
        ledger = self.services.get("ledger")
        record = getattr(ledger, "record_event", None)
        if record is None:
            return
        try:
            await record("rate_limited", event.conversation_id,
                         {"platform": event.platform, "user_id": event.user_id, "verdict": verdict})
        except Exception:
            log.exception("recording a rate_limited event failed")


def install(parts: "BotParts") -> None:
    """Plugin: put the gate after the other gates (a handed-off conversation is staff's)."""
    settings = RateLimitSettings.from_config(parts.config)
    if settings.messages > 0:
        shared = None
        if parts.storage.shared is not None:
            from .storage.redis.ratelimit import SharedRateLimit

            shared = SharedRateLimit(parts.storage.shared, messages=settings.messages, window_s=settings.window_s)
        parts.gates.append(RateLimitGate(settings, parts.renderer, services=parts.services, shared=shared))
