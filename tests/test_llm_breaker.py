"""Breaker rules: rate signals pause, health failures open, one probe when cooldown ends."""
from __future__ import annotations

import asyncio
import time

import pytest

from bot import Event
from bot.llm.breaker import BreakerBoard
from fakes import llm_servers as F
from fake_clock import FakeClock
from fakes.llm_bot import llm_env, make_bot


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def board(clock: Clock, **kw) -> BreakerBoard:
    return BreakerBoard(threshold=3, cooldown=10.0, max_cooldown=60.0, clock=clock, **kw)


def test_long_retry_after_pauses_the_model_for_exactly_that_and_never_opens():
    clock = Clock()
    b = board(clock).get("groq", "m")
    for _ in range(10):
        b.failure("rate_limited", retry_after=5.0)
    assert b.state == "paused" and b.available() == "rate_limited"
    assert not b.opened  # ten 429s are not an outage
    clock.t += 5.01
    assert b.state == "closed" and b.available() is None


def test_any_retry_after_holds_the_model_then_lets_exactly_one_probe_through():
    clock = Clock()
    b = board(clock).get("groq", "m")
    b.failure("rate_limited", retry_after=0.5)  # short or long, it speaks for the key
    assert b.available() == "rate_limited" and b.quiet_for() == pytest.approx(0.5)
    clock.t += 0.51
    assert b.available() is None and b.acquire() is True   # the probe
    assert b.available() == "rate_probing" and b.quiet_for() == 0.0
    b.success()
    assert b.available() is None and b.acquire() is False  # traffic flows again


def test_a_rate_probe_failing_otherwise_hands_the_probe_to_the_next_request():
    clock = Clock()
    b = board(clock).get("groq", "m")
    b.failure("rate_limited", retry_after=1.0)
    clock.t += 1.01
    assert b.acquire() is True
    b.failure("server_error", was_probe=True)
    assert not b.opened  # a rate probe is not a half-open probe: one failure is not an outage
    assert b.available() is None and b.acquire() is True


async def test_waiters_hear_the_probe_verdict():
    clock = Clock()
    b = board(clock).get("groq", "m")
    b.failure("rate_limited", retry_after=1.0)
    clock.t += 1.01
    assert b.acquire() is True
    waiter = asyncio.ensure_future(b.verdict(timeout=30))
    await asyncio.sleep(0)
    assert not waiter.done()
    b.success()
    await asyncio.wait_for(waiter, 5)


def test_429s_without_a_hint_never_pause_the_model():
    # Concurrent requests' instant 429s arrive before their siblings' slower successes:
    # counting them "in a row" paused healthy providers under 30 % random 429s.
    clock = Clock()
    b = board(clock).get("groq", "m")
    for _ in range(10):
        b.failure("rate_limited")
    assert b.available() is None and b.state == "closed"


def test_reset_headers_longer_than_the_cap_are_not_trusted():
    clock = Clock()
    b = board(clock).get("groq", "m")
    b.failure("rate_limited", retry_after=10_000)
    clock.t += 301
    assert b.available() is None


def test_opens_after_threshold_then_single_probe_then_closes_on_success():
    clock = Clock()
    opened = []
    bb = board(clock)
    bb.on_open(lambda br, reason: opened.append((br.provider, br.model, reason)))
    b = bb.get("gemini", "m")
    b.failure("server_error")
    b.failure("server_error")
    assert b.state == "closed"
    b.failure("server_error")
    assert b.state == "open" and b.available() == "breaker_open"
    assert opened == [("gemini", "m", "server_error")]
    clock.t += 10.01
    assert b.state == "half_open" and b.available() is None
    assert b.acquire() is True  # this request is the probe
    assert b.available() == "breaker_probing"  # everyone else keeps skipping
    b.success()
    assert b.state == "closed" and b.available() is None


def test_failed_probe_doubles_the_cooldown_up_to_the_cap():
    clock = Clock()
    b = board(clock).get("claude", "m")
    for _ in range(3):
        b.failure("timeout")
    waits = []
    for _ in range(5):
        start = clock.t
        while b.available() is not None:
            clock.t += 0.5
        waits.append(clock.t - start)
        assert b.acquire()
        b.failure("timeout", was_probe=True)
    assert waits[0] == pytest.approx(10, abs=0.5)
    assert waits[1] == pytest.approx(20, abs=0.5)
    assert waits[-1] == pytest.approx(60, abs=0.5)  # capped


def test_overload_with_retry_after_opens_for_at_least_what_was_asked():
    clock = Clock()
    b = board(clock).get("claude", "m")
    for _ in range(3):
        b.failure("overloaded", retry_after=30)
    clock.t += 15
    assert b.available() == "breaker_open"  # the 10 s cooldown would have ended; 30 s was asked
    clock.t += 15.1
    assert b.available() is None


def test_cancelled_probe_gives_its_turn_back():
    clock = Clock()
    b = board(clock).get("groq", "m")
    for _ in range(3):
        b.failure("connection")
    clock.t += 11
    assert b.acquire()
    b.release(True)
    assert b.available() is None


def test_bad_request_and_content_filter_do_not_count_against_health():
    clock = Clock()
    b = board(clock).get("groq", "m")
    for _ in range(5):
        b.failure("bad_request")
        b.failure("content_filtered")
    assert b.state == "closed"


async def test_no_thundering_herd_when_cooldown_ends(tmp_path):
    """A dead primary: when its cooldown ends, ONE of 30 concurrent messages probes it;
    the others go straight to the next provider."""
    async with F.FakeProviders() as fp:
        fp.groq.default = F.black_hole()
        env = llm_env(fp, tmp_path, deadline=2.0, attempt=0.3, TIERBOT_BREAKER_THRESHOLD="2",
                      TIERBOT_BREAKER_COOLDOWN_S="1.0")
        async with make_bot(env) as bot:
            clock = FakeClock(time.monotonic())
            bot.services["breakers"].clock = clock  # before any breaker exists: all read it
            for i in range(2):
                await bot.handle(Event("t", f"w{i}", "u", "hi"))
            assert bot.services["breakers"].state("groq") == "open"
            # Cooldown over. The breakers' time stands still from here: after the probe
            # fails, the reopened cooldown outlasts the other 29 replies however slow the
            # machine, so a second request really would be a herd.
            clock.advance(1.0)
            sent = len(fp.groq.requests)
            replies = await asyncio.gather(*[bot.handle(Event("t", f"c{i}", "u", "hi")) for i in range(30)])
        assert len(fp.groq.requests) - sent == 1
        assert all(r.provider == "gemini" for r in replies)
        outcomes = sorted(r.attempts[0].outcome for r in replies)
        assert outcomes.count("timeout") == 1
        # The others skipped while the probe was out (or after it failed and the breaker
        # reopened) — never a second request.
        assert all(o in ("skipped:breaker_probing", "skipped:breaker_open") for o in outcomes if o != "timeout")


def test_half_open_breaker_still_honours_a_wait_asked_by_a_late_answer():
    # Found by the breaker state machine (tests/test_properties.py): a request sent before
    # the breaker opened answers 503 + Retry-After while it is half-open; the probe waits too.
    clock = Clock()
    b = board(clock).get("groq", "m")
    for _ in range(3):
        b.failure("connection")
    clock.t += 11  # cooldown over: half-open
    b.failure("connection", retry_after=1.0)
    assert b.available() == "rate_limited"
    clock.t += 1.01
    assert b.available() is None and b.acquire() is True
