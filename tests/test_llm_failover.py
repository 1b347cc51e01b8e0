"""Fail over first, wait last: a 429 moves the message on at once; a Retry-After holds the
model for everyone until it passes, then lets one probe through; a wait happens only when
everything is limited (and fits), or when the alternative is a paid provider and a free one
is back within what the operator said that is worth. Real SDKs, real HTTP, fake servers;
the breakers read an injected clock where the test moves time."""
from __future__ import annotations

import asyncio

import pytest

from bot import Event, SupportBot
from bot.config import ConfigError
from fakes import llm_servers as F
from fakes.llm_bot import llm_env, make_bot


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ev(i: int | str = 1) -> Event:
    return Event(platform="test", conversation_id=f"c{i}", user_id="u1", text="Where is my order?")


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


def with_clock(bot) -> Clock:
    """The breakers (created on first use) read this clock instead of the system's."""
    clock = Clock()
    bot.services["breakers"].clock = clock
    return clock


async def test_retry_after_holds_the_model_for_everyone_but_the_message_moves_on_at_once(fp, tmp_path):
    fp.groq.default = F.rate_limited(retry_after=1.0)
    async with make_bot(llm_env(fp, tmp_path, attempt=2.0, deadline=4.0)) as bot:
        with_clock(bot)
        first = await bot.handle(ev(1))
        later = await asyncio.gather(*[bot.handle(ev(i)) for i in range(2, 12)])
    # The message that got the 429 did not wait a second for groq: gemini answered it.
    assert [(a.provider, a.outcome) for a in first.attempts] == [("groq", "rate_limited"), ("gemini", "ok")]
    assert first.attempts[0].retry_after == 1.0
    # The wait speaks for the key: nobody else asked groq while it ran (the clock did not move).
    assert len(fp.groq.requests) == 1
    assert all(r.provider == "gemini" and r.attempts[0].outcome == "skipped:rate_limited" for r in later)


async def test_when_the_wait_ends_exactly_one_probe_goes_then_traffic_returns(fp, tmp_path):
    fp.groq.script(F.rate_limited(retry_after=5.0))
    fp.groq.default = F.ok("from groq", latency=0.3)
    async with make_bot(llm_env(fp, tmp_path, attempt=1.0, deadline=3.0)) as bot:
        clock = with_clock(bot)
        await bot.handle(ev(0))
        clock.t += 5.01  # the announced wait is over
        replies = await asyncio.gather(*[bot.handle(ev(i)) for i in range(1, 11)])
        assert len(fp.groq.requests) == 2  # the 429, then ONE probe among ten messages
        after = await bot.handle(ev(11))
    outcomes = sorted(r.attempts[0].outcome for r in replies)
    assert outcomes.count("skipped:rate_probing") == 9, [r.attempts for r in replies]
    assert after.provider == "groq" and after.attempts[0].outcome == "ok"  # the probe answered: back on groq


async def test_a_probe_that_is_limited_again_holds_the_model_for_the_new_wait(fp, tmp_path):
    fp.groq.default = F.rate_limited(retry_after=2.0)
    async with make_bot(llm_env(fp, tmp_path, attempt=2.0, deadline=4.0)) as bot:
        clock = with_clock(bot)
        await bot.handle(ev(0))
        clock.t += 2.01
        probe = await bot.handle(ev(1))
        clock.t += 1.0  # inside the second window
        held = await asyncio.gather(*[bot.handle(ev(i)) for i in range(2, 6)])
    assert probe.attempts[0].outcome == "rate_limited" and probe.provider == "gemini"
    assert len(fp.groq.requests) == 2
    assert all(r.attempts[0].outcome == "skipped:rate_limited" for r in held)


async def test_a_429_without_a_hint_moves_only_that_message_on(fp, tmp_path):
    fp.groq.script(F.quota_none())
    async with make_bot(llm_env(fp, tmp_path, attempt=2.0, deadline=4.0)) as bot:
        with_clock(bot)
        first = await bot.handle(ev(1))
        second = await bot.handle(ev(2))
    assert first.provider == "gemini" and first.attempts[0].retry_after is None
    assert second.provider == "groq"


async def test_everything_limited_and_the_soonest_wait_fits_then_it_is_waited_out(fp, tmp_path):
    fp.groq.script(F.rate_limited(retry_after=0.3))
    fp.gemini.script(F.rate_limited(retry_after=0.6))
    fp.groq.default = F.ok("groq after its wait")
    async with make_bot(llm_env(fp, tmp_path, chain="groq,gemini", attempt=2.0, deadline=3.0)) as bot:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reply = await bot.handle(ev())
        took = loop.time() - t0
    assert [(a.provider, a.outcome) for a in reply.attempts] == [
        ("groq", "rate_limited"), ("gemini", "rate_limited"), ("groq", "ok")]
    assert reply.text == "groq after its wait"
    assert took >= 0.25  # it did wait for groq's window (the soonest), not gemini's
    assert len(fp.gemini.requests) == 1


