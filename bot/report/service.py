"""One place that builds reports for every front end (CLI, web, Slack, scheduler):
it knows where the ledger, the caps, the prices and the operator's templates are."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from ..budget import load_caps
from ..config import Config
from ..ledger import Ledger
from ..ledger.days import day_bounds
from .compute import PARTS, ReportInputs, chart_days, merge
from .render import render_report, slack_message

__all__ = ["ReportService"]


log = logging.getLogger("tierbot.report")


class ReportService:
    def __init__(self, ledger: Ledger, config: Config, services: dict[str, Any] | None = None,
                 *, budget: Any = None) -> None:
        self.ledger = ledger
        self.config = config
        self.tz = config.tz
        # The services dict is read at build time: the LLM plugin adds "prices" after us.
        self.services = services if services is not None else {}
        self.budget = budget
        self.caps = dict(budget.caps) if budget is not None else load_caps(config)

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.ledger.clock(), self.tz).date()

    def _price_fallback(self, provider: str) -> float | None:
        prices = self.services.get("prices")
        fn = getattr(prices, "average_cost_per_message", None)
        if fn is None:
            return None
        try:
            value = fn(provider)
        except Exception:
            log.exception("price book could not estimate a message's cost for %s", provider)
            return None
        return float(value) if value is not None else None

    def first_provider(self) -> str | None:
        """`[report] first_provider`, else the head of the configured customer chain
        (None: the report infers it from the ledger's first attempts)."""
        first = self.config.section("report").get("first_provider")
        if first:
            return str(first)
        try:
            from ..llm.routes import LLMSettings

            return LLMSettings.from_config(self.config).route("customer")[0].provider
        except Exception:
            return None

    def inputs(self, day: dt.date) -> ReportInputs:
        return ReportInputs(day=day, tz=self.tz, caps=self.caps, price_fallback=self._price_fallback,
                            first_provider=self.first_provider())

    @contextlib.asynccontextmanager
    async def _readable(self, first: dt.date, last: dt.date) -> AsyncIterator[Any]:
        """A ledger the report's queries can read for the days first..last: the embedded one
        itself, or a snapshot of a PostgreSQL ledger's rows of those days."""
        view = getattr(self.ledger, "report_view", None)
        if view is None:
            await self.ledger.flush()
            yield self.ledger
            return
        async with view(day_bounds(first, self.tz)[0], day_bounds(last, self.tz)[1]) as snapshot:
            yield snapshot

    async def build(self, day: dt.date | None = None) -> dict[str, Any]:
        inputs = self.inputs(day or self.today())
        async with self._readable(chart_days(inputs.day)[0], inputs.day) as ledger:
            # The report's parts (the day's sums, its latencies, its conversations, its top
            # lists, the earlier days) are independent: the ledger's reader threads run them
            # at once, so the scans share the cores.
            parts = await asyncio.gather(*(
                ledger.read(functools.partial(part, inputs=inputs), fresh=False) for part in PARTS))
        return merge(*parts)

    async def today_stats(self) -> tuple[dict[str, Any], list[tuple[str, int]]]:
        """(headline figures, replies per tier) for today so far (`/tierbot stats`)."""
        from .compute import headline

        today = self.today()
        start, end = day_bounds(today, self.tz)

        def query(conn: Any) -> tuple[dict[str, Any], list[tuple[str, int]]]:
            tiers = conn.execute("SELECT tier, COUNT(*) FROM messages WHERE ts >= ? AND ts < ?"
                                 " GROUP BY tier ORDER BY 2 DESC", (start, end)).fetchall()
            return headline(conn, start, end), [(t, n) for t, n in tiers]

        async with self._readable(today, today) as ledger:
            return await ledger.read(query, fresh=False)

    async def render(self, day: dt.date | None = None, fmt: str = "text") -> str:
        report = await self.build(day)
        return render_report(report, fmt, self.config.templates_dir)

    async def slack(self, day: dt.date | None = None) -> tuple[list[dict], str]:
        """(blocks, text) for `/tierbot report [date]` and the daily post."""
        return slack_message(await self.build(day), self.config.templates_dir)
