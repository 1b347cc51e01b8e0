"""The operator's knowledge for the LLM: the FAQ entries and document passages that best
match a message the cache did not answer (`bot.llm.reference.Retriever`).

Entries are ranked by the FAQ matcher itself (`Matcher.retrieve`: the same scores the
cache answers with, so whatever improves matching improves retrieval), passages by the
knowledge index (`KnowledgeStore.search`). The two scores are not on one scale, so the
lists are merged by reciprocal rank fusion (each item scores 1/(RRF_K + rank) in its own
list); at equal rank an entry goes first. A passage must share some wording with the
question (cosine ≥ PASSAGE_FLOOR), or it would only cost tokens.

Nothing is indexed from conversations: the learned cache (LLM answers replayed to the
same question) is never retrieved, so no customer's words reach another's prompt.
Lookups never wait: a matcher or an index being refitted serves its previous version,
and an entry or passage removed since is skipped.
"""
from __future__ import annotations

from bot.llm.reference import Passage

from .store import FaqStore

__all__ = ["KnowledgeRetriever", "entry_passage", "RRF_K", "PASSAGE_FLOOR"]

RRF_K = 60
PASSAGE_FLOOR = 0.05


def entry_passage(entry_id: str, question: str, answer: str, score: float) -> Passage:
    """An FAQ entry as reference: titled by its first question, its text is the answer."""
    return Passage(f"faq:{entry_id}", question, answer, score)


class KnowledgeRetriever:
    """`retrieve(question, k)` over the FAQ entries and imported passages of one store."""

    def __init__(self, store: FaqStore, *, passage_floor: float = PASSAGE_FLOOR) -> None:
        self.store = store
        self.passage_floor = passage_floor

    def entries(self, question: str, k: int, *, wait: bool = False) -> list[Passage]:
        matcher = self.store.matcher() if wait else self.store.current_matcher()
        if matcher is None:  # not loaded yet (the cache tier loads it): passages only
            return []
        out = []
        for entry_id, score in matcher.retrieve(question, k):
            entry = self.store.get(entry_id)
            if entry is not None and entry.questions:
                out.append(entry_passage(entry.id, entry.questions[0], entry.answer, score))
        return out

    def passages(self, question: str, k: int, *, wait: bool = False) -> list[Passage]:
        return [Passage(f"kb:{p.id}", p.title, p.text, score)
                for p, score in self.store.knowledge.search(question, k, wait=wait) if score >= self.passage_floor]

    def retrieve(self, question: str, k: int, *, wait: bool = False) -> list[Passage]:
        """The `k` best entries and passages, best first. `wait` (the CLI only) loads or
        fits what is not current; a reply never waits."""
        if k <= 0:
            return []
        ranked = [(1.0 / (RRF_K + rank), 0, rank, p) for rank, p in enumerate(self.entries(question, k, wait=wait))]
        ranked += [(1.0 / (RRF_K + rank), 1, rank, p) for rank, p in enumerate(self.passages(question, k, wait=wait))]
        ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
        return [p for *_, p in ranked[:k]]
