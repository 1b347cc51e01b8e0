"""Daily spend caps, overall and per provider.

The LLM chain asks every gate in `services["provider_gates"]` before each attempt;
this one answers "budget" for a provider whose cap (or the overall cap) is reached,
so the chain moves on to the next provider and, at worst, to the templates. The check
is a dictionary lookup: the running totals live in memory, seeded from the ledger at
start (a restart does not reset them) and advanced by every reply.

One alert per cap per day: a "budget_alert" ledger event (also the memory of which
alerts were sent, across restarts) and a message through the injected `post` callable.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .config import Config, ConfigError
from .logs import kv
from .models import Event, Reply
from .turn import TurnContext

if TYPE_CHECKING:
    from .storage.shared import BudgetStore

__all__ = ["BudgetGate", "Caps", "load_caps", "OVERALL"]

log = logging.getLogger("tierbot.budget")

OVERALL = "overall"  # the scope name of the all-providers cap
# Other server processes sharing the ledger spend too: re-read today's spend this often.
REFRESH_S = 30.0
# With REDIS_URL: every reply that cost something reads every process's totals back;
# replies that cost nothing read them at most this often.
SHARED_REFRESH_S = 1.0
Post = Callable[[list[dict[str, Any]], str], Awaitable[Any]]


class Caps(dict):
    """scope ("overall" or a provider name) -> daily cap in USD."""


def _positive(value: Any, where: str) -> float:
    try:
        cap = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number of US dollars, got {value!r}") from None
    if cap <= 0:
        raise ConfigError(f"{where} must be greater than 0, got {cap}")
    return cap


def load_caps(config: Config) -> Caps:
    """`TIERBOT_DAILY_BUDGET_USD` (or `[budget] daily_usd`) and `[budget.providers] name = usd`."""
    section = config.section("budget")
    caps = Caps()
    raw = config.get("TIERBOT_DAILY_BUDGET_USD")
    if raw is not None:
        caps[OVERALL] = _positive(raw, "TIERBOT_DAILY_BUDGET_USD")
    elif section.get("daily_usd") is not None:
        caps[OVERALL] = _positive(section["daily_usd"], "[budget] daily_usd")
    providers = section.get("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError("[budget.providers] must be a table of provider = daily USD cap")
    for name, value in providers.items():
        caps[str(name)] = _positive(value, f"[budget.providers] {name}")
    return caps


class BudgetGate:
    """Provider gate + reply listener enforcing the daily caps."""

    name = "budget"

    def __init__(self, caps: dict[str, float], tz: ZoneInfo, *, ledger: Any = None,
                 clock: Callable[[], float] = time.time, shared: "BudgetStore | None" = None) -> None:
        """`shared`: a `bot.storage.redis.budget.SharedBudget` (REDIS_URL): every process's
        spend counts toward the caps, and each cap's alert is sent by one process."""
        self.caps = dict(caps)
        self.tz = tz
        self.ledger = ledger
        self.clock = clock
        self.post: Post | None = None
        self.shared = shared
        self.spent: dict[str, float] = {}
        self.alerted: set[str] = set()
        self._day: dt.date = dt.date.min
        self._day_end = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._refreshed = clock()
        self._seeded = False
        self._shared_at = float("-inf")
        self._roll()

    @classmethod
    def from_config(cls, config: Config, ledger: Any = None,
                    shared: "BudgetStore | None" = None) -> "BudgetGate":
        gate = cls(load_caps(config), config.tz, ledger=ledger, shared=shared)
        if ledger is not None and hasattr(ledger, "spend_and_events_now"):
            gate.seed_from_ledger()  # embedded: at once, so even a bot never started knows today's spend
        return gate

    async def astart(self) -> None:
        """A ledger on a server is read when the bot starts (a restart does not reset totals)."""
        if self.ledger is not None and not self._seeded:
            await self.seed()
        if self.shared is not None and self.caps:
            self._take_totals(self.day, await self.shared.totals(self.day.isoformat()))

    async def seed(self) -> None:
        from .ledger.days import day_bounds

        self._roll()
        start, end = day_bounds(self._day, self.tz)
        spend = await self.ledger.spend_between(start, end)
        alerts = await self.ledger.events_between("budget_alert", start, end)
        self.spent = spend
        self.alerted = {d.get("scope") for _, d in alerts if d.get("scope")}
        self._seeded = True

    def set_alert_poster(self, post: Post | None) -> None:
        """The server passes a Slack poster for SLACK_REPORT_CHANNEL: `await post(blocks, text)`."""
        self.post = post

    # -- day -----------------------------------------------------------------------------
    def _roll(self) -> None:
        now = self.clock()
        if now < self._day_end:
            return
        day = dt.datetime.fromtimestamp(now, self.tz).date()
        self._day = day
        self._day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=self.tz).timestamp()
        self.spent = {}
        self.alerted = set()

    @property
    def day(self) -> dt.date:
        self._roll()
        return self._day

    def seed_from_ledger(self) -> None:
        """Today's spend and today's alerts, read from the ledger (blocking: start-up only)."""
        from .ledger.days import day_bounds

        self._roll()
        start, end = day_bounds(self._day, self.tz)

        spend, alerts = self.ledger.spend_and_events_now("budget_alert", start, end)
        self.spent = spend
        self.alerted = {a.get("scope") for a in alerts if a.get("scope")}
        self._seeded = True

    # -- the gate --------------------------------------------------------------------------
    def total(self) -> float:
        return sum(self.spent.values())

    def capped(self, scope: str) -> bool:
        cap = self.caps.get(scope)
        if cap is None:
            return False
        spent = self.total() if scope == OVERALL else self.spent.get(scope, 0.0)
        return spent >= cap

    def skip_reason(self, provider: str, model: str) -> str | None:
        if not self.caps:
            return None
        self._roll()
        if self.capped(OVERALL) or self.capped(provider):
            return "budget"
        return None

    # -- spend tracking ---------------------------------------------------------------------
    async def on_reply(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        costs = [(a.provider, a.cost_usd) for a in reply.attempts if a.cost_usd]
        self.add_spend(costs)
        if self.shared is not None and self.caps:
            day = self.day
            if costs or self.clock() - self._shared_at >= SHARED_REFRESH_S:
                self._shared_at = self.clock()
                totals = await (self.shared.add(day.isoformat(), costs) if costs
                                else self.shared.totals(day.isoformat()))
                self._take_totals(day, totals)
            return
        if self.ledger is not None and self.caps and self.clock() - self._refreshed >= REFRESH_S:
            self._refreshed = self.clock()
            self._spawn(self.refresh())

    async def refresh(self) -> None:
        """Take in what other processes sharing the ledger spent today (never lowers a total)."""
        from .ledger.days import day_bounds

        day = self.day
        start, end = day_bounds(day, self.tz)
        try:
            # fresh: our own queued replies are in it, so the ledger total is never below ours
            spend = await self.ledger.spend_between(start, end)
        except Exception:
            log.exception("reading today's spend from the ledger failed")
            return
        if self.day != day:
            return
        raised = [(p, v - self.spent.get(p, 0.0)) for p, v in spend.items() if v > self.spent.get(p, 0.0)]
        if raised:
            self.add_spend(raised)

    def _take_totals(self, day: dt.date, totals: dict[str, float] | None) -> None:
        """Every process's spend today, from Redis (None: lost; ours stands alone meanwhile)."""
        if totals is None or self.day != day:
            return
        raised = [(p, v - self.spent.get(p, 0.0)) for p, v in totals.items() if v > self.spent.get(p, 0.0) + 1e-12]
        if raised:
            self.add_spend(raised)

    def add_spend(self, costs) -> None:
        """Advance today's totals; unknown prices (None) cannot be counted and are skipped."""
        self._roll()
        touched = False
        for provider, cost in costs:
            if cost:
                self.spent[provider] = self.spent.get(provider, 0.0) + cost
                touched = True
        if touched and self.caps:
            for scope in self.caps:
                if scope not in self.alerted and self.capped(scope):
                    self.alerted.add(scope)
                    self._spawn(self._alert(scope))

    def status(self) -> list[dict[str, Any]]:
        """Each cap with today's spend, for the report and `tierbot check`."""
        self._roll()
        return [{"scope": s, "cap_usd": c,
                 "spent_usd": self.total() if s == OVERALL else self.spent.get(s, 0.0),
                 "capped": self.capped(s)} for s, c in sorted(self.caps.items())]

    async def _alert(self, scope: str) -> None:
        if self.shared is not None:
            claimed = await self.shared.claim_alert(self._day.isoformat(), scope)
            if claimed is False:  # another process sends this one (None: Redis lost, we send it)
                log.info(kv(event="budget_alert_sent_elsewhere", scope=scope))
                return
        cap = self.caps[scope]
        spent = self.total() if scope == OVERALL else self.spent.get(scope, 0.0)
        who = "all providers" if scope == OVERALL else scope
        text = (f":warning: Daily budget reached on {self._day.isoformat()}: {who} spent "
                f"${spent:.4f} of the ${cap:.2f} cap. {who.capitalize()} will be skipped for the "
                "rest of the day; the chain answers with the next provider or the templates.")
        log.warning(kv(event="budget_alert", scope=scope, cap_usd=cap, spent_usd=round(spent, 6)))
        data = {"scope": scope, "cap_usd": cap, "spent_usd": spent, "day": self._day.isoformat()}
        if self.ledger is not None:
            try:
                await self.ledger.record_event("budget_alert", data=data)
            except Exception:
                log.exception("recording the budget alert failed")
        if self.post is not None:
            blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
            try:
                await self.post(blocks, text)
            except Exception as e:
                log.error(kv(event="budget_alert_post_failed", error=type(e).__name__))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
