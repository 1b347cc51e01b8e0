"""The daily report over a PostgreSQL ledger, with the embedded report's own queries.

The report's SQL is written for the embedded SQLite ledger (its covering indexes make a
day of a million messages report in under 2 s). Rather than a second copy of every
query, the rows the report reads — the `days` it covers (the chart's 14), taken in one
consistent snapshot — are copied into a temporary SQLite ledger, and the report runs
there unchanged. Slower than a native report on a large install (it moves those days'
rows once per report), but every process's replies are counted and the figures are
the embedded report's to the cent.
"""
from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..rows import ATTEMPT_COLUMNS, MESSAGE_COLUMNS

if TYPE_CHECKING:
    from ..sqlite.ledger import Ledger
    from .ledger import PgLedger

__all__ = ["report_view"]

_COPIES = (
    ("messages", ("id", *MESSAGE_COLUMNS), "SELECT id, {cols} FROM messages WHERE ts >= $1 AND ts < $2"),
    ("attempts", ("message_id", *ATTEMPT_COLUMNS),
     "SELECT a.message_id, {cols} FROM attempts a JOIN messages m ON m.id = a.message_id "
     "WHERE m.ts >= $1 AND m.ts < $2"),
    ("events", ("id", "ts", "kind", "conversation_id", "data"),
     "SELECT id, {cols} FROM events WHERE ts >= $1 AND ts < $2"),
)


def _fill(path: Path, tables: list[tuple[str, tuple[str, ...], list]]) -> None:
    from ..sqlite.ledger import connect
    from ..sqlite.ledger_schema import migrate

    conn = connect(path)
    try:
        migrate(conn)
        conn.execute("BEGIN")
        for table, columns, rows in tables:
            marks = ",".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


@asynccontextmanager
async def report_view(ledger: "PgLedger", start: float, end: float) -> AsyncIterator["Ledger"]:
    """An embedded `Ledger` holding the PostgreSQL ledger's rows of [start, end)."""
    from ..sqlite.ledger import Ledger

    await ledger.flush()  # our own queued replies are in it
    pool = await ledger.db.pool()
    tables: list[tuple[str, tuple[str, ...], list]] = []
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        for table, columns, sql in _COPIES:
            rest = ", ".join(("a." if table == "attempts" else "") + c for c in columns[1:])
            rows = await conn.fetch(sql.format(cols=rest), start, end)
            tables.append((table, columns, [tuple(r) for r in rows]))
    with tempfile.TemporaryDirectory(prefix="tierbot-report-") as tmp:
        path = Path(tmp) / "ledger.sqlite3"
        await asyncio.to_thread(_fill, path, tables)
        view = Ledger(path, tz=ledger.tz, clock=ledger.clock)
        try:
            yield view
        finally:
            await view.aclose()


