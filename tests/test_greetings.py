"""Greeting detection reads each word once (phrases indexed by first word): it must say
exactly what scanning every phrase at every word said."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from faq_cache.greetings import _PHRASES_BY_LENGTH, FILLERS, Greeting, detect_greeting
from faq_cache.normalize import normalize

VOCAB = sorted({w for phrase, _, _ in _PHRASES_BY_LENGTH for w in phrase} | set(FILLERS)
               | {"where", "is", "my", "order", "refund", "?"})


def scan_every_phrase(text: str) -> Greeting | None:
    """The reference: try every phrase, longest first, at every word."""
    words = normalize(text).split()
    if not words or len(words) > 12:
        return None
    found, i = [], 0
    while i < len(words):
        for phrase, lang, kind in _PHRASES_BY_LENGTH:
            if tuple(words[i:i + len(phrase)]) == phrase:
                found.append((lang, kind))
                i += len(phrase)
                break
        else:
            if words[i] in FILLERS:
                i += 1
                continue
            return None
    if not found:
        return None
    kinds = [k for _, k in found]
    kind = "goodbye" if "goodbye" in kinds else "thanks" if "thanks" in kinds else "hello"
    return Greeting(kind, next((lang for lang, _ in found if lang != "en"), "en"))


@settings(max_examples=400)
@given(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=8))
def test_indexed_detection_equals_scanning_every_phrase(words):
    text = " ".join(words)
    assert detect_greeting(text) == scan_every_phrase(text)


def test_known_greetings_and_questions():
    assert detect_greeting("Hi there, thanks a lot!") == Greeting("thanks", "en")
    assert detect_greeting("muito obrigado, tchau") == Greeting("goodbye", "pt")
    assert detect_greeting("hi, where is my order?") is None
