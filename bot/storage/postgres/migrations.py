"""Versioned schema migrations for the PostgreSQL backend.

The version lives in `tierbot_schema`; each migration runs in its own transaction.
Processes that start together take one advisory lock, so the schema is migrated once
and the others find it done. A database at a version newer than this tierbot knows is
refused (an older tierbot must not write to a layout it does not understand). Never
edit a shipped migration: add a new one.

The tables mirror the embedded SQLite files (ledger, handoffs) column for column, so
`tierbot db copy` is a plain row copy.
"""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg

__all__ = ["MIGRATIONS", "LATEST_VERSION", "migrate", "schema_version", "SchemaError", "LOCK_KEY"]

# pg_advisory_lock key: "tierbot" as a number, so it cannot clash with another app's by chance.
LOCK_KEY = 0x746965726270


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this version of tierbot."""


_V1 = (
    """CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        platform TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        tier TEXT NOT NULL,
        provider TEXT,
        model TEXT,
        fallback INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd DOUBLE PRECISION,          -- NULL = price unknown, never 0
        latency_ms DOUBLE PRECISION NOT NULL,
        question TEXT NOT NULL,
        meta TEXT,                          -- Reply.meta as JSON text
        cache_hit INTEGER NOT NULL DEFAULT 0,
        template TEXT,
        faq_entry TEXT,
        handoff_requested INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX messages_ts_conversation ON messages (ts, conversation_id)",
    """CREATE TABLE attempts (
        message_id BIGINT NOT NULL REFERENCES messages (id),
        seq INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        latency_ms DOUBLE PRECISION NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd DOUBLE PRECISION,
        ts DOUBLE PRECISION
    )""",
    "CREATE INDEX attempts_message ON attempts (message_id)",
    "CREATE INDEX attempts_ts ON attempts (ts, provider, cost_usd)",
    """CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        conversation_id TEXT NOT NULL DEFAULT '',
        data TEXT
    )""",
    "CREATE INDEX events_kind_ts ON events (kind, ts)",
    "CREATE INDEX events_conversation ON events (conversation_id, kind, ts)",
    """CREATE TABLE turns (
        id BIGSERIAL PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX turns_conversation ON turns (conversation_id, id)",
    """CREATE TABLE report_runs (
        report_date TEXT PRIMARY KEY,
        claimed_at DOUBLE PRECISION NOT NULL,
        posted_at DOUBLE PRECISION
    )""",
    """CREATE TABLE handoffs (
        id BIGSERIAL PRIMARY KEY,
        platform TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        user_name TEXT,
        state TEXT NOT NULL CHECK (state IN ('handed_off', 'taken', 'resolved')),
        reason TEXT NOT NULL DEFAULT '',
        channel TEXT,
        thread_ts TEXT,
        taken_by TEXT,
        resolved_by TEXT,
        opened_at DOUBLE PRECISION NOT NULL,
        taken_at DOUBLE PRECISION,
        resolved_at DOUBLE PRECISION,
        rating INTEGER,
        rated_at DOUBLE PRECISION
    )""",
    # At most one open handoff per conversation, as a database fact.
    "CREATE UNIQUE INDEX handoffs_one_open ON handoffs (platform, conversation_id) WHERE state <> 'resolved'",
    "CREATE INDEX handoffs_thread ON handoffs (channel, thread_ts)",
    """CREATE TABLE conversation_flags (
        platform TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        template_streak INTEGER NOT NULL DEFAULT 0,
        hours_notice_day TEXT,
        PRIMARY KEY (platform, conversation_id)
    )""",
)

# What the LLM was given to answer from (Reply.sources), as in the embedded ledger's v5.
_V2 = (
    "ALTER TABLE messages ADD COLUMN sources TEXT",
    "CREATE INDEX messages_sources ON messages (ts) WHERE sources IS NOT NULL",
)

MIGRATIONS: Sequence[Sequence[str]] = (_V1, _V2)
LATEST_VERSION = len(MIGRATIONS)


async def schema_version(conn: asyncpg.Connection) -> int:
    """0 for a database tierbot never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('tierbot_schema') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT version FROM tierbot_schema WHERE id = 1") or 0)


def _too_new(version: int) -> SchemaError:
    return SchemaError(f"the database's schema is at version {version}, newer than this tierbot knows "
                       f"({LATEST_VERSION}); upgrade tierbot before starting it against this database")


async def migrate(conn: asyncpg.Connection, target: int = LATEST_VERSION) -> tuple[int, int]:
    """Bring the schema up to `target` under the advisory lock; (version before, after)."""
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        before = await schema_version(conn)
        if before > LATEST_VERSION:
            raise _too_new(before)
        await conn.execute("CREATE TABLE IF NOT EXISTS tierbot_schema ("
                           "id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO tierbot_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
        for version in range(before + 1, target + 1):
            async with conn.transaction():
                for sql in MIGRATIONS[version - 1]:
                    await conn.execute(sql)
                await conn.execute("UPDATE tierbot_schema SET version = $1 WHERE id = 1", version)
        return before, max(before, target)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def check_version(conn: asyncpg.Connection) -> int:
    """The schema version, refusing one newer than this tierbot knows."""
    version = await schema_version(conn)
    if version > LATEST_VERSION:
        raise _too_new(version)
    return version
