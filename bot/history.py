"""Where conversation turns are kept, for LLM context and handoff threads.

The pipeline only needs this small interface; the SQLite ledger provides the
durable implementation, and `MemoryHistory` serves tests and the no-state CLI.
"""
from __future__ import annotations

from collections import defaultdict, deque
from typing import Protocol

from .turn import Turn

__all__ = ["HistoryStore", "MemoryHistory"]


class HistoryStore(Protocol):
    async def recent(self, conversation_id: str, limit: int) -> list[Turn]: ...

    async def append(self, conversation_id: str, turn: Turn) -> None: ...


class MemoryHistory:
    """Keeps the last `keep` turns per conversation in memory."""

    def __init__(self, keep: int = 50) -> None:
        self._turns: dict[str, deque[Turn]] = defaultdict(lambda: deque(maxlen=keep))

    async def recent(self, conversation_id: str, limit: int) -> list[Turn]:
        turns = self._turns.get(conversation_id)
        return list(turns)[-limit:] if turns and limit > 0 else []

    async def append(self, conversation_id: str, turn: Turn) -> None:
        self._turns[conversation_id].append(turn)
