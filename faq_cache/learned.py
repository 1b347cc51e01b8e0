"""The learned cache: LLM answers to context-free first messages, replayed for a TTL.

Only an answer from the LLM tier to the first message of a conversation is kept,
and only when neither the question nor the answer carries personal data, so one
customer's details can never reach another. Lookups are exact after
normalisation (precision first). Entries expire after the TTL; the store is
bounded, evicting the oldest entries first.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import diskcache

from bot.logs import kv
from bot.models import Event, Reply
from bot.turn import TurnContext

from .greetings import detect_greeting
from .normalize import normalize
from .personal_data import personal_data_reasons
from .store import FaqStore

__all__ = ["LearnedCache", "LearnedAnswer", "LearnedCacheListener", "MAX_QUESTION_CHARS"]

log = logging.getLogger("tierbot.faq.learned")

# Long messages tend to carry a story (and personal details); they are not cached.
MAX_QUESTION_CHARS = 300


@dataclass(frozen=True, slots=True)
class LearnedAnswer:
    question: str
    answer: str
    stored_at: float
    provider: str | None = None
    model: str | None = None


class LearnedCache:
    """Size-bounded TTL cache of answers, in diskcache beside the FAQ store."""

    def __init__(self, directory: str | Path, stats: FaqStore, *, ttl_s: float = 3600.0,
                 max_entries: int = 1000, enabled: bool = True, clock=time.time) -> None:
        self.cache = diskcache.Cache(str(directory), timeout=5)
        self.clock = clock  # injectable so TTL tests need not sleep
        self.stats = stats
        self.ttl_s, self.max_entries, self.enabled = ttl_s, max_entries, enabled

    def close(self) -> None:
        self.cache.close()

    aclose = close

    def refusal(self, question: str, answer: str, user_name: str | None = None) -> str | None:
        """Why this question/answer pair must not be cached, or None if it may be."""
        if not self.enabled:
            return "disabled"
        if not normalize(question) or not answer.strip():
            return "empty"
        if len(question) > MAX_QUESTION_CHARS:
            return "too_long"
        if detect_greeting(question):
            return "greeting"
        for side, text in (("question", question), ("answer", answer)):
            reasons = personal_data_reasons(text, user_name)
            if reasons:
                return f"personal_data:{side}:{reasons[0]}"
        return None

    def put(self, question: str, answer: str, *, user_name: str | None = None,
            provider: str | None = None, model: str | None = None) -> bool:
        """Store the answer unless the rule forbids it; returns whether it was stored."""
        reason = self.refusal(question, answer, user_name)
        if reason:
            if reason != "disabled":
                self.stats.count("learned_refused")
                log.debug(kv(event="learned_refused", reason=reason))
            return False
        key = normalize(question)
        value = LearnedAnswer(question, answer, self.clock(), provider, model)
        with self.cache.transact(retry=True):
            self.cache.delete(key, retry=True)  # re-insert so the order stays "oldest first"
            self.cache.set(key, value, expire=self.ttl_s, retry=True)
            evicted = self._evict()
        self.stats.count("learned_stored")
        if evicted:
            self.stats.count("evictions", evicted)
        return True

    def _evict(self) -> int:
        evicted = 0
        if len(self.cache) > self.max_entries:
            self.cache.expire(retry=True)
        while len(self.cache) > self.max_entries:
            try:
                key, _ = self.cache.peekitem(last=False, retry=True)
            except KeyError:
                break
            self.cache.delete(key, retry=True)
            evicted += 1
        return evicted

    def get(self, question: str) -> LearnedAnswer | None:
        if not self.enabled:
            return None
        value = self.cache.get(normalize(question), retry=True)
        # diskcache drops expired keys lazily; check the age too so the TTL is exact.
        if value is None or self.clock() - value.stored_at > self.ttl_s:
            return None
        return value

    def __len__(self) -> int:
        return len(self.cache)

    def clear(self) -> None:
        self.cache.clear(retry=True)


class LearnedCacheListener:
    """Hears every reply; keeps LLM answers to personal-data-free first messages."""

    def __init__(self, learned: LearnedCache) -> None:
        self.learned = learned

    async def on_reply(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        if reply.tier != "llm" or not turn.is_first_message or not reply.text:
            return
        if reply.meta.get("handoff_requested") or event.attachments:
            return
        self.learned.put(event.text or "", reply.text, user_name=event.user_name,
                         provider=reply.provider, model=reply.model)
