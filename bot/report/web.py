"""`GET /report?date=YYYY-MM-DD[&format=html|json|markdown|text]` on the web server.

Protected by `TIERBOT_API_TOKEN`: send `Authorization: Bearer <token>`, or, from a
browser, `?token=<token>` (the token is a registered secret, so the access log
redacts it). With no token configured the route answers 503: the report is never
open to everyone by accident.
"""
from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from ..ledger.days import parse_day
from .render import FORMATS
from .service import ReportService

__all__ = ["add_routes", "report_handler"]

CONTENT_TYPES = {"html": "text/html", "json": "application/json", "markdown": "text/markdown",
                 "text": "text/plain"}
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff",
           # No script runs on the page; forbid it outright.
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:"}


def _authorised(request: web.Request, token: str) -> bool:
    given = ""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        given = auth[7:].strip()
    elif "token" in request.query:
        given = request.query["token"]
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def report_handler(reports: ReportService, token: str | None):
    async def handle(request: web.Request) -> web.Response:
        if not token:
            return web.Response(status=503, text="report disabled: set TIERBOT_API_TOKEN to enable it\n",
                                headers=HEADERS)
        if not _authorised(request, token):
            return web.Response(status=401, text="unauthorised\n",
                                headers={**HEADERS, "WWW-Authenticate": 'Bearer realm="tierbot"'})
        fmt = request.query.get("format", "html")
        if fmt not in CONTENT_TYPES:
            return web.Response(status=400, text=f"format must be one of {', '.join(CONTENT_TYPES)}\n",
                                headers=HEADERS)
        day = None
        if request.query.get("date"):
            try:
                day = parse_day(request.query["date"])
            except ValueError as e:
                return web.Response(status=400, text=f"{e}\n", headers=HEADERS)
        body = await reports.render(day, fmt)
        return web.Response(text=body, content_type=CONTENT_TYPES[fmt], charset="utf-8", headers=HEADERS)

    assert set(CONTENT_TYPES) <= set(FORMATS)
    return handle


def add_routes(app: web.Application, bot: Any) -> None:
    """Mount GET /report using the bot's report service and TIERBOT_API_TOKEN."""
    reports: ReportService = bot.services["reports"]
    token = reports.config.get("TIERBOT_API_TOKEN")
    app.router.add_get("/report", report_handler(reports, token))
