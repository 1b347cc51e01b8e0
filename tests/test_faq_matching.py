"""The cache tier answers greetings and FAQ questions, and passes on what it is not sure of."""
from __future__ import annotations

import asyncio
import threading

import pytest

from bot.deadline import Deadline
from bot.models import Event
from bot.rendering import Renderer
from bot.turn import Turn, TurnContext
from faq_cache.entries import FaqEntry, parse_yaml
from faq_cache.matcher import Matcher
from faq_cache.normalize import normalize
from faq_cache.store import FaqStore
from faq_cache.tier import FaqTier
from faq_helpers import SHOP_FAQ_YAML


@pytest.fixture
def store(tmp_path):
    s = FaqStore(tmp_path / "faq")
    s.import_entries(parse_yaml(SHOP_FAQ_YAML))
    yield s
    s.close()


@pytest.fixture
async def tier(store):
    t = FaqTier(store, Renderer())
    assert await t.ready(60)  # loaded in the background; tests of answers start with it in memory
    return t


async def ask(tier, text, history=()):
    event = Event(platform="test", conversation_id="c1", user_id="u1", text=text)
    turn = TurnContext(event=event, deadline=Deadline(5), history=list(history))
    return await tier.answer(event, turn), turn


def test_normalisation_folds_unicode_case_punctuation_contractions_and_typos():
    assert normalize("  ＷＨＥＲＥ’S my   ORDER?!  ") == "where is my order"
    assert normalize("I can't recieve the refound.") == "i can not receive the refund"
    assert normalize("Pls help — acount locked!!") == "please help account locked"
    assert normalize("") == ""


@pytest.mark.parametrize("question, answer_start", [
    ("What are your opening hours?", "We are open"),          # exact variant
    ("what are your OPENING hours", "We are open"),           # case and punctuation
    ("when are u open??", "We are open"),                      # shorthand
    ("i forgot my pasword", "Use \"Forgot password\""),       # typo
])
async def test_faq_questions_are_answered_from_the_cache(tier, store, question, answer_start):
    reply, turn = await ask(tier, question)
    assert reply is not None, turn.notes
    assert reply.tier == "cache" and reply.text.startswith(answer_start)
    assert reply.meta["kind"] == "faq" and reply.meta["score"] >= store.matcher().threshold
    assert store.get(reply.meta["faq_entry"]).answer == reply.text
    assert [a.outcome for a in turn.attempts] == ["ok"] and turn.attempts[0].cost_usd == 0.0


@pytest.mark.parametrize("question", [
    "who won the football world cup in 2014",
    "can you recommend a good pasta recipe",
    "my card was charged twice for the same order",
    "hi, where is my order?",
])
async def test_questions_no_entry_covers_are_passed_on(tier, store, question):
    reply, turn = await ask(tier, question)
    assert reply is None
    assert turn.notes["faq"]["reason"] in ("off_topic", "below_threshold")
    assert store.stats()["misses"] == 1


@pytest.mark.parametrize("text, kind, expected", [
    ("hi", "hello", "How can I help"),
    ("Hello there!", "hello", "How can I help"),
    ("Hola", "hello", "¿En qué puedo ayudarte?"),
    ("Bonjour !", "hello", "Comment puis-je vous aider"),
    ("Guten Tag", "hello", "Wie kann ich Ihnen helfen"),
    ("Olá", "hello", "Como posso ajudar"),
    ("Привет", "hello", "Чем могу помочь"),
    ("thanks a lot!", "thanks", "You're welcome"),
    ("muchas gracias", "thanks", "De nada"),
    ("merci beaucoup", "thanks", "Avec plaisir"),
    ("Danke schön", "thanks", "Gern geschehen"),
    ("obrigada", "thanks", "De nada"),
    ("спасибо", "thanks", "Пожалуйста"),
    ("bye!", "goodbye", "Goodbye"),
    ("adiós", "goodbye", "Hasta luego"),
    ("au revoir", "goodbye", "Au revoir"),
    ("tschüss", "goodbye", "Auf Wiedersehen"),
    ("tchau", "goodbye", "Até logo"),
    ("до свидания", "goodbye", "До свидания"),
    ("thanks, bye", "goodbye", "Goodbye"),
])
async def test_greetings_thanks_and_goodbyes_in_six_languages(tier, text, kind, expected):
    reply, _ = await ask(tier, text)
    assert reply is not None and reply.meta["kind"] == "greeting"
    assert reply.meta["faq_entry"] == f"greeting:{kind}"
    assert expected in reply.text


