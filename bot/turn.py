"""What one reply in progress carries between tiers: its deadline, the conversation
so far, and every attempt made (with the tokens and cost each consumed)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .deadline import Deadline
from .models import Attempt, Event

__all__ = ["Turn", "TurnContext"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of the conversation; role is "user", "assistant" or "staff"."""

    role: str
    text: str
    timestamp: float = 0.0


@dataclass(slots=True)
class TurnContext:
    event: Event
    deadline: Deadline
    history: list[Turn] = field(default_factory=list)
    route: str = "customer"
    attempts: list[Attempt] = field(default_factory=list)
    # Free-form notes tiers leave for later tiers and listeners (e.g. cache lookup scores).
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def is_first_message(self) -> bool:
        return not any(t.role == "user" for t in self.history)

    def record(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
