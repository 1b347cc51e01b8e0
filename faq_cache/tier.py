"""The cache tier: greeting → FAQ entry → learned answer, or None to pass the event on."""
from __future__ import annotations

import asyncio
import logging
import threading
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


class FaqTier:
    """Answers only when sure; every decision is left in `turn.notes["faq"]`.

    No reply ever waits for the matcher: it is loaded (or fitted) in a background thread,
    started when the tier is built and again whenever the FAQ changes, while the previous
    model keeps serving (an entry removed since is never served, see `answer`). Until the
    first model of a process is in memory the FAQ part of the cache passes messages on.
    """

    name = "cache"

    def __init__(self, store: FaqStore, renderer: Renderer, *, learned: LearnedCache | None = None,
                 greetings: bool = True, warm: bool = True) -> None:
        """`warm`: start loading the model now (off the caller's thread), so the first
        message after a start finds it ready."""
        self.store, self.renderer, self.learned, self.greetings = store, renderer, learned, greetings
        self._refit_lock = threading.Lock()
        self._refit_thread: threading.Thread | None = None
        if warm:
            self.refresh()

    def refresh(self) -> threading.Thread:
        """Load or fit the model for the current FAQ in a background thread (one at a time)."""
        with self._refit_lock:
            thread = self._refit_thread
            if thread is None or not thread.is_alive():
                # daemon: a one-shot command may exit while a large FAQ is still being fitted;
                # the store's writes are transactions, so nothing is left half-written.
                thread = threading.Thread(target=self._refit, name="faq-refit", daemon=True)
                self._refit_thread = thread
                thread.start()
            return thread

    def _refit(self) -> None:
        try:
            if not self.store.is_empty():
                self.store.matcher()
        except Exception:  # a failed fit must not kill the bot; the next change tries again
            log.exception("loading the FAQ model failed; the cache passes FAQ questions on")

    def matcher(self) -> Matcher | None:
        """The model to answer with now, never waiting: the current one, else the previous one
        while the current one is fitted in the background, else None (nothing loaded yet)."""
        if self.store.matcher_is_current():
            return self.store.current_matcher()
        self.refresh()
        return self.store.current_matcher()

    async def ready(self, timeout: float | None = None) -> bool:
        """Wait (in a thread, not blocking the loop) until the model for the current FAQ is in
        memory. For one-shot commands and tests; replies never call it."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not (self.store.is_empty() or self.store.matcher_is_current()):
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await asyncio.to_thread(self.refresh().join, remaining)
        return True

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
        empty = self.store.is_empty()  # an empty FAQ costs nothing: no model to load or ask
        matcher = None if empty else self.matcher()
        if matcher is None:
            reason = "empty" if empty else "model_loading"
            turn.notes["faq"] = {"entry": None, "score": 0.0, "reason": reason}
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
