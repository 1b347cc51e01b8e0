"""Stall detection and slow start: a provider that accepts requests and never answers is
left before the attempt timeouts, the messages waiting on it are rescued, a slow provider
that keeps answering is kept, and a healthy chain sends nothing extra. Real SDKs over real
HTTP against the fake providers; the rules themselves are also checked as a state machine."""
from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from bot import Event, SupportBot
from bot.config import ConfigError
from bot.llm.breaker import OPEN, Breaker
from bot.llm.stalls import MIN_EVIDENCE, MIN_SAMPLES, HostWatch
from fake_clock import FakeClock
from fakes import llm_servers as F
from fakes.llm_bot import LEDGER, llm_env, make_bot

ATTEMPT = 3.0  # long, so that "left before its timeout" cannot be a timeout


def ev(i: int | str = 1, text: str = "Where is my order?") -> Event:
    return Event(platform="test", conversation_id=f"c{i}", user_id="u1", text=text)


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


def env_for(fp, tmp_path, **extra: str) -> dict[str, str]:
    return llm_env(fp, tmp_path, deadline=ATTEMPT + 2, attempt=ATTEMPT, **{"TIERBOT_STALL_FLOOR_S": "0.3", **extra})


async def warm(bot, fp, n: int = MIN_SAMPLES + 1, latency: float = 0.02) -> None:
    """Let groq answer a few messages so that its usual latency is known."""
    fp.groq.default = F.ok(latency=latency)
    for i in range(n):
        r = await bot.handle(ev(f"warm{i}"))
        assert r.provider == "groq"


async def timed(bot, event):
    t0 = time.perf_counter()
    reply = await bot.handle(event)
    return reply, time.perf_counter() - t0


async def test_a_silent_provider_is_left_long_before_its_timeout(fp, tmp_path):
    async with make_bot(env_for(fp, tmp_path), ledger=True) as bot:
        await warm(bot, fp)
        fp.groq.default = F.black_hole()
        fp.gemini.default = F.ok("from gemini")
        sent = len(fp.groq.requests)
        results = await asyncio.gather(*[timed(bot, ev(i)) for i in range(5)])
        breakers = bot.services["breakers"]
        assert breakers.state("groq") == OPEN
        after, elapsed_after = await timed(bot, ev("after"))
        events = LEDGER["current"].events
    for reply, elapsed in results:
        assert reply.provider == "gemini" and reply.text == "from gemini"
        assert reply.attempts[0].provider == "groq" and reply.attempts[0].outcome == "stalled"
        assert elapsed < 2.5, elapsed  # threshold 0.3 s (the floor) + gemini, well before the 3 s timeout
    assert len(fp.groq.requests) - sent == 5  # only the ones already in flight
    assert ("breaker_open", "", {"provider": "groq", "model": "*", "reason": "stalled"}) in events
    # Until its cooldown ends, the silent provider costs nothing.
    assert after.attempts[0].outcome == "skipped:breaker_open" and after.provider == "gemini"
    assert len(fp.groq.requests) - sent == 5  # skipped at once, nothing sent


async def test_attempts_already_in_flight_are_rescued_together(fp, tmp_path):
    # Seconds, not tenths, so that a loaded machine's late timers cannot blur the two cases.
    env = env_for(fp, tmp_path, TIERBOT_STALL_FLOOR_S="2.0", TIERBOT_ATTEMPT_TIMEOUT_S="8",
                  TIERBOT_DEADLINE_S="10")
    async with make_bot(env) as bot:
        await warm(bot, fp)
        fp.groq.default = F.black_hole()
        early = [asyncio.create_task(timed(bot, ev(f"e{i}"))) for i in range(3)]
        await asyncio.sleep(1.2)
        late = [asyncio.create_task(timed(bot, ev(f"l{i}"))) for i in range(3)]
        early_r, late_r = await asyncio.gather(*early), await asyncio.gather(*late)
    for reply, _ in early_r + late_r:
        assert reply.provider == "gemini" and reply.attempts[0].outcome == "stalled"
    # Threshold 2 s, confirmed over 0.5 s: the early ones leave after about 2.5 s (their
    # timeout is 8 s), and the late ones with them, about 1.3 s after they started, not
    # after a threshold of their own (2 s or more).
    assert all(elapsed < 4.0 for _, elapsed in early_r), [e for _, e in early_r]
    assert all(elapsed < 1.8 for _, elapsed in late_r), [e for _, e in late_r]


