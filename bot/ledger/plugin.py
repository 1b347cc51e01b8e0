"""Installs the ledger (history, reply listener, events), the budget gate and the
report service into the bot. Listed first in `bot.app.PLUGINS` so every later plugin
finds `services["ledger"]` and `services["provider_gates"]`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..budget import BudgetGate
from ..storage.sqlite.ledger import Ledger, LedgerListener

if TYPE_CHECKING:
    from ..app import BotParts

__all__ = ["install"]


def install(parts: "BotParts", ledger_cls: type[Ledger] = Ledger) -> None:
    """`ledger_cls`: benchmarks compare another embedded writer under the same wiring; with
    DATABASE_URL set the ledger is the PostgreSQL one."""
    ledger = parts.storage.ledger(ledger_cls)
    shared = None
    if parts.storage.shared is not None:
        from ..storage.redis.budget import SharedBudget

        shared = SharedBudget(parts.storage.shared)
    budget = BudgetGate.from_config(parts.config, ledger, shared=shared)
    parts.history = ledger.history
    # Budget first: its aclose waits for alerts in flight, which still need the ledger.
    parts.listeners.append(budget)
    parts.listeners.append(LedgerListener(ledger))
    parts.resources.append(ledger)  # closed after every listener and tier
    parts.services["ledger"] = ledger
    parts.services["budget"] = budget
    gates = parts.services.setdefault("provider_gates", [])
    gates.append(budget)  # type: ignore[union-attr]
    from ..report.service import ReportService

    parts.services["reports"] = ReportService(ledger, parts.config, parts.services, budget=budget)