async def test_everything_limited_and_no_wait_fits_the_templates_answer_now(fp, tmp_path):
    fp.groq.default = F.rate_limited(retry_after=30.0)
    fp.gemini.default = F.rate_limited(retry_after=30.0)
    async with make_bot(llm_env(fp, tmp_path, chain="groq,gemini", attempt=2.0, deadline=3.0)) as bot:
        first = await bot.handle(ev(1))
        second = await bot.handle(ev(2))
    assert first.tier == "template" and second.tier == "template"
    assert [a.outcome for a in second.attempts] == ["skipped:rate_limited", "skipped:rate_limited"]
    assert len(fp.groq.requests) == len(fp.gemini.requests) == 1


async def test_a_paid_provider_is_avoided_when_a_free_one_is_back_within_the_free_wait(fp, tmp_path):
    fp.groq.script(F.rate_limited(retry_after=0.3))
    fp.groq.default = F.ok("free answer")
    env = llm_env(fp, tmp_path, chain="groq,claude", attempt=2.0, deadline=3.0, TIERBOT_FREE_WAIT_S="1")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "groq" and reply.text == "free answer"
    assert not fp.claude.requests
    assert "paid_because" not in reply.meta


@pytest.mark.parametrize("free_wait, retry_after", [("0", 0.3), ("0.5", 5.0)])
async def test_paid_provider_answers_when_waiting_is_not_worth_it_and_says_why(fp, tmp_path, free_wait, retry_after):
    fp.groq.default = F.rate_limited(retry_after=retry_after)
    env = llm_env(fp, tmp_path, chain="groq,gemini,claude", attempt=1.5, deadline=3.0, TIERBOT_FREE_WAIT_S=free_wait)
    fp.gemini.default = F.rate_limited(retry_after=retry_after)
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "claude"
    assert reply.meta["paid_because"] == "free_limited"
    assert len(fp.groq.requests) == len(fp.gemini.requests) == 1


async def test_paid_provider_after_free_ones_failed_otherwise_is_not_counted_as_limited(fp, tmp_path):
    fp.groq.default = F.server_error()
    fp.gemini.default = F.overloaded()
    async with make_bot(llm_env(fp, tmp_path, attempt=1.5, deadline=3.0)) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "claude" and "paid_because" not in reply.meta


async def test_no_paid_providers_means_no_free_wait(fp, tmp_path):
    fp.groq.default = F.rate_limited(retry_after=5.0)
    env = llm_env(fp, tmp_path, chain="groq,claude", attempt=1.5, deadline=3.0,
                  TIERBOT_PAID_PROVIDERS="none", TIERBOT_FREE_WAIT_S="10")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "claude" and "paid_because" not in reply.meta


async def test_a_stream_moves_on_at_once_after_a_429(fp, tmp_path):
    fp.groq.default = F.rate_limited(retry_after=1.0)
    async with make_bot(llm_env(fp, tmp_path, attempt=2.0, deadline=4.0)) as bot:
        with_clock(bot)
        items = [x async for x in bot.stream(ev(1))]
        second = [x async for x in bot.stream(ev(2))]
    reply, reply2 = items[-1], second[-1]
    assert reply.provider == "gemini" and [a.outcome for a in reply.attempts] == ["rate_limited", "ok"]
    assert reply2.attempts[0].outcome == "skipped:rate_limited" and len(fp.groq.requests) == 1


@pytest.mark.parametrize("var, value", [("TIERBOT_PAID_PROVIDERS", "claude,openai"),
                                        ("TIERBOT_FREE_WAIT_S", "-1"), ("TIERBOT_FREE_WAIT_S", "soon")])
def test_bad_paid_settings_are_refused_naming_the_setting(tmp_path, var, value):
    with pytest.raises(ConfigError, match=var):
        SupportBot.from_env({"TIERBOT_DATA_DIR": str(tmp_path), "GROQ_API_KEY": "k", var: value})


def test_paid_defaults_to_claude_and_is_configurable(tmp_path):
    from bot.config import Config
    from bot.llm.routes import LLMSettings

    assert LLMSettings.from_config(Config.from_env({})).paid == {"claude"}
    assert LLMSettings.from_config(Config.from_env({"TIERBOT_PAID_PROVIDERS": "gemini, anthropic"})).paid == {
        "gemini", "claude"}


# -- no customer is a probe ------------------------------------------------------------------
async def until(predicate, timeout: float = 15.0) -> None:
    """Poll (generously) for something a background task will make true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out waiting"
        await asyncio.sleep(0.02)


async def open_groq(bot, clock: Clock) -> None:
    """Three server errors open groq's breaker; then its cooldown passes (half-open)."""
    for i in range(3):
        await bot.handle(ev(f"open{i}"))
    assert bot.services["breakers"].state("groq", "llama-3.3-70b-versatile") == "open"
    clock.t += 60