async def test_a_slow_provider_that_keeps_answering_is_not_abandoned(fp, tmp_path):
    env = env_for(fp, tmp_path, TIERBOT_STALL_FLOOR_S="0.8")
    async with make_bot(env) as bot:
        await warm(bot, fp, latency=0.05)
        fp.groq.default = F.ok("slow but here", latency=0.3)  # 6x its usual latency, under 0.8 s
        replies = await asyncio.gather(*[bot.handle(ev(i)) for i in range(10)])
        # One request far past the threshold, alone, is one slow answer, not a stall.
        fp.groq.default = F.ok("very slow", latency=1.3)
        lone = await bot.handle(ev("lone"))
        state = bot.services["breakers"].state("groq")
    assert all(r.provider == "groq" and r.text == "slow but here" for r in replies)
    assert lone.provider == "groq" and lone.text == "very slow"
    assert [a.outcome for a in lone.attempts] == ["ok"]
    assert state == "closed" and not fp.gemini.requests


async def test_healthy_traffic_costs_one_request_per_message(fp, tmp_path):
    fp.groq.default = F.ok(latency=0.05)
    async with make_bot(env_for(fp, tmp_path)) as bot:
        cold = await asyncio.gather(*[bot.handle(ev(f"a{i}")) for i in range(30)])
        warm_wave = await asyncio.gather(*[bot.handle(ev(f"b{i}")) for i in range(30)])
    total = sum(len(s.requests) for s in fp.servers.values())
    assert total == 60  # nothing hedged, nothing retried, nothing sent twice
    for r in cold + warm_wave:
        assert [a.outcome for a in r.attempts if not a.outcome.startswith("skipped:")] == ["ok"]
    # Cold start: groq's two probes, the rest of the first wave on gemini (slow start's price)...
    assert sum(r.provider == "groq" for r in cold) == 2
    assert all(r.attempts[0].outcome == "skipped:unproven" for r in cold if r.provider == "gemini")
    # ...then groq has answered, and takes everything.
    assert all(r.provider == "groq" for r in warm_wave)


async def test_slow_start_a_primary_dead_from_the_start_costs_two_probes(fp, tmp_path):
    fp.groq.default = F.black_hole()
    env = llm_env(fp, tmp_path, deadline=3, attempt=1.0)
    async with make_bot(env) as bot:
        results = await asyncio.gather(*[timed(bot, ev(i)) for i in range(20)])
    assert len(fp.groq.requests) == 2
    fast = [(r, e) for r, e in results if r.attempts[0].outcome == "skipped:unproven"]
    assert len(fast) == 18
    assert all(r.provider == "gemini" and e < 0.6 for r, e in fast)
    probes = [r for r, _ in results if r.attempts[0].outcome == "timeout"]
    assert len(probes) == 2 and all(r.provider == "gemini" for r in probes)


async def test_slow_start_never_sends_a_message_to_the_templates(fp, tmp_path):
    fp.groq.default = F.ok(latency=0.1)
    env = llm_env(fp, tmp_path, chain="groq")
    async with make_bot(env) as bot:
        replies = await asyncio.gather(*[bot.handle(ev(i)) for i in range(6)])
    assert all(r.provider == "groq" for r in replies) and len(fp.groq.requests) == 6


async def test_switched_off_the_chain_waits_for_timeouts_as_before(fp, tmp_path):
    env = env_for(fp, tmp_path, TIERBOT_STALL_DETECTION="false", TIERBOT_SLOW_START="0")
    env["TIERBOT_ATTEMPT_TIMEOUT_S"] = "1.0"
    async with make_bot(env) as bot:
        await warm(bot, fp)
        fp.groq.default = F.black_hole()
        results = await asyncio.gather(*[timed(bot, ev(i)) for i in range(3)])
    for reply, elapsed in results:
        assert reply.attempts[0].outcome == "timeout" and elapsed >= 1.0


