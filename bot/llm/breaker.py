"""Circuit breakers: one per provider+model, plus one per provider for the host itself.

Why two levels: a model can be overloaded while its siblings answer, but a refused
connection or a black hole is the whole host — once known dead, none of its models
should cost the customer a timeout.

Rules (FIELD_NOTES): a 429 is a *rate signal*, not an outage — it never counts toward
opening. A Retry-After (or reset header) speaks for the key, not the request: the model
gets no new request until it passes, then exactly ONE (the rate probe) until that one
comes back; the message that got the 429 moves on at once (chain.py). A 429 without any
hint just moves that request on and pauses nobody. Health failures
(5xx, overload, timeout, connection, malformed, empty, cut) count; after `threshold` in
a row the breaker opens for a cooldown (at least what the provider asked), doubling on
each failed probe up to `max_cooldown`. When the cooldown
ends exactly ONE request probes (half-open); the others keep skipping until it
succeeds, so a dead provider is not hit by the whole waiting wave again. A host that
has gone silent (stalls.py) is tripped open at once, before its timeouts are counted.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import errors as E

__all__ = ["Breaker", "BreakerBoard", "CLOSED", "OPEN", "HALF_OPEN", "PAUSED", "DISABLED", "RATE_LIMITED_SKIP",
           "RATE_PROBING"]

CLOSED, OPEN, HALF_OPEN, PAUSED, DISABLED = "closed", "open", "half_open", "paused", "disabled"
MAX_PAUSE_S = 300.0  # never trust a reset header further than this
RATE_LIMITED_SKIP = "rate_limited"  # skip reason: an announced wait is running
RATE_PROBING = "rate_probing"       # skip reason: the wait is over, its one probe is out


@dataclass
class Breaker:
    provider: str
    model: str  # "*" for the provider-wide (host) breaker
    threshold: int = 3
    cooldown: float = 10.0
    max_cooldown: float = 300.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    open_until: float = 0.0
    paused_until: float = 0.0
    current_cooldown: float = 0.0
    opened: bool = False
    probing: bool = False
    rate_probe: bool = False  # a wait was announced: the first request after it is a probe
    disabled: str | None = None  # why (e.g. "auth"); stays off until restart
    last_reason: str | None = None
    _on_open: list[Callable[["Breaker", str], None]] = field(default_factory=list, repr=False)
    _waiters: list[asyncio.Future] = field(default_factory=list, repr=False)

    @property
    def state(self) -> str:
        now = self.clock()
        if self.disabled:
            return DISABLED
        if self.opened:
            return OPEN if now < self.open_until else HALF_OPEN
        if now < self.paused_until:
            return PAUSED
        return CLOSED

    def available(self) -> str | None:
        """None when a request may go now; else the reason it may not."""
        if self.disabled:
            return f"disabled_{self.disabled}"
        now = self.clock()
        if self.opened:
            if now < self.open_until:
                return "breaker_open"
            if self.probing:
                return "breaker_probing"
            # Half-open, but a late answer of a request sent before it opened may have asked
            # for a wait (a 503 with Retry-After): the probe waits for it too.
        if now < self.paused_until:
            return self.last_reason if self.last_reason in (E.MODEL_GONE, E.OUT_OF_CREDITS) else RATE_LIMITED_SKIP
        if self.rate_probe and self.probing:
            return RATE_PROBING
        return None

    def quiet_for(self) -> float | None:
        """Seconds until this breaker may let a request through again when what holds it is
        an announced wait (0.0: the wait is over and its probe is out); None when it is not
        held by one (free now, open, disabled, model gone) — nothing worth waiting for."""
        if self.disabled or self.opened:
            return None
        now = self.clock()
        if now < self.paused_until:
            return None if self.last_reason in (E.MODEL_GONE, E.OUT_OF_CREDITS) else self.paused_until - now
        if self.rate_probe and self.probing:
            return 0.0
        return None

    def acquire(self) -> bool:
        """Take the go-ahead found by `available()`; True when this request is the probe."""
        if (self.opened or self.rate_probe) and not self.probing:
            self.probing = True
            return True
        return False

    def release(self, was_probe: bool) -> None:
        """A probe that ended without a verdict (cancelled, deadline) gives its turn back."""
        if was_probe:
            self._probe_over()

    def success(self) -> None:
        self.failures = 0
        self.opened = self.rate_probe = False
        self._probe_over()
        self.current_cooldown = 0.0
        self.last_reason = None

    async def verdict(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for the probe out now to come back, whatever it says."""
        if not self.probing:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def _probe_over(self) -> None:
        self.probing = False
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def failure(self, outcome: str, retry_after: float | None = None, was_probe: bool = False) -> None:
        now = self.clock()
        self.last_reason = outcome
        breaker_probe = was_probe and self.opened  # the half-open probe (not a rate probe)
        if was_probe:
            self._probe_over()
        if outcome == E.RATE_LIMITED:
            # A rate signal, never an outage. Any announced wait speaks for the key: nobody
            # asks before it passes, then one probe. No hint: no pause. Under concurrency,
            # instant 429s land before the slower successes of requests sent alongside them,
            # so "N 429s in a row" also happens under 30 % random 429s; a pause then sent
            # every message to the templates (bench/storm_bench.py).
            if retry_after:
                self.paused_until = max(self.paused_until, now + min(retry_after, MAX_PAUSE_S))
                self.rate_probe = True
            if breaker_probe:
                self.open_until = max(self.open_until, self.paused_until)
            return
        if outcome == E.OUT_OF_CREDITS:
            # Like a spent quota, for the whole account: nobody asks again until the provider's
            # Retry-After (if it gave one) or CREDITS_PAUSE_S has passed; then one quick 402
            # (or an answer, after a top-up) tells. Never an outage: the breaker stays closed.
            self.paused_until = max(self.paused_until, now + min(retry_after or E.CREDITS_PAUSE_S, MAX_PAUSE_S))
            self.release(was_probe)
            return
        if outcome == E.MODEL_GONE:
            # The provider no longer serves this model: skip it (not its siblings) for long.
            self.paused_until = max(self.paused_until, now + E.MODEL_GONE_PAUSE_S)
            return
        if outcome not in E.HEALTH_FAILURES:
            return
        self.failures += 1
        if breaker_probe or (not self.opened and self.failures >= self.threshold):
            base = self.cooldown if not breaker_probe else min(self.max_cooldown, max(self.cooldown, self.current_cooldown * 2))
            self.current_cooldown = base
            wait = max(base, min(retry_after or 0.0, MAX_PAUSE_S))
            newly = not self.opened
            self.opened = True
            self.open_until = now + wait
            if newly:
                for cb in self._on_open:
                    cb(self, outcome)
        elif retry_after:
            # e.g. 503/529 with Retry-After: honour it even before the breaker opens.
            self.paused_until = max(self.paused_until, now + min(retry_after, MAX_PAUSE_S))
            self.rate_probe = True

    def trip(self, reason: str) -> None:
        """Open now, before the failures are counted: the host went silent (stalls.py) while
        requests waited on it. An open breaker is left alone — a stalled probe gets its
        verdict from its own failure (cooldown doubled), not twice."""
        if self.disabled or self.opened:
            return
        self.last_reason = reason
        self.current_cooldown = self.cooldown
        self.opened = True
        self._probe_over()
        self.open_until = self.clock() + self.cooldown
        for cb in self._on_open:
            cb(self, reason)

    def disable(self, reason: str) -> None:
        newly = self.disabled is None
        self.disabled = reason
        if newly:
            for cb in self._on_open:
                cb(self, reason)

    def snapshot(self) -> dict[str, object]:
        now = self.clock()
        until = self.open_until if self.opened else self.paused_until
        return {"provider": self.provider, "model": self.model, "state": self.state,
                "failures": self.failures, "reason": self.disabled or self.last_reason,
                "retry_in_s": round(max(0.0, until - now), 3)}


