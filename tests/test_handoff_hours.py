"""Staff hours: parsing, open/closed, and when staff come back."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.config import Config, ConfigError
from bot.handoff.hours import StaffHours, parse_hours

TZ = ZoneInfo("America/New_York")


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=TZ).timestamp()


def hours(spec: str) -> StaffHours:
    return StaffHours(parse_hours(spec), TZ)


def test_open_and_closed_in_the_staff_time_zone():
    h = hours("mon-fri 09:00-17:30; sat 10:00-12:00")
    assert h.is_open(at(2026, 11, 25, 9, 0))          # Wednesday 09:00
    assert not h.is_open(at(2026, 11, 25, 17, 30))    # end is exclusive
    assert h.is_open(at(2026, 11, 28, 11, 0))         # Saturday
    assert not h.is_open(at(2026, 11, 29, 11, 0))     # Sunday
    assert h.describe_next(at(2026, 11, 25, 7, 0)) == "today at 09:00 (America/New_York)"
    assert h.describe_next(at(2026, 11, 25, 18, 0)) == "tomorrow at 09:00 (America/New_York)"
    assert h.describe_next(at(2026, 11, 28, 13, 0)) == "Monday at 09:00 (America/New_York)"


def test_wrapping_day_range():
    h = hours("fri-mon 08:00-12:00")
    assert h.is_open(at(2026, 11, 29, 9, 0)) and h.is_open(at(2026, 11, 30, 9, 0))
    assert not h.is_open(at(2026, 11, 25, 9, 0))


@pytest.mark.parametrize("spec", ["weekdays 9-5", "mon-fri 18:00-09:00", "xyz 09:00-10:00", "mon 25:00-26:00", ";"])
def test_bad_hours_are_clear_config_errors(spec):
    with pytest.raises(ConfigError, match="TIERBOT_STAFF_HOURS"):
        StaffHours.from_config(Config(env={"TIERBOT_STAFF_HOURS": spec}))


def test_unset_means_always_staffed_and_bad_zone_is_named():
    assert StaffHours.from_config(Config(env={})).is_open(0)
    with pytest.raises(ConfigError, match="TIERBOT_STAFF_TZ"):
        StaffHours.from_config(Config(env={"TIERBOT_STAFF_HOURS": "mon 09:00-10:00", "TIERBOT_STAFF_TZ": "Mars/Base"}))
