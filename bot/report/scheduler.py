"""Posts the daily report once a day at TIERBOT_REPORT_TIME (in TIERBOT_TZ).

Each day at the report time, the report for the day before (a complete day) is posted
through an injected `post(blocks, text)` coroutine (the server passes a Slack poster
for SLACK_REPORT_CHANNEL). Which report dates were posted lives in the ledger, so:
- a restart never posts the same day twice (several server processes sharing one
  ledger neither: a date is claimed in the database before it is posted);
- a run missed while the server was down is posted once when it comes back (only the
  latest missed day — an operator back from a 3-day outage gets one report, not three);
- the very first start only records where it is: no report is posted for days before
  the bot was ever scheduled.
A failed post releases its claim and is retried after `retry_s`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Config, ConfigError
from ..logs import kv
from .service import ReportService

__all__ = ["ReportScheduler", "parse_report_time"]

log = logging.getLogger("tierbot.report.scheduler")

Post = Callable[[list[dict[str, Any]], str], Awaitable[Any]]
MAX_SLEEP_S = 3600.0  # wake at least hourly, so a wall-clock jump cannot skip a day


def parse_report_time(text: str) -> dt.time:
    try:
        hh, mm = text.strip().split(":")
        return dt.time(int(hh), int(mm))
    except (ValueError, AttributeError):
        raise ConfigError(f"TIERBOT_REPORT_TIME must be HH:MM (24-hour), got {text!r}") from None


class ReportScheduler:
    def __init__(self, reports: ReportService, post: Post, *, report_time: dt.time, tz: ZoneInfo,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, retry_s: float = 300.0) -> None:
        self.reports = reports
        self.ledger = reports.ledger
        self.post = post
        self.report_time = report_time
        self.tz = tz
        self.clock = clock
        self.sleep = sleep
        self.retry_s = retry_s
        self._task: asyncio.Task | None = None

    @classmethod
    def from_config(cls, reports: ReportService, post: Post, config: Config, **kw: Any) -> "ReportScheduler":
        return cls(reports, post, report_time=parse_report_time(config.get("TIERBOT_REPORT_TIME", "08:00")),
                   tz=config.tz, **kw)

    # -- when ------------------------------------------------------------------------------
    def _slot(self, day: dt.date) -> float:
        return dt.datetime.combine(day, self.report_time, tzinfo=self.tz).timestamp()

    def due_report_day(self, now: float) -> dt.date:
        """The report date of the latest slot at or before `now` (slot day minus one)."""
        today = dt.datetime.fromtimestamp(now, self.tz).date()
        slot_day = today if now >= self._slot(today) else today - dt.timedelta(days=1)
        return slot_day - dt.timedelta(days=1)

    def seconds_to_next_slot(self, now: float) -> float:
        today = dt.datetime.fromtimestamp(now, self.tz).date()
        for day in (today, today + dt.timedelta(days=1), today + dt.timedelta(days=2)):
            if self._slot(day) > now:
                return self._slot(day) - now
        return MAX_SLEEP_S

    # -- posting -----------------------------------------------------------------------------
    async def tick(self) -> dt.date | None:
        """Post the due report if nobody has yet; returns the date posted, else None."""
        now = self.clock()
        day = self.due_report_day(now).isoformat()

        state = await self.ledger.claim_report(day, now)
        if state != "claimed":
            if state == "first start":
                log.info(kv(event="report_schedule_started", next_report=day, at=str(self.report_time)))
            return None
        try:
            blocks, text = await self.reports.slack(dt.date.fromisoformat(day))
            await self.post(blocks, text)
        except Exception as e:
            await self.ledger.release_report(day)
            log.error(kv(event="report_post_failed", date=day, error=type(e).__name__))
            raise
        await self.ledger.report_posted(day, self.clock())
        log.info(kv(event="report_posted", date=day))
        return dt.date.fromisoformat(day)

    async def run(self) -> None:
        """Forever: post when due, then sleep until the next slot (at most an hour)."""
        while True:
            delay: float
            try:
                await self.tick()
                delay = min(MAX_SLEEP_S, self.seconds_to_next_slot(self.clock()))
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = self.retry_s
            await self.sleep(max(1.0, delay))

    def start(self) -> asyncio.Task:
        """Run in the background. Budget alerts go to the same channel as the report."""
        budget = getattr(self.reports, "budget", None)
        if budget is not None and getattr(budget, "post", None) is None:
            budget.set_alert_poster(self.post)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="report-scheduler")
        return self._task

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
