"""OpenRouter as a chain link, through the real `openai` SDK over real HTTP against the
fake OpenRouter (`fakes.llm_servers.FakeOpenRouter`): its failures are classified and the
next link answers, its reported cost and answering model are what the reply says, its
attribution headers are sent, and `tierbot check` pings it."""
from __future__ import annotations

import argparse
import logging

import pytest

from bot import Event
from bot.llm.check import run_check
from fakes import llm_servers as F
from fakes.llm_bot import MODELS, llm_env, make_bot

OR_MODEL = "openai/gpt-oss-20b"


def ev(text: str = "Where is my order?", conv: str = "c1") -> Event:
    return Event(platform="test", conversation_id=conv, user_id="u1", text=text)


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


def or_env(fp, tmp_path, chain: str = "openrouter,groq", models: str = OR_MODEL, **extra: str) -> dict[str, str]:
    return llm_env(fp, tmp_path, chain=chain, TIERBOT_OPENROUTER_MODELS=models, **extra)


async def answer(bot, event: Event, streamed: bool):
    if not streamed:
        return await bot.handle(event)
    items = [item async for item in bot.stream(event)]
    return items[-1]


@pytest.mark.parametrize("streamed", [False, True], ids=["handle", "stream"])
async def test_upstream_502_moves_on_and_names_the_upstream(fp, tmp_path, streamed):
    fp.openrouter.default = F.upstream_error(502, provider="DeepInfra")
    async with make_bot(or_env(fp, tmp_path)) as bot:
        reply = await answer(bot, ev(), streamed)
    assert reply.provider == "groq" and reply.tier == "llm"
    first, second = reply.attempts
    assert (first.provider, first.model, first.outcome) == ("openrouter", OR_MODEL, "upstream_error")
    assert "upstream=DeepInfra" in first.detail
    assert second.outcome == "ok"


async def test_503_no_provider_is_an_upstream_error_and_its_retry_after_is_honoured(fp, tmp_path):
    fp.openrouter.default = F.upstream_error(503, provider="Together", retry_after=30)
    async with make_bot(or_env(fp, tmp_path)) as bot:
        first = await bot.handle(ev(conv="a"))
        second = await bot.handle(ev(conv="b"))
    assert first.attempts[0].outcome == "upstream_error" and first.attempts[0].retry_after == 30
    assert "upstream=Together" in first.attempts[0].detail
    # The model is paused for what OpenRouter asked: the next message goes straight to Groq.
    assert second.attempts[0].outcome.startswith("skipped:") and second.provider == "groq"
    assert len(fp.openrouter.requests) == 1


async def test_out_of_credits_skips_every_openrouter_model_until_the_pause_ends(fp, tmp_path, caplog):
    caplog.set_level(logging.INFO, "tierbot.llm")
    fp.openrouter.default = F.out_of_credits()
    async with make_bot(or_env(fp, tmp_path, models=f"{OR_MODEL},openai/gpt-oss-120b")) as bot:
        first = await bot.handle(ev(conv="a"))
        second = await bot.handle(ev(conv="b"))
    assert [(a.model, a.outcome) for a in first.attempts] == [
        (OR_MODEL, "out_of_credits"), ("openai/gpt-oss-120b", "skipped:out_of_credits"), (MODELS["groq"], "ok")]
    assert [a.outcome for a in second.attempts] == ["skipped:out_of_credits", "skipped:out_of_credits", "ok"]
    assert len(fp.openrouter.requests) == 1  # one 402, then nobody asks again during the pause
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1 and "outcome=out_of_credits" in loud[0] and "add credits" in loud[0]
    assert first.cost_usd is not None  # a 402 costs nothing; Groq's answer is priced


async def test_rate_limited_upstream_is_rate_limited_and_names_it(fp, tmp_path):
    fp.openrouter.default = F.quota_none()
    async with make_bot(or_env(fp, tmp_path)) as bot:
        reply = await bot.handle(ev())
    assert reply.attempts[0].outcome == "rate_limited" and "upstream=Chutes" in reply.attempts[0].detail
    assert reply.provider == "groq"


async def test_error_event_after_the_200_is_classified_and_the_next_link_answers(fp, tmp_path):
    fp.openrouter.default = F.stream_error(cut_after=0)
    async with make_bot(or_env(fp, tmp_path)) as bot:
        streamed = await answer(bot, ev(conv="s"), True)
        handled = await bot.handle(ev(conv="h"))
    assert streamed.attempts[0].outcome == "upstream_error" and "upstream=Groq" in streamed.attempts[0].detail
    assert handled.attempts[0].outcome == "upstream_error"
    assert streamed.provider == handled.provider == "groq"


