"""The learned cache replays LLM answers to repeated first messages, and never personal ones."""
from __future__ import annotations

import pytest

from bot.deadline import Deadline
from bot.models import Event, Reply
from bot.pipeline import SupportBot
from bot.rendering import Renderer
from bot.templates_tier import TemplateTier
from bot.turn import Turn, TurnContext
from faq_cache.learned import LearnedCache, LearnedCacheListener
from faq_cache.personal_data import personal_data_reasons
from faq_cache.store import FaqStore
from faq_cache.tier import FaqTier


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class ScriptedLLM:
    """A stand-in LLM *tier* (no network involved): answers with a fixed text per question."""

    name = "llm"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.calls = answers, 0

    async def answer(self, event: Event, turn: TurnContext) -> Reply | None:
        self.calls += 1
        return Reply(text=self.answers.get(event.text, "I am not sure."), tier="llm", provider="groq", model="m")


@pytest.fixture
def parts(tmp_path):
    store = FaqStore(tmp_path / "faq")
    clock = Clock()
    learned = LearnedCache(tmp_path / "learned", store, ttl_s=3600, max_entries=100, clock=clock)
    yield store, learned, clock
    learned.close()
    store.close()


def make_bot(store, learned, llm):
    renderer = Renderer()
    return SupportBot([FaqTier(store, renderer, learned=learned), llm, TemplateTier(renderer)],
                      listeners=[LearnedCacheListener(learned)])


def msg(conversation: str, text: str, user_name: str | None = None) -> Event:
    return Event(platform="test", conversation_id=conversation, user_id=conversation, text=text, user_name=user_name)


async def test_an_llm_answer_to_a_first_message_is_served_to_the_next_customer(parts):
    store, learned, _ = parts
    llm = ScriptedLLM({"Do you sell gift cards?": "Yes, gift cards from 10 to 200 EUR are sold on our website."})
    async with make_bot(store, learned, llm) as bot:
        first = await bot.handle(msg("alice", "Do you sell gift cards?"))
        second = await bot.handle(msg("bob", "do you sell GIFT cards"))
    assert first.tier == "llm" and second.tier == "cache"
    assert second.text == first.text and second.meta["kind"] == "learned" and second.cost_usd == 0.0
    assert llm.calls == 1
    stats = store.stats()
    assert stats["hits_learned"] == 1 and stats["learned_stored"] == 1


async def test_answers_that_depended_on_earlier_turns_are_not_cached_or_served(parts):
    store, learned, _ = parts
    llm = ScriptedLLM({"Which one is cheaper?": "The blue one is cheaper."})
    async with make_bot(store, learned, llm) as bot:
        await bot.handle(msg("alice", "I am choosing between two jackets"))
        await bot.handle(msg("alice", "Which one is cheaper?"))  # second message: context-dependent
        reply = await bot.handle(msg("bob", "Which one is cheaper?"))
        assert reply.tier == "llm"
        # Even a cached answer is not served in the middle of a conversation.
        learned.put("Do you sell gift cards?", "Yes, on our website.")
        mid = await bot.handle(msg("alice", "Do you sell gift cards?"))
    assert mid.tier == "llm"
    # bob's own first message was answered by the LLM and may be learned; alice's never was.
    assert learned.get("I am choosing between two jackets") is not None
    assert store.stats()["learned_stored"] == 3  # alice's first, bob's first, the manual put


@pytest.mark.parametrize("question, answer", [
    ("Where is my order 48213?", "Your order ships tomorrow."),
    ("Where is order #A12B9?", "It ships tomorrow."),
    ("Can you email me at jane.doe@example.com?", "Sure, we will write to you."),
    ("Please call me on +44 20 7946 0958", "We will call you back."),
    ("My name is Maria Lopez, where is my parcel?", "It ships tomorrow."),
    ("Can you deliver to 221B Baker Street?", "Yes, we deliver there."),
    ("Do you deliver on Sundays?", "Hi John, yes we deliver on Sundays."),
    ("When will it arrive?", "Your order 99812 arrives on Monday."),
    ("How do I change my address?", "We changed it to Calle Mayor 5 for you."),
    ("What is my account number?", "Your account is DE89 3704 0044 0532 0130 00."),
    ("Where is my refund?", "I have emailed the details to m.s@example.org."),
])
async def test_personal_data_in_question_or_answer_is_never_cached(parts, question, answer):
    store, learned, _ = parts
    llm = ScriptedLLM({question: answer})
    async with make_bot(store, learned, llm) as bot:
        await bot.handle(msg("alice", question, user_name="Alice"))
        other = await bot.handle(msg("bob", question))
    assert other.tier == "llm", "one customer's answer reached another"
    assert len(learned) == 0
    assert store.stats()["learned_refused"] == 2  # alice's answer and bob's


