"""The first tier: while a person has the conversation, the bot stays quiet.

A handed-off conversation's new messages go to staff (through the desk) and the
customer gets no bot answer — except, outside staff hours, once a day, a note
saying when a person will answer. A "Did you mean…?" pick is the exception: the
customer chose one of the operator's own FAQ answers (offered, e.g., with the reply that
opened the handoff), so the cache answers it and staff are told which one was picked.
"""
from __future__ import annotations

from ..models import Event, Reply
from ..turn import TurnContext
from .service import HandoffService

__all__ = ["HandoffGate"]


class HandoffGate:
    name = "handoff"
    reads_history = False  # the pipeline reads the history meanwhile

    def __init__(self, service: HandoffService) -> None:
        self.service = service

    async def answer(self, event: Event, turn: TurnContext) -> Reply | None:
        if turn.route == "staff":
            return None
        handoff = await self.service.active(event.platform, event.conversation_id)
        if handoff is None:
            return None
        if event.pick:
            await self.service.customer_picked(handoff, event)
            return None
        await self.service.customer_wrote(handoff, event)
        notice = await self.service.hours_notice(event.platform, event.conversation_id)
        meta = {"handoff": "forwarded", "handoff_id": handoff.id}
        if notice:
            meta["hours_notice"] = True
        return Reply(text=notice or "", tier="staff", meta=meta)
