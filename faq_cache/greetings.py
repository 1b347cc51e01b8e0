"""Recognising messages that are only a greeting, a thank-you or a goodbye.

A message is a greeting only if *every* word belongs to a greeting phrase or a
filler ("hi there team!"); "hi, where is my order?" has words left over, so it is
a question and goes on to the FAQ and the LLM.
"""
from __future__ import annotations

from dataclasses import dataclass

from .normalize import normalize

__all__ = ["Greeting", "detect_greeting", "PHRASES", "LANGUAGES", "KINDS"]

KINDS = ("hello", "thanks", "goodbye")
LANGUAGES = ("en", "es", "fr", "de", "pt", "ru")

# (language, kind) -> phrases, written as they look after `normalize`.
PHRASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("en", "hello"): ("hi", "hello", "hey", "hiya", "howdy", "yo", "good morning", "good afternoon",
                      "good evening", "morning", "greetings", "hello hello", "hey hey", "sup", "heya",
                      "how are you", "how are you doing"),
    ("en", "thanks"): ("thanks", "thank you", "thank u", "thankyou", "many thanks", "thanks a lot",
                       "thank you very much", "thank you so much", "thanks so much", "cheers", "much appreciated",
                       "appreciate it", "i appreciate it", "great thanks", "ok thanks", "okay thanks", "perfect thanks"),
    ("en", "goodbye"): ("bye", "goodbye", "good bye", "bye bye", "see you", "see ya", "see you later",
                        "have a nice day", "have a good day", "take care", "good night", "later", "cya"),
    ("es", "hello"): ("hola", "buenos dias", "buenos días", "buenas tardes", "buenas noches", "buenas", "saludos",
                      "que tal", "qué tal"),
    ("es", "thanks"): ("gracias", "muchas gracias", "mil gracias", "te lo agradezco", "se lo agradezco"),
    ("es", "goodbye"): ("adios", "adiós", "hasta luego", "hasta pronto", "chao", "chau", "nos vemos",
                        "hasta mañana", "que tengas un buen dia", "que tengas un buen día"),
    ("fr", "hello"): ("bonjour", "salut", "bonsoir", "coucou", "allo", "allô"),
    ("fr", "thanks"): ("merci", "merci beaucoup", "merci bien", "mille merci", "mille mercis", "je vous remercie"),
    ("fr", "goodbye"): ("au revoir", "a bientot", "à bientôt", "a plus", "à plus", "bonne journee",
                        "bonne journée", "bonne soirée", "bonne soiree", "adieu", "bonne nuit"),
    ("de", "hello"): ("hallo", "guten tag", "guten morgen", "guten abend", "servus", "moin", "grüß gott",
                      "gruss gott", "grüezi", "hi zusammen", "hallo zusammen"),
    ("de", "thanks"): ("danke", "danke schön", "danke schon", "dankeschön", "vielen dank", "danke sehr",
                       "herzlichen dank", "besten dank"),
    ("de", "goodbye"): ("tschüss", "tschuss", "tschüs", "auf wiedersehen", "bis bald", "bis später",
                        "bis dann", "ciao", "schönen tag noch", "gute nacht"),
    ("pt", "hello"): ("olá", "ola", "oi", "bom dia", "boa tarde", "boa noite", "e aí", "e ai"),
    ("pt", "thanks"): ("obrigado", "obrigada", "muito obrigado", "muito obrigada", "valeu", "brigado", "brigada"),
    ("pt", "goodbye"): ("tchau", "até logo", "ate logo", "até mais", "ate mais", "até breve", "adeus",
                        "até amanhã"),
    ("ru", "hello"): ("привет", "здравствуйте", "здравствуй", "добрый день", "доброе утро", "добрый вечер",
                      "приветствую", "хай", "алло"),
    ("ru", "thanks"): ("спасибо", "большое спасибо", "спасибо большое", "благодарю", "спс", "огромное спасибо"),
    ("ru", "goodbye"): ("пока", "до свидания", "всего доброго", "до встречи", "увидимся", "спокойной ночи",
                        "всего хорошего"),
}

# Words that may surround a greeting without turning it into a question.
FILLERS = frozenset("""there team all everyone guys folks again so very much lot a oh ok okay
    and friend friends dear bot again you too sir madam y e и и вам тоже вам a todos tous à tout le monde
    alle leute pessoal amigo amigos""".split())

_PHRASES_BY_LENGTH: list[tuple[tuple[str, ...], str, str]] = sorted(
    ((tuple(normalize(p).split()), lang, kind) for (lang, kind), ps in PHRASES.items() for p in ps),
    key=lambda t: -len(t[0]))
# The same phrases by first word, longest first: a message is read once per word, not
# once per phrase (every message goes through here twice: the cache tier and the
# learned cache's rule; scanning all phrases at every word was ~0.2 ms of CPU a message).
_PHRASES_BY_FIRST_WORD: dict[str, list[tuple[tuple[str, ...], str, str]]] = {}
for _entry in _PHRASES_BY_LENGTH:
    if _entry[0]:
        _PHRASES_BY_FIRST_WORD.setdefault(_entry[0][0], []).append(_entry)


@dataclass(frozen=True, slots=True)
class Greeting:
    kind: str  # "hello", "thanks" or "goodbye"
    lang: str  # "en", "es", "fr", "de", "pt", "ru"


def detect_greeting(text: str) -> Greeting | None:
    """The greeting `text` is made of, or None when any word is left over (a question)."""
    words = normalize(text).split()
    if not words or len(words) > 12:
        return None
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        for phrase, lang, kind in _PHRASES_BY_FIRST_WORD.get(words[i], ()):
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
    # "thanks, bye" is a goodbye; "hi, thanks" a thank-you: the strongest closing wins.
    kinds = [k for _, k in found]
    kind = "goodbye" if "goodbye" in kinds else "thanks" if "thanks" in kinds else "hello"
    # The language of the first phrase that is not plain English shorthand decides.
    langs = [lang for lang, _ in found]
    lang = next((lang for lang in langs if lang != "en"), "en")
    return Greeting(kind, lang)
