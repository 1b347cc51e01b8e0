"""Writes the route a message took (e.g. "staff" for a staff member asking the bot from
Slack) into the reply's meta, whichever tier answered, so the ledger records it and the
report can keep staff questions out of the customer figures. The LLM chain names the
route in its own replies; the cache and the templates do not."""
from __future__ import annotations

from ..models import Event, Reply
from ..turn import TurnContext

__all__ = ["RouteMark"]


class RouteMark:
    """A reply amender: meta["route"] = the turn's route, unless a tier set it already."""

    async def amend(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        if turn.route and turn.route != "customer":
            if reply.meta is None:
                reply.meta = {}
            reply.meta.setdefault("route", turn.route)
