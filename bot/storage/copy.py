"""`tierbot db copy`: move an embedded install (the ledger and handoff SQLite files under
TIERBOT_DATA_DIR) into the PostgreSQL named by DATABASE_URL, so a team that started on
one machine can grow without losing its history.

All or nothing: every table is copied in one transaction, ids kept (a handoff's Slack
thread and a reply's attempts still point at the right rows), sequences moved past the
copied ids, and the row counts compared before committing. Only an empty database is
filled: a database that already has rows is refused and nothing is changed. The FAQ
store and the Telegram/Slack queues are not copied (they stay per machine for now).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..config import Config
from .handoffs import HANDOFF_COLUMNS
from .postgres.database import PgDatabase, clean
from .rows import ATTEMPT_COLUMNS, MESSAGE_COLUMNS
from .settings import StorageSettings

__all__ = ["copy_embedded", "CopyRefused", "PLAN"]


class CopyRefused(RuntimeError):
    """The copy cannot be done as asked; nothing was changed."""


# (file, table, columns, sequence of its id column or None), in an order that keeps
# foreign keys satisfied (messages before attempts).
PLAN: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("ledger", "messages", ("id", *MESSAGE_COLUMNS), "messages_id_seq"),
    ("ledger", "attempts", ("message_id", *ATTEMPT_COLUMNS), None),
    ("ledger", "events", ("id", "ts", "kind", "conversation_id", "data"), "events_id_seq"),
    ("ledger", "turns", ("id", "conversation_id", "role", "text", "ts"), "turns_id_seq"),
    ("ledger", "report_runs", ("report_date", "claimed_at", "posted_at"), None),
    ("handoffs", "handoffs", HANDOFF_COLUMNS, "handoffs_id_seq"),
    ("handoffs", "conversation_flags", ("platform", "conversation_id", "template_streak", "hours_notice_day"), None),
)
_CASTS = {"double precision": float, "integer": int, "bigint": int, "text": str}


def _files(config: Config) -> dict[str, Path]:
    return {"ledger": Path(config.section("ledger").get("path") or config.data_dir / "ledger.sqlite3"),
            "handoffs": Path(config.data_dir) / "handoffs.sqlite3"}


def _read(path: Path, table: str, columns: tuple[str, ...]) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
            return []
        return conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid").fetchall()
    finally:
        conn.close()


def _bring_ledger_up_to_date(path: Path) -> None:
    """An older embedded ledger is migrated first, so every column exists."""
    from .sqlite.ledger import connect
    from .sqlite.ledger_schema import migrate

    conn = connect(path)
    try:
        migrate(conn)
    finally:
        conn.close()


async def copy_embedded(config: Config) -> dict[str, int]:
    """Copy and return rows per table. CopyRefused (nothing changed) on a non-empty target."""
    settings = StorageSettings.from_config(config)
    if settings.database is None:
        raise CopyRefused("DATABASE_URL is not set: name the PostgreSQL database to copy into")
    files = _files(config)
    if not any(p.exists() for p in files.values()):
        raise CopyRefused(f"no embedded data in {config.data_dir} (TIERBOT_DATA_DIR): nothing to copy")
    if files["ledger"].exists():
        _bring_ledger_up_to_date(files["ledger"])
    db = PgDatabase(settings.database, max_size=1)
    counts: dict[str, int] = {}
    try:
        pool = await db.start()  # migrates the target first
        async with pool.acquire() as conn, conn.transaction():
            for _, table, _, _ in PLAN:
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    raise CopyRefused(f"the database at {db.masked} already has rows in {table}: "
                                      "db copy only fills an empty database (nothing was changed)")
            for source, table, columns, sequence in PLAN:
                path = files[source]
                rows = _read(path, table, columns) if path.exists() else []
                types = dict(await conn.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1", table))
                casts = [_CASTS.get(types[c], _identity) for c in columns]
                records = [tuple(None if v is None else cast(clean(v)) for cast, v in zip(casts, row)) for row in rows]
                if records:
                    await conn.copy_records_to_table(table, records=records, columns=list(columns))
                if sequence is not None:
                    await conn.execute(f"SELECT setval('{sequence}', COALESCE((SELECT MAX(id) FROM {table}), 1), "
                                       f"(SELECT MAX(id) FROM {table}) IS NOT NULL)")
                copied = await conn.fetchval(f"SELECT COUNT(*) FROM {table}")
                if copied != len(rows):  # rolls the whole copy back
                    raise CopyRefused(f"{table}: {len(rows)} rows read but {copied} in the database; nothing was changed")
                counts[table] = copied
    finally:
        await db.aclose()
    return counts


def _identity(value: Any) -> Any:
    return value
