"""The personal-data rule for the learned cache.

An LLM answer is only replayed to another customer when neither the question nor
the answer carries anything that could belong to one person. The rule is
deliberately wide: a false alarm costs one LLM call, a miss leaks a customer's
details to a stranger.
"""
from __future__ import annotations

import re

__all__ = ["personal_data_reasons", "has_personal_data"]

_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+|\b[\w.+-]+\s*(\(at\)|\[at\]| at )\s*[\w-]+\s*(\.|dot)\s*\w+", re.I),
    # Any run of 4+ digits (order/account/card numbers, postcodes, phone fragments),
    # even when split by spaces, dashes, dots or slashes.
    "number": re.compile(r"\d(?:[\s./-]?\d){3,}"),
    "phone": re.compile(r"\+\s?\d|\(\d{2,4}\)\s?\d"),
    # Identifiers mixing letters and digits: AB-1234, #A12B, 3FA9K2.
    "reference": re.compile(r"#\s*\w*\d|\b(?=\w*\d)(?=\w*[a-z])[a-z0-9]{5,}\b|\b[a-z]{1,4}-\d{2,}\b", re.I),
    "address": re.compile(
        r"\b\d+\w?\s+(?:[\w'.-]+\s+){0,3}(street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|way|"
        r"court|ct|place|pl|square|sq|close|crescent|terrace)\b|"
        r"\b(calle|avenida|rue|boulevard|straße|strasse|gasse|weg|rua|travessa|улица|ул\.|проспект|пр\.)\s+\w+|"
        r"\b(my|our) (home |postal |shipping |billing |delivery )?address is\b|\bi live (at|on|in)\b|"
        r"\b(zip|post) ?code\b", re.I),
    "name": re.compile(
        r"(?i:\b(my name is|my name's|i am called|call me|me llamo|mi nombre es|je m'appelle|mon nom est|"
        r"ich heiße|ich heisse|mein name ist|meu nome é|me chamo|меня зовут|моё имя|мое имя))|"
        r"\b(?i:this is|i'm|i am|it's|signed|regards|thanks|cheers|best),?\s+[A-Z][a-z]+\b"),
    "salutation": re.compile(
        r"\b(?i:dear|hi|hello|hey|hola|bonjour|hallo|olá|ola|привет|здравствуйте)\s*,?\s+[A-Z][a-z]+"),
    "card": re.compile(r"\b(iban|swift|bic|ssn|social security|passport|cvv|cvc)\b", re.I),
}


_COMMON_AFTER = re.compile(
    r"(?<=\s)(There|Team|All|Everyone|Again|Sure|Not|Sorry|Happy|Glad|Here|Afraid|So|Very|Good|Great|Looking|"
    r"Trying|Waiting|Still|Just|Also|Unable|Able|Interested|Having|Getting|Writing|Contacting|New|Back|"
    r"For|In|On|At|To|The|We|You|Our|Your|It|This|That|Thank|Thanks|Hello|Hi|Hey|Dear|Customer|Support|Friend|Folks)\b")


def personal_data_reasons(text: str, user_name: str | None = None) -> list[str]:
    """Which kinds of personal data `text` seems to carry (empty list = none found)."""
    if not text:
        return []
    found = [kind for kind, pattern in _PATTERNS.items() if pattern.search(text)]
    for kind in ("salutation", "name"):
        # "Hi there", "Thanks Team", "I am Sure": common words after a greeting are not names.
        if kind in found and not _PATTERNS[kind].search(_COMMON_AFTER.sub(" ", text)):
            found.remove(kind)
    if user_name:
        for part in re.findall(r"\w{3,}", user_name):
            if re.search(rf"\b{re.escape(part)}\b", text, re.I):
                found.append("user_name")
                break
    return found


def has_personal_data(text: str, user_name: str | None = None) -> bool:
    return bool(personal_data_reasons(text, user_name))
