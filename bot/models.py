"""The platform-neutral values that flow through tierbot: `Event` in, `Reply` out.

Adapters build an `Event` from whatever their platform sends; every tier returns a
`Reply`. Nothing here knows about Telegram, Slack or any LLM provider.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Attachment", "Event", "Attempt", "Reply", "Source", "StreamReset", "Suggestion", "Tier"]

Tier = Literal["cache", "llm", "template", "staff"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message. `data` is filled when the adapter downloaded it."""

    kind: str  # "image", "voice", "sticker", "document", ...
    mime_type: str | None = None
    url: str | None = None
    file_id: str | None = None
    data: bytes | None = None


@dataclass(slots=True)
class Event:
    """One incoming message, whatever platform it came from.

    `route` picks a named chain (e.g. "customer", "image", "staff"); when None the
    pipeline picks "image" for events with an image and "customer" otherwise.
    """

    platform: str
    conversation_id: str
    user_id: str
    text: str
    user_name: str | None = None
    message_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    timestamp: float = field(default_factory=time.time)
    raw: Any = None
    route: str | None = None
    # The FAQ entry the customer picked from a "Did you mean…?" list (a button press, a
    # number typed in the console): the cache answers that entry. Adapters set it only
    # after checking the entry exists; `text` is then the entry's question.
    pick: str | None = None

    @property
    def images(self) -> tuple[Attachment, ...]:
        return tuple(a for a in self.attachments if a.kind == "image")


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A FAQ entry offered as "Did you mean…?": its id (to answer it when picked) and the
    question shown to the customer."""

    entry_id: str
    question: str


@dataclass(slots=True)
class Attempt:
    """One try at a provider/model. `outcome` is "ok" or a failure reason
    (rate_limited, overloaded, server_error, timeout, connection, auth, bad_request,
    malformed, empty, content_filtered, skipped_*, cancelled, stream_cut, ...)."""

    provider: str
    model: str
    outcome: str
    latency_ms: float = 0.0
    detail: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """One piece of the operator's knowledge given to the LLM as reference material.

    `id` is prefixed by its kind: "faq:<entry id>" for an FAQ entry, "kb:<passage id>"
    for a passage of an imported document; `title` is what an operator recognises it by.
    """

    id: str
    title: str


@dataclass(slots=True)
class Reply:
    """What the bot answered, who answered it, what it cost and what failed on the way.

    `cost_usd` is None when some attempt used a model whose price is unknown: an
    unknown price is never reported as $0.
    """

    text: str
    tier: Tier
    provider: str | None = None
    model: str | None = None
    fallback: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float = 0.0
    # Which template / FAQ entry answered, handoff requests, ...: for the ledger and report.
    meta: dict[str, Any] = field(default_factory=dict)
    # FAQ entries the customer may have meant, offered with a templates answer; each
    # front end shows them its own way (Telegram buttons, a numbered list).
    suggestions: tuple[Suggestion, ...] = ()
    # The FAQ entries and knowledge passages the LLM was given to answer from (LLM replies only).
    sources: tuple[Source, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def charge(self, attempt: Attempt) -> None:
        """Add one attempt and its tokens/cost to this reply's totals."""
        self.attempts.append(attempt)
        self.input_tokens += attempt.input_tokens
        self.output_tokens += attempt.output_tokens
        if self.cost_usd is None or attempt.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += attempt.cost_usd


@dataclass(frozen=True, slots=True)
class StreamReset:
    """A streamed answer's text so far is withdrawn: the chunks after this replace it.

    `SupportBot.stream()` yields it when a provider that took over after a cut started
    the answer over in other words, or when the answer was replaced (e.g. by the
    templates). A consumer that cannot take text back (Slack's `chat.appendStream`)
    must start over; the chunks after the last reset always add up to `Reply.text`.
    """

    reason: str = ""
