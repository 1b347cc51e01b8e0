"""`tierbot db upgrade`: apply the configured backend's schema migrations (the
`release:` step of a deployment, so web and worker processes start on a ready schema).

With no DATABASE_URL it migrates the embedded ledger file, which every start does too."""
from __future__ import annotations

import argparse
import sys

from ..config import Config

__all__ = ["register"]


async def _upgrade(args: argparse.Namespace) -> int:
    from .settings import StorageSettings

    config = Config.from_env()
    settings = StorageSettings.from_config(config)
    if settings.database is None:
        from .sqlite.ledger import Ledger
        from .sqlite.ledger_schema import LATEST_VERSION

        ledger = Ledger.from_config(config)
        before = ledger.migrated_from
        await ledger.aclose()
        print(f"embedded ledger {ledger.path}: schema version {before} -> {LATEST_VERSION}")
        return 0
    from .postgres.database import PgDatabase
    from .postgres.migrations import LATEST_VERSION

    db = PgDatabase(settings.database, min_size=1, max_size=1)
    try:
        await db.start()  # migrates under the advisory lock
        print(f"PostgreSQL {db.masked}: schema version {db.schema_before} -> {LATEST_VERSION}")
    finally:
        await db.aclose()
    return 0


async def _copy(args: argparse.Namespace) -> int:
    from .copy import CopyRefused, copy_embedded

    config = Config.from_env()
    try:
        counts = await copy_embedded(config)
    except CopyRefused as e:
        print(f"tierbot db copy: {e}", file=sys.stderr)
        return 1
    print("copied " + ", ".join(f"{n} {table}" for table, n in counts.items()) + " into PostgreSQL "
          "(the FAQ store stays in TIERBOT_DATA_DIR)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="storage: `db upgrade` applies the schema migrations, `db copy` moves "
                                  "an embedded install into PostgreSQL")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="migrate the configured database to this version's schema")
    up.set_defaults(run=_upgrade)
    cp = dbsub.add_parser("copy", help="copy the embedded ledger and handoffs (TIERBOT_DATA_DIR) into an "
                                       "empty DATABASE_URL, all or nothing")
    cp.set_defaults(run=_copy)
