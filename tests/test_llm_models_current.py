"""The shipped defaults are current models with known prices; requests are valid for the
current Claude models (no sampling parameters, no prefill, replies read by block type);
a retired model is skipped for a long while — that model, not its provider — with one
loud line telling the operator which setting to change, and `tierbot check` says so.

Everything runs the real SDKs (groq, anthropic) and the Gemini REST client over real HTTP
against the fakes, which answer as the real APIs do (tests/fakes/llm_servers.py)."""
from __future__ import annotations

import argparse
import logging

import anthropic
import pytest

from bot import Event
from bot.llm import errors as E
from bot.llm.check import run_check
from bot.llm.providers.anthropic import accepts_prefill
from bot.llm.providers.base import CONTINUE_INSTRUCTION
from bot.llm.routes import DEFAULT_MODELS, DEFAULT_VISION, LLMSettings
from bot.config import Config
from bot.pricing import PriceBook
from fakes import llm_servers as F
from fakes.llm_bot import llm_env, make_bot

CURRENT_CLAUDE = ("claude-haiku-5-5", "claude-sonnet-5-5")


def ev(text: str = "Where is my order?", conv: str = "c1") -> Event:
    return Event(platform="test", conversation_id=conv, user_id="u1", text=text)


async def answer(bot, event: Event, stream: bool):
    """The reply, streamed or not; a streamed one's chunks must add up to its final text."""
    if not stream:
        return await bot.handle(event)
    items = [x async for x in bot.stream(event)]
    assert "".join(items[:-1]) == items[-1].text
    return items[-1]


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


# -- defaults -----------------------------------------------------------------------------

def test_every_default_model_is_active_and_priced():
    book = PriceBook.load()
    named = [(p, m) for p, ms in DEFAULT_MODELS.items() for m in ms]
    named += [(p, m) for p, ms in DEFAULT_VISION.items() for m in ms if m != "*"]
    for provider, model in named:
        if provider == "openrouter":
            # OpenRouter reports each call's cost (usage.cost), which depends on the upstream
            # that served it: no table price (test_llm_openrouter.py checks the reported one).
            continue
        price = book.price(provider, model)
        assert price is not None, f"default {provider}/{model} has no price: its cost would be unknown"
        assert price.status == "active", f"default {provider}/{model} is {price.status}: {price.note}"


def test_settings_without_overrides_use_the_defaults():
    settings = LLMSettings.from_config(Config.from_env({}, dotenv=False))
    assert settings.models == DEFAULT_MODELS
    assert [str(s) for s in settings.routes["customer"]] == [
        "groq/openai/gpt-oss-20b", "groq/openai/gpt-oss-120b", "gemini/gemini-3.5-flash-lite",
        "gemini/gemini-3.8-flash", "claude/claude-haiku-5-5", "claude/claude-sonnet-5-5"]
    assert not settings.vision["groq"]  # gpt-oss reads text only: images start at Gemini


# -- the fake Claude answers the current models as the real API does ---------------------

