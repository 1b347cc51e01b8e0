"""Joining the attempts of one streamed answer so the customer never sees text twice.

Failover is free until the first chunk reaches the customer. After that, chunks are
append-only: a stream cut mid-way is never left truncated. The next step is asked to
*continue* the partial text (Claude 4.5 and older by assistant prefill, which newer
Claude models refuse; every other model by an explicit instruction). Models asked to
continue often start over instead (FIELD_NOTES: `The quick brown` then `The quick brown
fox …` again), so the taking-over attempt's first words are held back until it is clear
what it did:

- it continued: its text is appended;
- it started over with the very words shown: the repeat is dropped and only what is
  new is appended — seamless;
- it started over in other words: a `StreamReset` withdraws what was shown, then its
  text follows from the start.

If no provider can finish in time, the chain's fallback (the templates) replaces the
answer; the final `Reply.text` is authoritative and `Reply.meta["stream"]` says which
happened. The attempts themselves (deadline, breakers, accounting) are run by
`ChainTier.run_attempt`, the same runner as for answers that are not streamed.
"""
from __future__ import annotations

import dataclasses
import re

from ..models import StreamReset
from .providers.base import Request

__all__ = ["Splice"]

_WORD = re.compile(r"\w+")
JUDGE_AFTER = 3  # words past the longest repeat a restart may open with ("Sure! …")


class Splice:
    """What the customer has been shown of one streamed answer, and how the next
    attempt's text joins it. `begin()` before each attempt, `feed()` each chunk,
    `finish()` when it answered, `abandon()` when it failed."""

    __slots__ = ("text", "_held")

    def __init__(self) -> None:
        self.text = ""                  # every chunk shown so far (since the last reset)
        self._held: str | None = None   # a taking-over attempt's text not yet judged

    def begin(self) -> None:
        """A new attempt starts; after a cut, its text is held back until judged."""
        self._held = "" if self.text else None

    def request(self, base: Request) -> Request:
        """What to ask: to continue the text shown, if any."""
        return dataclasses.replace(base, continue_from=self.text) if self.text else base

    def feed(self, chunk: str) -> list[str | StreamReset]:
        """Take one chunk of the current attempt; return what to show now."""
        if self._held is None:
            return self._show(chunk)
        self._held += chunk
        return self._judge(final=False)

    def finish(self) -> list[str | StreamReset]:
        """The attempt answered in full: release what is still held back."""
        if self._held is None:
            return []
        return self._judge(final=True)

    def abandon(self) -> None:
        """The attempt failed: what it held back was never shown; forget it."""
        self._held = None

    # -- internals ----------------------------------------------------------------------
    def _show(self, text: str) -> list[str | StreamReset]:
        self.text += text
        return [text] if text else []

    def _judge(self, final: bool) -> list[str | StreamReset]:
        held = self._held or ""
        new, old = held.lstrip(), self.text.lstrip()
        if new.startswith(old):  # started over with the same words: drop the repeat
            self._held = None
            return self._show(new[len(old):])
        if old.startswith(new):
            if not final:
                return []  # the same words so far: keep holding
            if new:  # its whole answer is a shorter start of what was shown
                return self._restart(held)
            self._held = None
            return []
        held_words, shown_words = _words(held, complete=final), _words(self.text, complete=True)
        run = _restart_run(shown_words)
        if not final and len(held_words) < run + JUDGE_AFTER:
            return []
        if _starts_over(held_words, shown_words, run):
            return self._restart(held)
        self._held = None
        return self._show(held)

    def _restart(self, held: str) -> list[str | StreamReset]:
        self._held = None
        self.text = ""
        return [StreamReset("restarted"), *self._show(held)]


def _words(text: str, *, complete: bool) -> list[str]:
    words = _WORD.findall(text.lower())
    if not complete and words and not text[-1:].isspace() and text[-1:].isalnum():
        words.pop()  # the last word may still be growing
    return words


def _restart_run(shown: list[str]) -> int:
    """How many of the shown words, repeated near the start, make a restart: half of
    them, at least 2 (or all, if fewer), at most 4."""
    return min(len(shown), max(2, (len(shown) + 1) // 2), 4)


def _starts_over(held: list[str], shown: list[str], run: int) -> bool:
    """Does `held` open with `run` consecutive words of the start of `shown`?"""
    if run == 0:
        return False
    for i in range(min(JUDGE_AFTER, len(held) - run + 1)):
        for j in range(min(JUDGE_AFTER, len(shown) - run + 1)):
            if held[i:i + run] == shown[j:j + run]:
                return True
    return False
