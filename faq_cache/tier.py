"""The cache tier: greeting → FAQ entry → learned answer, or None to pass the event on."""
from __future__ import annotations

import asyncio
import logging
import time

from bot.logs import kv
from bot.models import Attempt, Event, Reply
from bot.rendering import Renderer
from bot.turn import TurnContext

from .greetings import detect_greeting
from .learned import LearnedCache
from .matcher import Match, Matcher
from .normalize import normalize
from .store import FaqStore

__all__ = ["FaqTier"]

log = logging.getLogger("tierbot.faq")

# How long one reply may wait for the FAQ model to load or refit before passing the event on.
REFIT_WAIT_S = 1.0


class FaqTier:
    """Answers only when sure; every decision is left in `turn.notes["faq"]`."""

    name = "cache"

    def __init__(self, store: FaqStore, renderer: Renderer, *, learned: LearnedCache | None = None,
                 greetings: bool = True, refit_wait_s: float = REFIT_WAIT_S) -> None:
        self.store, self.renderer, self.learned, self.greetings = store, renderer, learned, greetings
        self.refit_wait_s = refit_wait_s
        self._refit: asyncio.Future[Matcher] | None = None

    async def matcher(self) -> Matcher | None:
        """The up-to-date matcher, or None while it is still being (re)fitted.

        Loading a stored model takes milliseconds, fitting a large FAQ seconds: the refit
        runs in a thread and survives a cancelled caller, and a reply waits for it at most
        `refit_wait_s` — past that the cache passes the event on rather than eat the
        deadline the LLM chain needs (a stale model is never used: its entries may have
        changed meaning).
        """
        if self.store.matcher_is_current():
            return self.store.current_matcher()
        if self._refit is None or self._refit.done():
            self._refit = asyncio.ensure_future(asyncio.to_thread(self.store.matcher))
        try:
            return await asyncio.wait_for(asyncio.shield(self._refit), self.refit_wait_s)
        except TimeoutError:
            return None

    async def answer(self, event: Event, turn: TurnContext) -> Reply | None:
        start = time.perf_counter()
        text = event.text or ""
        if event.pick:
            picked = self._picked(event, turn, start)
            if picked is not None:
                return picked
        if not normalize(text):
            return None
        if self.greetings:
            greeting = detect_greeting(text)
            if greeting:
                body = self.renderer.render(f"greetings/{greeting.kind}.j2", lang=greeting.lang,
                                            user_name=event.user_name, text=text)
                return self._hit(turn, start, body, f"greeting:{greeting.kind}", 1.0, "greeting",
                                 {"lang": greeting.lang})
        matcher = await self.matcher()
        if matcher is None:
            turn.notes["faq"] = {"entry": None, "score": 0.0, "reason": "model_refitting"}
            match = None
        else:
            match = matcher.match(text)
            turn.notes["faq"] = {"entry": match.entry_id, "score": round(match.score, 4), "reason": match.reason}
        if match is not None and match.accepted and match.entry_id:
            entry = self.store.get(match.entry_id)
            if entry is not None:  # removed since the model was fitted: never serve it
                return self._hit(turn, start, entry.answer, entry.id, match.score, "faq", {"reason": match.reason})
        if self.learned is not None and turn.is_first_message:
            learned = self.learned.get(text)
            if learned is not None:
                return self._hit(turn, start, learned.answer, f"learned:{normalize(text)}", 1.0, "learned",
                                 {"age_s": round(time.time() - learned.stored_at, 1)})
        self.store.count("misses")
        return None

    def _picked(self, event: Event, turn: TurnContext, start: float) -> Reply | None:
        """The entry the customer picked from "Did you mean…?"; None if it was removed since
        (the question then goes through the tiers like any other)."""
        entry = self.store.get(event.pick or "")
        if entry is None:
            turn.notes["faq"] = {"entry": event.pick, "score": 0.0, "reason": "picked_entry_gone"}
            return None
        turn.notes["faq"] = {"entry": entry.id, "score": 1.0, "reason": "picked"}
        return self._hit(turn, start, entry.answer, entry.id, 1.0, "suggestion", {"question": event.text})

    def _hit(self, turn: TurnContext, start: float, text: str, entry: str, score: float, kind: str,
             extra: dict) -> Reply:
        latency_ms = (time.perf_counter() - start) * 1000
        self.store.count_hit(kind, entry)
        turn.record(Attempt(provider="cache", model=kind, outcome="ok", latency_ms=latency_ms, cost_usd=0.0))
        log.debug(kv(tier="cache", kind=kind, entry=entry, score=round(score, 3)))
        return Reply(text=text, tier="cache",
                     meta={"faq_entry": entry, "score": round(float(score), 4), "kind": kind, **extra})

    def explain(self, text: str) -> dict:
        """What would answer `text` and why (for `tierbot faq test`); never counts a hit."""
        greeting = detect_greeting(text) if self.greetings else None
        if greeting:
            return {"kind": "greeting", "entry": f"greeting:{greeting.kind}", "lang": greeting.lang, "score": 1.0,
                    "answered": True}
        matcher = self.store.matcher()
        match: Match = matcher.match(text)
        out = {"kind": "faq", "entry": match.entry_id, "score": round(match.score, 4), "runner_up": match.runner_up,
               "threshold": matcher.threshold, "reason": match.reason, "answered": match.accepted,
               "normalized": normalize(text)}
        if not match.accepted and self.learned is not None and self.learned.get(text):
            out.update(kind="learned", answered=True, reason="learned")
        return out
