"""`SupportBot`: runs an event through the tiers until one answers.

The pipeline knows no platform and no provider. It owns three promises:
- every event gets a `Reply`, within the deadline (the last tier always answers);
- the `Reply` says who answered and carries every attempt, token and cent spent;
- listeners (ledger, metrics, handoff) hear about every reply, and their failures
  never reach the customer.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Sequence

from .deadline import Deadline
from .history import HistoryStore, MemoryHistory
from .logs import kv
from .models import Attempt, Event, Reply
from .secrets import StreamRedactor, redact
from .tiers import ReplyAmender, ReplyListener, StreamingTier, Tier
from .turn import Turn, TurnContext

__all__ = ["SupportBot"]

log = logging.getLogger("tierbot.pipeline")

# Kept back from non-final tiers so the last tier can always render in time.
FINAL_TIER_RESERVE_S = 0.05


class SupportBot:
    """The reply pipeline. Build it with `SupportBot.from_env()` or pass the parts in."""

    def __init__(
        self,
        tiers: Sequence[Tier],
        *,
        history: HistoryStore | None = None,
        amenders: Sequence[ReplyAmender] = (),
        listeners: Sequence[ReplyListener] = (),
        deadline_s: float = 12.0,
        history_turns: int = 10,
        resources: Sequence[object] = (),
        services: dict[str, object] | None = None,
    ) -> None:
        if not tiers:
            raise ValueError("SupportBot needs at least one tier (the last one must always answer)")
        self.tiers = list(tiers)
        self.history: HistoryStore = history or MemoryHistory()
        self.amenders = list(amenders)
        self.listeners = list(listeners)
        self.deadline_s = deadline_s
        self.history_turns = history_turns
        self._resources = list(resources)
        # Shared objects other front ends need (ledger, FAQ store, config, renderer...).
        # The same dict the plugins were given (not a copy), so what an adapter registers
        # later (channels, the staff desk) is visible to the plugins' services too.
        self.services: dict[str, object] = services if services is not None else {}
        self._closed = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "SupportBot":
        """Build the whole bot (cache, LLM chain, templates, ledger) from the environment."""
        from .app import build_bot
        from .config import Config

        return build_bot(Config.from_env(environ))

    # -- lifecycle --------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        seen: set[int] = set()
        for obj in [*self.tiers, *self.amenders, *self.listeners, self.history, *self._resources]:
            close = getattr(obj, "aclose", None)
            if close is None or id(obj) in seen:
                continue
            seen.add(id(obj))
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("closing %s failed", type(obj).__name__)

    async def __aenter__(self) -> "SupportBot":
        """Start what needs a connection (a database, Redis): an unreachable server stops
        the start here, with one clear error, rather than at the first customer."""
        seen: set[int] = set()
        for obj in [*self._resources, *self.listeners]:
            start = getattr(obj, "astart", None)
            if start is not None and id(obj) not in seen:
                seen.add(id(obj))
                await start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- handling -------------------------------------------------------------------
    async def handle(self, event: Event) -> Reply:
        """Answer one event. Never raises for provider or tier failures."""
        start = time.perf_counter()
        turn = await self._begin(event)
        reply: Reply | None = None
        last = len(self.tiers) - 1
        for i, tier in enumerate(self.tiers):
            if i < last:
                budget = turn.deadline.budget(reserve=FINAL_TIER_RESERVE_S)
                if budget <= 0:
                    continue
                try:
                    async with asyncio.timeout(budget):
                        reply = await tier.answer(event, turn)
                except TimeoutError:
                    turn.record(Attempt(provider=tier.name, model="", outcome="deadline",
                                        latency_ms=budget * 1000))
                    log.warning(kv(tier=tier.name, outcome="deadline", budget_s=budget))
                    continue
                except Exception as e:
                    self._tier_failed(tier, e, turn)
                    continue
            else:
                try:
                    reply = await tier.answer(event, turn)
                except Exception as e:
                    self._tier_failed(tier, e, turn)
            if reply is not None:
                break
        return await self._finish(event, turn, reply or _last_words(), start)

    async def stream(self, event: Event) -> AsyncIterator[str | Reply]:
        """Yield text chunks as they are produced, then the final `Reply` (always last).

        Chunks are previews; the final `Reply.text` is authoritative (a stream cut
        mid-way is completed or replaced, and the Reply says which).
        """
        start = time.perf_counter()
        turn = await self._begin(event)
        reply: Reply | None = None
        streamed = False
        for tier in self.tiers:
            try:
                if isinstance(tier, StreamingTier):
                    # One per tier: a key split across two chunks is still caught, and a tail
                    # held back from a tier that failed never leaks into the next tier's text.
                    redactor = StreamRedactor()
                    async for item in tier.stream(event, turn):
                        if isinstance(item, Reply):
                            reply = item
                            break
                        streamed = True
                        safe = redactor.feed(item)
                        if safe:
                            yield safe
                    held = redactor.flush()
                    if held:
                        yield held
                else:
                    reply = await tier.answer(event, turn)
            except Exception as e:
                self._tier_failed(tier, e, turn)
            if reply is not None:
                break
        final = await self._finish(event, turn, reply or _last_words(), start)
        if not streamed:
            yield final.text
        yield final

    # -- internals ------------------------------------------------------------------
    async def _begin(self, event: Event) -> TurnContext:
        deadline = Deadline(self.deadline_s)
        try:
            history = await self.history.recent(event.conversation_id, self.history_turns)
        except Exception:
            log.exception("reading conversation history failed; answering without it")
            history = []
        route = event.route or ("image" if event.images else "customer")
        return TurnContext(event=event, deadline=deadline, history=history, route=route)

    def _tier_failed(self, tier: Tier, error: Exception, turn: TurnContext) -> None:
        log.exception(kv(tier=tier.name, outcome="error", error=type(error).__name__))
        turn.record(Attempt(provider=tier.name, model="", outcome="error", detail=type(error).__name__))

    async def _finish(self, event: Event, turn: TurnContext, reply: Reply, start: float) -> Reply:
        for amender in self.amenders:
            try:
                await amender.amend(event, reply, turn)
            except Exception:
                log.exception("reply amender %s failed", type(amender).__name__)
        if turn.route != "customer":
            # Whichever tier answered: the ledger and the report tell staff questions apart by it.
            reply.meta.setdefault("route", turn.route)
        # A provider (or a proxy in front of it) that echoes our request headers must not
        # hand the customer, the ledger or Slack an API key.
        reply.text = redact(reply.text)
        # The turn's attempts are the single source of truth for what was spent.
        reply.attempts = []
        reply.input_tokens = reply.output_tokens = 0
        reply.cost_usd = 0.0
        for attempt in turn.attempts:
            reply.charge(attempt)
        reply.fallback = reply.fallback or any(a.outcome != "ok" for a in turn.attempts)
        reply.latency_ms = (time.perf_counter() - start) * 1000
        try:
            await self.history.append(event.conversation_id, Turn("user", event.text, event.timestamp))
            if reply.text:  # a conversation handed to staff gets no bot text
                role = "staff" if reply.tier == "staff" else "assistant"
                await self.history.append(event.conversation_id, Turn(role, reply.text, time.time()))
        except Exception:
            log.exception("saving conversation history failed")
        for listener in self.listeners:
            try:
                await listener.on_reply(event, reply, turn)
            except Exception:
                log.exception("reply listener %s failed", type(listener).__name__)
        return reply


def _last_words() -> Reply:
    from .templates_tier import LAST_WORDS

    return Reply(text=LAST_WORDS, tier="template", meta={"template": "last_words"})