# anthropic 2.14 no longer has temperature/top_p/top_k arguments: sent as extra_body, they
# still reach the wire, as from an older SDK or a hand-written client.
@pytest.mark.parametrize("extra, message", [
    ({"extra_body": {"temperature": 0.2}}, "`temperature` is deprecated for this model."),
    ({"extra_body": {"top_p": 0.9}}, "`top_p` is deprecated for this model."),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Our team"}]},
     "This model does not support assistant message prefill. The conversation must end with a user message."),
])
async def test_fake_claude_rejects_what_the_current_models_reject(fp, extra, message):
    fp.claude.current_rules.update(CURRENT_CLAUDE)
    client = anthropic.AsyncAnthropic(api_key=F.KEYS["claude"], base_url=fp.claude.url, max_retries=0)
    try:
        kwargs = {"model": "claude-haiku-5-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(anthropic.BadRequestError) as e:
            await client.messages.create(**(kwargs | extra))
        assert e.value.status_code == 400
        assert e.value.body["error"] == {"type": "invalid_request_error", "message": message}
        # The same request to a model still accepting it goes through (existing behaviour).
        ok = await client.messages.create(**(kwargs | extra | {"model": "claude-haiku-4-5"}))
        assert ok.content[0].type == "text"
    finally:
        await client.close()


# -- our requests are valid for them -----------------------------------------------------------

@pytest.mark.parametrize("model", CURRENT_CLAUDE)
@pytest.mark.parametrize("stream", [False, True])
async def test_current_claude_models_answer_and_thinking_is_never_shown(fp, tmp_path, model, stream):
    fp.claude.current_rules.update(CURRENT_CLAUDE)
    fp.claude.default = F.ok("Your order ships tomorrow.", thinking="The customer asks about an order.")
    async with make_bot(llm_env(fp, tmp_path, chain="claude", TIERBOT_CLAUDE_MODELS=model)) as bot:
        reply = await answer(bot, ev(), stream)
    assert (reply.provider, reply.model, reply.text) == ("claude", model, "Your order ships tomorrow.")
    body = fp.claude.requests[0].body
    assert not {"temperature", "top_p", "top_k"} & body.keys()
    assert body["messages"][-1]["role"] == "user"


@pytest.mark.parametrize("model, prefill", [("claude-haiku-5-5", False), ("claude-sonnet-5-5", False),
                                            ("claude-haiku-4-5", True), ("claude-sonnet-4-5-20250929", True)])
async def test_cut_answer_is_continued_in_the_form_each_model_accepts(fp, tmp_path, model, prefill):
    fp.claude.current_rules.update(CURRENT_CLAUDE)
    fp.groq.default = F.cut("Our support team is available", cut_after=3)
    fp.claude.default = F.ok(" is available Monday to Friday.")
    env = llm_env(fp, tmp_path, chain="groq,claude", TIERBOT_CLAUDE_MODELS=model)
    async with make_bot(env) as bot:
        items = [x async for x in bot.stream(ev("when are you open"))]
    reply = items[-1]
    assert reply.text == "Our support team is available Monday to Friday."
    assert [a.outcome for a in reply.attempts] == ["stream_cut", "ok"]
    messages = fp.claude.requests[0].body["messages"]
    assert accepts_prefill(model) is prefill
    if prefill:
        assert messages[-1] == {"role": "assistant", "content": "Our support team"}
    else:
        assert messages[-2] == {"role": "assistant", "content": [{"type": "text", "text": "Our support team"}]}
        assert messages[-1] == {"role": "user", "content": [{"type": "text", "text": CONTINUE_INSTRUCTION}]}


# -- a retired model ---------------------------------------------------------------------------

SECOND = {"groq": "openai/gpt-oss-120b", "gemini": "gemini-3.8-flash", "claude": "claude-sonnet-5-5"}
GONE = {"groq": "llama-3.3-70b-versatile", "gemini": "gemini-2.5-flash", "claude": "claude-sonnet-4-5"}


@pytest.mark.parametrize("provider, unknown", [("groq", False), ("groq", True), ("gemini", False), ("claude", False)])
async def test_retired_model_is_skipped_for_long_not_its_provider(fp, tmp_path, caplog, provider, unknown):
    server = fp.servers[provider]
    (server.unknown if unknown else server.retired).add(GONE[provider])
    env = llm_env(fp, tmp_path, chain=provider, one_model=False,
                  **{f"TIERBOT_{provider.upper()}_MODELS": f"{GONE[provider]},{SECOND[provider]}"})
    caplog.set_level(logging.INFO, "tierbot.llm")
    async with make_bot(env) as bot:
        first = await bot.handle(ev(conv="a"))
        second = await bot.handle(ev(conv="b"))
        board = bot.services["breakers"]
        snap = board.get(provider, GONE[provider]).snapshot()
    # The provider's other model answers both times; the gone one was asked once only.
    assert (first.provider, first.model) == (provider, SECOND[provider])
    assert [(a.model, a.outcome) for a in first.attempts] == [(GONE[provider], E.MODEL_GONE), (SECOND[provider], "ok")]
    assert [(a.model, a.outcome) for a in second.attempts] == [
        (GONE[provider], f"skipped:{E.MODEL_GONE}"), (SECOND[provider], "ok")]
    assert [r.model for r in server.requests] == [GONE[provider], SECOND[provider], SECOND[provider]]
    assert snap["state"] == "paused" and snap["reason"] == E.MODEL_GONE
    assert snap["retry_in_s"] > E.MODEL_GONE_PAUSE_S - 60
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1, loud
    assert f"provider={provider} model={GONE[provider]} outcome=model_gone" in loud[0]
    assert f"TIERBOT_{provider.upper()}_MODELS" in loud[0]


async def test_retired_model_does_not_trip_the_provider_or_other_providers(fp, tmp_path):
    fp.claude.retired.add("claude-sonnet-4-5")
    env = llm_env(fp, tmp_path, chain="claude,gemini", TIERBOT_CLAUDE_MODELS="claude-sonnet-4-5")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
        host = bot.services["breakers"].host("claude").snapshot()
    assert reply.provider == "gemini"
    assert [a.outcome for a in reply.attempts] == [E.MODEL_GONE, "ok"]
    assert host["state"] == "closed"  # the host answered: Claude's other models stay in play


@pytest.mark.parametrize("status, body, outcome", [
    (404, {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-3-5-haiku-20241022"}},
     E.MODEL_GONE),
    (400, {"error": {"message": "The model `llama3-8b-8192` has been decommissioned and is no longer supported.",
                     "type": "invalid_request_error", "code": "model_decommissioned"}}, E.MODEL_GONE),
    (404, {"error": {"message": "The model `x` does not exist or you do not have access to it.",
                     "type": "invalid_request_error", "code": "model_not_found"}}, E.MODEL_GONE),
    (404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "models/gemini-pro is not found for API version "
                     "v1beta, or is not supported for generateContent."}}, E.MODEL_GONE),
    # A 404 that names no model is a wrong URL or path, not a retired model.
    (404, {"error": {"code": 404, "message": "Method not found.", "status": "NOT_FOUND"}}, E.BAD_REQUEST),
    (404, "404: Not Found", E.BAD_REQUEST),
    (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}},
     E.BAD_REQUEST),
])
def test_model_gone_is_told_apart_from_other_4xx(status, body, outcome):
    assert E.classify_status(status, body) == outcome


