"""Opens a handoff when the customer asks for a person, or when the bot could only
answer from the last-resort templates twice in a row.

A reply amender: it runs before the reply is final, so the customer, the history and
the ledger all get the text with the handoff notice. It sees what every tier did: the
templates tier flags requests (`meta["handoff_requested"]`), and the customer's own
words are checked too, because an earlier tier (cache, LLM) may have answered a
"can I talk to a human?".
"""
from __future__ import annotations

from ..models import Event, Reply
from ..turn import Turn, TurnContext
from .service import HandoffService

__all__ = ["HandoffTrigger", "TEMPLATE_STREAK_LIMIT"]

TEMPLATE_STREAK_LIMIT = 2


class HandoffTrigger:
    def __init__(self, service: HandoffService) -> None:
        self.service = service

    async def amend(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        if turn.route == "staff" or reply.tier == "staff" or not self.service.staffed:
            return
        if reply.meta.get("rate_limited"):
            return  # a rate-limit notice (or silence) is not the bot failing to answer
        asked = bool(reply.meta.get("handoff_requested")) or self.service.wants_person(event.text)
        streak = await self.service.store.template_streak(
            event.platform, event.conversation_id, reply.tier == "template")
        if asked:
            reason = "customer_request"
        elif streak >= TEMPLATE_STREAK_LIMIT:
            reason = "templates_twice"
        else:
            return
        history = [*turn.history, Turn("user", event.text, event.timestamp)]
        if reply.text:
            history.append(Turn("assistant", reply.text))
        handoff, created = await self.service.open(event, reason, history)
        if not created:
            return
        # The customer hears it in the same message: said by the human-request
        # template already, added here when another tier (or a streak) triggered it.
        extra = [] if reply.meta.get("handoff_requested") else [self.service.messages.auto_handoff]
        notice = await self.service.hours_notice(event.platform, event.conversation_id)
        if notice:
            extra.append(notice)
            reply.meta["hours_notice"] = True
        if extra:
            reply.text = "\n\n".join([reply.text, *extra]) if reply.text else "\n\n".join(extra)
        reply.meta["handoff"] = "opened"
        reply.meta["handoff_id"] = handoff.id
        reply.meta["handoff_reason"] = reason
