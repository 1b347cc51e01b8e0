"""The chain's other promises: keys, context, routes and images, gates, prices,
deadline, hedging, logs without secrets, and `tierbot check`."""
from __future__ import annotations

import argparse
import logging
import time

import pytest

from bot import Attachment, Event, SupportBot
from bot.config import ConfigError
from bot.llm.check import run_check
from fakes import llm_servers as F
from fakes.llm_bot import MODELS, llm_env, make_bot


def ev(text: str = "Where is my order?", conv: str = "c1", **kw) -> Event:
    return Event(platform="test", conversation_id=conv, user_id="u1", text=text, **kw)


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


async def test_provider_without_key_is_skipped_with_one_clear_line(fp, tmp_path, caplog):
    env = llm_env(fp, tmp_path)
    del env["GROQ_API_KEY"], env["ANTHROPIC_API_KEY"]
    caplog.set_level(logging.INFO, "tierbot.llm")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    lines = [r.getMessage() for r in caplog.records if "GROQ_API_KEY" in r.getMessage()]
    assert lines == ["provider=groq status=skipped reason=\"GROQ_API_KEY is not set\""]
    assert sum("ANTHROPIC_API_KEY" in r.getMessage() for r in caplog.records) == 1
    assert reply.provider == "gemini" and [a.outcome for a in reply.attempts] == ["ok"]
    assert not fp.groq.requests and not fp.claude.requests


async def test_no_keys_at_all_templates_answer(fp, tmp_path):
    async with make_bot(llm_env(fp, tmp_path) | {"GROQ_API_KEY": "", "GEMINI_API_KEY": "", "ANTHROPIC_API_KEY": ""}) as bot:
        reply = await bot.handle(ev("I want a refund"))
        assert not any(t.name == "llm" for t in bot.tiers)
    assert reply.tier == "template" and reply.attempts == []


@pytest.mark.parametrize("chain, first", [("gemini,claude,groq", "gemini"), ("claude", "claude"), ("groq,gemini", "groq")])
async def test_chain_order_and_subset(fp, tmp_path, chain, first):
    for s in fp.servers.values():
        s.default = F.server_error()
    fp.servers[first].default = F.ok()
    async with make_bot(llm_env(fp, tmp_path, chain=chain)) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == first and [a.outcome for a in reply.attempts] == ["ok"], reply.attempts


@pytest.mark.parametrize("bad", ["groq,openai", "groq,groq", " , "])
def test_bad_chain_is_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match="TIERBOT_CHAIN"):
        SupportBot.from_env({"TIERBOT_DATA_DIR": str(tmp_path), "TIERBOT_CHAIN": bad})


async def test_models_are_tried_in_order(fp, tmp_path):
    fp.groq.per_model["m-a"] = F.overloaded()
    env = llm_env(fp, tmp_path, one_model=False, TIERBOT_GROQ_MODELS="m-a,m-b")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert [(a.model, a.outcome) for a in reply.attempts] == [("m-a", "overloaded"), ("m-b", "ok")]
    assert reply.model == "m-b"


async def test_context_system_prompt_and_last_turns_reach_the_model(fp, tmp_path):
    async with make_bot(llm_env(fp, tmp_path)) as bot:
        await bot.handle(ev("My name is Ada.", conv="ctx"))
        await bot.handle(ev("What is my name?", conv="ctx"))
    body = fp.groq.requests[-1].body
    system, *turns = body["messages"]
    assert system["role"] == "system" and "Example Shop" in system["content"]  # the business profile
    assert "30 days" in system["content"]
    assert [(m["role"], m["content"]) for m in turns] == [
        ("user", "My name is Ada."), ("assistant", F.Behaviour.text), ("user", "What is my name?")]


