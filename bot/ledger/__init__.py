"""The usage ledger: every reply, attempt, event and conversation turn, in SQLite."""
from .days import day_bounds, local_day, parse_day
from .history import LedgerHistory
from ..storage.sqlite.ledger import Ledger, LedgerClosed, LedgerListener
from ..storage.sqlite.ledger_schema import LATEST_VERSION, SchemaError, migrate

__all__ = ["Ledger", "LedgerClosed", "LedgerListener", "LedgerHistory", "SchemaError", "migrate",
           "LATEST_VERSION", "day_bounds", "local_day", "parse_day"]