async def test_a_probe_into_a_still_silent_provider_is_left_and_the_cooldown_doubles(fp, tmp_path):
    env = env_for(fp, tmp_path, TIERBOT_BREAKER_COOLDOWN_S="0.5")
    async with make_bot(env) as bot:
        clock = FakeClock(time.monotonic())
        bot.services["breakers"].clock = clock  # before any breaker exists: cooldowns on the test's clock
        await warm(bot, fp)
        fp.groq.default = F.black_hole()
        await asyncio.gather(*[bot.handle(ev(i)) for i in range(3)])
        host = bot.services["breakers"].host("groq")
        assert host.state == OPEN and host.current_cooldown == 0.5
        clock.advance(0.5)
        probe, elapsed = await timed(bot, ev("probe"))
    assert probe.attempts[0].outcome == "stalled" and probe.provider == "gemini"
    assert elapsed < 2.5  # left at the stall threshold (0.3 s), not the 3 s attempt timeout
    assert host.state == OPEN and host.current_cooldown == 1.0  # a failed probe


async def test_a_recovered_provider_gets_its_traffic_back(fp, tmp_path):
    env = env_for(fp, tmp_path, TIERBOT_BREAKER_COOLDOWN_S="0.3")
    async with make_bot(env) as bot:
        clock = FakeClock(time.monotonic())
        bot.services["breakers"].clock = clock
        await warm(bot, fp)
        fp.groq.default = F.black_hole()
        await asyncio.gather(*[bot.handle(ev(i)) for i in range(3)])
        fp.groq.default = F.ok("groq again", latency=0.02)
        clock.advance(0.3)  # the cooldown is over
        back = await bot.handle(ev("back"))
    assert back.provider == "groq" and back.text == "groq again"


async def test_a_stream_leaves_a_silent_provider_before_its_first_chunk(fp, tmp_path):
    async with make_bot(env_for(fp, tmp_path)) as bot:
        await warm(bot, fp)
        fp.groq.default = F.black_hole()
        fp.gemini.default = F.ok("Streamed from gemini.")

        async def streamed(i):
            t0 = time.perf_counter()
            items = [x async for x in bot.stream(ev(f"s{i}"))]
            return items, time.perf_counter() - t0

        results = await asyncio.gather(*[streamed(i) for i in range(3)])
    for items, elapsed in results:
        reply = items[-1]
        assert "".join(items[:-1]) == reply.text == "Streamed from gemini."
        assert reply.attempts[0].outcome == "stalled" and reply.provider == "gemini"
        assert elapsed < 2.5  # before the 3 s attempt timeout


@pytest.mark.parametrize("var, value", [("TIERBOT_STALL_FACTOR", "0.5"), ("TIERBOT_STALL_FLOOR_S", "0"),
                                        ("TIERBOT_SLOW_START", "-1"), ("TIERBOT_STALL_DETECTION", "maybe")])
def test_bad_stall_settings_are_refused_naming_the_setting(tmp_path, var, value):
    with pytest.raises(ConfigError, match=var):
        SupportBot.from_env({"TIERBOT_DATA_DIR": str(tmp_path), "GROQ_API_KEY": "k", var: value})


# -- 429 shapes, end to end: no hint moves one request on; a quota that ran out pauses ----
@pytest.mark.parametrize("provider, wait", [("groq", 8.0), ("gemini", 39.0), ("claude", 20.0)])
async def test_429_without_a_quota_hint_moves_on_and_pauses_nobody(fp, tmp_path, provider, wait):
    chain = ",".join([provider, *[p for p in ("groq", "gemini", "claude") if p != provider]])
    fp.servers[provider].script(F.quota_none())
    async with make_bot(llm_env(fp, tmp_path, chain=chain)) as bot:
        first = await bot.handle(ev(1))
        second = await bot.handle(ev(2))
    assert first.attempts[0].outcome == "rate_limited" and first.attempts[0].retry_after is None
    assert first.provider != provider
    assert second.provider == provider  # not paused: the next request tries it again