async def test_image_goes_only_to_vision_models_with_the_image(fp, tmp_path):
    image = Attachment(kind="image", mime_type="image/png", data=b"\x89PNG fake")
    # Groq's default models read text only; an operator names a Groq vision model.
    async with make_bot(llm_env(fp, tmp_path, TIERBOT_GROQ_VISION_MODELS="qwen/qwen3.6-27b")) as bot:
        reply = await bot.handle(ev("Is this damaged?", attachments=(image,)))
    assert reply.attempts[0].outcome == "skipped:no_vision"
    assert reply.attempts[0].model == MODELS["groq"]
    assert reply.model == "qwen/qwen3.6-27b"
    parts = fp.groq.requests[0].body["messages"][-1]["content"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_image_skips_a_provider_without_vision_models(fp, tmp_path):
    image = Attachment(kind="image", mime_type="image/jpeg", data=b"jpegbytes")
    env = llm_env(fp, tmp_path, TIERBOT_GROQ_VISION_MODELS="none")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev("Is this damaged?", attachments=(image,)))
    assert [a.outcome for a in reply.attempts] == ["skipped:no_vision", "ok"]
    assert reply.provider == "gemini" and not fp.groq.requests
    parts = fp.gemini.requests[0].body["contents"][-1]["parts"]
    assert parts[1]["inlineData"]["mimeType"] == "image/jpeg"


@pytest.mark.parametrize("chain", ["groq", "claude", "gemini"])
async def test_image_url_carrying_a_secret_never_reaches_a_provider(fp, tmp_path, chain):
    token = "123456:AAF-telegram-bot-token-secret"
    image = Attachment(kind="image", mime_type="image/jpeg",
                       url=f"https://api.telegram.org/file/bot{token}/photos/file_1.jpg")
    env = llm_env(fp, tmp_path, chain=chain, TELEGRAM_BOT_TOKEN=token,
                  TIERBOT_GROQ_MODELS="qwen/qwen3.6-27b", TIERBOT_GROQ_VISION_MODELS="qwen/qwen3.6-27b")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev("What is in this picture?", attachments=(image,)))
    assert reply.provider == chain
    sent = fp.servers[chain].requests[0]
    assert token not in str(sent.body) and token not in str(sent.headers)


async def test_named_route_picks_its_own_chain(fp, tmp_path):
    env = llm_env(fp, tmp_path, TIERBOT_ROUTE_STAFF="claude,gemini")
    async with make_bot(env) as bot:
        staff = await bot.handle(ev("summarise this", route="staff"))
        customer = await bot.handle(ev("hi"))
    assert staff.provider == "claude" and customer.provider == "groq"


async def test_safety_refusal_falls_through_by_default_or_stops_when_set(fp, tmp_path):
    fp.groq.default = F.safety()
    async with make_bot(llm_env(fp, tmp_path)) as bot:
        reply = await bot.handle(ev("something edgy"))
    assert reply.provider == "gemini"
    assert reply.attempts[0].outcome == "content_filtered"

    fp.reset_state()
    fp.groq.default = F.safety()
    async with make_bot(llm_env(fp, tmp_path, TIERBOT_FILTER_FALLTHROUGH="false")) as bot:
        reply = await bot.handle(ev("something edgy"))
    assert reply.tier == "template"
    assert [a.outcome for a in reply.attempts] == ["content_filtered"]
    assert not fp.gemini.requests


class SkipGroq:
    def skip_reason(self, provider: str, model: str) -> str | None:
        return "budget_cap" if provider == "groq" else None


def install_gate(parts) -> None:
    parts.services.setdefault("provider_gates", []).append(SkipGroq())


async def test_provider_gates_are_asked_before_each_attempt(fp, tmp_path):
    async with make_bot(llm_env(fp, tmp_path), "test_llm_chain:install_gate") as bot:
        reply = await bot.handle(ev())
    assert [(a.provider, a.outcome) for a in reply.attempts] == [("groq", "skipped:budget_cap"), ("gemini", "ok")]
    assert not fp.groq.requests


