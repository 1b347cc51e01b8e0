"""The storage chosen from the configuration, built once per bot: `Storage`.

It hands each subsystem its store (the embedded one, or the server one when
`DATABASE_URL` / `REDIS_URL` is set), starts the connections when the bot starts
(an unreachable server is one clear `StorageUnavailable`, password masked) and closes
them last, after every store has flushed.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..logs import kv
from .handoffs import HandoffRepository
from .ledger import LedgerSink
from .settings import StorageSettings

if TYPE_CHECKING:
    from .postgres.database import PgDatabase
    from .redis.shared import SharedState

__all__ = ["Storage"]

log = logging.getLogger("tierbot.storage")

HANDOFF_FILE = "handoffs.sqlite3"


class Storage:
    def __init__(self, config: Config, settings: StorageSettings | None = None, *, migrate: bool = True) -> None:
        """`migrate=False`: only look (`tierbot check`): a schema never changes by being checked."""
        self.config = config
        self.settings = settings or StorageSettings.from_config(config)
        self.database: PgDatabase | None = None
        self.shared: SharedState | None = None
        if self.settings.database is not None:
            from .postgres.database import PgDatabase, PgTimeouts

            self.database = PgDatabase(self.settings.database, max_size=10 if migrate else 1, migrate=migrate,
                                       timeouts=PgTimeouts.from_config(config))
        if self.settings.redis is not None:
            from .redis.shared import SharedState

            self.shared = SharedState(self.settings.redis,
                                      prefix=config.get("TIERBOT_REDIS_PREFIX") or "tierbot:")

    @property
    def kind(self) -> str:
        return self.settings.kind

    # -- the stores ---------------------------------------------------------------------------
    def ledger(self, embedded_cls: Any = None) -> LedgerSink:
        if self.database is not None:
            from .postgres.ledger import PgLedger

            return PgLedger.from_config(self.config, self.database)
        if embedded_cls is None:
            from .sqlite.ledger import Ledger as embedded_cls
        return embedded_cls.from_config(self.config)

    def handoffs(self) -> HandoffRepository:
        if self.database is not None:
            from .postgres.handoffs import PgHandoffs

            return PgHandoffs(self.database)
        from .sqlite.handoffs import HandoffStore

        return HandoffStore(Path(self.config.data_dir) / HANDOFF_FILE)

    # -- lifecycle ----------------------------------------------------------------------------
    async def astart(self) -> None:
        """Connect (and migrate) now, so a server that does not answer stops the start."""
        if self.database is not None:
            await self.database.start()
        if self.shared is not None:
            await self.shared.start()
        for line in self.settings.describe():
            log.info(kv(event="storage", backend=self.kind, store=line))

    async def check(self) -> list[tuple[str, str, str | None]]:
        """(what, where (masked), None if it answers else why not) per server in use."""
        rows: list[tuple[str, str, str | None]] = []
        if self.database is not None:
            rows.append(("PostgreSQL", self.database.masked, await self.database.ping()))
        if self.shared is not None:
            rows.append(("Redis", self.shared.masked, await self.shared.ping()))
        return rows

    async def aclose(self) -> None:
        if self.database is not None:
            await self.database.aclose()
        if self.shared is not None:
            await self.shared.aclose()
