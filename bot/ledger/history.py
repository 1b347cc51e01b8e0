"""Conversation turns kept in the ledger (the durable `bot.history.HistoryStore`).

Recent turns of active conversations are also kept in memory, so answering a message
costs no database round trip. A conversation not in memory is loaded once, through the
ledger's writer process, which orders the read after any of its turns still queued.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from ..turn import Turn

if TYPE_CHECKING:
    from ..storage.sqlite.ledger import Ledger

__all__ = ["LedgerHistory"]


class _Entry:
    __slots__ = ("turns", "loading")

    def __init__(self, keep: int) -> None:
        self.turns: deque[Turn] = deque(maxlen=keep)
        self.loading: asyncio.Future[None] | None = None


class LedgerHistory:
    """HistoryStore over the ledger, with an LRU of recently active conversations."""

    def __init__(self, ledger: "Ledger", *, keep: int = 50, max_conversations: int = 10_000) -> None:
        self._ledger = ledger
        self._keep = keep
        self._max = max_conversations
        self._cache: OrderedDict[str, _Entry] = OrderedDict()

    async def recent(self, conversation_id: str, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        entry = self._cache.get(conversation_id)
        if entry is None:
            entry = self._load(conversation_id)
        if entry.loading is not None:
            await asyncio.shield(entry.loading)
        self._cache.move_to_end(conversation_id, last=True)
        return list(entry.turns)[-limit:]

    async def append(self, conversation_id: str, turn: Turn) -> None:
        self._ledger.append_turn(conversation_id, turn.role, turn.text, turn.timestamp)
        entry = self._cache.get(conversation_id)
        if entry is not None:  # turns added while loading are newer than what the load returns
            entry.turns.append(turn)

    def _load(self, conversation_id: str) -> _Entry:
        entry = _Entry(self._keep)
        self._cache[conversation_id] = entry
        self._evict()
        keep = self._keep

        async def load() -> None:
            try:
                older = [Turn(r, t, ts) for r, t, ts in await self._ledger.recent_turns(conversation_id, keep)]
            except BaseException:
                self._cache.pop(conversation_id, None)  # try again next time
                raise
            finally:
                entry.loading = None
            newer = list(entry.turns)
            # A turn appended while loading may already be committed and read: keep it once.
            seen = {(t.role, t.text, t.timestamp) for t in newer}
            older = [t for t in older if (t.role, t.text, t.timestamp) not in seen]
            entry.turns.clear()
            entry.turns.extend(older + newer)

        entry.loading = asyncio.ensure_future(load())
        return entry

    def _evict(self) -> None:
        while len(self._cache) > self._max:
            oldest, entry = next(iter(self._cache.items()))
            if entry.loading is not None:
                break
            del self._cache[oldest]