@pytest.mark.parametrize("text", ["hi, where is my order?", "hello, can I return this?", "hola, ¿dónde está mi pedido?",
                                  "thanks but it still doesn't work", "привет, где мой заказ?"])
async def test_a_greeting_followed_by_a_question_is_not_a_greeting(tmp_path, text):
    empty = FaqStore(tmp_path / "empty")
    try:
        reply, _ = await ask(FaqTier(empty, Renderer()), text)
        assert reply is None
    finally:
        empty.close()


async def test_greetings_work_with_an_empty_faq(tmp_path):
    empty = FaqStore(tmp_path / "empty")
    try:
        tier = FaqTier(empty, Renderer())
        assert (await ask(tier, "hello"))[0].meta["kind"] == "greeting"
        assert (await ask(tier, "When are you open?"))[0] is None
        assert empty.stats()["hits_greeting"] == 1
    finally:
        empty.close()


async def test_operators_override_greeting_templates(tmp_path, store):
    (tmp_path / "mine" / "greetings").mkdir(parents=True)
    (tmp_path / "mine" / "greetings" / "hello.j2").write_text(
        "{% if lang == 'de' %}Moin aus dem Laden!{% else %}Howdy from {{ business.company }}!{% endif %}")
    tier = FaqTier(store, Renderer(tmp_path / "mine", {"company": "Acme"}), warm=False)
    assert (await ask(tier, "hi"))[0].text == "Howdy from Acme!"
    assert (await ask(tier, "hallo"))[0].text == "Moin aus dem Laden!"
    assert (await ask(tier, "thanks"))[0].text.startswith("You're welcome")  # shipped template still used


async def test_a_removed_entry_is_never_served_and_new_ones_are(tier, store):
    reply, _ = await ask(tier, "How do I return an item?")
    store.remove(reply.meta["faq_entry"])
    assert (await ask(tier, "How do I return an item?"))[0] is None
    store.add(["Do you ship abroad?", "Can you deliver to another country?"], "We ship to all EU countries.")
    assert await tier.ready(60)  # fitted in the background
    reply, _ = await ask(tier, "Do you ship abroad?")
    assert reply is not None and reply.text == "We ship to all EU countries."


def test_the_same_question_under_two_answers_is_never_served_by_exact_match():
    m = Matcher.fit([FaqEntry("a", "A", ["what is the fee", "how much is the monthly fee"]),
                     FaqEntry("b", "B", ["what is the fee", "fee for international transfers"])])
    result = m.match("What is the fee?")
    assert not result.accepted and result.reason == "ambiguous_exact"


async def test_hit_counts_per_entry_are_kept(tier, store):
    for _ in range(3):
        reply, _ = await ask(tier, "When are you open?")
    await ask(tier, "hi")
    await ask(tier, "what is the meaning of life")
    stats = store.stats()
    assert (stats["hits"], stats["hits_faq"], stats["hits_greeting"], stats["misses"]) == (4, 3, 1, 1)
    assert store.hit_count(reply.meta["faq_entry"]) == 3
    top = store.top_entries(1)[0]
    assert top[0] == reply.meta["faq_entry"] and top[2] == 3 and top[1] == "What are your opening hours?"


def test_sparse_faqs_get_a_stricter_threshold_than_rich_ones():
    from faq_cache.matcher import DEFAULT_THRESHOLD, threshold_for

    values = [threshold_for(n) for n in (1, 5, 10, 20, 30, 40, 60, 72, 200)]
    assert values == sorted(values, reverse=True)
    assert values[0] > DEFAULT_THRESHOLD == values[-1]
    few = Matcher.fit([FaqEntry("a", "A", ["when are you open", "opening hours"]),
                       FaqEntry("b", "B", ["how long is delivery", "shipping time"])], encoder=None)
    assert few.threshold == threshold_for(2)
    # the semantic matcher's thresholds were measured at 5 and 88 variants per entry
    assert threshold_for(5, semantic=True) < threshold_for(88, semantic=True)


