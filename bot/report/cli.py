"""`tierbot report [--date YYYY-MM-DD] [--format text|markdown|json|html] [--out FILE]`.

Reads the ledger directly (no LLM clients are built): the report works on a machine
that only has the data directory.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Config
from ..ledger.days import parse_day
from ..storage.backend import Storage
from .render import FORMATS
from .service import ReportService

__all__ = ["register"]

CLI_FORMATS = ("text", "markdown", "json", "html")


def _date(text: str):
    try:
        return parse_day(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


async def _run(args: argparse.Namespace) -> int:
    config = Config.from_env()
    services: dict[str, object] = {}
    try:
        from ..pricing import PriceBook

        services["prices"] = PriceBook.load(config)
    except ImportError:
        pass
    storage = Storage(config, migrate=False)  # a report never changes the schema
    if storage.database is None and not (
            config.section("ledger").get("path") or (config.data_dir / "ledger.sqlite3").exists()):
        print(f"tierbot report: no ledger yet in {config.data_dir} (TIERBOT_DATA_DIR); "
              "it is created when the bot handles its first message", file=sys.stderr)
        return 1
    ledger = storage.ledger()  # the embedded file, or PostgreSQL with DATABASE_URL
    try:
        service = ReportService(ledger, config, services)
        text = await service.render(args.date, args.format)
    finally:
        await ledger.aclose()
        await storage.aclose()
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as e:
            print(f"tierbot report: cannot write {args.out}: {e.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {args.format} report for {args.date or service.today()} to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the daily cost/usage report from the ledger")
    p.add_argument("--date", type=_date, default=None,
                   help="day to report, YYYY-MM-DD in TIERBOT_TZ (default: today so far)")
    p.add_argument("--format", choices=CLI_FORMATS, default="text", help="output format (default: text)")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.set_defaults(run=_run)
    assert set(CLI_FORMATS) <= set(FORMATS)
