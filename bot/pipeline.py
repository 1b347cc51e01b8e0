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
from collections.abc import AsyncIterator, Awaitable, Sequence

from .deadline import Deadline
from .history import HistoryStore, MemoryHistory
from .logs import kv
from .models import Attempt, Event, Reply, StreamReset
from .secrets import StreamRedactor, redact
from .storage.settings import StorageUnavailable
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
        reply: Reply | None = None
        async for item in self._run(event, streaming=False):
            reply = item  # type: ignore[assignment]  # not streaming: the Reply is the only item
        assert reply is not None
        return reply

    def stream(self, event: Event) -> AsyncIterator[str | StreamReset | Reply]:
        """Yield text chunks as they are produced, then the final `Reply` (always last).

        The chunks after the last `StreamReset` (if any) add up to exactly `Reply.text`:
        a reset means the text shown so far is withdrawn (a tier started over or was
        replaced), so a consumer appending chunks never shows text twice.
        """
        return self._run(event, streaming=True)

    async def _run(self, event: Event, *, streaming: bool) -> AsyncIterator[str | StreamReset | Reply]:
        """The one loop over the tiers, for `handle` and `stream` alike: the same per-tier
        timeouts (non-final tiers stop short of the deadline by a reserve, so the last
        tier can always answer), the same accounting and the same safety net."""
        start = time.perf_counter()
        turn = TurnContext(event=event, deadline=Deadline(self.deadline_s),
                           route=event.route or ("image" if event.images else "customer"))
        # The history is read while the gates that need none (handoff, rate limit: their
        # `reads_history` is False) run: one round trip to the store less per message.
        pending: Awaitable[list[Turn]] | None = self.history.recent(event.conversation_id, self.history_turns)
        if getattr(self.tiers[0], "reads_history", True):
            turn.history, pending = await self._history(pending), None
        else:
            pending = asyncio.ensure_future(pending)
        reply: Reply | None = None
        shown = ""  # streamed since the last reset (redacted, as the consumer saw it)
        last = len(self.tiers) - 1
        try:
            for i, tier in enumerate(self.tiers):
                if pending is not None and getattr(tier, "reads_history", True):
                    turn.history, pending = await self._history(pending), None
                ends_at: float | None = None
                if i < last:
                    budget = turn.deadline.budget(reserve=FINAL_TIER_RESERVE_S)
                    if budget <= 0:
                        continue
                    ends_at = asyncio.get_running_loop().time() + budget
                try:
                    if streaming and isinstance(tier, StreamingTier):
                        items = tier.stream(event, turn)
                        # One per tier: a key split across two chunks is still caught, and a
                        # tail held back from a tier that failed never leaks into the next one.
                        redactor = StreamRedactor()
                        reads = _Reads(items, ends_at)
                        try:
                            while True:
                                try:
                                    item = await reads.next()  # every read within the tier's budget
                                except StopAsyncIteration:
                                    break
                                if isinstance(item, Reply):
                                    reply = item
                                    break
                                if isinstance(item, StreamReset):
                                    redactor = StreamRedactor()  # what it held back is withdrawn too
                                    if shown:
                                        shown = ""
                                        yield item
                                    continue
                                safe = redactor.feed(item)
                                if safe:
                                    shown += safe
                                    yield safe
                            if reply is None:
                                held = redactor.flush()
                                if held:
                                    shown += held
                                    yield held
                        finally:
                            reads.close()
                            await _close(items)
                    else:
                        async with asyncio.timeout_at(ends_at):
                            reply = await tier.answer(event, turn)
                except TimeoutError as e:
                    if ends_at is None:  # the last tier's own timeout, not ours
                        self._tier_failed(tier, e, turn)
                    else:
                        turn.record(Attempt(provider=tier.name, model="", outcome="deadline",
                                            latency_ms=budget * 1000))
                        log.warning(kv(tier=tier.name, outcome="deadline", budget_s=budget))
                except Exception as e:
                    self._tier_failed(tier, e, turn)
                if reply is not None:
                    break
                if shown:  # this tier showed text and gave up: the next one starts over
                    shown = ""
                    yield StreamReset("tier_failed")
            if pending is not None:  # a gate answered: the amenders and the history need it
                turn.history, pending = await self._history(pending), None
        finally:
            if pending is not None:
                pending.cancel()  # type: ignore[union-attr]  # closed early: no read outlives the turn
        final = await self._finish(event, turn, reply or _last_words(), start)
        if streaming:
            if final.text.startswith(shown):
                if final.text != shown or not shown:
                    yield final.text[len(shown):]
            else:  # replaced (templates after a cut) or amended in the middle
                yield StreamReset("replaced")
                yield final.text
        yield final

    # -- internals ------------------------------------------------------------------
    async def _history(self, read: Awaitable[list[Turn]]) -> list[Turn]:
        try:
            return await read
        except StorageUnavailable:  # the store logged it once per outage; no traceback per message
            return []
        except Exception:
            log.exception("reading conversation history failed; answering without it")
            return []

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


class _Reads:
    """Reads a tier's stream, each read bounded by the tier's deadline, with one timer for
    the whole stream: `asyncio.timeout` around every chunk cost ~5 µs a chunk, hundreds of
    chunks per streamed answer. The task is cancelled only while it waits on the tier; the
    consumer's time between reads counts towards the deadline but is never interrupted."""

    __slots__ = ("_items", "_task", "_timer", "_expired", "_reading", "_cancelled")

    def __init__(self, items: AsyncIterator[object], ends_at: float | None) -> None:
        self._items = items
        self._expired = self._reading = self._cancelled = False
        self._task = asyncio.current_task()
        self._timer = None if ends_at is None else asyncio.get_running_loop().call_at(ends_at, self._expire)

    def _expire(self) -> None:
        self._expired = True
        if self._reading and self._task is not None:
            self._cancelled = True
            self._task.cancel()

    async def next(self) -> object:
        if self._expired:
            raise TimeoutError
        self._reading = True
        try:
            item = await anext(self._items)
        except asyncio.CancelledError:
            if self._cancelled and self._task is not None and self._task.uncancel() == 0:
                raise TimeoutError from None  # ours, and nobody else cancelled the task
            raise
        finally:
            self._reading = False
        if self._cancelled:  # the tier swallowed our cancellation: its time is still up
            if self._task is not None:
                self._task.uncancel()
            raise TimeoutError
        return item

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def _close(items: AsyncIterator[object]) -> None:
    """Finish a tier's stream now (not when it is garbage-collected), so its attempts are
    settled and recorded before the reply is."""
    close = getattr(items, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        log.exception("closing a tier's stream failed")


def _last_words() -> Reply:
    from .templates_tier import LAST_WORDS

    return Reply(text=LAST_WORDS, tier="template", meta={"template": "last_words"})