@pytest.mark.parametrize("provider, wait", [("groq", 8.0), ("gemini", 39.0), ("claude", 20.0)])
async def test_429_saying_a_quota_ran_out_pauses_the_model_for_that_long(fp, tmp_path, provider, wait):
    chain = ",".join([provider, *[p for p in ("groq", "gemini", "claude") if p != provider]])
    fp.servers[provider].script(F.quota_exhausted())
    async with make_bot(llm_env(fp, tmp_path, chain=chain)) as bot:
        first = await bot.handle(ev(1))
        second = await bot.handle(ev(2))
        snap = [s for s in bot.services["breakers"].states() if s["provider"] == provider and s["model"] != "*"]
    assert first.attempts[0].outcome == "rate_limited"
    assert first.attempts[0].retry_after == pytest.approx(wait, abs=1.0)
    assert second.attempts[0].outcome == "skipped:rate_limited" and len(fp.servers[provider].requests) == 1
    assert snap[0]["state"] == "paused" and snap[0]["retry_in_s"] > wait - 2


# -- the rules, as a state machine ----------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class StallMachine(RuleBasedStateMachine):
    """Attempts start, get answers, end silent or cancelled, in any order, while time moves.
    Checks the promises: never stalled while the host answered within the threshold, or on
    one piece of evidence, or without enough latency samples; slow start only before the
    first answer; a declared stall rescues everything in flight."""

    tickets = Bundle("tickets")

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.declared: list[str] = []
        self.w = HostWatch("groq", factor=2.0, floor_s=0.5, slow_start=2, clock=self.clock,
                           on_stall=lambda p, d: self.declared.append(d))
        self.ever_answered = False

    @rule(target=tickets)
    def start(self):
        if self.w.slow_start_full():
            assert not self.w.proven and len(self.w.inflight) >= 2
        return self.w.start()

    @rule(t=consumes(tickets), latency=st.floats(0.01, 2.0))
    def answered(self, t, latency):
        if t.closed:
            return
        self.w.answered(t, latency)
        self.w.end(t)
        self.ever_answered = True
        assert not self.w.stalled()  # it just answered

    @rule(t=consumes(tickets))
    def ends_silent(self, t):
        was_closed = t.closed
        before = len(self.declared)
        self.w.end(t, silent=True)
        if was_closed:
            assert len(self.declared) == before

    @rule(t=consumes(tickets))
    def cancelled(self, t):
        before = self.w.silent_ended
        self.w.end(t)
        assert self.w.silent_ended == before  # a cancel is no evidence

    @rule(dt=st.floats(0.0, 5.0))
    def time_passes(self, dt):
        self.clock.t += dt

    @rule()
    def check(self):
        if self.w.stalled():
            before = {t.id for t in self.w.inflight.values()}
            self.w.declare("test")
            assert all(t.rescued for t in self.w.inflight.values() if t.id in before)

    @invariant()
    def promises(self):
        w, now = self.w, self.clock()
        limit = w.threshold()
        if len(w.latency) < MIN_SAMPLES:
            assert limit is None and not w.stalled()
        if w.stalled():
            silent = [t for t in w.inflight.values() if not t.rescued and t.started > w.answered_at]
            assert silent and now - silent[0].started >= limit
            assert now - w.answered_at >= limit  # the host was quiet for the whole threshold
            assert len(silent) + w.silent_ended >= MIN_EVIDENCE
        assert w.proven == self.ever_answered
        if w.proven:
            assert not w.slow_start_full()


StallMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestStallRules = StallMachine.TestCase


def test_trip_opens_a_closed_breaker_once_and_leaves_an_open_one_alone():
    clock = Clock()
    opened = []
    b = Breaker("groq", "*", threshold=3, cooldown=10.0, clock=clock)
    b._on_open.append(lambda br, reason: opened.append(reason))
    b.trip("stalled")
    assert b.state == OPEN and b.available() == "breaker_open" and opened == ["stalled"]
    until = b.open_until
    clock.t += 5
    b.trip("stalled")
    assert b.open_until == until and opened == ["stalled"]  # one announcement per outage
    clock.t += 5.01
    assert b.acquire() is True  # half-open: one probe
    b.trip("stalled")  # a stalled probe gets its verdict from its own failure, not here
    assert b.probing
    b.failure("stalled", was_probe=True)
    assert b.current_cooldown == 20.0 and b.state == OPEN
