"""Versioned schema migrations for the ledger database.

The version lives in SQLite's `PRAGMA user_version`; each migration runs in its own
transaction, so a crash mid-upgrade leaves the previous version intact. Never edit a
shipped migration: add a new one (an operator's ledger may be at any older version).
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

__all__ = ["MIGRATIONS", "LATEST_VERSION", "migrate", "SchemaError"]


class SchemaError(RuntimeError):
    """The ledger file cannot be used by this version of tierbot."""


def _v1(conn: sqlite3.Connection) -> None:
    # The first shipped layout: replies, their attempts, non-reply events, conversation turns.
    for sql in (
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,                 -- unix seconds
            platform TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            tier TEXT NOT NULL,
            provider TEXT,
            model TEXT,
            fallback INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cost_usd REAL,                    -- NULL = price unknown, never 0
            latency_ms REAL NOT NULL,
            question TEXT NOT NULL,
            meta TEXT                         -- Reply.meta as JSON
        )""",
        "CREATE INDEX messages_ts ON messages(ts)",
        """CREATE TABLE attempts (
            message_id INTEGER NOT NULL REFERENCES messages(id),
            seq INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT,
            latency_ms REAL NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cost_usd REAL
        )""",
        "CREATE INDEX attempts_message ON attempts(message_id)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            conversation_id TEXT NOT NULL DEFAULT '',
            data TEXT
        )""",
        "CREATE INDEX events_ts ON events(ts)",
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            role TEXT NOT NULL,
            text TEXT NOT NULL,
            ts REAL NOT NULL
        )""",
        "CREATE INDEX turns_conversation ON turns(conversation_id, id)",
    ):
        conn.execute(sql)


def _v2(conn: sqlite3.Connection) -> None:
    # Columns the report groups by, lifted out of the meta JSON so queries need no JSON
    # parsing; attempts get their own time so spend per day needs no join.
    for sql in (
        "ALTER TABLE messages ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN template TEXT",
        "ALTER TABLE messages ADD COLUMN faq_entry TEXT",
        "ALTER TABLE messages ADD COLUMN handoff_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE attempts ADD COLUMN ts REAL",
        "UPDATE messages SET cache_hit = (tier = 'cache')",
        """UPDATE messages SET
            template = CASE WHEN tier = 'template' THEN json_extract(meta, '$.template') END,
            faq_entry = CASE WHEN tier = 'cache' THEN
                COALESCE(json_extract(meta, '$.faq_id'), json_extract(meta, '$.faq_entry'),
                         json_extract(meta, '$.entry')) END,
            handoff_requested = COALESCE(json_extract(meta, '$.handoff_requested'), 0) != 0
           WHERE json_valid(meta)""",
        "UPDATE attempts SET ts = (SELECT ts FROM messages WHERE messages.id = attempts.message_id)",
        # Covering: spend per provider per day is read from the index alone.
        "CREATE INDEX attempts_ts ON attempts(ts, provider, cost_usd)",
        "CREATE INDEX events_kind_ts ON events(kind, ts)",
    ):
        conn.execute(sql)


def _v3(conn: sqlite3.Connection) -> None:
    # Scheduled report runs: a row per report date claimed, so a post happens once even
    # with several server processes sharing one ledger.
    conn.execute("""CREATE TABLE report_runs (
        report_date TEXT PRIMARY KEY,
        claimed_at REAL NOT NULL,
        posted_at REAL
    )""")
    # Staff response time: first staff_reply per conversation after a handoff opened.
    conn.execute("CREATE INDEX events_conversation ON events(conversation_id, kind, ts)")
    # FAQ candidates and most-used entries read one tier's messages of one day.
    conn.execute("CREATE INDEX messages_tier_ts ON messages(tier, ts)")


MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (_v1, _v2, _v3)
LATEST_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Bring the database up to `target`; returns the version it was at before.

    `conn` must be in autocommit mode (isolation_level=None): each step is wrapped in
    its own explicit transaction here.
    """
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > LATEST_VERSION:
        raise SchemaError(
            f"ledger schema version {current} is newer than this tierbot knows ({LATEST_VERSION}); "
            "upgrade tierbot or point TIERBOT_DATA_DIR at another directory")
    for version in range(current + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
                conn.execute("COMMIT")
                continue
            MIGRATIONS[version - 1](conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return current
