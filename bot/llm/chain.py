"""The LLM tier: tries a route's provider/model steps in order under one deadline.

For each step it asks, in order: is the provider switched off (bad key)? can the
model see the image? does a provider gate (e.g. the budget cap) object? is a breaker
open, or a rate-limit wait the provider announced still running? does an attempt still
fit in the deadline? Each "no" is recorded as a skipped attempt with its reason. Each
real attempt is classified, charged for the tokens it consumed, fed to the breakers and
logged as one key=value line naming what comes next. When nothing is left or nothing
fits, it returns None and the templates answer.

Fail over first, wait last (FIELD_NOTES): a 429 moves the message on at once; its
Retry-After holds the model for everyone (breaker.py); a wait happens only when every
step is held, or before a paid provider when a free one is back soon (`Candidates`).
No customer is a probe: a probe, or an attempt on a host not heard from yet, gets the
host's usual latency, then the message races the next step (`_guarded`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from ..logs import kv
from ..models import Attempt, Event, Reply, StreamReset
from ..pricing import PriceBook
from ..turn import TurnContext
from . import errors as E
from .breaker import RATE_LIMITED_SKIP, RATE_PROBING, BreakerBoard
from .hedging import HedgeBudget, LatencyWindow
from .prompt import PromptBuilder
from .providers.base import Completion, Provider, Request, estimate_request
from .routes import LLMSettings, Step
from .stalls import MIN_SAMPLES, HostWatch, Ticket
from .streaming import Splice

__all__ = ["ChainTier", "Outcome"]

log = logging.getLogger("tierbot.llm")


@dataclass(slots=True)
class Outcome:
    """The result of one attempt: a completion or a classified error."""

    step: Step
    completion: Completion | None
    error: E.ProviderError | None
    latency_s: float
    produced: bool = False  # a streamed attempt yielded text before it ended


class ChainTier:
    """Tier "llm". Also a `StreamingTier` (see `streaming.py`)."""

    name = "llm"

    def __init__(self, providers: Mapping[str, Provider], settings: LLMSettings, prompt: PromptBuilder,
                 prices: PriceBook, breakers: BreakerBoard, services: dict[str, Any] | None = None,
                 fallback: Any = None) -> None:
        self.providers = dict(providers)
        self.settings = settings
        self.prompt = prompt
        self.prices = prices
        self.breakers = breakers
        self.services = services if services is not None else {}
        self.fallback = fallback  # a tier that always answers, to replace a cut stream
        self.disabled: dict[str, str] = {}
        self.latency: dict[Step, LatencyWindow] = {}
        self.hedge_budget = HedgeBudget(settings.hedge_budget)
        self._unknown_routes: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self.hosts = {name: HostWatch(name, factor=settings.stall_factor, floor_s=settings.stall_floor_s,
                                      enabled=settings.stall_detection, slow_start=settings.slow_start,
                                      on_stall=self._stalled)
                      for name in self.providers}
        breakers.on_open(self._breaker_opened)

    # -- the tier ----------------------------------------------------------------------
    async def answer(self, event: Event, turn: TurnContext) -> Reply | None:
        reply: Reply | None = None
        async for item in self.run(event, turn, streaming=False):
            reply = item  # type: ignore[assignment]  # not streaming: a Reply is the only item
        return reply

    def stream(self, event: Event, turn: TurnContext) -> AsyncIterator[str | StreamReset | Reply]:
        return self.run(event, turn, streaming=True)

    async def run(self, event: Event, turn: TurnContext, *,
                  streaming: bool) -> AsyncIterator[str | StreamReset | Reply]:
        """The one loop over a route's steps, answered or streamed: each candidate step is
        attempted (hedged, or raced by the next step when it is a probe, when not
        streaming), and the next step is taken at once until one answers (`Candidates`
        decides when waiting out a Retry-After is worth it). Yields text chunks (streaming
        only), then a `Reply`, or nothing: the templates answer.

        Streaming adds one rule: failover is free until text reached the customer; after
        a cut the next step is asked to continue what was shown (`Splice`), and if nobody
        can finish it the fallback tier's answer replaces it."""
        request = self.prompt.build(event, turn)
        self.hedge_budget.count_request()
        candidates = self.candidates(event, turn)
        splice = Splice()
        cut: list[str] = []  # steps whose stream broke after producing text
        pending: Outcome | None = None
        async for step, budget in candidates:
            self._log_failure(pending, next_=step.provider)
            pending = None
            outcome: Outcome | None = None
            limit = None if streaming else self.first_byte_limit(step, budget)
            if streaming:
                splice.begin()
                async for item in self.run_attempt(step, splice.request(request), budget, turn, stream=True):
                    if isinstance(item, Outcome):
                        outcome = item
                    else:
                        for shown in splice.feed(item):
                            yield shown
                assert outcome is not None
            elif limit is not None and candidates.has_next():
                outcome = await self._guarded(step, budget, request, turn, candidates, limit)
            elif self.settings.hedging:
                outcome = await self._hedged(step, budget, request, turn, candidates)
            else:
                outcome = await self.attempt(step, request, budget, turn)
            if outcome.completion is not None:
                if not streaming:
                    yield self._reply(outcome, turn)
                    return
                for shown in splice.finish():
                    yield shown
                meta: dict[str, Any] = {"stream": {"cut": cut, "completed_by": str(step)}} if cut else {}
                reply = self._reply(outcome, turn, **meta)
                reply.text = splice.text  # exactly what was streamed: prefix + continuation
                yield reply
                return
            splice.abandon()
            pending = outcome
            if outcome.produced:
                cut.append(str(step))
            assert outcome.error is not None
            if outcome.error.outcome == E.CONTENT_FILTERED and not self.settings.filter_fallthrough:
                break
            candidates.failed(outcome)
        self._log_failure(pending, next_="templates")
        if splice.text and self.fallback is not None:
            # Text reached the customer but nobody could finish it: replace it, and say so.
            reply = await self.fallback.answer(event, turn)
            reply.meta["stream"] = {"cut": cut, "replaced_by": reply.tier, "shown": splice.text}
            yield reply

    async def aclose(self) -> None:
        for p in self.providers.values():
            try:
                await p.aclose()
            except Exception:
                log.exception("closing provider %s failed", p.name)
        for t in list(self._tasks):
            t.cancel()

    # -- choosing steps ------------------------------------------------------------------
    def route_steps(self, event: Event, turn: TurnContext) -> tuple[str, tuple[Step, ...]]:
        name = turn.route or "customer"
        if name not in self.settings.routes:
            if name not in self._unknown_routes:
                self._unknown_routes.add(name)
                log.warning(kv(event="unknown_route", route=name, using="customer"))
            name = "customer"
        return name, tuple(s for s in self.settings.routes[name] if s.provider in self.providers)

    def candidates(self, event: Event, turn: TurnContext) -> "Candidates":
        return Candidates(self, event, turn)

    def skip_reason(self, step: Step, event: Event) -> str | None:
        if step.provider in self.disabled:
            return f"disabled_{self.disabled[step.provider]}"
        if event.images and not self.settings.is_vision(step):
            return "no_vision"
        for gate in self.services.get("provider_gates", ()) or ():
            try:
                reason = gate.skip_reason(step.provider, step.model)
            except Exception:
                log.exception("provider gate %s failed; ignoring it", type(gate).__name__)
                continue
            if reason:
                return reason
        reason = (self.breakers.host(step.provider).available()
                  or self.breakers.get(step.provider, step.model).available())
        if reason is None and self.hosts[step.provider].slow_start_full():
            return UNPROVEN
        return reason

    def is_paid(self, provider: str) -> bool:
        return provider in self.settings.paid

    def rate_quiet_for(self, step: Step) -> float | None:
        """Seconds until `step` may be asked again when an announced wait (Retry-After, reset
        header) is what holds it; None when something else does (or nothing)."""
        if step.provider in self.disabled:
            return None
        breakers = (self.breakers.host(step.provider), self.breakers.get(step.provider, step.model))
        held = [b.quiet_for() for b in breakers if b.available() is not None]
        if not held or any(w is None for w in held):
            return None
        return max(held)  # type: ignore[type-var]

    def budget(self, turn: TurnContext) -> float:
        return turn.deadline.budget(cap=self.settings.attempt_timeout_s, reserve=self.settings.reserve_s)

    # -- one attempt ---------------------------------------------------------------------------
    def attempt(self, step: Step, request: Request, budget: float, turn: TurnContext,
                leash: "Leash | None" = None) -> Coroutine[Any, Any, Outcome]:
        """Run one non-streaming attempt within `budget` seconds; record and account it (in
        the turn, unless its message has left it to go on alone: see `_guarded`).

        The breakers' go-ahead and the host's slow-start slot are taken here, at the call,
        not when the coroutine first runs: an attempt started as a task (a race) must not
        let other messages see a free probe in between (ten messages took one probe)."""
        host, model = self.breakers.host(step.provider), self.breakers.get(step.provider, step.model)
        taken = ((host.acquire(), model.acquire()), self.hosts[step.provider].start())
        return self._attempt(step, request, budget, turn, leash, taken)

    async def _attempt(self, step: Step, request: Request, budget: float, turn: TurnContext,
                       leash: "Leash | None", taken: tuple[tuple[bool, bool], Ticket]) -> Outcome:
        outcome: Outcome | None = None
        async for item in self.run_attempt(step, request, budget, turn, taken=taken, leash=leash):
            outcome = item  # type: ignore[assignment]  # not streaming: the Outcome is the only item
        assert outcome is not None
        return outcome

    async def run_attempt(self, step: Step, request: Request, budget: float, turn: TurnContext, *,
                          stream: bool = False, taken: tuple[tuple[bool, bool], Ticket] | None = None,
                          leash: "Leash | None" = None) -> AsyncIterator[str | Outcome]:
        """The one attempt runner, answered or streamed: take the breakers' probes, watch
        the host for a stall, bound every read by `budget`, classify what went wrong,
        settle (breakers, latency, auth) and record. Yields the text chunks (streaming
        only), then exactly one `Outcome`.

        Cancelled (lost a hedge race, out of time) or closed mid-stream: the provider has
        probably read (and will bill) the prompt, so an estimate of it is charged,
        flagged as such, and the probes are handed back. `taken`: probes and slow-start
        slot already taken (`attempt`); `leash`: tells whether its message left it."""
        host, model = self.breakers.host(step.provider), self.breakers.get(step.provider, step.model)
        probes, ticket = taken or ((host.acquire(), model.acquire()), self.hosts[step.provider].start())
        watch = self.hosts[step.provider]
        provider = self.providers[step.provider]
        source = (provider.stream(step.model, request, budget + 1.0) if stream
                  else _once(provider.complete(step.model, request, budget + 1.0)))
        ends_at = asyncio.get_running_loop().time() + budget
        t0 = time.perf_counter()
        first_token: float | None = None
        produced: list[str] = []
        completion: Completion | None = None
        error: E.ProviderError | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout_at(ends_at):
                        if ticket.answered:
                            item = await anext(source)
                        else:  # nothing from the host yet: leave it if it stalls
                            item = await watch.watch(ticket, anext(source))
                except StopAsyncIteration:
                    break
                if not ticket.answered:
                    watch.answered(ticket)
                if isinstance(item, Completion):
                    completion = item
                    continue
                if first_token is None:
                    first_token = time.perf_counter() - t0
                produced.append(item)
                yield item
        except E.ProviderError as e:
            error = e
        except TimeoutError:
            error = E.ProviderError(E.STREAM_CUT if produced else E.TIMEOUT,
                                    f"no {'end' if produced else 'answer'} within {budget:.2f}s")
        except (asyncio.CancelledError, GeneratorExit):
            host.release(probes[0])
            model.release(probes[1])
            watch.end(ticket)
            if leash is None or not leash.detached:
                self.record(turn, Outcome(step, None, cancelled(request), time.perf_counter() - t0))
            raise
        except Exception as e:  # a provider bug must not take the chain down
            log.exception(kv(provider=step.provider, model=step.model, outcome="error"))
            error = E.ProviderError(E.MALFORMED, type(e).__name__)
        finally:
            await _close(source)
        if error is None and completion is None:
            error = E.ProviderError(E.MALFORMED, "stream ended without a final message")
        if error is not None and produced:
            if error.outcome != E.STREAM_CUT:
                error.detail = f"{error.outcome}: {error.detail}"
                error.outcome = E.STREAM_CUT
            if error.partial == "":
                error.partial = "".join(produced)
        outcome = Outcome(step, completion if error is None else None, error, time.perf_counter() - t0,
                          produced=bool(produced))
        detached = leash is not None and leash.detached
        self.settle(outcome, probes, turn, first_token_s=first_token, ticket=ticket, record=not detached)
        if detached:
            self._went_on_alone(outcome)
        yield outcome

    def settle(self, outcome: Outcome, probes: tuple[bool, bool], turn: TurnContext,
               *, first_token_s: float | None = None, ticket: Ticket | None = None, record: bool = True) -> None:
        """Feed the breakers and the host's stall watch, remember latency, handle auth,
        record the attempt (`record=False`: its message has gone; it was recorded then)."""
        step = outcome.step
        host, model = self.breakers.host(step.provider), self.breakers.get(step.provider, step.model)
        err = outcome.error
        if ticket is not None:
            watch = self.hosts[step.provider]
            if err is None or err.outcome not in E.TRANSPORT_FAILURES:
                watch.answered(ticket)
            if err is None:
                watch.latency.add(first_token_s if first_token_s is not None else outcome.latency_s)
            watch.end(ticket, silent=err is not None and err.outcome in E.TRANSPORT_FAILURES)
        if err is None:
            host.success()
            model.success()
            self.latency.setdefault(step, LatencyWindow()).add(
                first_token_s if first_token_s is not None else outcome.latency_s)
        elif err.outcome in E.TRANSPORT_FAILURES:
            host.failure(err.outcome, err.retry_after, probes[0])
            model.release(probes[1])
        elif err.outcome == E.OUT_OF_CREDITS:
            # The account, not the model: every model of the provider is paused (breaker.py).
            if host.available() != E.OUT_OF_CREDITS:
                self._out_of_credits(step, err)
            host.failure(err.outcome, err.retry_after, probes[0])
            model.release(probes[1])
        else:
            host.success()  # it answered: the host is reachable
            if err.outcome == E.AUTH:
                self.disable(step.provider, err)
            elif err.outcome == E.MODEL_GONE and model.available() != E.MODEL_GONE:
                self._model_gone(step, err)
            model.failure(err.outcome, err.retry_after, probes[1])
        if record:
            self.record(turn, outcome)

    def record(self, turn: TurnContext, outcome: Outcome) -> Attempt:
        step, err, comp = outcome.step, outcome.error, outcome.completion
        src = comp or err
        tokens_in, tokens_out = (src.input_tokens, src.output_tokens) if src is not None else (0, 0)
        estimated = comp.usage_estimated if comp else bool(err and err.usage_estimated)
        detail = err.detail if err else None
        if estimated:
            detail = f"{detail}; usage_estimated" if detail else "usage_estimated"
        if comp is not None and comp.model and comp.model != step.model:
            served = f"answered_by={comp.model}"  # a gateway routed it to another model
            detail = f"{detail}; {served}" if detail else served
        attempt = Attempt(
            provider=step.provider, model=step.model, outcome=err.outcome if err else E.OK,
            latency_ms=round(outcome.latency_s * 1000, 3), detail=detail,
            input_tokens=tokens_in, output_tokens=tokens_out,
            cost_usd=self.cost(outcome),
            retry_after=err.retry_after if err else None)
        turn.record(attempt)
        return attempt

    def cost(self, outcome: Outcome) -> float | None:
        """What the attempt cost: the provider's own figure when it reports one (OpenRouter's
        `usage.cost`), else the price table's for the tokens (None: price unknown)."""
        step, err, comp = outcome.step, outcome.error, outcome.completion
        if comp is not None and comp.cost_usd is not None:
            return comp.cost_usd
        src = comp or err
        tokens_in, tokens_out = (src.input_tokens, src.output_tokens) if src is not None else (0, 0)
        return self.prices.cost(step.provider, step.model, tokens_in, tokens_out)

    def disable(self, provider: str, err: E.ProviderError) -> None:
        if provider in self.disabled:
            return
        self.disabled[provider] = E.AUTH
        self.breakers.host(provider).disable(E.AUTH)
        key_var = self.settings.key_var(provider)
        log.error(kv(provider=provider, outcome="auth", status=err.status,
                     action="switched_off_until_restart", fix=f"check {key_var or 'its API key'}"))

    def _model_gone(self, step: Step, err: E.ProviderError) -> None:
        """Loud, once per pause: only the operator can replace a retired model name."""
        from .routes import models_var

        log.error(kv(provider=step.provider, model=step.model, outcome=E.MODEL_GONE, status=err.status,
                     action=f"model_skipped_for_{E.MODEL_GONE_PAUSE_S:g}s",
                     fix=f"the provider no longer serves {step.model}; "
                         f"set {models_var(step.provider)} to a current model"))

    def _out_of_credits(self, step: Step, err: E.ProviderError) -> None:
        """Loud, once per pause: only the operator can pay."""
        log.error(kv(provider=step.provider, outcome=E.OUT_OF_CREDITS, status=err.status, detail=err.detail or None,
                     action=f"provider_skipped_for_{err.retry_after or E.CREDITS_PAUSE_S:g}s",
                     fix="add credits to the account (or raise the key's credit limit)"))

    def _reply(self, outcome: Outcome, turn: TurnContext, **meta: Any) -> Reply:
        step, comp = outcome.step, outcome.completion
        assert comp is not None
        self.prices.observe(step.provider, self.cost(outcome))
        # The model that actually answered: a gateway (OpenRouter) may route elsewhere.
        model = comp.model or step.model
        if model != step.model:
            meta = {"model_requested": step.model, **meta}
        if comp.upstream:
            meta = {"upstream": comp.upstream, **meta}
        log.info(kv(provider=step.provider, model=model, outcome="ok",
                    latency_ms=round(outcome.latency_s * 1000, 1),
                    tokens=f"{comp.input_tokens}+{comp.output_tokens}"))
        if self.is_paid(step.provider) and _free_limited(self, turn):
            # The operator's report counts these: money spent because free quotas ran short.
            meta.setdefault("paid_because", PAID_FREE_LIMITED)
        return Reply(text=comp.text.strip(), tier="llm", provider=step.provider, model=model,
                     meta={"route": turn.route, **meta})

    def _log_failure(self, outcome: Outcome | None, next_: str) -> None:
        if outcome is None or outcome.error is None:
            return
        err = outcome.error
        log.warning(kv(provider=outcome.step.provider, model=outcome.step.model, outcome=err.outcome,
                       latency_ms=round(outcome.latency_s * 1000, 1), retry_after=err.retry_after,
                       detail=err.detail or None, next=next_))

    # -- no customer is a probe ----------------------------------------------------------------
    def first_byte_limit(self, step: Step, budget: float) -> float | None:
        """How long a message waits on `step` before going on without it, when the attempt
        would be a probe (half-open, or the one after an announced wait) or goes to a host
        that has not answered yet: the host's usual latency (p95, at least the floor). None:
        an ordinary attempt, which keeps its whole budget."""
        if not self.settings.probe_guard:
            return None
        host, model = self.breakers.host(step.provider), self.breakers.get(step.provider, step.model)
        watch = self.hosts[step.provider]
        probe = any((b.opened or b.rate_probe) and not b.probing for b in (host, model))
        # A host not heard from yet: its first attempts (as many as slow start lets in) are
        # its probes. Messages sent to it beyond those (they came from a failed provider, at
        # a cold start) keep their budget: racing each of them would double the requests,
        # onto a paid provider when it is next (bench/storm_bench.py scenario 8).
        first = not watch.proven and len(watch.inflight) < max(1, self.settings.slow_start)
        if not probe and not first:
            return None
        p95 = watch.latency.quantile(0.95) if len(watch.latency) >= MIN_SAMPLES else None
        limit = max(p95 or 0.0, self.settings.probe_floor_s)
        return limit if limit < budget else None

    async def _guarded(self, step: Step, budget: float, request: Request, turn: TurnContext,
                       candidates: "Candidates", limit: float) -> Outcome:
        """A probe races the next step, hedging-style, after `limit`: the customer keeps the
        first good answer; when it is not the probe's, the probe goes on alone and its outcome
        still decides the breakers (it is recorded in this turn as `probe_background`)."""
        leash = Leash()
        first = asyncio.ensure_future(self.attempt(step, request, budget, turn, leash))
        pending: set[asyncio.Future] = {first}
        try:
            done, _ = await asyncio.wait(pending, timeout=limit)
            if done:
                return first.result()
            nxt = candidates.peek_hedge()
            if nxt is None:
                return await first
            step2, budget2 = nxt
            log.info(kv(provider=step.provider, model=step.model, event="probe_goes_on_alone",
                        after_ms=round(limit * 1000, 1), next=f"{step2.provider}/{step2.model}"))
            moved_on = len(turn.attempts)  # where the probe's record goes, should it be left
            second = asyncio.ensure_future(self.attempt(step2, request, budget2, turn))
            pending.add(second)
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if first.done():
                pending.discard(first)
                outcome = first.result()
                if outcome.completion is not None:  # the probe answered first after all
                    second.cancel()
                    await asyncio.gather(second, return_exceptions=True)  # records "cancelled"
                    return outcome
                return await second
            self._let_go(first, leash, step, request, turn, limit, at=moved_on)
            pending.discard(first)
            return await second
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise

    def _let_go(self, task: asyncio.Future, leash: "Leash", step: Step, request: Request, turn: TurnContext,
                waited: float, at: int) -> None:
        """The message leaves its probe: record what the probe will probably cost (its prompt,
        estimated, as for a cancelled attempt) now, while the reply can still carry it."""
        leash.detached = True
        tokens = estimate_request(request)
        turn.attempts.insert(at, Attempt(
            step.provider, step.model, PROBE_BACKGROUND, latency_ms=round(waited * 1000, 3),
            detail="no answer within the host's usual latency; the probe goes on; usage_estimated",
            input_tokens=tokens, cost_usd=self.prices.cost(step.provider, step.model, tokens, 0)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _went_on_alone(self, outcome: Outcome) -> None:
        step, err = outcome.step, outcome.error
        log.info(kv(provider=step.provider, model=step.model, event="background_probe",
                    outcome=err.outcome if err else E.OK, latency_ms=round(outcome.latency_s * 1000, 1)))
        if outcome.completion is not None:
            comp = outcome.completion
            self.prices.observe(step.provider, self.prices.cost(step.provider, step.model,
                                                                comp.input_tokens, comp.output_tokens))

    # -- hedging -----------------------------------------------------------------------------
    async def _hedged(self, step: Step, budget: float, request: Request, turn: TurnContext,
                      candidates: "Candidates") -> Outcome:
        window = self.latency.get(step)
        p95 = window.quantile(0.95) if window and len(window) >= self.settings.hedge_min_samples else None
        if p95 is None or p95 >= budget:
            return await self.attempt(step, request, budget, turn)
        first = asyncio.ensure_future(self.attempt(step, request, budget, turn))
        pending: set[asyncio.Future] = {first}
        try:
            return await self._race(first, pending, step, p95, request, turn, candidates)
        except asyncio.CancelledError:
            # Out of time (the pipeline's deadline): no attempt may outlive the turn.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise

    async def _race(self, first: asyncio.Future, pending: set[asyncio.Future], step: Step, p95: float,
                    request: Request, turn: TurnContext, candidates: "Candidates") -> Outcome:
        done, _ = await asyncio.wait({first}, timeout=p95)
        if done:
            return first.result()
        if not self.hedge_budget.allows():
            return await first
        second_step = candidates.peek_hedge()
        if second_step is None or not self.hedge_budget.try_spend():
            return await first
        step2, budget2 = second_step
        log.info(kv(provider=step.provider, model=step.model, event="hedge", after_ms=round(p95 * 1000, 1),
                     hedge=f"{step2.provider}/{step2.model}"))
        second = asyncio.ensure_future(self.attempt(step2, request, budget2, turn))
        pending.add(second)
        last: Outcome | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcome = task.result()
                if outcome.completion is not None:
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)  # records "cancelled"
                    return outcome
                last = outcome
                if task is second:
                    candidates.failed(outcome)
        assert last is not None
        return last

    # -- events --------------------------------------------------------------------------------
    def _stalled(self, provider: str, detail: str) -> None:
        """A host went silent (stalls.py): open its breaker now; its in-flight attempts move on."""
        log.warning(kv(provider=provider, event="stalled", detail=detail, action="breaker_open_rescue_in_flight"))
        self.breakers.host(provider).trip(E.STALLED)

    def _breaker_opened(self, breaker, reason: str) -> None:
        log.warning(kv(provider=breaker.provider, model=breaker.model, event="breaker_open", reason=reason,
                       cooldown_s=round(breaker.current_cooldown, 1) if breaker.opened else None))
        ledger = self.services.get("ledger")
        if ledger is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(ledger.record_event(
            "breaker_open", data={"provider": breaker.provider, "model": breaker.model, "reason": reason}))
        self._tasks.add(task)
        task.add_done_callback(self._event_done)

    def _event_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(kv(event="breaker_open_not_recorded", error=type(task.exception()).__name__))


UNPROVEN = "unproven"  # skip reason: slow start (stalls.py), the host's probes are out
PROBE_BACKGROUND = "probe_background"  # Attempt.outcome: the message went on, its probe carried on


@dataclass(slots=True)
class Leash:
    """Tells an attempt whether its message is still waiting for it."""

    detached: bool = False
PAID_FREE_LIMITED = "free_limited"  # Reply.meta["paid_because"]: the free providers were rate-limited
_LIMITED_OUTCOMES = frozenset({E.RATE_LIMITED, f"skipped:{RATE_LIMITED_SKIP}", f"skipped:{RATE_PROBING}"})


def _free_limited(chain: ChainTier, turn: TurnContext) -> bool:
    """Did a free provider turn this message away for a rate limit (429, or a wait it announced)?"""
    return any(a.outcome in _LIMITED_OUTCOMES and a.provider in chain.providers and not chain.is_paid(a.provider)
               for a in turn.attempts)

async def _once(call: Awaitable[Completion]) -> AsyncIterator[Completion]:
    """A non-streamed call as a one-item stream, so one runner reads both kinds."""
    yield await call


async def _close(source: Any) -> None:
    try:
        await source.aclose()
    except Exception:  # a provider's cleanup failing must not mask the real outcome
        pass


def cancelled(request: Request) -> E.ProviderError:
    return E.ProviderError("cancelled", input_tokens=estimate_request(request), usage_estimated=True)


class Candidates:
    """The steps of a route that may be tried now, in order; records every skip.

    Iterating (`async for`) yields (step, budget). It stops when no attempt fits in the
    deadline. A transport failure (refused, timeout) skips the same provider's other models
    for the rest of the turn: they live on the same unreachable host.

    Fail over first, wait last: a step held by an announced wait (Retry-After, reset header)
    is passed over at once. It is waited for only (a) when nothing else is left, if its wait
    is the soonest, at most `rate_wait_max_s` and fits the deadline, or (b) when the next step
    is a paid provider and a free one is free again within `free_wait_s` — what the operator
    said a paid answer is worth. Either allowance is for the message's waits in total.
    """

    def __init__(self, chain: ChainTier, event: Event, turn: TurnContext) -> None:
        self.chain, self.event, self.turn = chain, event, turn
        self.route, steps = chain.route_steps(event, turn)
        self._steps = list(steps)
        self._i = 0
        self._dead_hosts: set[str] = set()
        self._reserved: tuple[Step, float] | None = None
        self._considered = False  # a step was sent to, or passed over by slow start
        self._limited: list[Step] = []    # passed over this turn for an announced wait
        self._again: list[Step] = []      # waited for: offered again before the rest
        self.waited_s = 0.0

    def __aiter__(self) -> "Candidates":
        return self

    async def __anext__(self) -> tuple[Step, float]:
        if self._reserved is not None:
            item, self._reserved = self._reserved, None
            return item
        while True:
            found = self._find()
            paid = found is not None and self.chain.is_paid(found[0].provider)
            if found is not None and not paid:
                return found
            s = self.chain.settings
            allowance = (s.free_wait_s if found is not None else s.rate_wait_max_s) - self.waited_s
            target = self._worth_waiting(allowance)
            if target is None:
                if found is None:
                    raise StopAsyncIteration
                return found
            if found is not None:
                self._again.insert(0, found[0])  # the paid step stays next, should the free one still be held
            await self._wait(*target, why="paid_next" if found is not None else "all_limited")

    def peek_hedge(self) -> tuple[Step, float] | None:
        """The next eligible step, taken out of the sequence (for a hedge)."""
        return self._find()

    def has_next(self) -> bool:
        """Is there a step after this one that could be tried now? (Asks without recording.)"""
        return bool(self._again) or self._later_eligible()

    def failed(self, outcome: Outcome) -> None:
        err = outcome.error
        if err is not None and err.outcome in E.TRANSPORT_FAILURES:
            self._dead_hosts.add(outcome.step.provider)
        elif err is not None and err.outcome == E.RATE_LIMITED and err.retry_after:
            self._held(outcome.step)

    def _held(self, step: Step) -> None:
        if step not in self._limited:
            self._limited.append(step)

    def _worth_waiting(self, allowance: float) -> tuple[Step, float, float] | None:
        """(step, its wait, the most we wait for it) for the limited step free again soonest,
        if that is within `allowance` and leaves an attempt's worth of the deadline."""
        best: tuple[Step, float] | None = None
        for step in self._limited:
            if step.provider in self._dead_hosts:
                continue
            wait = self.chain.rate_quiet_for(step)
            if wait is None:  # free again (or held by something else now): offer it as is
                wait = 0.0 if self.chain.skip_reason(step, self.event) is None else None
            if wait is not None and (best is None or wait < best[1]):
                best = (step, wait)
        if best is None:
            return None
        most = min(allowance, self.chain.budget(self.turn) - self.chain.settings.min_attempt_s)
        if best[1] > most:
            return None
        return best[0], best[1], most

    async def _wait(self, step: Step, wait: float, most: float, why: str) -> None:
        """Wait out `step`'s announced wait, then (if another message took its one probe) that
        probe's verdict, all within `most` seconds; then offer `step` again. A message may
        wait more than once (the probe it waited for was limited again) while its total
        stays within the allowance."""
        log.info(kv(provider=step.provider, model=step.model, event="rate_wait", wait_s=round(wait, 3),
                    why=why))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        left = most - (loop.time() - t0)
        for breaker in (self.chain.breakers.host(step.provider), self.chain.breakers.get(step.provider, step.model)):
            if left > 0 and breaker.quiet_for() == 0.0:
                await breaker.verdict(left)
                left = most - (loop.time() - t0)
        self.waited_s += max(loop.time() - t0, 0.001)  # progress, even when nothing had to be waited
        self._limited.remove(step)  # offered again: still held, it is found held again
        self._again.insert(0, step)

    def _later_eligible(self) -> bool:
        """Could a step after the current one be tried now? (Asks without recording.)"""
        return any(s.provider not in self._dead_hosts
                   and self.chain.skip_reason(s, self.event) in (None, UNPROVEN)
                   for s in self._steps[self._i:])

    def _next_step(self) -> Step | None:
        if self._again:
            return self._again.pop(0)
        if self._i < len(self._steps):
            self._i += 1
            return self._steps[self._i - 1]
        return None

    def _find(self) -> tuple[Step, float] | None:
        while (step := self._next_step()) is not None:
            reason = "host_failed_this_turn" if step.provider in self._dead_hosts else None
            reason = reason or self.chain.skip_reason(step, self.event)
            if reason == UNPROVEN:
                # Slow start holds only for the first provider a message would send to: past
                # it, the next one is taken whatever its state (at a cold start every provider
                # is unproven, and a message moving on after a failure must not be bounced
                # again), and never past the last, to the templates.
                if self._considered or not self._later_eligible():
                    reason = None
            if reason in (None, UNPROVEN):
                self._considered = True
            if reason:
                self.turn.record(Attempt(step.provider, step.model, f"skipped:{reason}"))
                if reason in (RATE_LIMITED_SKIP, RATE_PROBING):
                    self._held(step)
                continue
            budget = self.chain.budget(self.turn)
            if budget < self.chain.settings.min_attempt_s:
                self.turn.record(Attempt(step.provider, step.model, "skipped:deadline"))
                log.warning(kv(provider=step.provider, model=step.model, outcome="skipped:deadline",
                               left_s=round(self.turn.deadline.remaining(), 3), next="templates"))
                self._i = len(self._steps)
                self._again.clear()
                self._limited.clear()
                return None
            return step, budget
        return None
