"""The one aiohttp web server: Telegram webhook, Slack, the JSON API, health and metrics.

Routes are only translators: check who is calling and what they sent, then hand the
work to an adapter or the bot. Order of checks on the webhook is deliberate — secret
first (403: a stranger learns nothing, not even whether the body parses), then size
(413), then shape (400); nothing is recorded unless all three pass.

Graceful shutdown (`Server.drain`): new webhooks get 503 (Telegram retries them later),
replies in flight are finished and handed to the outbox, the outbox gets a few seconds
to deliver, and what it cannot deliver stays on disk for the next start.
"""
from __future__ import annotations

import asyncio
import hmac
import importlib
import json
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.config import Config
from bot.logs import kv
from bot.metrics import CONTENT_TYPE, BotMetrics, metrics_for
from bot.models import Event
from bot.pipeline import SupportBot

from .durable import DurableStore
from .telegram import BadUpdate, TelegramAdapter, TelegramSettings

__all__ = ["Server", "MAX_BODY", "serve"]

log = logging.getLogger("tierbot.server")

MAX_BODY = 1024 * 1024  # 1 MiB; Telegram updates are a few kB
MAX_API_TEXT = 16_000
SERVER_KEY = web.AppKey("tierbot_server", "Server")
_OK_BODY = b'{"ok": true}'  # the webhook's answer, serialised once rather than per update


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


