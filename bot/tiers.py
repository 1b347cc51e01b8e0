"""The contracts the pipeline is built from.

A *tier* tries to answer an event and returns a `Reply`, or None to pass it on.
Tiers that can stream also offer `stream()`, yielding text chunks and then at most
one `Reply` (none means "pass it on"). Chunks are previews, appended in order;
the final `Reply.text` is what the customer must be sent.

A *listener* hears about every reply once it is made (the ledger, metrics, handoff
triggers); a listener's failure is logged and never reaches the customer.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from .models import Event, Reply
from .turn import TurnContext

__all__ = ["Tier", "StreamingTier", "ReplyListener"]


@runtime_checkable
class Tier(Protocol):
    name: str

    async def answer(self, event: Event, turn: TurnContext) -> Reply | None: ...


@runtime_checkable
class StreamingTier(Tier, Protocol):
    def stream(self, event: Event, turn: TurnContext) -> AsyncIterator[str | Reply]: ...


class ReplyListener(Protocol):
    async def on_reply(self, event: Event, reply: Reply, turn: TurnContext) -> None: ...
