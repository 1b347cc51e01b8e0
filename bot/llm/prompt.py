"""What the model is asked: the system prompt (rendered from `system_prompt.j2` with the
operator's business profile), the last turns of the conversation, and — when a retriever
is configured — the operator's knowledge that best matches the message (`reference.py`).

The system prompt is rendered once and reused — the profile is read at start-up, and a
per-message render would be pure overhead on the hot path. Knowledge is never rendered:
it is data, pasted into the customer's turn between delimiters.
"""
from __future__ import annotations

import logging

from ..config import ConfigError
from ..logs import kv
from ..models import Event
from ..rendering import Renderer
from ..turn import Turn, TurnContext
from .providers.base import Message, Request
from .reference import REFERENCE_INSTRUCTION, RagSettings, Reference, Retriever, build_reference

__all__ = ["PromptBuilder", "SYSTEM_TEMPLATE", "REFERENCE_NOTE"]

log = logging.getLogger("tierbot.llm")

SYSTEM_TEMPLATE = "system_prompt.j2"
REFERENCE_NOTE = "reference"  # turn.notes key: the Reference given to the model for this turn
_ROLES = {"user": "user", "assistant": "assistant", "staff": "assistant"}


class PromptBuilder:
    def __init__(self, renderer: Renderer, *, max_tokens: int = 512, history_turns: int = 10,
                 retriever: Retriever | None = None, rag: RagSettings | None = None) -> None:
        try:
            self.system = renderer.render(SYSTEM_TEMPLATE)
        except Exception as e:  # an operator's template or profile with a hole: say which
            raise ConfigError(f"{SYSTEM_TEMPLATE} cannot be rendered with the business profile: {e}") from None
        self.system_with_reference = f"{self.system}\n\n{REFERENCE_INSTRUCTION}"
        self.max_tokens = max_tokens
        self.history_turns = history_turns
        self.retriever = retriever
        self.rag = rag or RagSettings()

    def reference(self, event: Event) -> Reference | None:
        """The knowledge for this message within the budget, or None (none found, or off)."""
        if self.retriever is None or not self.rag.enabled or not (event.text or "").strip():
            return None
        try:
            passages = self.retriever.retrieve(event.text, self.rag.passages)
        except Exception:  # knowledge is a help, never a reason not to answer
            log.exception(kv(event="retrieval_failed"))
            return None
        return build_reference(passages, self.rag)

    def build(self, event: Event, turn: TurnContext | list[Turn]) -> Request:
        """The request for this turn. Given the TurnContext, the reference material used is
        left in `turn.notes[REFERENCE_NOTE]` (the reply's `sources` come from it)."""
        history = turn.history if isinstance(turn, TurnContext) else turn
        messages = [Message(_ROLES.get(t.role, "user"), t.text)
                    for t in history[-self.history_turns:] if t.text]
        text = event.text or "(no text)"
        reference = self.reference(event)
        system = self.system
        if reference is not None:
            text = f"{reference.text}Customer's message:\n{text}"
            system = self.system_with_reference
            if isinstance(turn, TurnContext):
                turn.notes[REFERENCE_NOTE] = reference
        messages.append(Message("user", text, event.images))
        return Request(system, tuple(messages), self.max_tokens)
