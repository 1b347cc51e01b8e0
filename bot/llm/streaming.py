"""Streaming replies through the chain.

Failover is free until the first chunk reaches the customer. After that, chunks are
append-only: a stream cut mid-way is never restarted from scratch (the customer
would see the same words twice, FIELD_NOTES) and never left truncated. The next
step is asked to *continue* the partial text (Claude 4.5 and older by assistant prefill,
which newer Claude models refuse; every other model by an explicit instruction), and only
its continuation is appended. If no provider
can continue in time, the answer is *replaced* by the templates' reply — the final
`Reply.text` is authoritative — and `Reply.meta["stream"]` says which happened.

Every read from a provider is bounded by the attempt's share of the deadline; the
deadline is enforced here because a streaming tier runs outside `handle()`'s timeout.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

from ..models import Event, Reply
from ..turn import TurnContext
from . import errors as E
from .chain import ChainTier, Outcome, cancelled
from .providers.base import Completion

__all__ = ["stream_reply"]


async def stream_reply(chain: ChainTier, event: Event, turn: TurnContext) -> AsyncIterator[str | Reply]:
    request = chain.prompt.build(event, turn.history)
    chain.hedge_budget.count_request()
    shown: list[str] = []          # every chunk already yielded, in order
    cut: list[str] = []            # steps whose stream broke after producing text
    candidates = chain.candidates(event, turn)
    pending: Outcome | None = None
    rate_tries: dict = {}
    for step, budget in candidates:
        chain._log_failure(pending, next_=step.provider)
        pending = None
        so_far = "".join(shown)
        req = dataclasses.replace(request, continue_from=so_far) if so_far else request
        host, model = chain.breakers.host(step.provider), chain.breakers.get(step.provider, step.model)
        probes = (host.acquire(), model.acquire())
        watch = chain.hosts[step.provider]
        ticket = watch.start()
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + budget
        t0 = time.perf_counter()
        first_token: float | None = None
        produced = 0
        completion: Completion | None = None
        error: E.ProviderError | None = None
        agen = chain.providers[step.provider].stream(step.model, req, budget + 1.0)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(ends_at):
                        if ticket.answered:
                            item = await agen.__anext__()
                        else:  # nothing from the host yet: leave it if it stalls
                            item = await watch.watch(ticket, agen.__anext__())
                except StopAsyncIteration:
                    break
                if not ticket.answered:
                    watch.answered(ticket)
                if isinstance(item, Completion):
                    completion = item
                    continue
                if first_token is None:
                    first_token = time.perf_counter() - t0
                produced += 1
                shown.append(item)
                yield item
        except E.ProviderError as e:
            error = e
        except TimeoutError:
            error = E.ProviderError(E.STREAM_CUT if produced else E.TIMEOUT,
                                    f"timeout: no {'end' if produced else 'answer'} within {budget:.2f}s")
        except (asyncio.CancelledError, GeneratorExit):
            host.release(probes[0])
            model.release(probes[1])
            watch.end(ticket)
            chain.record(turn, Outcome(step, None, cancelled(req), time.perf_counter() - t0))
            raise
        except Exception as e:
            error = E.ProviderError(E.MALFORMED, type(e).__name__)
        finally:
            await _close(agen)
        if error is None and completion is None:
            error = E.ProviderError(E.MALFORMED, "stream ended without a final message")
        if error is not None and produced and error.outcome != E.STREAM_CUT:
            error.detail = f"{error.outcome}: {error.detail}"
            error.outcome = E.STREAM_CUT
        if error is not None and error.partial == "" and produced:
            error.partial = "".join(shown[-produced:])
        outcome = Outcome(step, completion if error is None else None, error, time.perf_counter() - t0)
        chain.settle(outcome, probes, turn, first_token_s=first_token, ticket=ticket)
        if error is None:
            meta: dict[str, Any] = {}
            if cut:
                meta["stream"] = {"cut": cut, "completed_by": str(step)}
            reply = chain._reply(outcome, turn, **meta)
            reply.text = "".join(shown)  # exactly what was streamed: prefix + continuation
            yield reply
            return
        pending = outcome
        if produced:
            cut.append(str(step))
        elif (wait := chain.rate_wait(outcome, turn, rate_tries.get(step, 0))) is not None:
            # Nothing shown yet and a short Retry-After: wait it out, same model.
            chain._log_failure(outcome, next_=f"{step.provider} after {wait:g}s")
            pending = None
            rate_tries[step] = rate_tries.get(step, 0) + 1
            await asyncio.sleep(wait)
            candidates.retry(step)
            continue
        if error.outcome == E.CONTENT_FILTERED and not chain.settings.filter_fallthrough:
            break
        candidates.failed(outcome)
    chain._log_failure(pending, next_="templates")
    if shown and chain.fallback is not None:
        # Text reached the customer but nobody could finish it: replace it, and say so.
        reply = await chain.fallback.answer(event, turn)
        reply.meta["stream"] = {"cut": cut, "replaced_by": reply.tier, "shown": "".join(shown)}
        yield reply


async def _close(agen: Any) -> None:
    try:
        await agen.aclose()
    except Exception:  # a provider's cleanup failing must not mask the real outcome
        pass
