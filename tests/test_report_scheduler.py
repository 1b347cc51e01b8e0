"""The daily report is posted exactly once a day at TIERBOT_REPORT_TIME, and a run missed
while the server was down is posted once when it comes back. The clock is injected:
nothing here sleeps."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.config import Config, ConfigError
from bot.ledger import Ledger
from bot.report import ReportService
from bot.report.scheduler import ReportScheduler, parse_report_time

TZ = ZoneInfo("Europe/Berlin")


def at(day: int, hh: int, mm: int = 0, month: int = 11) -> float:
    return dt.datetime(2026, month, day, hh, mm, tzinfo=TZ).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Posts:
    def __init__(self, fail: int = 0) -> None:
        self.dates: list[str] = []
        self.fail = fail

    async def __call__(self, blocks, text):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("slack unreachable")
        header = blocks[0]["text"]["text"]
        assert header.startswith("tierbot daily report ") and text
        self.dates.append(header.rsplit(" ", 1)[1])


@pytest.fixture
async def env(tmp_path):
    clock = Clock(at(24, 7, 0))
    config = Config({"TIERBOT_TZ": "Europe/Berlin", "TIERBOT_DATA_DIR": str(tmp_path)})
    ledger = Ledger(tmp_path / "ledger.sqlite3", tz=TZ, clock=clock)
    reports = ReportService(ledger, config)

    def scheduler(posts):
        return ReportScheduler(reports, posts, report_time=dt.time(8, 30), tz=TZ, clock=clock)

    yield clock, scheduler
    await ledger.aclose()


async def test_posts_once_a_day_at_the_report_time(env):
    clock, make = env
    posts = Posts()
    s = make(posts)
    assert await s.tick() is None  # first start: remembers where it is, posts nothing
    clock.t = at(24, 8, 29)
    assert await s.tick() is None
    clock.t = at(24, 8, 30)
    assert await s.tick() == dt.date(2026, 11, 23)
    for hh in (8, 12, 23):
        clock.t = at(24, hh, 45)
        assert await s.tick() is None
    clock.t = at(25, 8, 31)
    await s.tick()
    await s.tick()
    assert posts.dates == ["2026-11-23", "2026-11-24"]


async def test_a_restart_does_not_post_the_same_day_twice(env):
    clock, make = env
    posts = Posts()
    await make(posts).tick()
    clock.t = at(24, 9, 0)
    await make(posts).tick()
    clock.t = at(24, 9, 5)  # restarted; a second process shares the ledger too
    assert await make(posts).tick() is None and await make(posts).tick() is None
    assert posts.dates == ["2026-11-23"]


async def test_a_missed_run_is_caught_up_once_after_downtime(env):
    clock, make = env
    posts = Posts()
    await make(posts).tick()
    clock.t = at(24, 8, 30)
    await make(posts).tick()
    # Down from the 24th at 9:00 until the 27th at 15:00: three report times missed.
    clock.t = at(27, 15, 0)
    s = make(posts)
    assert await s.tick() == dt.date(2026, 11, 26)
    assert await s.tick() is None
    clock.t = at(27, 20, 0)
    assert await s.tick() is None
    clock.t = at(28, 8, 30)
    assert await s.tick() == dt.date(2026, 11, 27)
    assert posts.dates == ["2026-11-23", "2026-11-26", "2026-11-27"]


async def test_a_failed_post_is_retried_and_then_posted_once(env):
    clock, make = env
    posts = Posts(fail=2)
    s = make(posts)
    await s.tick()
    clock.t = at(24, 8, 30)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await s.tick()
    assert await s.tick() == dt.date(2026, 11, 23)
    assert await s.tick() is None
    assert posts.dates == ["2026-11-23"]


async def test_the_loop_sleeps_until_each_report_time_and_posts_daily(env):
    clock, make = env
    posts = Posts()
    sleeps: list[float] = []

    class Enough(Exception):
        pass

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.t += seconds  # time passes only when the scheduler sleeps
        if clock.t > at(30, 0, 0):
            raise Enough

    s = make(posts)
    s.sleep = fake_sleep
    with pytest.raises(Enough):
        await s.run()
    # Started on the 24th at 07:00 (before 08:30): posts on the 24th..29th, one each.
    assert posts.dates == [f"2026-11-{d}" for d in range(23, 29)]
    assert max(sleeps) <= 3600  # wakes at least hourly


async def test_dst_change_keeps_the_wall_clock_time(env):
    clock, make = env
    s = make(Posts())
    # Berlin leaves summer time on 25 Oct 2026: the slot stays at 08:30 local time.
    before = dt.datetime(2026, 10, 25, 0, 0, tzinfo=TZ).timestamp()
    assert s.seconds_to_next_slot(before) == pytest.approx(9.5 * 3600)


def test_report_time_must_be_hh_mm():
    assert parse_report_time("07:05") == dt.time(7, 5)
    for bad in ("7am", "25:00", "12"):
        with pytest.raises(ConfigError, match="TIERBOT_REPORT_TIME"):
            parse_report_time(bad)


async def test_started_scheduler_also_carries_the_budget_alerts(tmp_path):
    from bot.budget import BudgetGate

    config = Config({"TIERBOT_DATA_DIR": str(tmp_path)})
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    budget = BudgetGate({"groq": 1.0}, ZoneInfo("UTC"), ledger=ledger)
    posts = Posts()
    s = ReportScheduler(ReportService(ledger, config, budget=budget), posts, report_time=dt.time(8), tz=TZ)
    s.start()
    try:
        assert budget.post is posts
    finally:
        await s.aclose()
        await ledger.aclose()
