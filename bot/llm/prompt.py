"""What the model is asked: the system prompt (rendered from `system_prompt.j2` with the
operator's business profile) and the last turns of the conversation.

The system prompt is rendered once and reused — the profile is read at start-up, and a
per-message render would be pure overhead on the hot path.
"""
from __future__ import annotations

from ..config import ConfigError
from ..models import Event
from ..rendering import Renderer
from ..turn import Turn
from .providers.base import Message, Request

__all__ = ["PromptBuilder", "SYSTEM_TEMPLATE"]

SYSTEM_TEMPLATE = "system_prompt.j2"
_ROLES = {"user": "user", "assistant": "assistant", "staff": "assistant"}


class PromptBuilder:
    def __init__(self, renderer: Renderer, *, max_tokens: int = 512, history_turns: int = 10) -> None:
        try:
            self.system = renderer.render(SYSTEM_TEMPLATE)
        except Exception as e:  # an operator's template or profile with a hole: say which
            raise ConfigError(f"{SYSTEM_TEMPLATE} cannot be rendered with the business profile: {e}") from None
        self.max_tokens = max_tokens
        self.history_turns = history_turns

    def build(self, event: Event, history: list[Turn]) -> Request:
        messages = [Message(_ROLES.get(t.role, "user"), t.text)
                    for t in history[-self.history_turns:] if t.text]
        messages.append(Message("user", event.text or "(no text)", event.images))
        return Request(self.system, tuple(messages), self.max_tokens)
