"""Block Kit for what staff see in Slack: the handoff card and the bot's answers.

Everything a customer wrote is escaped for Slack's mrkdwn (`&`, `<`, `>`), so a
customer cannot ping `@channel` or forge links in the staff channel.
"""
from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from bot.handoff import Handoff
from bot.models import Reply
from bot.turn import Turn

__all__ = ["escape", "unescape", "to_plain", "handoff_card", "thread_note", "customer_line", "picked_line",
           "answer_message",
           "TAKE_ACTION", "RESOLVE_ACTION", "REASONS"]

TAKE_ACTION = "handoff_take"
RESOLVE_ACTION = "handoff_resolve"
SECTION_LIMIT = 2900  # Slack allows 3000 characters in a section's text
LINE_LIMIT = 400
REASONS = {
    "customer_request": "the customer asked for a person",
    "templates_twice": "the bot could only answer from its fallback templates twice in a row",
}
_ROLES = {"user": "Customer", "assistant": "Bot", "staff": "Staff"}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Slack's escaped mrkdwn back to what the staff member typed (for the customer)."""
    return html.unescape(text)


_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def to_plain(text: str) -> str:
    """A staff member's Slack message as the customer should read it: links as
    `label (url)`, user/channel references and special mentions without Slack syntax."""
    def link(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith(("@", "#", "!")):
            return "@" + label if label and target.startswith("@") else (label or "")
        if target.startswith("mailto:"):
            return label or target[len("mailto:"):]
        return f"{label} ({target})" if label and label != target else target

    plain = html.unescape(_LINK.sub(link, text))
    return re.sub(r"[ \t]{2,}", " ", plain).strip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_text(h: Handoff) -> str:
    if h.state == "handed_off":
        return ":hourglass_flowing_sand: Waiting for someone to take it."
    if h.state == "taken":
        return f":raising_hand: Taken by <@{h.taken_by}>." if h.taken_by else ":raising_hand: Taken."
    rating = f" Customer rating: {h.rating}/5." if h.rating else ""
    who = f" by <@{h.resolved_by}>" if h.resolved_by else ""
    return f":white_check_mark: Resolved{who}; the bot answers again.{rating}"


def handoff_card(h: Handoff, history: Sequence[Turn], *,
                 off_hours: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The staff-channel message for a handoff: who, why, recent history, Take/Resolve.
    `off_hours`: when opened outside staff hours, when the customer was told staff answer."""
    who = escape(h.customer)
    title = f"Handoff #{h.id}: {who} on {escape(h.platform.capitalize())}"
    reason = REASONS.get(h.reason, escape(h.reason or "handoff"))
    lines = [f"*{_ROLES.get(t.role, t.role)}:* {escape(_clip(t.text, LINE_LIMIT))}" for t in history if t.text]
    recent = "\n".join(lines) or "_No earlier messages._"
    while len(recent) > SECTION_LIMIT and lines:
        lines.pop(0)
        recent = "…\n" + "\n".join(lines)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "block_id": "who", "text": {"type": "mrkdwn", "text": (
            f":bell: *{title}*\nConversation `{escape(h.conversation_id)}` — {reason}. "
            "Reply in this thread to answer the customer; start with `note:` to keep it internal.")}},
        {"type": "section", "block_id": "history", "text": {"type": "mrkdwn",
                                                            "text": "*Recent messages*\n" + recent}},
        {"type": "context", "block_id": "status", "elements": [{"type": "mrkdwn", "text": status_text(h)}]},
    ]
    if off_hours and h.is_open:
        blocks[-1]["elements"].append({"type": "mrkdwn", "text": (
            f":crescent_moon: Opened outside staff hours; the customer was told a person answers {off_hours}.")})
    buttons = []
    if h.state == "handed_off":
        buttons.append({"type": "button", "action_id": TAKE_ACTION, "value": str(h.id), "style": "primary",
                        "text": {"type": "plain_text", "text": "Take"}})
    if h.is_open:
        buttons.append({"type": "button", "action_id": RESOLVE_ACTION, "value": str(h.id),
                        "text": {"type": "plain_text", "text": "Resolve"},
                        "confirm": {"title": {"type": "plain_text", "text": "Resolve this handoff?"},
                                    "text": {"type": "plain_text", "text": "The bot will answer this customer again."},
                                    "confirm": {"type": "plain_text", "text": "Resolve"},
                                    "deny": {"type": "plain_text", "text": "Cancel"}}})
    if buttons:
        blocks.append({"type": "actions", "block_id": "handoff", "elements": buttons})
    return f"{title} — {reason}", blocks


def thread_note(h: Handoff) -> str:
    return status_text(h)


def customer_line(name: str, text: str, attachments: Sequence[str] = ()) -> str:
    extra = "".join(f" _[{escape(kind)}]_" for kind in attachments)
    return f"*{escape(name)}:* {escape(text)}{extra}"


def picked_line(name: str, question: str, entry_id: str) -> str:
    """A customer's pick from "Did you mean…?", which the bot answered from the FAQ."""
    return (f"*{escape(name)}* picked the suggestion _{escape(question)}_ — the bot answered it "
            f"with FAQ entry `{escape(entry_id)}`.")


def answer_message(reply: Reply, description: str) -> tuple[str, list[dict[str, Any]]]:
    """The bot's answer to a staff question, with who answered and what it cost."""
    text = reply.text or "_(no answer)_"
    return f"{text}\n{description}", [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(escape(text), SECTION_LIMIT)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(description)}]},
    ]