@pytest.mark.parametrize("streamed", [False, True], ids=["handle", "stream"])
async def test_reported_cost_and_the_model_that_answered_are_recorded(fp, tmp_path, streamed):
    fp.openrouter.default = F.ok("Your order ships today.", answered_by="openai/gpt-oss-20b:nitro",
                                 upstream="Cerebras", cost=0.000123)
    async with make_bot(or_env(fp, tmp_path)) as bot:
        reply = await answer(bot, ev(), streamed)
    assert reply.text == "Your order ships today."
    assert (reply.provider, reply.model) == ("openrouter", "openai/gpt-oss-20b:nitro")
    assert reply.meta["model_requested"] == OR_MODEL and reply.meta["upstream"] == "Cerebras"
    assert reply.cost_usd == pytest.approx(0.000123)
    assert (reply.input_tokens, reply.output_tokens) == (20, 4)
    assert "answered_by=openai/gpt-oss-20b:nitro" in reply.attempts[0].detail


async def test_no_reported_cost_and_no_price_is_price_unknown_never_zero(fp, tmp_path):
    fp.openrouter.default = F.ok("Hi!", cost=None)
    async with make_bot(or_env(fp, tmp_path)) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "openrouter" and reply.cost_usd is None


async def test_attribution_headers_and_bearer_key_are_sent(fp, tmp_path):
    env = or_env(fp, tmp_path, TIERBOT_OPENROUTER_REFERER="https://shop.example.com",
                 TIERBOT_OPENROUTER_TITLE="Example Shop support")
    async with make_bot(env) as bot:
        await bot.handle(ev())
        await answer(bot, ev(conv="c2"), True)
    assert len(fp.openrouter.requests) == 2
    for req in fp.openrouter.requests:
        headers = {k.lower(): v for k, v in req.headers.items()}
        assert req.path == "/api/v1/chat/completions"
        assert headers["authorization"] == f"Bearer {F.KEYS['openrouter']}"
        assert headers["http-referer"] == "https://shop.example.com"
        assert headers["x-title"] == "Example Shop support"
    assert fp.openrouter.requests[0].body["reasoning"] == {"effort": "low"}  # gpt-oss: short thinking


async def test_attribution_headers_are_not_sent_when_not_configured(fp, tmp_path):
    async with make_bot(or_env(fp, tmp_path)) as bot:
        await bot.handle(ev())
    headers = {k.lower() for k in fp.openrouter.requests[0].headers}
    assert "http-referer" not in headers and "x-title" not in headers


async def test_bad_key_switches_openrouter_off_naming_its_variable(fp, tmp_path, caplog):
    caplog.set_level(logging.INFO, "tierbot.llm")
    fp.openrouter.default = F.auth_error()
    async with make_bot(or_env(fp, tmp_path)) as bot:
        first = await bot.handle(ev(conv="a"))
        second = await bot.handle(ev(conv="b"))
    assert first.attempts[0].outcome == "auth" and second.attempts[0].outcome == "skipped:disabled_auth"
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "outcome=auth" in r.getMessage()]
    assert len(loud) == 1 and "OPENROUTER_API_KEY" in loud[0]


async def test_model_openrouter_does_not_know_is_skipped_not_the_provider(fp, tmp_path):
    fp.openrouter.unknown.add("openai/gpt-oss-2")
    async with make_bot(or_env(fp, tmp_path, models=f"openai/gpt-oss-2,{OR_MODEL}")) as bot:
        reply = await bot.handle(ev())
    assert [a.outcome for a in reply.attempts] == ["model_gone", "ok"] and reply.provider == "openrouter"


async def test_check_pings_openrouter_with_reported_cost(fp, tmp_path, monkeypatch, capsys):
    for k, v in or_env(fp, tmp_path, chain="openrouter,groq").items():
        monkeypatch.setenv(k, v)
    fp.openrouter.default = F.ok("pong", answered_by="openai/gpt-oss-20b:free", cost=0.0000042)
    code = await run_check(argparse.Namespace(timeout=2.0))
    out = capsys.readouterr().out
    assert code == 0 and "chain: openrouter -> groq" in out
    assert "openrouter: key OPENROUTER_API_KEY=sk-o" in out and F.KEYS["openrouter"] not in out
    assert f"openrouter/{OR_MODEL}: ok" in out and "cost=$0.000004 (reported)" in out
    assert "answered_by=openai/gpt-oss-20b:free" in out


async def test_check_shows_an_openrouter_failure_by_its_reason(fp, tmp_path, monkeypatch, capsys):
    for k, v in or_env(fp, tmp_path, chain="openrouter").items():
        monkeypatch.setenv(k, v)
    fp.openrouter.default = F.out_of_credits()
    code = await run_check(argparse.Namespace(timeout=2.0))
    out = capsys.readouterr().out
    assert code == 1 and f"openrouter/{OR_MODEL}: FAILED outcome=out_of_credits" in out


async def test_openai_identifiers_from_the_environment_are_not_sent_to_openrouter(fp, tmp_path, monkeypatch):
    # The openai SDK would add OPENAI_ORG_ID / OPENAI_PROJECT_ID to every request it sends.
    monkeypatch.setenv("OPENAI_ORG_ID", "org-not-for-openrouter")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_not_for_openrouter")
    async with make_bot(or_env(fp, tmp_path)) as bot:
        await bot.handle(ev())
    sent = " ".join(f"{k}: {v}" for k, v in fp.openrouter.requests[0].headers.items()).lower()
    assert "openai-organization" not in sent and "openai-project" not in sent and "not-for" not in sent