@pytest.mark.parametrize("probe, verdict", [(F.ok("groq is back", latency=2.0), "closed"),
                                            (F.server_error(latency=2.0), "open")])
async def test_a_slow_probe_goes_on_alone_and_still_decides_the_breaker(fp, tmp_path, probe, verdict):
    fp.groq.script(F.server_error(), F.server_error(), F.server_error(), probe)
    env = llm_env(fp, tmp_path, attempt=8.0, deadline=10.0, TIERBOT_PROBE_FLOOR_S="0.2")
    async with make_bot(env) as bot:
        clock = with_clock(bot)
        await open_groq(bot, clock)
        breaker = bot.services["breakers"].get("groq", "llama-3.3-70b-versatile")
        reply = await bot.handle(ev("customer"))
        # The customer did not wait for the probe: gemini answered while it is still out.
        assert reply.provider == "gemini"
        assert breaker.probing
        assert [(a.provider, a.outcome) for a in reply.attempts] == [("groq", "probe_background"), ("gemini", "ok")]
        left = reply.attempts[0]
        assert left.input_tokens > 0 and "usage_estimated" in left.detail  # its prompt is charged
        # Meanwhile nobody else is sent to groq: the probe is out.
        other = await bot.handle(ev("other"))
        assert other.attempts[0].outcome == "skipped:breaker_probing" and len(fp.groq.requests) == 4
        await until(lambda: not breaker.probing)
        assert breaker.state == verdict
        if verdict == "closed":
            back = await bot.handle(ev("after"))
            assert back.provider == "groq"


async def test_a_probe_that_answers_before_the_next_provider_wins_the_race(fp, tmp_path):
    fp.groq.script(F.server_error(), F.server_error(), F.server_error(), F.ok("groq probe", latency=0.6))
    fp.gemini.default = F.ok("slow gemini", latency=5.0)
    env = llm_env(fp, tmp_path, attempt=6.0, deadline=8.0, TIERBOT_PROBE_FLOOR_S="0.2")
    async with make_bot(env) as bot:
        clock = with_clock(bot)
        fp.gemini.default = F.ok()  # gemini answers the messages that open groq's breaker
        await open_groq(bot, clock)
        fp.gemini.default = F.ok("slow gemini", latency=5.0)
        reply = await bot.handle(ev("customer"))
    assert reply.provider == "groq" and reply.text == "groq probe"
    assert [(a.provider, a.outcome) for a in reply.attempts] == [("groq", "ok"), ("gemini", "cancelled")]


async def test_a_cold_provider_does_not_hold_its_first_customers(fp, tmp_path):
    fp.groq.default = F.ok("groq, slow to wake", latency=2.5)
    env = llm_env(fp, tmp_path, attempt=5.0, deadline=7.0, TIERBOT_PROBE_FLOOR_S="0.2")
    async with make_bot(env) as bot:
        first = await bot.handle(ev(1))
        watch = bot.services["llm"].hosts["groq"]
        assert first.provider == "gemini" and first.attempts[0].outcome == "probe_background"
        await until(lambda: watch.proven and not watch.inflight)  # the probe got its answer
        second = await bot.handle(ev(2))
    assert second.provider == "groq"  # proven now: an ordinary attempt, with its whole budget


async def test_with_the_guard_off_a_probe_keeps_its_customer(fp, tmp_path):
    fp.groq.default = F.ok("groq, slow to wake", latency=1.0)
    env = llm_env(fp, tmp_path, attempt=3.0, deadline=5.0, TIERBOT_PROBE_FLOOR_S="0.2", TIERBOT_PROBE_GUARD="false")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev(1))
    assert reply.provider == "groq" and not fp.gemini.requests


async def test_only_a_cold_hosts_first_attempts_race_the_next_provider(fp, tmp_path):
    # groq refuses: every message falls back to gemini, not heard from yet and slow to answer.
    # Its first attempts are its probes (raced by claude after the floor); the others wait for it.
    fp.gemini.default = F.ok("gemini", latency=1.0)
    env = llm_env(fp, tmp_path, attempt=4.0, deadline=6.0, refused={"groq"}, TIERBOT_PROBE_FLOOR_S="0.2")
    async with make_bot(env) as bot:
        replies = await asyncio.gather(*[bot.handle(ev(i)) for i in range(8)])
    raced = [r for r in replies if any(a.outcome == "probe_background" for a in r.attempts)]
    assert 1 <= len(raced) <= 2  # slow start's two
    assert sum(r.provider == "gemini" for r in replies) >= 6