async def test_an_operator_threshold_overrides_the_shipped_one(base_env):
    from bot.pipeline import SupportBot

    bot = SupportBot.from_env(dict(base_env, TIERBOT_FAQ_THRESHOLD="2.5"))
    try:
        store = bot.services["faq"]
        store.import_entries(parse_yaml(SHOP_FAQ_YAML))
        assert store.matcher().threshold == 2.5
    finally:
        await bot.aclose()


from hypothesis import given, settings, strategies as st  # noqa: E402

from faq_cache.greetings import PHRASES, detect_greeting  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_normalisation_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip() and "  " not in once


_GREETING_PHRASES = sorted({p for ps in PHRASES.values() for p in ps})
_QUESTION_WORDS = ["order", "refund", "where", "pedido", "commande", "bestellung", "encomenda", "заказ", "card",
                   "password", "delivery", "why", "help"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_GREETING_PHRASES), st.sampled_from(_QUESTION_WORDS), st.sampled_from([", ", " ", "! ", "... "]))
def test_any_greeting_with_a_real_word_after_it_is_a_question(greeting, word, sep):
    assert detect_greeting(greeting) is not None
    assert detect_greeting(f"{greeting}{sep}{word}?") is None


async def test_a_refit_never_holds_up_a_reply_and_the_previous_model_keeps_serving(tmp_path, monkeypatch):
    """A changed FAQ is refitted in a background thread; replies meanwhile come from the
    previous model at once, and once the refit is done from the new one."""
    store = FaqStore(tmp_path / "faq")
    store.import_entries(parse_yaml(SHOP_FAQ_YAML))
    tier = FaqTier(store, Renderer())
    assert await tier.ready(60)
    fitting, release = threading.Event(), threading.Event()
    real_fit = Matcher.fit.__func__

    def slow_fit(cls, *args, **kwargs):
        fitting.set()
        assert release.wait(60), "the test never released the fit"
        return real_fit(cls, *args, **kwargs)

    monkeypatch.setattr(Matcher, "fit", classmethod(slow_fit))
    store.add(["Do you ship abroad?", "Can you deliver to another country?"], "We ship to all EU countries.")
    try:
        reply, turn = await ask(tier, "What are your opening hours?")  # starts the refit, does not wait
        assert reply is not None and reply.text.startswith("We are open"), turn.notes
        assert await asyncio.to_thread(fitting.wait, 60)
        reply, _ = await ask(tier, "When are you open?")  # still fitting: the old model answers
        assert reply is not None and reply.text.startswith("We are open")
        assert (await ask(tier, "Do you ship abroad?"))[0] is None  # not in the old model
    finally:
        release.set()
    assert await tier.ready(60)
    reply, _ = await ask(tier, "Do you ship abroad?")
    assert reply is not None and reply.text == "We ship to all EU countries."
    store.close()


async def test_the_first_message_after_a_start_does_not_wait_for_a_fit(tmp_path, monkeypatch):
    """No stored model (a new FAQ, or an upgrade that changed the features): the first
    message is passed on at once while the model is fitted in the background."""
    store = FaqStore(tmp_path / "faq")
    store.import_entries(parse_yaml(SHOP_FAQ_YAML))
    release = threading.Event()
    real_fit = Matcher.fit.__func__
    monkeypatch.setattr(Matcher, "fit", classmethod(lambda cls, *a, **kw: (release.wait(60), real_fit(cls, *a, **kw))[1]))
    tier = FaqTier(store, Renderer())
    try:
        reply, turn = await ask(tier, "What are your opening hours?")
        assert reply is None and turn.notes["faq"]["reason"] == "model_loading"
        assert (await ask(tier, "hello"))[0].meta["kind"] == "greeting"  # greetings need no model
    finally:
        release.set()
    assert await tier.ready(60)
    assert (await ask(tier, "What are your opening hours?"))[0].text.startswith("We are open")
    store.close()


async def test_an_empty_faq_loads_nothing(tmp_path, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("an empty FAQ must not be fitted")

    monkeypatch.setattr(Matcher, "fit", no_fit)
    store = FaqStore(tmp_path / "faq")
    tier = FaqTier(store, Renderer())
    assert await tier.ready(60)
    reply, turn = await ask(tier, "What are your opening hours?")
    assert reply is None and turn.notes["faq"]["reason"] == "empty"
    assert store.current_matcher() is None
    store.close()
