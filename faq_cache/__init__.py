"""The first tier: an instant, precision-first FAQ and greeting cache.

Greetings, thanks and goodbyes are answered from Jinja templates; operators'
FAQ entries are matched by a TF-IDF + linear model that answers only when its
margin over every other entry clears a threshold chosen on held-out data; and an
optional learned cache replays LLM answers to repeated, personal-data-free first
messages for a short TTL. State lives in diskcache under TIERBOT_DATA_DIR, so it
is shared by worker processes and survives restarts.
"""
from .entries import FaqEntry, FaqImportError, load_faq_file
from .normalize import normalize

__all__ = ["FaqEntry", "FaqImportError", "load_faq_file", "normalize"]
