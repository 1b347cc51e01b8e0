"""Stall detection and slow start: per provider host, what is in flight and when it last answered.

Why: a provider that accepts requests and never answers (a black hole) is only found out by
attempt timeouts, and every message already in flight on it pays one — 6 s each by default,
a whole wave of them at 50 in flight. But a silent host is visible earlier: its requests sit
far past its usual latency while *nothing* comes back from it.

Rules (per host):
  * An attempt is *silent* when it started after the host's last answer (any HTTP response,
    an error status included) — nothing has been heard from the host since it was sent.
  * The host is *stalled* when its oldest silent attempt is older than
    `max(factor × p95 of its recent answer latency, floor)` and there is more than one piece
    of evidence: at least `MIN_EVIDENCE` silent attempts, counting those that already ended
    without an answer (timeout, refused, stalled). One slow request alone is not a stall.
    Without `MIN_SAMPLES` latencies (cold start) nothing is judged: the timeout decides.
  * Before declaring, a waiting attempt confirms over a short grace (a quarter of the
    threshold, at least 0.1 s): answers a busy event loop had not read yet get read, and if
    the grace itself overruns, the silence may be ours (a CPU-starved process, a burst of
    sends) — nothing is declared and the timeouts decide.
  * When a host stalls, `on_stall` runs once (the chain opens the host's breaker) and every
    attempt in flight on it is rescued: it ends now as `stalled` and its message moves on.
  * Slow start: until a host has answered once, at most `slow_start` attempts may be in flight
    on it; the chain sends the rest to the next provider (each message steps past at most one
    such host, and never to the templates), so a host dead from the start costs a few
    probes, not the whole first wave. The price: at a cold start, the messages sent while
    the primary's first probes are out go to the next provider.

A slow host that keeps answering is never stalled: each answer resets the silence.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from . import errors as E
from .hedging import LatencyWindow

__all__ = ["HostWatch", "Ticket", "MIN_EVIDENCE", "MIN_SAMPLES"]

T = TypeVar("T")
MIN_EVIDENCE = 2   # silent attempts (in flight or ended unanswered) before a silence is a stall
MIN_SAMPLES = 5    # answer latencies needed before "far past the usual latency" means anything
_EPS = 0.002       # wake a little after the due time, never just before it
_GRACE_S = 0.1     # a stall is confirmed over max(this, threshold / 4) ...
_LAG_S = 0.05      # ... unless our own event loop overran that grace by more than this


class Ticket:
    """One attempt on a host, from `HostWatch.start()` to `HostWatch.end()`."""

    __slots__ = ("id", "started", "answered", "closed", "rescued")

    def __init__(self, id_: int, started: float) -> None:
        self.id, self.started = id_, started
        self.answered = False   # the host sent something back for it (a first byte, a status)
        self.closed = False
        self.rescued = False    # the host stalled while it was in flight: it is being left


class HostWatch:
    """One provider host: its attempts in flight, its last answer, its recent latency."""

    def __init__(self, provider: str, *, factor: float = 2.0, floor_s: float = 1.0, enabled: bool = True,
                 slow_start: int = 2, on_stall: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self.factor, self.floor_s, self.enabled, self.slow_start = factor, floor_s, enabled, slow_start
        self.on_stall = on_stall
        self.clock = clock
        self.inflight: dict[int, Ticket] = {}     # insertion order = start order
        self.answered_at = float("-inf")          # when the host last sent anything back
        self.silent_ended = 0                     # attempts ended unanswered since answered_at
        self.proven = False                       # the host has answered at least once
        self.latency = LatencyWindow()
        self.stalls = 0
        self._ids = itertools.count()
        self._rescue: asyncio.Future[None] | None = None

    # -- bookkeeping ---------------------------------------------------------------------
    def start(self) -> Ticket:
        t = Ticket(next(self._ids), self.clock())
        self.inflight[t.id] = t
        return t

    def answered(self, ticket: Ticket, latency_s: float | None = None) -> None:
        """The host sent something back for this attempt (first byte, a result, an error status)."""
        if ticket.answered or ticket.closed:
            return
        ticket.answered = True
        self.answered_at = self.clock()
        self.silent_ended = 0
        self.proven = True
        if latency_s is not None:
            self.latency.add(latency_s)

    def end(self, ticket: Ticket, *, silent: bool = False) -> None:
        """The attempt is over. `silent`: it ended without the host answering (timeout,
        refused, stalled) — evidence. Ending otherwise (cancelled) says nothing."""
        if ticket.closed:
            return
        ticket.closed = True
        self.inflight.pop(ticket.id, None)
        if silent and not ticket.answered and ticket.started > self.answered_at:
            self.silent_ended += 1
            if self.stalled():  # the second piece of evidence, for an attempt waiting alone
                self.declare(f"{self.silent_ended} attempts on {self.provider} ended unanswered")

    # -- slow start ----------------------------------------------------------------------
    def slow_start_full(self) -> bool:
        """True when this host has never answered and already has its probes out."""
        return bool(self.slow_start) and not self.proven and len(self.inflight) >= self.slow_start

    # -- stall rule -----------------------------------------------------------------------
    def threshold(self) -> float | None:
        """How long a silent attempt may last before it counts as stalled (None: not judged yet)."""
        if len(self.latency) < MIN_SAMPLES:
            return None
        p95 = self.latency.quantile(0.95) or 0.0
        return max(self.factor * p95, self.floor_s)

    def _silent(self) -> list[Ticket]:
        return [t for t in self.inflight.values()
                if not t.answered and not t.rescued and t.started > self.answered_at]

    def stalled(self, now: float | None = None) -> bool:
        limit = self.threshold()
        if not self.enabled or limit is None:
            return False
        silent = self._silent()
        if not silent:
            return False
        now = self.clock() if now is None else now
        return now - silent[0].started >= limit and len(silent) + self.silent_ended >= MIN_EVIDENCE

    def due(self, ticket: Ticket) -> float | None:
        """When this attempt should next ask `stalled()` (clock time), or None: never."""
        limit = self.threshold()
        if not self.enabled or limit is None or ticket.answered or ticket.closed:
            return None
        silent = self._silent()
        if not silent:
            return None
        return silent[0].started + limit

    def declare(self, detail: str) -> None:
        """The host is stalled: tell the chain once, and rescue every attempt in flight on it."""
        self.stalls += 1
        for t in self.inflight.values():
            t.rescued = True
        if self.on_stall is not None:
            self.on_stall(self.provider, detail)
        if self._rescue is not None and not self._rescue.done():
            self._rescue.set_result(None)
        self._rescue = None

    def _signal(self) -> asyncio.Future[None]:
        if self._rescue is None or self._rescue.done():
            self._rescue = asyncio.get_running_loop().create_future()
        return self._rescue

    # -- waiting ---------------------------------------------------------------------------
    async def watch(self, ticket: Ticket, aw: Awaitable[T]) -> T:
        """Await `aw` (the provider call), unless its host stalls first: then cancel it and
        raise ProviderError(STALLED) so the message moves on now, not at its timeout."""
        if not self.enabled:
            return await aw
        call = asyncio.ensure_future(aw)
        try:
            while not ticket.rescued:
                rescue = self._signal()
                now = self.clock()
                if self.stalled(now):
                    # Confirm over a short grace: answers already received but not yet read
                    # by a busy event loop get read meanwhile, and a grace that overruns
                    # says the silence may be ours (CPU-starved), not the provider's.
                    grace = max(_GRACE_S, (self.threshold() or 0.0) / 4)
                    await asyncio.wait((call, rescue), timeout=grace)
                    if call.done():
                        return call.result()
                    late = self.clock() - now - grace
                    if ticket.rescued or late > max(_LAG_S, grace / 2) or not self.stalled():
                        continue
                    oldest = self._silent()[0].started
                    self.declare(f"nothing from {self.provider} for {self.clock() - max(self.answered_at, oldest):.2f}s, "
                                 f"{len(self.inflight)} in flight")
                    break
                due = self.due(ticket)
                # Overdue but alone (no second piece of evidence): only a new attempt or a
                # silent end can change that, and both check (here, and in `end`).
                timeout = None if due is None or due <= now else due - now + _EPS
                await asyncio.wait((call, rescue), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if call.done():
                    return call.result()
        finally:
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
        age = self.clock() - ticket.started
        raise E.ProviderError(E.STALLED, f"no answer after {age:.2f}s while {self.provider} was silent "
                                         f"(usual p95 {1000 * (self.latency.quantile(0.95) or 0):.0f} ms)")
