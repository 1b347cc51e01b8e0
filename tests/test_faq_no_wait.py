"""No message waits for the FAQ model: the first reply after a start goes on at once while
the model is fitted (or loaded) in the background (issue #12, item 6)."""
from __future__ import annotations

import asyncio
import threading

import pytest

from bot import Event
from faq_cache.entries import parse_yaml
from faq_cache.matcher import Matcher
from faq_cache.store import FaqStore
from fakes import llm_servers as F
from fakes.llm_bot import llm_env, make_bot
from faq_helpers import SHOP_FAQ_YAML


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


def ev(text: str, conv: str = "c1") -> Event:
    return Event(platform="test", conversation_id=conv, user_id="u1", text=text)


@pytest.fixture
def blocked_fit(monkeypatch):
    """Every fit waits for the test to release it; `fitting` is set when one has started."""
    fitting, release = threading.Event(), threading.Event()
    real_fit = Matcher.fit.__func__

    def fit(cls, *args, **kwargs):
        fitting.set()
        release.wait(60)
        return real_fit(cls, *args, **kwargs)

    monkeypatch.setattr(Matcher, "fit", classmethod(fit))
    yield fitting, release
    release.set()


async def test_the_first_reply_after_start_up_does_not_wait_for_a_fit(fp, tmp_path, blocked_fit):
    fitting, release = blocked_fit
    data = tmp_path / "data"
    with FaqStore(data / "faq" / "store") as store:  # imported, never fitted: the bot must fit it
        store.import_entries(parse_yaml(SHOP_FAQ_YAML))
    fp.groq.default = F.ok("An answer from the LLM.")  # answers in 0 ms
    # The SDK's own first-call costs in this process (lazy pydantic validators, ~50 ms) are not
    # the FAQ's: pay them with another bot first, so the timing below is the FAQ tier's start.
    async with make_bot(llm_env(fp, tmp_path / "other")) as other:
        await other.handle(ev("warm up"))
    async with make_bot(llm_env(fp, data), "faq_cache.plugin:install") as bot:
        reply = await bot.handle(ev("What are your opening hours?"))
        # The model is still being loaded/fitted (the fit is held): the reply did not wait for it.
        assert not bot.services["faq"].matcher_is_current() and not release.is_set()
        assert reply.tier == "llm" and reply.text == "An answer from the LLM."
        assert reply.latency_ms < 100, reply.latency_ms  # the old code waited up to 1 s here
        release.set()
        assert await bot.services["faq_tier"].ready(60)
        reply = await bot.handle(ev("What are your opening hours?", conv="c2"))
        assert reply.tier == "cache" and reply.text.startswith("We are open")


async def test_a_stored_model_is_loaded_without_a_fit_and_an_empty_faq_costs_nothing(fp, tmp_path, blocked_fit):
    fitting, _ = blocked_fit
    data = tmp_path / "data"
    async with make_bot(llm_env(fp, data), "faq_cache.plugin:install") as bot:  # empty FAQ
        reply = await bot.handle(ev("What are your opening hours?"))
        assert reply.tier == "llm" and not fitting.is_set()
        assert bot.services["faq"].current_matcher() is None
