"""The handoff's rules, knowing no platform.

Opening, taking, staff replies, resolving and rating all go through here, so the
gate (customer side), the trigger (reply listener) and the Slack adapter (staff
side) agree on one state machine: bot → handed_off → taken → resolved → bot.
Staff are reached through `services["staff_desk"]`, customers through
`services["channels"]`, the ledger (if any) through `services["ledger"]`; all are
looked up when needed, because adapters register themselves after the bot is built.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from ..channels import Button
from ..history import HistoryStore
from ..logs import kv
from ..models import Event
from ..turn import Turn
from .hours import StaffHours
from .messages import HandoffMessages
from ..storage.sqlite.handoffs import Handoff, HandoffStore

__all__ = ["HandoffService", "RATING_PREFIX"]

log = logging.getLogger("tierbot.handoff")

RATING_PREFIX = "rate"


class HandoffService:
    def __init__(self, store: HandoffStore, services: MutableMapping[str, Any], *,
                 hours: StaffHours, messages: HandoffMessages | None = None,
                 history: HistoryStore | None = None,
                 person_patterns: Sequence[re.Pattern[str]] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.services = services
        self.hours = hours
        self.messages = messages or HandoffMessages()
        self.history = history
        self.person_patterns = list(person_patterns)
        self.clock = clock

    # -- questions ----------------------------------------------------------------------
    def wants_person(self, text: str | None) -> bool:
        """Whether a customer's own words ask for a person (whichever tier answered)."""
        return bool(text) and any(p.search(text) for p in self.person_patterns)  # type: ignore[arg-type]

    @property
    def staffed(self) -> bool:
        """Whether anyone can take a handoff (a staff desk such as Slack is connected).
        Without one, `tierbot chat` and other desk-less setups never go quiet."""
        return self.services.get("staff_desk") is not None

    async def active(self, platform: str, conversation_id: str) -> Handoff | None:
        return await self.store.active(platform, conversation_id)

    async def state(self, platform: str, conversation_id: str) -> str:
        handoff = await self.store.active(platform, conversation_id)
        return handoff.state if handoff else "bot"

    async def open_handoffs(self) -> list[Handoff]:
        return await self.store.open_handoffs()

    async def hours_notice(self, platform: str, conversation_id: str) -> str | None:
        """Outside staff hours: the notice to send, at most once a (staff-local) day."""
        now = self.clock()
        if self.hours.is_open(now):
            return None
        day = self.hours.local(now).date().isoformat()
        if not await self.store.claim_hours_notice(platform, conversation_id, day):
            return None
        return self.messages.fill(self.messages.hours_notice, when=self.hours.describe_next(now))

    # -- customer side --------------------------------------------------------------------
    async def open(self, event: Event, reason: str, history: Sequence[Turn] = ()) -> tuple[Handoff, bool]:
        handoff, created = await self.store.open(
            event.platform, event.conversation_id, user_id=event.user_id,
            user_name=event.user_name, reason=reason, now=self.clock())
        await self.store.reset_streak(event.platform, event.conversation_id)
        if created:
            log.info(kv(event="handoff_opened", handoff=handoff.id, platform=handoff.platform,
                        conversation=handoff.conversation_id, reason=reason))
            await self._record("handoff_opened", handoff, {"reason": reason, "platform": handoff.platform})
            await self._tell_desk("handoff_opened", handoff, list(history))
        return handoff, created

    async def customer_wrote(self, handoff: Handoff, event: Event) -> None:
        await self._tell_desk("customer_wrote", handoff, event)

    async def customer_picked(self, handoff: Handoff, event: Event) -> None:
        """The customer picked a "Did you mean…?" suggestion (`event.pick`, its question in
        `event.text`); the bot answers it with that FAQ entry."""
        await self._record("suggestion_picked", handoff, {"entry": event.pick})
        await self._tell_desk("customer_picked", handoff, event)

    # -- staff side -------------------------------------------------------------------------
    async def take(self, handoff_id: int, staff: str) -> tuple[Handoff | None, bool]:
        handoff, changed = await self.store.take(handoff_id, staff, now=self.clock())
        if changed and handoff:
            await self._record("handoff_taken", handoff, {"staff": staff})
            await self._tell_desk("handoff_changed", handoff)
        return handoff, changed

    async def staff_reply(self, handoff: Handoff, text: str, staff: str) -> Handoff:
        """Send a staff member's words to the customer. Raises LookupError when the
        customer's platform has no channel (the caller tells the staff member)."""
        channels = self.services.get("channels")
        if channels is None:
            raise LookupError("no customer channels are configured")
        await channels.send_to_customer(handoff.platform, handoff.conversation_id, text)
        if self.history is not None:
            try:
                await self.history.append(handoff.conversation_id, Turn("staff", text, self.clock()))
            except Exception:
                log.exception("saving a staff reply to history failed")
        await self._record("staff_reply", handoff, {"staff": staff})
        if handoff.state == "handed_off":  # answering a handoff is taking it
            taken, _ = await self.take(handoff.id, staff)
            handoff = taken or handoff
        return handoff

    async def resolve(self, handoff_id: int, staff: str) -> tuple[Handoff | None, bool]:
        """Give the conversation back to the bot, tell the customer and ask for a rating."""
        handoff, changed = await self.store.resolve(handoff_id, staff, now=self.clock())
        if not (changed and handoff):
            return handoff, False
        log.info(kv(event="handoff_resolved", handoff=handoff.id, conversation=handoff.conversation_id))
        await self._record("handoff_resolved", handoff, {"staff": staff})
        await self._tell_desk("handoff_changed", handoff)
        buttons = [[Button(str(n), f"{RATING_PREFIX}:{handoff.conversation_id}:{n}") for n in range(1, 6)]]
        channels = self.services.get("channels")
        try:
            if channels is None:
                raise LookupError("no customer channels are configured")
            await channels.send_to_customer(handoff.platform, handoff.conversation_id,
                                            self.messages.resolved, buttons=buttons)
        except Exception as e:
            log.warning(kv(event="resolve_notice_failed", handoff=handoff.id, error=type(e).__name__))
        return handoff, True

    async def rate(self, platform: str, conversation_id: str, user_id: str, rest: str) -> str:
        """Callback handler for `rate:<conversation>:<1-5>` buttons. Returns the text
        to show the customer. A forged, repeated or out-of-range rating changes nothing."""
        conv, _, value = rest.rpartition(":")
        try:
            rating = int(value)
        except ValueError:
            rating = 0
        if conv != conversation_id or not 1 <= rating <= 5:
            log.warning(kv(event="rating_rejected", platform=platform, conversation=conversation_id))
            return self.messages.rating_ignored
        handoff = await self.store.rate(platform, conversation_id, rating, now=self.clock())
        if handoff is None:
            return self.messages.rating_ignored
        await self._record("rating", handoff, {"rating": rating})
        return self.messages.fill(self.messages.rating_thanks, rating=rating)

    # -- plumbing -------------------------------------------------------------------------
    async def _record(self, kind: str, handoff: Handoff, data: dict[str, Any]) -> None:
        ledger = self.services.get("ledger")
        if ledger is None:
            return
        try:
            await ledger.record_event(kind, handoff.conversation_id, {"handoff": handoff.id, **data})
        except Exception:
            log.exception("recording %s in the ledger failed", kind)

    async def _tell_desk(self, method: str, *args: Any) -> None:
        desk = self.services.get("staff_desk")
        if desk is None:
            return
        try:
            await getattr(desk, method)(*args)
        except Exception:
            log.exception("staff desk %s failed", method)

    def today_start(self) -> float:
        """Start of today in the staff time zone (for 'today so far' counts)."""
        local = self.hours.local(self.clock())
        return dt.datetime.combine(local.date(), dt.time(), local.tzinfo).timestamp()