async def test_check_says_which_setting_to_change_for_a_retired_model(fp, tmp_path, monkeypatch, capsys):
    for k, v in llm_env(fp, tmp_path, one_model=False, TIERBOT_CLAUDE_MODELS="claude-sonnet-4-5").items():
        monkeypatch.setenv(k, v)
    fp.claude.retired.add("claude-sonnet-4-5")
    code = await run_check(argparse.Namespace(timeout=2.0))
    out = capsys.readouterr().out
    assert code == 0  # Groq and Gemini answered
    assert "claude/claude-sonnet-4-5: FAILED outcome=model_gone (HTTP 404)" in out
    assert "set TIERBOT_CLAUDE_MODELS to a current model" in out
    assert "groq/openai/gpt-oss-20b: ok" in out and "gemini/gemini-3.5-flash-lite: ok" in out


@pytest.mark.parametrize("stream", [False, True])
async def test_gpt_oss_reasoning_never_reaches_the_customer(fp, tmp_path, stream):
    """gpt-oss on Groq returns its reasoning in a field of its own; only `content` is the answer."""
    fp.groq.default = F.ok("It ships tomorrow.", thinking="User wants shipping info; answer briefly.")
    async with make_bot(llm_env(fp, tmp_path, chain="groq", one_model=False)) as bot:
        reply = await answer(bot, ev(), stream)
    assert (reply.model, reply.text) == ("openai/gpt-oss-20b", "It ships tomorrow.")
    body = fp.groq.requests[0].body
    assert not {"temperature", "top_p", "reasoning_format"} & body.keys()


