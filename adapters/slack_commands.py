"""`/tierbot` for staff: stats, handoffs, faq add|list|remove, report [date].

Each subcommand is one small coroutine in a dispatch table. Quick answers go back in
the ack (ephemeral, within Slack's 3 seconds); the report, which may take longer, is
acked at once and posted to the channel when ready.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shlex
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from bot.logs import kv
from bot.models import Event, Reply
from bot.turn import TurnContext

from .slack_blocks import escape

if TYPE_CHECKING:
    from bot.pipeline import SupportBot

    from .slack import SlackAdapter

__all__ = ["StaffCommands", "TodayCounter", "USAGE"]

log = logging.getLogger("tierbot.slack")

USAGE = ("Usage: `/tierbot stats` · `/tierbot handoffs` · `/tierbot faq list` · "
         "`/tierbot faq add \"question\" \"answer\"` · `/tierbot faq remove <id>` · `/tierbot report [YYYY-MM-DD]`")


# How long `/tierbot faq add` waits for the refitted FAQ model before confirming (Slack
# wants an answer to a slash command within 3 s).
FAQ_REFIT_WAIT_S = 2.0

class TodayCounter:
    """Replies by tier and their cost since local midnight, for `stats` when no ledger
    is installed (the ledger, when present, is the source of truth)."""

    def __init__(self, tz: Any = None) -> None:
        self.tz = tz
        self.day: dt.date | None = None
        self.tiers: Counter[str] = Counter()
        self.cost = 0.0

    def _today(self) -> dt.date:
        return dt.datetime.now(self.tz).date()

    async def on_reply(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        if self.day != self._today():
            self.day, self.tiers, self.cost = self._today(), Counter(), 0.0
        self.tiers[reply.tier] += 1
        self.cost += reply.cost_usd or 0.0


class StaffCommands:
    def __init__(self, bot: "SupportBot", adapter: "SlackAdapter") -> None:
        self.bot = bot
        self.adapter = adapter
        self.table: dict[str, Callable[[list[str], dict[str, Any]], Awaitable[str | None]]] = {
            "stats": self.stats, "handoffs": self.handoffs, "faq": self.faq, "report": self.report,
            "help": self.help,
        }

    async def handle(self, ack: Any, command: dict[str, Any]) -> None:
        text = (command.get("text") or "").strip()
        try:
            args = shlex.split(text)
        except ValueError:
            args = text.split()
        name = args[0].lower() if args else "help"
        fn = self.table.get(name)
        if fn is None:
            await ack(f"Unknown subcommand `{escape(name)}`. {USAGE}")
            return
        try:
            answer = await fn(args[1:], command)
        except Exception as e:
            log.exception(kv(event="slack_command_failed", command=name))
            answer = f"`/tierbot {escape(name)}` failed: {type(e).__name__}"
        await ack(answer) if answer is not None else await ack()

    async def help(self, args: list[str], command: dict[str, Any]) -> str:
        return USAGE

    # -- stats ------------------------------------------------------------------------------
    async def stats(self, args: list[str], command: dict[str, Any]) -> str:
        services = self.bot.services
        lines = []
        reports = services.get("reports")
        if reports is not None:
            head, tiers = await reports.today_stats()  # type: ignore[attr-defined]
            lines.append(f"*Today so far:* {head['messages']} messages in {head['conversations']} conversations, "
                         f"cost ${head['cost_usd']:.4f}"
                         + (f" (+{head['unknown_price_attempts']} attempts of unknown price)"
                            if head.get("unknown_price_attempts") else ""))
            lines.append(f"Answered by cache {head['cache_share'] * 100:.0f}% · with a failover "
                         f"{head['fallback_rate'] * 100:.0f}%")
            by_tier = tiers
        else:
            counter = self.adapter.counter
            lines.append(f"*Today so far (this server process):* {sum(counter.tiers.values())} replies, "
                         f"cost ${counter.cost:.4f}")
            by_tier = counter.tiers.most_common()
        if by_tier:
            lines.append("By tier: " + ", ".join(f"{t} {n}" for t, n in by_tier))
        handoffs = services.get("handoffs")
        if handoffs is not None:
            c = await handoffs.store.count_since(handoffs.today_start())  # type: ignore[attr-defined]
            rating = f", average rating {c['rating_avg_x100'] / 100:.1f} ({c['ratings']})" if c["ratings"] else ""
            lines.append(f"Handoffs: {c['opened']} opened, {c['resolved']} resolved, {c['open']} open now{rating}")
        return "\n".join(lines)

    # -- handoffs -----------------------------------------------------------------------------
    async def handoffs(self, args: list[str], command: dict[str, Any]) -> str:
        service = self.bot.services.get("handoffs")
        if service is None:
            return "Handoff is not installed."
        open_ = await service.open_handoffs()  # type: ignore[attr-defined]
        if not open_:
            return "No open handoffs. :tada:"
        now = time.time()
        lines = [f"*{len(open_)} open handoff{'s' if len(open_) != 1 else ''}:*"]
        for h in open_:
            age = int((now - h.opened_at) // 60)
            who = f"taken by <@{h.taken_by}>" if h.state == "taken" else "waiting"
            lines.append(f"• #{h.id} {escape(h.customer)} on {escape(h.platform)} — {who}, opened {age} min ago")
        return "\n".join(lines)

    # -- faq ----------------------------------------------------------------------------------
    async def faq(self, args: list[str], command: dict[str, Any]) -> str:
        """services["faq"] is faq_cache.store.FaqStore (synchronous, disk-backed: run off the loop)."""
        store = self.bot.services.get("faq")
        if store is None:
            return "The FAQ cache is not installed."
        if not args or args[0] == "list":
            entries = await asyncio.to_thread(store.entries)  # type: ignore[attr-defined]
            if not entries:
                return "The FAQ is empty (greetings are still answered)."
            lines = [f"*{len(entries)} FAQ entries:*"]
            for e in entries[:40]:
                hits = await asyncio.to_thread(store.hit_count, e.id)  # type: ignore[attr-defined]
                more = f" (+{len(e.questions) - 1} variants)" if len(e.questions) > 1 else ""
                lines.append(f"• `{escape(e.id)}` {escape(e.questions[0])}{more} — {hits} hits")
            if len(entries) > 40:
                lines.append(f"…and {len(entries) - 40} more")
            return "\n".join(lines)
        if args[0] in ("add", "remove") and command.get("user_id") not in self.adapter.settings.faq_editors:
            log.warning(kv(event="faq_change_refused", action=args[0], user=command.get("user_id")))
            return ("Only FAQ editors can change the FAQ: an admin lists their Slack user IDs "
                    "in `SLACK_FAQ_EDITORS`. Nothing was changed.")
        if args[0] == "add":
            if len(args) != 3:
                return 'Usage: `/tierbot faq add "question" "answer"` (quote both).'
            try:
                entry = await asyncio.to_thread(store.add, [args[1]], args[2])  # type: ignore[attr-defined]
            except ValueError as e:
                return f"Not added: {escape(str(e))}."
            log.info(kv(event="faq_added_from_slack", entry=entry.id, user=command.get("user_id")))
            # The model is refitted in the background (customers never wait for it); the editor's
            # command waits a little so that "added" usually means "answering with it now".
            tier = self.bot.services.get("faq_tier")
            live = await tier.ready(FAQ_REFIT_WAIT_S) if tier is not None else True  # type: ignore[attr-defined]
            return (f"Added to FAQ entry `{escape(entry.id)}`: {escape(args[1])} → {escape(entry.answer)}"
                    + ("" if live else " (the FAQ model is still being refitted: customers get it in a moment)"))
        if args[0] == "remove":
            if len(args) != 2:
                return "Usage: `/tierbot faq remove <id>` (ids are in `/tierbot faq list`)."
            removed = await asyncio.to_thread(store.remove, args[1])  # type: ignore[attr-defined]
            return f"Removed FAQ entry `{escape(args[1])}`." if removed else f"No FAQ entry `{escape(args[1])}`."
        return f"Unknown faq action `{escape(args[0])}`. {USAGE}"

    # -- report -------------------------------------------------------------------------------
    async def report(self, args: list[str], command: dict[str, Any]) -> str:
        reports = self.bot.services.get("reports")
        if reports is None:
            return "The report is not installed."
        day = None
        if args:
            try:
                day = dt.date.fromisoformat(args[0])
            except ValueError:
                return f"Date must be YYYY-MM-DD, got `{escape(args[0])}`."
        channel = command.get("channel_id") or self.adapter.settings.staff_channel
        self.adapter.spawn(self._post_report(reports, day, channel, command.get("user_id", "")), "report")
        return f"Building the report for {day.isoformat() if day else 'today so far'}…"

    async def _post_report(self, reports: Any, day: dt.date | None, channel: str, user: str) -> None:
        try:
            blocks, text = await reports.slack(day)
        except Exception as e:
            log.exception(kv(event="slack_report_failed"))
            await self.adapter.tell(channel, user, f"The report could not be built: {type(e).__name__}")
            return
        await self.adapter.post(channel, text, blocks)
