"""Calendar days in the operator's time zone, as unix-time ranges the ledger can index."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

__all__ = ["day_bounds", "local_day", "parse_day"]


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[float, float]:
    """[start, end) of `day` in `tz` as unix seconds (23 or 25 hours long on DST days)."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return start.timestamp(), end.timestamp()


def local_day(ts: float, tz: ZoneInfo) -> dt.date:
    return dt.datetime.fromtimestamp(ts, tz).date()


def parse_day(text: str) -> dt.date:
    """A YYYY-MM-DD date, or ValueError saying what was expected."""
    try:
        return dt.date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"date must be YYYY-MM-DD, got {text!r}") from None
