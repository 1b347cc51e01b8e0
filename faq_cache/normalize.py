"""Text normalisation shared by the matcher, the greeting detector and the learned cache.

Two questions that differ only in Unicode form, case, punctuation, spacing, a
contraction or a common typo should look the same to every lookup.
"""
from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["normalize", "CONTRACTIONS", "TYPOS"]

# Expanded before punctuation is removed (the apostrophe is what tells them apart).
CONTRACTIONS: dict[str, str] = {
    "can't": "can not", "cannot": "can not", "won't": "will not", "n't": " not",
    "i'm": "i am", "'re": " are", "'ve": " have", "'ll": " will", "'d": " would",
    "it's": "it is", "that's": "that is", "what's": "what is", "where's": "where is",
    "how's": "how is", "there's": "there is", "who's": "who is", "let's": "let us",
}
# Frequent misspellings and chat shorthand seen in support messages.
TYPOS: dict[str, str] = {
    "recieve": "receive", "recieved": "received", "adress": "address", "adres": "address",
    "acount": "account", "accout": "account", "pasword": "password", "passwrd": "password",
    "refound": "refund", "refnd": "refund", "cancell": "cancel", "cancle": "cancel",
    "shiping": "shipping", "delivary": "delivery", "deliverd": "delivered", "payed": "paid",
    "transfered": "transferred", "wich": "which", "whats": "what is", "wheres": "where is",
    "dont": "do not", "doesnt": "does not", "didnt": "did not", "cant": "can not",
    "wont": "will not", "isnt": "is not", "havent": "have not", "hasnt": "has not",
    "im": "i am", "ive": "i have", "pls": "please", "plz": "please", "u": "you", "ur": "your",
    "r": "are", "thx": "thanks", "ty": "thank you", "tnx": "thanks", "acct": "account",
}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_CONTRACTION_RE = re.compile(
    "|".join(re.escape(k) for k in sorted(CONTRACTIONS, key=len, reverse=True)))
_NON_WORD = re.compile(r"[^\w\s]+")
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=1024)
def normalize(text: str) -> str:
    """NFKC, casefold, expand contractions, drop punctuation, fix common typos, squeeze spaces.

    Pure, and asked about the same message up to six times on its way through the cache
    tier, the greeting rule and the learned cache: remembered for recent texts."""
    text = unicodedata.normalize("NFKC", text or "").translate(_APOSTROPHES).casefold()
    text = _CONTRACTION_RE.sub(lambda m: CONTRACTIONS[m.group(0)], text)
    text = _NON_WORD.sub(" ", text.replace("_", " "))
    return " ".join(TYPOS.get(w, w) for w in text.split())
