""""Did you mean…?": FAQ entries a question probably meant, offered when only the
templates could answer.

The cache answers only when it is sure (precision first), so a question it is unsure of
goes on to the LLM; when no LLM answers either, the customer gets a generic template.
That question often sits close to one or two FAQ entries all the same: offering them
costs the customer one tap, while guessing would risk a wrong answer.

An amender, so it sees the final tier: only a templates reply gets suggestions, never a
cache or LLM answer, a request for a person, or a staff question. Front ends show
`Reply.suggestions` their own way (Telegram buttons, numbered lists) and hand a pick back
as `Event.pick`, which the cache tier answers (`FaqTier`), so a pick is recorded like any
cache answer. `lookup` is how a front end checks a pick before it is trusted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.models import Event, Reply, Suggestion
from bot.rendering import Renderer
from bot.turn import TurnContext

from .matcher import Matcher
from .store import FaqStore

__all__ = ["SuggestionSettings", "Suggestions", "likely_entries", "SUGGEST_MAX", "SUGGEST_FLOOR", "SUGGEST_FLOORS",
           "MAX_PICK_ID", "MAX_OFFERED_ID_BYTES"]

log = logging.getLogger("tierbot.faq")

SUGGEST_MAX = 3
# The lowest matcher score (the entry's own linear score, as `retrieve` gives it) an entry
# needs to be offered, by matcher kind (their scores differ in scale). Chosen by
# `bench/suggest_eval.py [--matcher semantic]` on choice data, 5 variants per entry (what
# operators write): the lowest floor at which at most 10 % of off-topic questions (CLINC150)
# get a list. On the test halves the right entry is listed for 52 % (lexical) / 66 %
# (semantic) of the in-scope questions the cache did not answer, and 10 % / 9 % of off-topic
# questions get a list (BENCHMARKS.md, "Did you mean…?"). Re-choose when the scores change.
SUGGEST_FLOORS = {"lexical": -0.4, "semantic": -0.3}
SUGGEST_FLOOR = SUGGEST_FLOORS["lexical"]
HEADING_TEMPLATE = "replies/did_you_mean.j2"
HEADING_FALLBACK = "Did you mean one of these?"
MAX_PICK_ID = 200  # longer "entry ids" from a client are not looked up at all
# Front ends carry the id back in a pick (a Telegram button holds 64 bytes of data, with a
# short prefix): an entry whose id is longer (an operator's own id) is not offered, rather
# than offered on some front ends and not others. Generated ids are 10 characters.
MAX_OFFERED_ID_BYTES = 56


def likely_entries(matcher: Matcher, text: str, k: int = SUGGEST_MAX,
                   floor: float = SUGGEST_FLOOR) -> list[tuple[str, float]]:
    """The `k` best-scoring entries for `text` (the matcher's own ranking, as retrieval for
    the LLM uses it) whose score is at least `floor`, best first."""
    return [(entry_id, score) for entry_id, score in matcher.retrieve(text, k) if score >= floor]


@dataclass(frozen=True)
class SuggestionSettings:
    enabled: bool = True
    max_suggestions: int = SUGGEST_MAX
    floor: float | None = None  # None: SUGGEST_FLOORS for the matcher in use


class Suggestions:
    """The amender that offers likely entries, and the check a front end runs on a pick."""

    def __init__(self, store: FaqStore, renderer: Renderer | None = None,
                 settings: SuggestionSettings = SuggestionSettings()) -> None:
        self.store = store
        self.renderer = renderer
        self.settings = settings

    def lookup(self, entry_id: object) -> Suggestion | None:
        """The suggestion for a picked entry id, or None when it is not a current entry
        (removed since it was offered, or made up: callback data comes from the client)."""
        if not isinstance(entry_id, str) or not entry_id or len(entry_id) > MAX_PICK_ID:
            return None
        entry = self.store.get(entry_id)
        if entry is None or not entry.questions:
            return None
        return Suggestion(entry.id, entry.questions[0])

    def suggest(self, text: str) -> tuple[Suggestion, ...]:
        """Likely entries for `text`, from the matcher already loaded (never waits for a fit:
        a stale model is fine here, every entry it names is checked against the store)."""
        matcher = self.store.current_matcher()
        if matcher is None:
            return ()
        found = []
        floor = self.settings.floor
        if floor is None:  # a matcher from before semantic matching has no `kind`: lexical
            floor = SUGGEST_FLOORS.get(getattr(matcher, "kind", "lexical"), SUGGEST_FLOOR)
        for entry_id, _score in likely_entries(matcher, text, self.settings.max_suggestions, floor):
            suggestion = self.lookup(entry_id) if len(entry_id.encode()) <= MAX_OFFERED_ID_BYTES else None
            if suggestion is not None:
                found.append(suggestion)
        return tuple(found)

    async def amend(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        if (not self.settings.enabled or reply.tier != "template" or event.pick or turn.route != "customer"
                or reply.meta.get("handoff_requested") or reply.meta.get("rate_limited") or not reply.text):
            return
        suggestions = self.suggest(event.text or "")
        if not suggestions:
            return
        reply.suggestions = suggestions
        reply.text = f"{reply.text}\n\n{self._heading(event)}"
        reply.meta["suggested"] = [s.entry_id for s in suggestions]

    def _heading(self, event: Event) -> str:
        if self.renderer is None or not self.renderer.has(HEADING_TEMPLATE):
            return HEADING_FALLBACK
        try:
            return self.renderer.render(HEADING_TEMPLATE, user_name=event.user_name).strip() or HEADING_FALLBACK
        except Exception:
            log.exception("template %s failed to render", HEADING_TEMPLATE)
            return HEADING_FALLBACK
