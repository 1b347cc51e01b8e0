"""Installs the handoff: the gate tier, the trigger (a reply amender), the store, the
`rate` callback handler and `services["handoffs"]`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..history import MemoryHistory
from ..templates_tier import load_rules
from .gate import HandoffGate
from .hours import StaffHours
from .messages import HandoffMessages
from .service import RATING_PREFIX, HandoffService
from .trigger import HandoffTrigger

if TYPE_CHECKING:
    from ..app import BotParts

__all__ = ["install"]


def install(parts: "BotParts") -> None:
    config = parts.config
    hours = StaffHours.from_config(config)
    messages = HandoffMessages.from_section(config.section("handoff"))
    # The same person-request patterns the templates tier uses (operator-editable rules.yaml).
    patterns = [p for rule in load_rules(parts.renderer) if rule.handoff for p in rule.patterns]
    if parts.history is None:  # share one history with the pipeline, so staff replies are in it
        parts.history = MemoryHistory()
    store = parts.storage.handoffs()
    service = HandoffService(store, parts.services, hours=hours, messages=messages,
                             history=parts.history, person_patterns=patterns)
    parts.gates.append(HandoffGate(service))
    parts.amenders.append(HandoffTrigger(service))
    parts.resources.append(store)
    parts.services["handoffs"] = service
    handlers = parts.services.setdefault("callback_handlers", {})
    handlers[RATING_PREFIX] = service.rate  # type: ignore[index]
