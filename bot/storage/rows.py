"""The ledger's rows, built once for every backend: a reply becomes one `messages` row
and one `attempts` row per attempt, an event one `events` row. The embedded and the
PostgreSQL ledger store exactly these tuples, so they cannot drift apart."""
from __future__ import annotations

import json
from typing import Any

from ..models import Event, Reply
from ..secrets import redact

__all__ = ["reply_rows", "event_payload", "sources_column", "FAQ_META_KEYS", "MESSAGE_COLUMNS", "ATTEMPT_COLUMNS"]

# Keys the FAQ tier may use in Reply.meta to name the entry that answered.
FAQ_META_KEYS = ("faq_id", "faq_entry", "entry")

MESSAGE_COLUMNS = ("ts", "platform", "conversation_id", "user_id", "tier", "provider", "model", "fallback",
                   "input_tokens", "output_tokens", "cost_usd", "latency_ms", "question", "meta",
                   "cache_hit", "template", "faq_entry", "handoff_requested", "sources")
# The message id comes first (assigned by the store), then these.
ATTEMPT_COLUMNS = ("seq", "provider", "model", "outcome", "detail", "latency_ms", "input_tokens",
                   "output_tokens", "cost_usd", "ts")


def _meta_json(meta: dict[str, Any]) -> str | None:
    return json.dumps(meta, default=str, ensure_ascii=False) if meta else None


def _faq_entry(meta: dict[str, Any]) -> str | None:
    for key in FAQ_META_KEYS:
        if meta.get(key) is not None:
            return str(meta[key])
    return None


def sources_column(reply: Reply) -> str | None:
    """The ids of what the LLM was given to answer from (Reply.sources), one per line; None
    when nothing was given. Plain lines, not JSON: the report counts them over a day of
    grounded answers, and splitting lines is several times cheaper than parsing JSON.
    Their titles are kept in the row's meta JSON (`sources`: [[id, title], ...])."""
    if not reply.sources:
        return None
    return "\n".join(s.id for s in reply.sources)


def reply_rows(event: Event, reply: Reply, ts: float) -> tuple[tuple, list[tuple]]:
    """(messages row, attempts rows) in MESSAGE_COLUMNS / ATTEMPT_COLUMNS order."""
    meta = reply.meta or {}
    if reply.sources:
        meta = {**meta, "sources": [[s.id, s.title] for s in reply.sources]}
    row = (
        ts, event.platform, event.conversation_id, event.user_id, reply.tier,
        reply.provider, reply.model, int(reply.fallback), reply.input_tokens,
        reply.output_tokens, reply.cost_usd, reply.latency_ms, event.text or "",
        _meta_json(meta), int(reply.tier == "cache"),
        str(meta["template"]) if reply.tier == "template" and meta.get("template") else None,
        _faq_entry(meta) if reply.tier == "cache" else None,
        int(bool(meta.get("handoff_requested"))),
        sources_column(reply),
    )
    attempts = [
        (i, a.provider, a.model or "", a.outcome, redact(a.detail) if a.detail else None,
         a.latency_ms, a.input_tokens, a.output_tokens, a.cost_usd, ts)
        for i, a in enumerate(reply.attempts)
    ]
    return row, attempts


def event_payload(kind: str, data: dict | None) -> str | None:
    """The event's data as JSON text; ValueError (changing nothing) on bad input."""
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError("event kind must be a non-empty string")
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"event data must be a dict, got {type(data).__name__}")
    try:
        return json.dumps(data, ensure_ascii=False) if data is not None else None
    except (TypeError, ValueError) as e:
        raise ValueError(f"event data must be JSON-serialisable: {e}") from None
