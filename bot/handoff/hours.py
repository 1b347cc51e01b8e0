"""When staff are at work, in their own time zone.

Written as `mon-fri 09:00-18:00; sat 10:00-14:00` (TIERBOT_STAFF_HOURS or
`[handoff] staff_hours`), time zone from TIERBOT_STAFF_TZ / `[handoff] staff_tz`
(default TIERBOT_TZ). Unset means staff are always there, so no notice is sent.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import Config, ConfigError

__all__ = ["StaffHours", "parse_hours"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_PART = re.compile(r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_hours(spec: str, setting: str = "TIERBOT_STAFF_HOURS") -> dict[int, list[tuple[dt.time, dt.time]]]:
    """`mon-fri 09:00-18:00; sat 10:00-14:00` → {weekday: [(start, end)]}; clear errors otherwise."""
    windows: dict[int, list[tuple[dt.time, dt.time]]] = {}
    for part in filter(str.strip, spec.lower().split(";")):
        m = _PART.match(part)
        if not m or m.group(1) not in _DAYS or (m.group(2) and m.group(2) not in _DAYS):
            raise ConfigError(f"{setting}: cannot read {part.strip()!r}; write e.g. 'mon-fri 09:00-18:00'")
        first = _DAYS.index(m.group(1))
        last = _DAYS.index(m.group(2)) if m.group(2) else first
        try:
            start = dt.time(int(m.group(3)), int(m.group(4)))
            end = dt.time.max if m.group(5) == "24" else dt.time(int(m.group(5)), int(m.group(6)))
        except ValueError:
            raise ConfigError(f"{setting}: bad time in {part.strip()!r}") from None
        if end <= start:
            raise ConfigError(f"{setting}: {part.strip()!r} ends before it starts")
        day = first
        while True:
            windows.setdefault(day, []).append((start, end))
            if day == last:
                break
            day = (day + 1) % 7
    if not windows:
        raise ConfigError(f"{setting}: no opening hours given")
    return windows


@dataclass(frozen=True)
class StaffHours:
    windows: dict[int, list[tuple[dt.time, dt.time]]] | None  # None: always staffed
    tz: ZoneInfo

    @classmethod
    def from_config(cls, config: Config) -> "StaffHours":
        section = config.section("handoff")
        spec = config.get("TIERBOT_STAFF_HOURS") or section.get("staff_hours")
        tz_name = config.get("TIERBOT_STAFF_TZ") or section.get("staff_tz")
        if tz_name:
            try:
                tz = ZoneInfo(str(tz_name))
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"TIERBOT_STAFF_TZ: unknown time zone {tz_name!r}") from None
        else:
            tz = config.tz
        return cls(parse_hours(str(spec)) if spec else None, tz)

    def local(self, now: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(now, self.tz)

    def is_open(self, now: float) -> bool:
        if self.windows is None:
            return True
        t = self.local(now)
        return any(s <= t.time() < e for s, e in self.windows.get(t.weekday(), []))

    def next_open(self, now: float) -> dt.datetime | None:
        """The next moment staff start work (None when always staffed)."""
        if self.windows is None:
            return None
        t = self.local(now)
        for ahead in range(8):
            day = (t + dt.timedelta(days=ahead)).date()
            for start, _ in sorted(self.windows.get(day.weekday(), [])):
                at = dt.datetime.combine(day, start, self.tz)
                if at > t:
                    return at
        return None

    def describe_next(self, now: float) -> str:
        """'today at 09:00', 'tomorrow at 09:00' or 'Monday at 09:00' (staff's time zone)."""
        at = self.next_open(now)
        if at is None:
            return "soon"
        today = self.local(now).date()
        if at.date() == today:
            day = "today"
        elif at.date() == today + dt.timedelta(days=1):
            day = "tomorrow"
        else:
            day = _DAY_NAMES[at.weekday()]
        return f"{day} at {at:%H:%M} ({self.tz.key})"
