"""The composition root: builds a `SupportBot` from a `Config`.

Each subsystem installs itself through one plugin function listed in `PLUGINS`,
adding the tiers, listeners and resources it owns to `BotParts`. The order of the
tiers is fixed here: gates (handoff, rate limit) → cache → LLM chain → templates.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Callable

from .config import Config
from .history import HistoryStore
from .pipeline import SupportBot
from .profile import SampleContactScrubber, announce_sample_profile, uses_sample_profile, without_sample_contacts
from .rendering import Renderer
from .storage.backend import Storage
from .tiers import ReplyAmender, ReplyListener, Tier
from .templates_tier import TemplateTier

__all__ = ["BotParts", "build_bot", "PLUGINS"]

log = logging.getLogger("tierbot")


@dataclass
class BotParts:
    config: Config
    renderer: Renderer
    storage: Storage
    gates: list[Tier] = field(default_factory=list)
    cache: list[Tier] = field(default_factory=list)
    llm: list[Tier] = field(default_factory=list)
    history: HistoryStore | None = None
    amenders: list[ReplyAmender] = field(default_factory=list)
    listeners: list[ReplyListener] = field(default_factory=list)
    resources: list[object] = field(default_factory=list)
    services: dict[str, object] = field(default_factory=dict)


# "module:function" — each takes BotParts and adds what its subsystem owns.
PLUGINS: tuple[str, ...] = (
    "bot.ledger.plugin:install",
    "faq_cache.plugin:install",
    "bot.llm.plugin:install",
    "bot.handoff.plugin:install",
    "bot.metrics:install",
    "bot.ratelimit:install",
)


def _load(spec: str) -> Callable[[BotParts], None]:
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


def build_bot(config: Config, plugins: tuple[str, ...] | None = None, *, serving: bool = False) -> SupportBot:
    """`serving`: the bot answers real customers (`tierbot serve`/`poll`), not a console demo.
    Then the shipped sample business profile is announced loudly and its placeholder
    contacts never reach a customer (bot/profile.py)."""
    renderer = Renderer.from_config(config)
    sample = uses_sample_profile(config)
    if serving and sample:
        announce_sample_profile("serve")
        renderer.profile = without_sample_contacts(renderer.profile)
    storage = Storage(config)
    parts = BotParts(config=config, renderer=renderer, storage=storage)
    parts.services.update(config=config, renderer=renderer, storage=storage, sample_profile=sample)
    for spec in PLUGINS if plugins is None else plugins:
        _load(spec)(parts)
    parts.resources.append(storage)  # last: its connections close after every store has flushed
    if serving and sample:
        parts.amenders.append(SampleContactScrubber())  # last: sees the text as it will be sent
    tiers: list[Tier] = [*parts.gates, *parts.cache, *parts.llm, TemplateTier(renderer)]
    return SupportBot(
        tiers,
        history=parts.history,
        amenders=parts.amenders,
        listeners=parts.listeners,
        deadline_s=config.deadline_s,
        resources=parts.resources,
        services=parts.services,
    )