async def test_check_warns_about_configured_models_that_are_deprecated_or_retired(fp, tmp_path, monkeypatch, capsys):
    env = llm_env(fp, tmp_path, one_model=False, TIERBOT_CLAUDE_MODELS="claude-sonnet-4-5,claude-haiku-5-5",
                  TIERBOT_GROQ_MODELS="llama-3.1-8b-instant,openai/gpt-oss-20b")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fp.groq.retired.add("llama-3.1-8b-instant")
    await run_check(argparse.Namespace(timeout=2.0))
    out = capsys.readouterr().out
    assert "claude/claude-sonnet-4-5: DEPRECATED: retires 2026-11-30" in out
    assert "groq/llama-3.1-8b-instant: RETIRED: decommissioned 2026-08-16" in out
    assert "claude/claude-haiku-5-5: DEPRECATED" not in out and "gemini/gemini-3.5-flash-lite: " in out


async def test_retired_model_in_a_streamed_reply_fails_over_before_any_text(fp, tmp_path):
    fp.claude.retired.add("claude-sonnet-4-5")
    fp.claude.default = F.ok("We open at nine.")
    env = llm_env(fp, tmp_path, chain="claude", one_model=False, TIERBOT_CLAUDE_MODELS="claude-sonnet-4-5,claude-haiku-5-5")
    async with make_bot(env) as bot:
        first = [x async for x in bot.stream(ev(conv="a"))]
        second = [x async for x in bot.stream(ev(conv="b"))]
    assert "".join(first[:-1]) == first[-1].text == "We open at nine."
    assert [a.outcome for a in first[-1].attempts] == [E.MODEL_GONE, "ok"]
    assert [a.outcome for a in second[-1].attempts] == [f"skipped:{E.MODEL_GONE}", "ok"]
    assert [r.model for r in fp.claude.requests] == ["claude-sonnet-4-5", "claude-haiku-5-5", "claude-haiku-5-5"]


@pytest.mark.parametrize("stream", [False, True])
async def test_gpt_oss_is_asked_to_think_briefly_and_other_groq_models_are_not(fp, tmp_path, stream):
    """gpt-oss spends thinking tokens out of the reply's max_tokens; at the API's default
    effort a short support answer can be cut before it starts. Models that do not take
    the parameter must not get it (the API answers 400)."""
    fp.groq.default = F.ok("It ships tomorrow.")
    env = llm_env(fp, tmp_path, chain="groq", one_model=False,
                  TIERBOT_GROQ_MODELS="openai/gpt-oss-20b,llama-3.1-8b-instant")
    async with make_bot(env) as bot:
        for conv, model in (("c1", "openai/gpt-oss-20b"), ("c2", "llama-3.1-8b-instant")):
            if model.startswith("llama"):  # gpt-oss fails once, so the next model answers
                fp.groq.per_model["openai/gpt-oss-20b"] = F.server_error()
            reply = await answer(bot, ev(conv=conv), stream)
            assert reply.model == model
    bodies = {r.model: r.body for r in fp.groq.requests}
    assert bodies["openai/gpt-oss-20b"]["reasoning_effort"] == "low"
    assert "reasoning_effort" not in bodies["llama-3.1-8b-instant"]


async def test_groq_reasoning_effort_is_configurable_and_checked(fp, tmp_path):
    from bot.config import ConfigError

    env = llm_env(fp, tmp_path, chain="groq", one_model=False, TIERBOT_GROQ_REASONING_EFFORT="High")
    async with make_bot(env) as bot:
        await bot.handle(ev())
    assert fp.groq.requests[0].body["reasoning_effort"] == "high"
    with pytest.raises(ConfigError, match="TIERBOT_GROQ_REASONING_EFFORT must be one of low, medium, high, got 'max'"):
        make_bot(llm_env(fp, tmp_path, chain="groq", TIERBOT_GROQ_REASONING_EFFORT="max"))