class BreakerBoard:
    """All breakers, created on first use; kept in `services["breakers"]` for /metrics
    and `tierbot check`."""

    def __init__(self, *, threshold: int = 3, cooldown: float = 10.0, max_cooldown: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold, self.cooldown, self.max_cooldown, self.clock = threshold, cooldown, max_cooldown, clock
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self._listeners: list[Callable[[Breaker, str], None]] = []

    def on_open(self, callback: Callable[[Breaker, str], None]) -> None:
        """Called (synchronously) whenever a breaker opens or a provider is disabled."""
        self._listeners.append(callback)
        for b in self._breakers.values():
            b._on_open.append(callback)

    def get(self, provider: str, model: str = "*") -> Breaker:
        key = (provider, model)
        b = self._breakers.get(key)
        if b is None:
            b = Breaker(provider, model, self.threshold, self.cooldown, self.max_cooldown, self.clock)
            b._on_open.extend(self._listeners)
            self._breakers[key] = b
        return b

    def host(self, provider: str) -> Breaker:
        return self.get(provider, "*")

    def __iter__(self) -> Iterator[Breaker]:
        return iter(list(self._breakers.values()))

    def states(self) -> list[dict[str, object]]:
        return [b.snapshot() for b in self]

    def state(self, provider: str, model: str = "*") -> str:
        return self.get(provider, model).state