async def test_unknown_price_is_none_and_operator_prices_override(fp, tmp_path):
    env = llm_env(fp, tmp_path, one_model=False, TIERBOT_GROQ_MODELS="brand-new-model")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert reply.model == "brand-new-model" and reply.input_tokens == 20
    assert reply.cost_usd is None  # unknown, never $0

    cfg = tmp_path / "tierbot.toml"
    cfg.write_text('[prices.groq."brand-new-model"]\ninput = 1.0\noutput = 2.0\n')
    async with make_bot(env | {"TIERBOT_CONFIG": str(cfg)}) as bot:
        reply = await bot.handle(ev())
    assert reply.cost_usd == pytest.approx((20 * 1.0 + 7 * 2.0) / 1_000_000)


async def test_no_attempt_when_none_fits_in_the_deadline(fp, tmp_path):
    # Not timed: with a 0.2 s deadline, "answered at once" and "waited out the deadline"
    # are too close to tell apart on a loaded machine. No request and the skip say it.
    async with make_bot(llm_env(fp, tmp_path, deadline=0.2)) as bot:
        reply = await bot.handle(ev("I want a refund"))
    assert reply.tier == "template"
    assert [a.outcome for a in reply.attempts] == ["skipped:deadline"]
    assert not fp.groq.requests


async def _warm(bot, n):
    for i in range(n):
        r = await bot.handle(ev(conv=f"warm{i}"))
        assert r.provider == "groq"


async def test_hedging_starts_next_provider_after_p95_and_keeps_first_answer(fp, tmp_path):
    env = llm_env(fp, tmp_path, deadline=3, attempt=2.5, TIERBOT_HEDGING="true", TIERBOT_HEDGE_BUDGET="0.5")
    fp.groq.default = F.ok(latency=0.01)
    async with make_bot(env) as bot:
        await _warm(bot, 20)
        fp.groq.default = F.ok("slow groq", latency=30.0)
        fp.gemini.default = F.ok("fast gemini")
        t0 = time.perf_counter()
        reply = await bot.handle(ev(conv="slow"))
        elapsed = time.perf_counter() - t0
    assert reply.provider == "gemini" and reply.text == "fast gemini"
    # Without the hedge the message would wait out groq's 2.5 s attempt timeout; the
    # margin below that is for a loaded machine (an idle one takes ~0.1 s).
    assert elapsed < 2.0
    assert sorted((a.provider, a.outcome) for a in reply.attempts) == [("gemini", "ok"), ("groq", "cancelled")]
    lost = next(a for a in reply.attempts if a.outcome == "cancelled")
    assert lost.input_tokens > 0 and "usage_estimated" in lost.detail  # the prompt it read is charged


async def test_hedging_is_off_by_default_and_bounded_by_its_budget(fp, tmp_path):
    fp.groq.default = F.ok(latency=0.01)
    async with make_bot(llm_env(fp, tmp_path, deadline=3, attempt=2.5)) as bot:
        await _warm(bot, 20)
        fp.groq.default = F.ok("slow groq", latency=0.4)
        reply = await bot.handle(ev(conv="slow"))
    assert reply.provider == "groq" and not fp.gemini.requests

    fp.reset_state()
    fp.groq.default = F.ok(latency=0.01)
    env = llm_env(fp, tmp_path, deadline=3, attempt=2.5, TIERBOT_HEDGING="1", TIERBOT_HEDGE_BUDGET="0.05")
    async with make_bot(env) as bot:
        await _warm(bot, 20)  # 21 requests x 5 % = 1 hedge allowed
        fp.groq.default = F.ok("slow groq", latency=0.3)
        first = await bot.handle(ev(conv="s1"))
        second = await bot.handle(ev(conv="s2"))
    assert first.provider == "gemini"
    assert second.provider == "groq"  # budget spent: no second hedge
    assert len(fp.gemini.requests) == 1


