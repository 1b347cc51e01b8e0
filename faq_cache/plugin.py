"""Installs the FAQ/greeting cache: its tier, the learned-cache listener, the "Did you mean…?"
amender and services["faq"] / ["faq_suggestions"] / ["retriever"] (FAQ entries and knowledge
passages for the LLM prompt)."""
from __future__ import annotations

from bot.app import BotParts

from .learned import LearnedCache, LearnedCacheListener
from .retrieval import KnowledgeRetriever
from .settings import FaqSettings
from .store import FaqStore
from .suggestions import Suggestions
from .tier import FaqTier

__all__ = ["install", "open_store"]


def open_store(settings: FaqSettings) -> FaqStore:
    return FaqStore(settings.directory / "store", threshold=settings.threshold, semantic=settings.matcher != "lexical")


def install(parts: BotParts) -> None:
    settings = FaqSettings.from_config(parts.config)
    store = open_store(settings)
    learned = LearnedCache(settings.directory / "learned", store, ttl_s=settings.learned_ttl_s,
                           max_entries=settings.learned_max_entries, enabled=settings.learned)
    tier = FaqTier(store, parts.renderer, learned=learned if settings.learned else None,
                   greetings=settings.greetings)
    parts.cache.append(tier)
    if settings.learned:
        parts.listeners.append(LearnedCacheListener(learned))
    suggestions = Suggestions(store, parts.renderer, settings.suggestions)
    parts.amenders.append(suggestions)
    parts.resources.extend([store, learned])
    parts.services["faq"] = store
    parts.services["retriever"] = KnowledgeRetriever(store)  # the LLM's reference material
    store.knowledge.warm()
    parts.services["faq_tier"] = tier  # `await tier.ready()` for one-shot commands and tests
    parts.services["faq_learned"] = learned
    parts.services["faq_suggestions"] = suggestions
