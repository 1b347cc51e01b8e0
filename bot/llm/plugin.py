"""Wires the LLM chain into the bot: `install(parts)` is listed in `bot.app.PLUGINS`.

Adds `services["prices"]` (PriceBook), `services["breakers"]` (BreakerBoard) and an
empty `services["provider_gates"]` list for later plugins (e.g. the budget cap), then
the chain tier itself when at least one provider has a key. The prompt builder gets
`services["retriever"]` (installed by the FAQ cache, listed before this plugin) when
retrieval is on (`TIERBOT_RAG_PASSAGES` > 0).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..config import Config, ConfigError
from ..logs import kv
from ..pricing import PriceBook
from ..templates_tier import TemplateTier
from .breaker import BreakerBoard
from .chain import ChainTier
from .prompt import REFERENCE_NOTE, PromptBuilder
from .reference import RagSettings, SourcesAmender
from .providers.base import Provider
from .routes import BASE_URL_VARS, LLMSettings

if TYPE_CHECKING:
    from ..app import BotParts

__all__ = ["install", "build_providers"]

log = logging.getLogger("tierbot.llm")


def build_providers(config: Config, settings: LLMSettings, *, announce: bool = True) -> dict[str, Provider]:
    """One client per provider a route uses (the chain's and any a named route adds) that has
    a key; one clear line for each that has none."""
    providers: dict[str, Provider] = {}
    for name in settings.in_use:
        key_var = settings.key_var(name)
        key = config.get(key_var) if key_var else None
        if key_var and not key:
            if announce:
                log.warning(kv(provider=name, status="skipped", reason=f"{key_var} is not set"))
            continue
        providers[name] = _provider(name, key, config, settings)
    return providers


def _provider(name: str, key: str | None, config: Config, settings: LLMSettings) -> Provider:
    base_url = config.get(BASE_URL_VARS[name]) if name in BASE_URL_VARS else None
    if name in settings.endpoints:
        from .providers.openai_compat import OpenAICompatProvider

        e = settings.endpoints[name]
        return OpenAICompatProvider(name, key, e.base_url, pool=settings.pool, transport=settings.groq_transport,
                                    headers=e.headers)
    if name == "groq":
        from .providers.groq import REASONING_EFFORTS, GroqProvider

        effort = (config.get("TIERBOT_GROQ_REASONING_EFFORT") or "low").strip().lower()
        if effort not in REASONING_EFFORTS:
            raise ConfigError(f"TIERBOT_GROQ_REASONING_EFFORT must be one of {', '.join(REASONING_EFFORTS)}, "
                              f"got {effort!r}")
        return GroqProvider(key, base_url, pool=settings.pool, transport=settings.groq_transport,
                            reasoning_effort=effort)
    if name == "openrouter":
        from .providers.openai_compat import OpenRouterProvider

        return OpenRouterProvider(key, base_url, pool=settings.pool, transport=settings.groq_transport,
                                  referer=settings.openrouter_referer, title=settings.openrouter_title)
    if name == "claude":
        from .providers.anthropic import AnthropicProvider

        return AnthropicProvider(key, base_url, pool=settings.pool)
    from .providers.gemini import GeminiProvider

    return GeminiProvider(key, base_url, pool=settings.pool)


def install(parts: "BotParts") -> None:
    config = parts.config
    settings = LLMSettings.from_config(config)
    prices = PriceBook.load(config)
    breakers = BreakerBoard(threshold=settings.breaker_threshold, cooldown=settings.breaker_cooldown_s,
                            max_cooldown=settings.breaker_max_cooldown_s)
    parts.services["prices"] = prices
    parts.services["breakers"] = breakers
    parts.services.setdefault("provider_gates", [])
    parts.services["llm_settings"] = settings
    providers = build_providers(config, settings)
    if not providers:
        log.warning(kv(tier="llm", status="off", reason="no provider has an API key; cache and templates answer"))
        return
    log.info(kv(tier="llm", chain=",".join(p for p in settings.chain if p in providers)))
    rag = RagSettings.from_config(config)
    retriever = parts.services.get("retriever") if rag.enabled else None
    prompt = PromptBuilder(parts.renderer, max_tokens=settings.max_tokens, retriever=retriever, rag=rag)  # type: ignore[arg-type]
    if retriever is not None:
        parts.amenders.append(SourcesAmender(REFERENCE_NOTE))
    chain = ChainTier(providers, settings, prompt,
                      prices, breakers, parts.services, fallback=TemplateTier(parts.renderer))
    parts.services["llm"] = chain
    parts.llm.append(chain)
