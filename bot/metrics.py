"""Prometheus metrics: what was answered, by whom, how fast, at what cost.

A `ReplyListener` counts every reply; a collector reads the circuit breakers
(`services["breakers"]`) at scrape time, so their state is never stale. Each bot gets
its own `CollectorRegistry` (kept in `services["metrics"]`), so two bots in one process
— as in tests — never share counters. Labels carry only platform/tier/provider/model
names and failure reasons: never customer ids, text or secrets.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .models import Event, Reply
from .turn import TurnContext

if TYPE_CHECKING:
    from .app import BotParts

__all__ = ["BotMetrics", "BreakerCollector", "install", "metrics_for", "CONTENT_TYPE"]

log = logging.getLogger("tierbot.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
BREAKER_STATES = ("closed", "paused", "half_open", "open", "disabled")


def _state_name(state: Any) -> str:
    state = getattr(state, "value", state)
    return str(state).lower().replace("-", "_").replace(" ", "_")


def _breaker_rows(source: Any) -> Iterator[tuple[str, str, str]]:
    """(provider, model, state) from whatever the LLM chain keeps its breakers in:
    an object with `states()`/`snapshot()`, a mapping, or an iterable of breakers/dicts/tuples."""
    for name in ("states", "snapshot", "breaker_states"):
        fn = getattr(source, name, None)
        if callable(fn):
            source = fn()
            break
    items: Iterable[Any]
    if isinstance(source, dict):
        items = [(k, v) for k, v in source.items()]
    else:
        items = source or ()
    for item in items:
        if isinstance(item, tuple) and len(item) == 3:
            yield str(item[0]), str(item[1]), _state_name(item[2])
        elif isinstance(item, tuple) and len(item) == 2:  # (key, state-or-breaker)
            key, value = item
            provider, _, model = (key if isinstance(key, str) else "/".join(map(str, key))).partition("/")
            state = getattr(value, "state", value.get("state") if isinstance(value, dict) else value)
            yield provider, model, _state_name(state)
        elif isinstance(item, dict):
            yield str(item.get("provider", "")), str(item.get("model", "")), _state_name(item.get("state"))
        else:
            yield (str(getattr(item, "provider", "")), str(getattr(item, "model", "")),
                   _state_name(getattr(item, "state", "unknown")))


class BreakerCollector(Collector):
    """`tierbot_breaker_state{provider,model,state}` = 1 for each breaker's current state."""

    def __init__(self, services: dict[str, object]) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("tierbot_breaker_state", "Circuit breaker state per provider/model "
                                   "(1 for the current state)", labels=["provider", "model", "state"])
        source = self.services.get("breakers")
        if source is not None:
            try:
                for provider, model, state in _breaker_rows(source):
                    for s in sorted({*BREAKER_STATES, state}):
                        family.add_metric([provider, model, s], 1.0 if s == state else 0.0)
            except Exception:
                log.exception("reading breaker states failed")
        yield family


class BotMetrics:
    """The bot's metrics and the listener that feeds them."""

    def __init__(self, services: dict[str, object] | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter("tierbot_messages", "Replies made, by platform, tier and provider",
                                ["platform", "tier", "provider"], registry=r)
        self.failovers = Counter("tierbot_failovers", "Attempts that failed or were skipped on the way "
                                 "to a reply, by reason", ["provider", "reason"], registry=r)
        self.latency = Histogram("tierbot_reply_latency_seconds", "Time to produce a reply",
                                 ["platform", "tier"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("tierbot_tokens", "LLM tokens used, by provider/model and direction",
                              ["provider", "model", "direction"], registry=r)
        self.cost = Counter("tierbot_cost_usd", "Known LLM spend in US dollars", ["provider", "model"], registry=r)
        self.cost_unknown = Counter("tierbot_cost_unknown_attempts", "Attempts whose price is unknown "
                                    "(never counted as $0)", ["provider", "model"], registry=r)
        self.rate_limited = Counter("tierbot_rate_limited", "Messages over the per-customer rate limit",
                                    ["platform", "verdict"], registry=r)
        self.webhook = Counter("tierbot_webhook_requests", "Webhook requests by platform and HTTP status",
                               ["platform", "status"], registry=r)
        self.webhook_latency = Histogram("tierbot_delivery_latency_seconds", "From receiving a message "
                                         "to the platform accepting the answer", ["platform"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        if services is not None:
            r.register(BreakerCollector(services))

    async def on_reply(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        self.messages.labels(event.platform, reply.tier, reply.provider or "none").inc()
        self.latency.labels(event.platform, reply.tier).observe(reply.latency_ms / 1000)
        limited = reply.meta.get("rate_limited")
        if limited:
            self.rate_limited.labels(event.platform, str(limited)).inc()
        for a in reply.attempts:
            if a.outcome != "ok":
                self.failovers.labels(a.provider, a.outcome).inc()
            if a.input_tokens:
                self.tokens.labels(a.provider, a.model, "input").inc(a.input_tokens)
            if a.output_tokens:
                self.tokens.labels(a.provider, a.model, "output").inc(a.output_tokens)
            if a.cost_usd is None:
                self.cost_unknown.labels(a.provider, a.model).inc()
            elif a.cost_usd:
                self.cost.labels(a.provider, a.model).inc(a.cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_for(services: dict[str, object]) -> BotMetrics | None:
    m = services.get("metrics")
    return m if isinstance(m, BotMetrics) else None


def install(parts: "BotParts") -> None:
    """Plugin: one registry per bot, fed by a reply listener."""
    metrics = BotMetrics(parts.services)
    parts.services["metrics"] = metrics
    parts.listeners.append(metrics)
