"""Property tests for the pieces with rules: the circuit breaker's state machine (driven
the way the chain drives it, with many requests in flight and an injected clock),
Telegram message splitting, and FAQ text normalisation."""
from __future__ import annotations

import unicodedata

from hypothesis import given, settings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from adapters.textsplit import split_text, utf16_len
from bot.llm import errors as E
from bot.llm.breaker import CLOSED, DISABLED, HALF_OPEN, MAX_PAUSE_S, OPEN, PAUSED, Breaker
from faq_cache.normalize import normalize

THRESHOLD, COOLDOWN, MAX_COOLDOWN = 3, 10.0, 80.0
HEALTH = sorted(E.HEALTH_FAILURES)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class BreakerMachine(RuleBasedStateMachine):
    """Requests start (when the breaker lets them), stay in flight, and end in any order
    with any outcome while time moves. A small model keeps only what the rules promise:
    when nobody may ask, that one probe at a time goes out (after an outage or after an
    announced wait), and when the breaker opens."""

    inflight = Bundle("inflight")

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.b = Breaker("groq", "m", threshold=THRESHOLD, cooldown=COOLDOWN, max_cooldown=MAX_COOLDOWN,
                         clock=self.clock)
        self.opened_events: list[str] = []
        self.b._on_open.append(lambda br, reason: self.opened_events.append(reason))
        self.quiet_until = 0.0       # nobody may be let through before this (asked by the provider)
        self.outage_until = 0.0      # ... nor before this while the breaker is open (a success lifts it)
        self.open_since: float | None = None
        self.probes_out = 0
        self.rate_pending = False    # a wait was announced: the next request through is a probe
        self.health_streak = 0       # health failures reported since the last success (while closed)
        self.disabled = False

    # -- requests ----------------------------------------------------------------------
    @rule(target=inflight)
    def start_request(self):
        now = self.clock()
        reason = self.b.available()
        if self.disabled:
            assert reason == "disabled_auth"
            return None
        if now < max(self.quiet_until, self.outage_until):
            assert reason is not None, f"let through {max(self.quiet_until, self.outage_until) - now:.3f}s before it was allowed"
        if reason is not None:
            assert reason in ("breaker_open", "breaker_probing", "rate_limited", "rate_probing"), reason
            if reason in ("breaker_probing", "rate_probing"):
                assert self.probes_out == 1
            return None
        probe = self.b.acquire()
        if probe:
            assert (self.b.opened or self.rate_pending) and self.probes_out == 0, "a second probe while one is out"
            self.probes_out += 1
        else:
            assert not self.b.opened, "an open breaker let a non-probe request through"
            assert not self.rate_pending, "a request went after an announced wait without being its probe"
        return probe

    def _ended(self, probe) -> bool:
        if probe:
            self.probes_out -= 1
        return bool(probe)

    @rule(req=consumes(inflight))
    def succeeds(self, req):
        if req is None:
            return
        self._ended(req)
        self.b.success()
        self.rate_pending = False
        self.health_streak = 0
        self.open_since = None
        self.outage_until = 0.0  # a late answer from a request sent before the outage closes it
        assert not self.b.opened
        assert self.b.state == (DISABLED if self.disabled else self.b.state) in (CLOSED, PAUSED, DISABLED)

    @rule(req=consumes(inflight), outcome=st.sampled_from(HEALTH),
          retry_after=st.none() | st.floats(0, 600, allow_nan=False))
    def health_failure(self, req, outcome, retry_after):
        if req is None:
            return
        was_probe = self._ended(req)
        was_open = self.b.opened
        before = len(self.opened_events)
        self.b.failure(outcome, retry_after, was_probe)
        now = self.clock()
        # Announced (ledger, logs) once per outage, not again when a probe fails.
        assert len(self.opened_events) - before == (1 if self.b.opened and not was_open else 0)
        if not was_open:
            self.health_streak += 1
        if (was_probe and was_open) or (not was_open and self.health_streak >= THRESHOLD):
            assert self.b.opened and self.b.state == (DISABLED if self.disabled else OPEN)
            # Open for at least the cooldown, and at least what the provider asked (capped).
            self.outage_until = max(self.outage_until, now + COOLDOWN, now + min(retry_after or 0.0, MAX_PAUSE_S))
            if not was_open:
                self.open_since = now
        elif retry_after:
            self.quiet_until = max(self.quiet_until, now + min(retry_after, MAX_PAUSE_S))
            self.rate_pending = True

    @rule(req=consumes(inflight), retry_after=st.none() | st.floats(0, 600, allow_nan=False))
    def rate_limited(self, req, retry_after):
        if req is None:
            return
        was_probe = self._ended(req)
        was_open = self.b.opened
        before = len(self.opened_events)
        self.b.failure(E.RATE_LIMITED, retry_after, was_probe)
        assert self.b.opened == was_open, "a 429 changed whether the breaker is open"
        assert len(self.opened_events) == before, "a 429 counted as an outage"
        if retry_after:  # any announced wait holds the key, however short
            self.quiet_until = max(self.quiet_until, self.clock() + min(retry_after, MAX_PAUSE_S))
            self.rate_pending = True

    @rule(req=consumes(inflight), outcome=st.sampled_from([E.BAD_REQUEST, E.CONTENT_FILTERED, "cancelled"]))
    def ends_without_verdict(self, req, outcome):
        if req is None:
            return
        was_probe = self._ended(req)
        opened = self.b.opened
        if outcome == "cancelled":
            self.b.release(was_probe)
        else:
            self.b.failure(outcome, None, was_probe)
        assert self.b.opened == opened

    @rule()
    def auth_failure(self):
        before = len(self.opened_events)
        self.b.disable(E.AUTH)
        assert len(self.opened_events) - before == (0 if self.disabled else 1)
        self.disabled = True

    # -- time --------------------------------------------------------------------------
    @rule(dt=st.floats(0.0, 400.0, allow_nan=False))
    def time_passes(self, dt):
        self.clock.t += dt

    @precondition(lambda self: not self.disabled and self.probes_out == 0)
    @rule()
    def long_quiet_lets_one_through(self):
        """Liveness: once everything asked for has passed, a request may go again."""
        self.clock.t = max(self.clock.t, self.quiet_until, self.outage_until) + MAX_COOLDOWN + MAX_PAUSE_S + 1
        assert self.b.available() is None
        assert self.b.state in (CLOSED, HALF_OPEN)

    # -- always ------------------------------------------------------------------------
    @invariant()
    def state_is_consistent(self):
        state = self.b.state
        assert state in (CLOSED, OPEN, HALF_OPEN, PAUSED, DISABLED)
        if self.disabled:
            assert state == DISABLED and self.b.available() == "disabled_auth"
        assert 0 <= self.probes_out <= 1
        snap = self.b.snapshot()
        assert snap["retry_in_s"] >= 0 and snap["state"] == state
        if self.b.opened:
            assert COOLDOWN <= self.b.current_cooldown <= MAX_COOLDOWN
        assert all(r in (*HEALTH, E.AUTH) for r in self.opened_events)


BreakerMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestBreakerStateMachine = BreakerMachine.TestCase


def test_a_late_answer_sent_before_the_outage_closes_the_breaker():
    """Found by the state machine: three requests fail and open the breaker, then a fourth,
    sent before it opened, answers. The provider is alive, so the breaker closes and the next
    request goes at once rather than after the cooldown."""
    clock = Clock()
    b = Breaker("groq", "m", threshold=THRESHOLD, cooldown=COOLDOWN, max_cooldown=MAX_COOLDOWN, clock=clock)
    flights = [b.acquire() for _ in range(4)]
    for probe in flights[1:]:
        b.failure(E.CONNECTION, None, probe)
    assert b.opened and b.available() == "breaker_open"
    b.success()
    assert b.state == CLOSED and b.available() is None


# -- message splitting ------------------------------------------------------------------
def _rebuilds(text: str, parts: list[str]) -> bool:
    """True when `parts`, with only whitespace between them, spell `text.strip()`."""
    whole, pos = text.strip(), 0
    for i, part in enumerate(parts):
        if i:
            while pos < len(whole) and whole[pos].isspace():
                pos += 1
        if not whole.startswith(part, pos):
            return False
        pos += len(part)
    return pos == len(whole)


_chunks = st.lists(st.one_of(
    st.text(min_size=1, max_size=40),                               # any Unicode at all
    st.sampled_from([" ", "\n", "\n\n", ". ", "! ", "… ", "\u3002", "\t"]),
    st.text(alphabet="😀👍🏽é", min_size=1, max_size=30),              # 2-unit UTF-16 characters
    st.text(alphabet="abc", min_size=50, max_size=300),              # long unbroken runs
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_chunks, st.integers(2, 200))
def test_split_parts_fit_and_rebuild_the_text_except_whitespace_at_cuts(chunks, limit):
    text = "".join(chunks)
    parts = split_text(text, limit)
    assert all(p and utf16_len(p) <= limit for p in parts)
    assert all(p == p.strip() for p in parts), "a part starts or ends with whitespace"
    assert _rebuilds(text, parts), (text, parts)
    assert (parts == []) == (text.strip() == "")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=200), min_size=1, max_size=60))
def test_split_at_telegram_limit_on_long_answers(words):
    text = " ".join(words) * 8  # often well over 4096 UTF-16 units
    parts = split_text(text, 4096)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert _rebuilds(text, parts)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300), st.integers(2, 64))
def test_split_never_cuts_a_surrogate_pair(text, limit):
    for part in split_text(text, limit):
        part.encode("utf-16-le").decode("utf-16-le")  # a half pair would not round-trip
        part.encode("utf-8")


# -- FAQ normalisation -----------------------------------------------------------------
_faq_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80) | st.text(
    alphabet="abcdeiklmnorstuyABCDEIKLMNORSTUY'’ ?!.,-_ŞÉéẞßﬁ①Ⅻｆｕｌｌ\u00a0\u200b\u0301", max_size=60)


@settings(max_examples=400, deadline=None)
@given(_faq_text)
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=300, deadline=None)
@given(_faq_text)
def test_normalize_ignores_unicode_form(text):
    want = normalize(text)
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        assert normalize(unicodedata.normalize(form, text)) == want, form


@settings(max_examples=300, deadline=None)
@given(_faq_text)
def test_normalize_output_is_lowercase_words_single_spaced(text):
    out = normalize(text)
    assert out == out.strip() and "  " not in out
    assert all(w and all(c.isalnum() or unicodedata.category(c).startswith("M") or c == "_" for c in w)
               for w in out.split(" ") if out)
    assert out == out.casefold() or normalize(out.casefold()) == out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=1, max_size=8),
       st.data())
def test_normalize_ignores_case_punctuation_and_spacing(words, data):
    seps = [data.draw(st.sampled_from([" ", "  ", "! ", " ? ", ", ", ". ", " - ", "\t", "\u00a0", "…"]))
            for _ in words]
    case = data.draw(st.sampled_from([str.upper, str.capitalize, str.lower]))
    noisy = "".join(case(w) + sep for w, sep in zip(words, seps))
    assert normalize(noisy) == normalize(" ".join(words))
