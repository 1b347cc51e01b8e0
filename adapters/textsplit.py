"""Splitting long answers at a platform's message limit on sensible boundaries.

Telegram counts a message's length in UTF-16 code units (an emoji can count twice), so
lengths are measured that way. A cut prefers, in order: a paragraph break, a line
break, the end of a sentence, a space; only a single unbroken run longer than the limit
is cut mid-word (never inside a surrogate pair).
"""
from __future__ import annotations

import re

__all__ = ["split_text", "utf16_len"]

_SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]]*\s")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _prefix_fitting(text: str, limit: int) -> int:
    """The largest number of code points whose UTF-16 length is <= limit."""
    if utf16_len(text) <= limit:
        return len(text)
    lo, hi = 0, min(len(text), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if utf16_len(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _cut_point(window: str) -> int:
    """Where to end the first part inside `window` (which is already short enough)."""
    floor = len(window) // 3  # don't make absurdly short parts just to hit a boundary
    for sep in ("\n\n", "\n"):
        i = window.rfind(sep)
        if i > floor:
            return i + len(sep)
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] > floor:
        return ends[-1]
    i = window.rfind(" ")
    if i > floor:
        return i + 1
    return len(window)


def split_text(text: str, limit: int = 4096) -> list[str]:
    """Parts of at most `limit` UTF-16 units each; joined (modulo trimmed whitespace at
    the cuts) they are the original text. Empty or blank text gives no parts."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        window = rest[:_prefix_fitting(rest, limit)]
        cut = _cut_point(window)
        part = rest[:cut].rstrip()
        if not part:  # only whitespace before the cut: take the window as is
            part, cut = window, len(window)
        parts.append(part)
        rest = rest[cut:].lstrip()
    return parts
