"""The contracts the pipeline is built from.

A *tier* tries to answer an event and returns a `Reply`, or None to pass it on.
Tiers that can stream also offer `stream()`, yielding text chunks and then at most
one `Reply` (none means "pass it on"). Chunks are previews, appended in order; a
`StreamReset` withdraws the text so far (the chunks after it start over); the final
`Reply.text` is what the customer must be sent. The pipeline drives `answer()` and
`stream()` in one loop, with the same per-tier timeout. A tier whose `reads_history`
is False (a gate) may run before `turn.history` is filled: the pipeline reads the
history meanwhile, sparing the message one round trip to the store.

An *amender* may still change a reply before it is final (the handoff trigger adds
"a person will take over" to it); amenders run before the reply is saved to the
history and before any listener hears of it, so the ledger records what was sent.
A *listener* hears about every final reply (the ledger, metrics, the learned cache);
an amender's or a listener's failure is logged and never reaches the customer.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from .models import Event, Reply, StreamReset
from .turn import TurnContext

__all__ = ["Tier", "StreamingTier", "ReplyAmender", "ReplyListener"]


@runtime_checkable
class Tier(Protocol):
    name: str

    async def answer(self, event: Event, turn: TurnContext) -> Reply | None: ...


@runtime_checkable
class StreamingTier(Tier, Protocol):
    def stream(self, event: Event, turn: TurnContext) -> AsyncIterator[str | StreamReset | Reply]: ...


class ReplyAmender(Protocol):
    async def amend(self, event: Event, reply: Reply, turn: TurnContext) -> None: ...


class ReplyListener(Protocol):
    async def on_reply(self, event: Event, reply: Reply, turn: TurnContext) -> None: ...