async def test_failover_logs_are_structured_and_never_contain_keys(fp, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    fp.groq.default = F.rate_limited(retry_after=2)
    fp.claude.default = F.auth_error()
    async with make_bot(llm_env(fp, tmp_path, chain="claude,groq,gemini")) as bot:
        for i in range(3):
            await bot.handle(ev(conv=f"c{i}"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "provider=groq model=llama-3.3-70b-versatile outcome=rate_limited" in text
    assert "retry_after=2.0" in text and "next=gemini" in text
    auth = [r for r in caplog.records if r.levelno >= logging.ERROR and "outcome=auth" in r.getMessage()]
    assert len(auth) == 1 and "provider=claude" in auth[0].getMessage()  # loud, once
    for key in F.KEYS.values():
        assert key not in text


async def test_check_reports_chain_masked_keys_and_latency(fp, tmp_path, monkeypatch, capsys):
    for k, v in llm_env(fp, tmp_path).items():
        monkeypatch.setenv(k, v)
    fp.claude.default = F.overloaded()
    code = await run_check(argparse.Namespace(timeout=2.0))
    out = capsys.readouterr().out
    assert code == 0
    assert "chain: groq -> gemini -> claude" in out
    assert f"groq/{MODELS['groq']}: ok" in out and f"gemini/{MODELS['gemini']}: ok" in out
    assert "claude/claude-haiku-4-5: FAILED outcome=overloaded" in out
    for key in F.KEYS.values():
        assert key not in out
    assert "gsk_" in out  # masked form: enough to tell keys apart


async def test_check_fails_when_no_provider_answers(fp, tmp_path, monkeypatch, capsys):
    for k, v in llm_env(fp, tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GEMINI_API_KEY", "")
    fp.groq.default = F.auth_error()
    fp.claude.default = F.black_hole()
    code = await run_check(argparse.Namespace(timeout=0.3))
    out = capsys.readouterr().out
    assert code == 1
    assert "gemini: skipped (no key)" in out and "outcome=auth" in out and "outcome=timeout" in out


def test_check_is_a_tierbot_subcommand():
    from bot.cli import _build_parser

    args = _build_parser().parse_args(["check", "--timeout", "3"])
    assert args.run is run_check and args.timeout == 3


async def test_full_bot_from_env_answers_through_the_chain(fp, tmp_path):
    # Every installed plugin (others' tiers too), a generous deadline for their cold starts,
    # and a question no FAQ answers.
    async with SupportBot.from_env(llm_env(fp, tmp_path, deadline=20, attempt=5)) as bot:
        reply = await bot.handle(ev("Write a two-line poem about penguins and lighthouses."))
        assert "breakers" in bot.services and "prices" in bot.services
    assert reply.tier == "llm" and reply.provider == "groq"


async def test_sdk_retries_are_off_the_chain_is_the_only_retry_loop(fp, tmp_path):
    fp.groq.default = F.server_error()
    fp.claude.default = F.overloaded()
    async with make_bot(llm_env(fp, tmp_path, chain="groq,claude,gemini")) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "gemini"
    assert len(fp.groq.requests) == 1 and len(fp.claude.requests) == 1  # SDK defaults would send 3 each


async def test_gemini_key_travels_in_the_header_never_in_the_url(fp, tmp_path):
    async with make_bot(llm_env(fp, tmp_path, chain="gemini")) as bot:
        await bot.handle(ev())
    req = fp.gemini.requests[0]
    assert req.headers["x-goog-api-key"] == F.KEYS["gemini"]
    assert F.KEYS["gemini"] not in req.path and "key=" not in req.path
    assert req.path == f"/v1beta/models/{MODELS['gemini']}:generateContent"


@pytest.mark.parametrize("chain", ["groq", "claude", "gemini"])
async def test_connections_are_reused_at_50_in_flight(fp, tmp_path, chain):
    """The SDK's default pool keeps 20 connections; ours is sized for the concurrency, so
    a second wave of 50 messages reuses the first wave's connections."""
    import asyncio

    for s in fp.servers.values():
        s.default = F.ok(latency=0.05)  # keep all 50 in flight at once
    async with make_bot(llm_env(fp, tmp_path, chain=chain, deadline=10, attempt=8)) as bot:
        for wave in range(2):
            replies = await asyncio.gather(*[bot.handle(ev(conv=f"w{wave}-{i}")) for i in range(50)])
            assert all(r.provider == chain for r in replies)
    peers = {r.peer for r in fp.servers[chain].requests}
    assert len(fp.servers[chain].requests) == 100
    assert len(peers) <= 50
