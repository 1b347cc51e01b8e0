"""Versioned schema migrations for the ledger database.

The version lives in SQLite's `PRAGMA user_version`; each migration runs in its own
transaction, so a crash mid-upgrade leaves the previous version intact. Never edit a
shipped migration: add a new one (an operator's ledger may be at any older version).
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

__all__ = ["MIGRATIONS", "LATEST_VERSION", "migrate", "SchemaError", "STAFF_SQL"]


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


# A staff member's question to the bot (route "staff"), told from customer traffic. The
# route is in the reply's meta JSON; replies recorded before every route was stamped
# there carry none, and then a Slack message is a staff question (customers write on the
# customer platforms; Slack is the staff desk). `instr` first: most rows have no "route"
# and are decided without parsing JSON. A CASE, because SQLite's AND does not promise to
# skip json_extract on text that is not JSON (which would make the insert fail); each
# WHEN is tried only when the ones before it did not hold. Queries
# must use this exact text to be served by the partial index below.
STAFF_SQL = ("(CASE WHEN instr(COALESCE(meta, ''), '\"route\"') = 0 THEN platform = 'slack'"
             " WHEN NOT json_valid(meta) THEN platform = 'slack'"
             " WHEN json_type(meta, '$.route') IS NULL THEN platform = 'slack'"
             " ELSE json_extract(meta, '$.route') = 'staff' END)")


def _v4(conn: sqlite3.Connection) -> None:
    # The daily report over a day of a million messages in well under 2 s, every figure
    # exact, no sort of the day's rows in SQLite: each sum is a range of a covering index
    # per group (the groups are found by seeking, not by sorting); latencies and
    # conversation ids are read from covering indexes, not the table. Every new index
    # grows at a few append points (its leading columns take few values, then time), so
    # an insert touches pages that are already cached. None is keyed by a value that
    # lands anywhere in the tree: a (tier, latency) index to walk percentiles in latency
    # order was measured and left out — it saved ~0.2 s on a day of a million messages
    # and cost every insert ~40 % more (BENCHMARKS.md "Ledger and report").
    for sql in (
        "CREATE INDEX messages_groups ON messages"
        "(tier, provider, model, fallback, ts, cost_usd, handoff_requested, latency_ms)",
        # Replaces messages_ts (same leading column): a day's conversation ids without table reads.
        "CREATE INDEX messages_ts_conversation ON messages(ts, conversation_id)",
        "DROP INDEX IF EXISTS messages_ts",
        "CREATE INDEX messages_faq ON messages(faq_entry, ts) WHERE faq_entry IS NOT NULL",
        # FAQ candidates: the questions only the templates answered, without table reads.
        # Replaces messages_tier_ts, whose only readers were the FAQ lists.
        "CREATE INDEX messages_questions ON messages(ts, template, question) "
        "WHERE tier = 'template' AND handoff_requested = 0",
        "DROP INDEX IF EXISTS messages_tier_ts",
        # Staff questions are few: the report reads them alone and takes them out of the
        # customer figures.
        f"CREATE INDEX messages_staff ON messages(ts) WHERE {STAFF_SQL}",
        "CREATE INDEX attempts_groups ON attempts"
        "(provider, model, outcome, seq, ts, cost_usd, input_tokens, output_tokens)",
    ):
        conn.execute(sql)


def _v5(conn: sqlite3.Connection) -> None:
    # What the LLM was given to answer from (Reply.sources): the source ids, one per line
    # (titles are in the meta JSON), NULL when nothing was (every reply before v5, and every
    # non-LLM reply). The
    # report's "answers grounded in the knowledge base" and top sources read only these
    # rows, from a partial covering index: no other row pays for it at insert.
    conn.execute("ALTER TABLE messages ADD COLUMN sources TEXT")
    conn.execute("CREATE INDEX messages_sources ON messages(ts, sources) WHERE sources IS NOT NULL")


MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (_v1, _v2, _v3, _v4, _v5)
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