def _import_optional(name: str) -> Any | None:
    """A sibling subsystem's module, or None if that subsystem is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            return None
        raise


class Server:
    """Owns the aiohttp app and the adapters it serves."""

    def __init__(self, bot: SupportBot, config: Config, *, store: DurableStore | None = None,
                 telegram: TelegramAdapter | None = None, drain_timeout_s: float | None = None) -> None:
        self.bot = bot
        self.config = config
        self.draining = False
        self.drain_timeout_s = drain_timeout_s if drain_timeout_s is not None else \
            config.get_float("TIERBOT_DRAIN_TIMEOUT_S", 25.0, minimum=0.0)
        self.api_token = config.get("TIERBOT_API_TOKEN")
        self._store = store
        self._owns_store = False
        self.telegram = telegram
        if self.telegram is None and config.get("TELEGRAM_BOT_TOKEN"):
            self.telegram = TelegramAdapter(bot, TelegramSettings.from_config(config), self.store)
        self.metrics: BotMetrics = metrics_for(bot.services) or self._own_metrics()
        if self.telegram is not None:
            self.telegram.outbox.on_delivered = lambda platform, s: \
                self.metrics.webhook_latency.labels(platform).observe(s)
            self.metrics.registry.register(_BacklogCollector(self.telegram))
        self.slack: Any = None
        self._api_inflight = 0
        self._scheduler: Any = None
        try:
            self.app = self._build_app()
        except BaseException:
            if self._owns_store and self._store is not None:
                self._store.close()
            raise

    @property
    def store(self) -> DurableStore:
        if self._store is None:
            self._store = DurableStore.in_dir(self.config.data_dir)
            self._owns_store = True
        return self._store

    def _own_metrics(self) -> BotMetrics:
        """The metrics plugin is not installed: still serve /metrics, fed the same way."""
        metrics = BotMetrics(self.bot.services)
        self.bot.services["metrics"] = metrics
        self.bot.listeners.append(metrics)
        return metrics

    # -- app ----------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app[SERVER_KEY] = self
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_post("/telegram/webhook", self.telegram_webhook)
        if self.api_token:
            app.router.add_post("/api/messages", self.api_messages)
        self._mount_slack(app)
        if self.bot.services.get("reports") is not None:  # the report plugin is installed
            report_web = _import_optional("bot.report.web")
            if report_web is not None:
                report_web.add_routes(app, self.bot)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    def _mount_slack(self, app: web.Application) -> None:
        """Slack routes come from the Slack adapter (another subsystem) when it is configured."""
        if not (self.config.get("SLACK_BOT_TOKEN") or self.config.get("SLACK_SIGNING_SECRET")):
            return
        slack = _import_optional("adapters.slack")
        if slack is None:
            log.warning(kv(server="slack_unavailable", reason="adapters.slack is not installed"))
            return
        # Mounts POST /slack/events and hooks its own start/stop on the app's signals
        # (a half-configured Slack raises ConfigError naming the missing setting).
        self.slack = slack.install(app, self.bot, self.config)

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        if self.telegram is not None:
            await self.telegram.start()
            await self.telegram.set_webhook()
        self._start_report_scheduler()
        yield
        await self.drain()
        if self._scheduler is not None:
            await self._scheduler.aclose()
        if self._owns_store and self._store is not None:
            self._store.close()

    def _start_report_scheduler(self) -> None:
        """Post the daily report to Slack, when both the report and Slack are set up."""
        reports = self.bot.services.get("reports")
        poster = getattr(self.slack, "post_report", None) if self.slack is not None else None
        if reports is None or poster is None:
            return
        scheduler_mod = _import_optional("bot.report.scheduler")
        if scheduler_mod is None:
            return
        self._scheduler = scheduler_mod.ReportScheduler.from_config(reports, poster, self.config)
        self._scheduler.start()

    async def drain(self) -> None:
        """Stop taking new work, finish what is in flight, flush the outbox briefly."""
        if self.draining:
            return
        self.draining = True
        log.info(kv(server="draining", api_inflight=self._api_inflight))
        stop_intake = getattr(self.slack, "stop_intake", None)
        if stop_intake is not None:  # staff replies acked by Slack still reach the outbox
            await stop_intake(self.drain_timeout_s)
        if self.telegram is not None:
            await self.telegram.stop(timeout=self.drain_timeout_s)
        loop = asyncio.get_running_loop()
        end = loop.time() + self.drain_timeout_s
        while self._api_inflight and loop.time() < end:
            await asyncio.sleep(0.02)
        log.info(kv(server="drained"))

    # -- handlers -----------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: 200 when every configured store answers (the database, Redis), else
        503 naming which does not. /healthz stays a liveness check (no server round trip)."""
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        storage = self.bot.services.get("storage")
        checks = await storage.check() if storage is not None else []  # type: ignore[attr-defined]
        body = {"status": "ok" if all(err is None for _, _, err in checks) else "unavailable",
                "backend": getattr(storage, "kind", "embedded"),
                "stores": {what.lower(): "ok" if err is None else "unavailable" for what, _, err in checks}}
        return web.json_response(body, status=200 if body["status"] == "ok" else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def telegram_webhook(self, request: web.Request) -> web.Response:
        response = await self._telegram_webhook(request)
        self.metrics.webhook.labels("telegram", str(response.status)).inc()
        return response

    async def _telegram_webhook(self, request: web.Request) -> web.Response:
        tg = self.telegram
        if tg is None:
            return _error(404, "Telegram is not configured")
        expected = tg.settings.webhook_secret
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return _error(403, "wrong or missing secret token")
        if self.draining or not tg.accepting:
            return _error(503, "shutting down; retry later")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        try:
            key, text, update = tg.parse(body)
        except BadUpdate as e:
            return _error(400, str(e))
        await tg.accept(key, text, update)
        return web.Response(body=_OK_BODY, content_type="application/json")

    async def api_messages(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_token.encode()):
            return web.json_response({"ok": False, "error": "missing or wrong bearer token"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="tierbot"'})
        if self.draining:
            return _error(503, "shutting down; retry later")
        try:
            data = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: RecursionError
            return _error(400, "body is not valid JSON")
        problem = _check_api_message(data)
        if problem:
            return _error(400, problem)
        event = Event(platform="api", conversation_id=data["conversation_id"], user_id=data["user_id"],
                      text=data.get("text", ""), user_name=data.get("user_name"))
        if "pick" in data:  # an entry from an earlier reply's "suggestions"
            suggestions = self.bot.services.get("faq_suggestions")
            picked = suggestions.lookup(data["pick"]) if suggestions is not None else None  # type: ignore[attr-defined]
            if picked is None:
                return _error(400, "pick is not an entry of the FAQ (removed since it was suggested?)")
            event.text, event.pick = picked.question, picked.entry_id
        self._api_inflight += 1
        try:
            reply = await self.bot.handle(event)
        finally:
            self._api_inflight -= 1
        return web.json_response(reply.to_dict(), dumps=lambda o: json.dumps(o, default=str, ensure_ascii=False))

    # -- running ------------------------------------------------------------------------
    async def run(self, host: str, port: int, stop: asyncio.Event) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=self.drain_timeout_s)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info(kv(server="listening", host=host, port=port))
        try:
            await stop.wait()
            await self.drain()
        finally:
            await runner.cleanup()


class _BacklogCollector(Collector):
    """Updates accepted but not yet answered, read at scrape time from memory (never
    blocking on the database): the first sign of falling behind."""

    def __init__(self, telegram: TelegramAdapter) -> None:
        self.telegram = telegram

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("tierbot_updates_in_progress", "Updates accepted and not yet "
                                   "answered by this process", labels=["platform"])
        family.add_metric(["telegram"], float(self.telegram.in_progress))
        yield family
        slots = self.telegram.slots
        limit = GaugeMetricFamily("tierbot_updates_admission_limit", "Updates this process answers at "
                                  "once right now (follows the event loop's lag; adapters/admission.py)",
                                  labels=["platform"])
        limit.add_metric(["telegram"], float(slots.limit))
        yield limit
        waiting = GaugeMetricFamily("tierbot_updates_waiting", "Updates accepted and waiting for "
                                    "an admission slot", labels=["platform"])
        waiting.add_metric(["telegram"], float(slots.waiting))
        yield waiting


def _check_api_message(data: Any) -> str | None:
    """`text`, or `pick`: the `entry_id` of one of the `suggestions` an earlier reply offered."""
    if not isinstance(data, dict):
        return "body must be a JSON object"
    if "pick" in data:
        if "text" in data:
            return "give either text or pick, not both"
        if not isinstance(data["pick"], str) or not data["pick"].strip():
            return "pick must be a non-empty string (an entry_id from the reply's suggestions)"
    for name in ("conversation_id", "user_id") if "pick" in data else ("conversation_id", "user_id", "text"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"{name} must be a non-empty string"
    if len(data.get("text", "")) > MAX_API_TEXT:
        return f"text longer than {MAX_API_TEXT} characters"
    if "user_name" in data and not isinstance(data["user_name"], str):
        return "user_name must be a string"
    return None


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # e.g. not the main thread
            pass


async def serve(config: Config, *, host: str = "0.0.0.0", port: int | None = None) -> int:
    """`tierbot serve`: build the bot and the server; run until SIGTERM/SIGINT."""
    from bot.app import build_bot

    port = port if port is not None else config.get_int("PORT", 8080, minimum=0)
    stop = asyncio.Event()
    install_stop_signals(stop)
    async with build_bot(config, serving=True) as bot:
        server = Server(bot, config)
        await server.run(host, port, stop)
    return 0
