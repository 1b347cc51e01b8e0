"""The staff side of a handoff, as the platform-neutral logic sees it.

The Slack adapter implements this and registers itself as `services["staff_desk"]`.
Implementations must not make the customer wait: they queue slow work (Web API
calls, rate-limit retries) and keep it until it is done.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..models import Event
    from ..turn import Turn
    from ..storage.sqlite.handoffs import Handoff

__all__ = ["StaffDesk"]


class StaffDesk(Protocol):
    async def handoff_opened(self, handoff: "Handoff", history: "list[Turn]") -> None:
        """Show staff a new handoff (customer, platform, recent history, Take/Resolve)."""

    async def customer_wrote(self, handoff: "Handoff", event: "Event") -> None:
        """Show staff a message the customer sent while the conversation is handed off."""

    async def customer_picked(self, handoff: "Handoff", event: "Event") -> None:
        """Show staff which "Did you mean…?" suggestion the customer picked (the FAQ entry
        `event.pick`, its question in `event.text`); the bot answered it from the FAQ."""

    async def handoff_changed(self, handoff: "Handoff") -> None:
        """The handoff was taken or resolved: refresh what staff see."""