def test_the_customers_own_name_in_the_answer_blocks_caching(parts):
    _, learned, _ = parts
    assert not learned.put("Do you have this in red?", "Yes olivia, we have it in red.", user_name="Olivia Chen")
    assert learned.put("Do you have this in red?", "Yes, we have it in red.", user_name="Olivia Chen")


@pytest.mark.parametrize("text", [
    "What are your opening hours?", "Do you ship to Austria?", "How do I reset my password?",
    "Hi there! Thanks for asking. Standard delivery takes 2-5 business days.", "I am not sure",
])
def test_ordinary_questions_and_answers_are_not_flagged(text):
    assert personal_data_reasons(text) == []


async def test_answers_expire_after_the_ttl(parts):
    store, learned, clock = parts
    learned.ttl_s = 60
    learned.put("Do you sell gift cards?", "Yes, on our website.")
    clock.now += 59
    assert learned.get("Do you sell gift cards?").answer == "Yes, on our website."
    clock.now += 2
    assert learned.get("Do you sell gift cards?") is None
    llm = ScriptedLLM({})
    async with make_bot(store, learned, llm) as bot:
        assert (await bot.handle(msg("carol", "Do you sell gift cards?"))).tier == "llm"


def test_the_cache_is_size_bounded_and_evicts_the_oldest(parts):
    store, learned, clock = parts
    learned.max_entries = 3
    for i in range(5):
        clock.now += 1
        assert learned.put(f"question number {'abcde'[i]}?", f"answer {'abcde'[i]}")
    assert len(learned) == 3
    assert learned.get("question number a?") is None and learned.get("question number b?") is None
    assert learned.get("question number e?").answer == "answer e"
    assert store.stats()["evictions"] == 2


async def test_only_llm_replies_are_learned(parts):
    store, learned, _ = parts
    listener = LearnedCacheListener(learned)
    event = msg("x", "Do you sell gift cards?")
    turn = TurnContext(event=event, deadline=Deadline(5))
    await listener.on_reply(event, Reply(text="Our team will get back to you.", tier="template"), turn)
    assert len(learned) == 0
    await listener.on_reply(event, Reply(text="Yes.", tier="llm"), TurnContext(
        event=event, deadline=Deadline(5), history=[Turn("user", "hello")]))
    assert len(learned) == 0
    await listener.on_reply(event, Reply(text="Yes.", tier="llm"), turn)
    assert learned.get("Do you sell gift cards?").answer == "Yes."


async def test_switched_off_from_the_environment(base_env, tmp_path):
    env = dict(base_env, TIERBOT_LEARNED_CACHE="off")
    bot = SupportBot.from_env(env)
    try:
        assert not any(isinstance(listener, LearnedCacheListener) for listener in bot.listeners)
        learned = bot.services["faq_learned"]
        assert not learned.put("Do you sell gift cards?", "Yes.")
        assert learned.get("Do you sell gift cards?") is None
    finally:
        await bot.aclose()


def test_bad_settings_are_named(base_env):
    from bot.config import ConfigError

    for name, value in (("TIERBOT_LEARNED_CACHE", "maybe"), ("TIERBOT_LEARNED_CACHE_TTL_S", "soon"),
                        ("TIERBOT_LEARNED_CACHE_MAX", "0"), ("TIERBOT_FAQ_THRESHOLD", "-1")):
        with pytest.raises(ConfigError, match=name):
            SupportBot.from_env(dict(base_env, **{name: value}))


async def test_settings_from_the_config_file_and_env_precedence(base_env, tmp_path):
    cfg = tmp_path / "tierbot.toml"
    cfg.write_text("[faq]\nlearned_cache = false\nlearned_ttl_s = 120\n", encoding="utf-8")
    bot = SupportBot.from_env(dict(base_env, TIERBOT_CONFIG=str(cfg)))
    try:
        assert not bot.services["faq_learned"].enabled
        assert bot.services["faq_learned"].ttl_s == 120
    finally:
        await bot.aclose()
    bot = SupportBot.from_env(dict(base_env, TIERBOT_CONFIG=str(cfg), TIERBOT_LEARNED_CACHE="on"))
    try:
        assert bot.services["faq_learned"].enabled  # the environment wins over the file
        assert any(isinstance(listener, LearnedCacheListener) for listener in bot.listeners)
    finally:
        await bot.aclose()
