"""How platform-neutral logic (handoff, reports, alerts) talks back to people
without knowing any platform: adapters implement these small interfaces and
register them in `SupportBot.services`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Button", "CustomerChannel", "Channels"]


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    data: str  # opaque callback data, e.g. "rate:conv-1:5"


class CustomerChannel(Protocol):
    """Sends a message to a customer's conversation on one platform (durably: an
    implementation keeps and retries what it cannot deliver yet)."""

    platform: str

    async def send(self, conversation_id: str, text: str, *,
                   buttons: list[list[Button]] | None = None) -> None: ...


@dataclass
class Channels:
    """Customer channels by platform name; kept in `services["channels"]`."""

    customers: dict[str, CustomerChannel] = field(default_factory=dict)

    def register(self, channel: CustomerChannel) -> None:
        self.customers[channel.platform] = channel

    async def send_to_customer(self, platform: str, conversation_id: str, text: str, *,
                               buttons: list[list[Button]] | None = None) -> None:
        channel = self.customers.get(platform)
        if channel is None:
            raise LookupError(f"no customer channel for platform {platform!r}")
        await channel.send(conversation_id, text, buttons=buttons)
