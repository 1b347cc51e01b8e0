"""The usage ledger: every reply, attempt, event and conversation turn, in SQLite."""
from .days import day_bounds, local_day, parse_day
from .history import LedgerHistory
from .schema import LATEST_VERSION, SchemaError, migrate
from .store import Ledger, LedgerClosed, LedgerListener

__all__ = ["Ledger", "LedgerClosed", "LedgerListener", "LedgerHistory", "SchemaError", "migrate",
           "LATEST_VERSION", "day_bounds", "local_day", "parse_day"]
