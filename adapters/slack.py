"""Slack, for staff: the handoff desk, questions to the bot, and `/tierbot`.

Public surface (the web server calls `install`; the report scheduler calls `post`):

    adapter = install(app, bot)      # aiohttp.web.Application, SupportBot -> SlackAdapter | None
    await adapter.post(channel, text, blocks=None)
    await adapter.post_report(blocks, text)   # to SLACK_REPORT_CHANNEL (else the staff channel)
    desk = attach_desk(bot)          # posting only, for `tierbot poll` workers (no HTTP route)

`install` adds `POST /slack/events` (Events API, interactivity and slash commands, all
on one URL) and registers the adapter as `services["staff_desk"]` and
`services["slack"]`. It returns None when Slack is not configured at all
(no SLACK_BOT_TOKEN and no SLACK_SIGNING_SECRET) and raises ConfigError when it is
configured by halves. Settings: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET,
SLACK_STAFF_CHANNEL, SLACK_API_URL (Web API base, for tests and staging).

Slack app setup (api.slack.com/apps): Event Subscriptions, Interactivity and the
`/tierbot` slash command all use https://<host>/slack/events; bot events
`message.channels`, `message.groups`, `message.im`, `app_mention`; bot scopes
`chat:write`, `channels:history`, `groups:history`, `im:history`, `app_mentions:read`,
`commands`; invite the bot to the staff (and report) channel.

How the promises are kept:
- every request goes through slack-bolt's `AsyncApp` and its request-verification
  middleware (bad, missing or >5-minute-old signature: 401, nothing runs);
- retried deliveries (same `event_id`) are dropped by a durable claim (`SeenEvents`),
  committed with the event before the ack; an event acked but unfinished when the
  process died is handled after the restart (at least once, never lost);
- listeners only ack and queue: slow work runs in tracked tasks after the ack, and
  the server's shutdown waits for them;
- what the customer side shows staff (handoff cards, the customer's messages, status
  changes) goes through a durable outbox (adapters.outbox, in `slack.db`): kept in
  order per handoff and retried until Slack takes it, across restarts;
- Web API calls retry on 429 after `Retry-After` (slack_sdk's rate-limit retry handler);
- the bot's own posts (its bot id / user id from auth.test) are never relayed.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import describe
from bot.config import Config, ConfigError
from bot.handoff.service import HandoffService
from bot.handoff import Handoff
from bot.logs import kv
from bot.models import Event, Reply, StreamReset
from bot.pipeline import SupportBot
from bot.turn import Turn

from .durable import Clock, DurableStore
from .outbox import Outbox, Permanent, RetryLater, Transient
from .slack_blocks import (
    RESOLVE_ACTION,
    TAKE_ACTION,
    answer_message,
    customer_line,
    handoff_card,
    picked_line,
    thread_note,
    to_plain,
)
from .slack_commands import StaffCommands, TodayCounter
from .slack_dedupe import SeenEvents
from .slack_stream import StaffAnswerStream

__all__ = ["SlackAdapter", "SlackSettings", "install", "attach_desk", "EVENTS_PATH"]

log = logging.getLogger("tierbot.slack")

EVENTS_PATH = "/slack/events"
DEFAULT_API_URL = "https://slack.com/api/"
HISTORY_TURNS = 8
# Unfinished events older than this are taken over at start-up (and once more this much
# later): long enough that a sibling process still working on one is left alone.
RECOVER_AFTER_S = 30.0
RELAYED_SUBTYPES = (None, "thread_broadcast", "file_share")
OUTBOX_PLATFORM = "slack"
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
# Web API errors that no retry can fix: the outbox parks the post instead of retrying.
PERMANENT_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "msg_too_long", "no_text",
                    "invalid_blocks", "message_not_found", "cant_update_message", "invalid_arguments"}


@dataclass(frozen=True)
class SlackSettings:
    token: str
    signing_secret: str
    staff_channel: str
    api_url: str = DEFAULT_API_URL
    report_channel: str | None = None
    # Slack user IDs allowed to change what the bot tells customers (`/tierbot faq add|remove`).
    # Anyone in a workspace can run a slash command, so nobody may unless named here.
    faq_editors: frozenset[str] = frozenset()
    # Staff answers stream into the thread once this many characters are waiting
    # (0: never stream, post every answer whole). Shorter answers are posted whole.
    stream_buffer_chars: int = 256

    @classmethod
    def from_config(cls, config: Config) -> "SlackSettings | None":
        token, secret = config.get("SLACK_BOT_TOKEN"), config.get("SLACK_SIGNING_SECRET")
        if not token and not secret:
            return None
        missing = [name for name, value in (("SLACK_BOT_TOKEN", token), ("SLACK_SIGNING_SECRET", secret),
                                            ("SLACK_STAFF_CHANNEL", config.get("SLACK_STAFF_CHANNEL")))
                   if not value]
        if missing:
            raise ConfigError(f"Slack is half configured: set {', '.join(missing)} (or unset all SLACK_* settings)")
        api_url = config.get("SLACK_API_URL", DEFAULT_API_URL) or DEFAULT_API_URL
        if not api_url.startswith(("http://", "https://")):
            raise ConfigError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}")
        editors = frozenset(u.strip() for u in (config.get("SLACK_FAQ_EDITORS") or "").split(",") if u.strip())
        bad = sorted(u for u in editors if not SLACK_USER_ID.fullmatch(u))
        if bad:
            raise ConfigError(f"SLACK_FAQ_EDITORS must be Slack user IDs such as U0123ABCD, separated by "
                              f"commas; not a user ID: {', '.join(bad)}")
        return cls(token=token, signing_secret=secret,  # type: ignore[arg-type]
                   staff_channel=config.get("SLACK_STAFF_CHANNEL"),  # type: ignore[arg-type]
                   api_url=api_url if api_url.endswith("/") else api_url + "/",
                   report_channel=config.get("SLACK_REPORT_CHANNEL"), faq_editors=editors,
                   stream_buffer_chars=config.get_int("SLACK_STREAM_BUFFER_CHARS", 256, minimum=0))


def web_client(settings: SlackSettings) -> AsyncWebClient:
    """A Web API client that waits out 429s (Retry-After) and retries 500/503 once."""
    return AsyncWebClient(
        token=settings.token, base_url=settings.api_url, timeout=10,
        retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=2),
                        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                        AsyncServerErrorRetryHandler(max_retry_count=2)])


class SlackAdapter:
    """Slack transport for staff; implements the handoff's `StaffDesk`."""

    def __init__(self, bot: SupportBot, settings: SlackSettings, *, data_dir: Path,
                 clock: Clock = time.time) -> None:
        self.bot = bot
        self.settings = settings
        self.client = web_client(settings)
        self.clock = clock  # wall clock of the dedupe, the outbox and staff events
        self.seen = SeenEvents(Path(data_dir) / "slack_events.sqlite3", clock=clock)
        self.store = DurableStore.in_dir(Path(data_dir), "slack.db")
        self.outbox = Outbox(self.store, concurrency=4, clock=clock)
        self.outbox.register(OUTBOX_PLATFORM, self._deliver)
        self.app = AsyncApp(client=self.client, signing_secret=settings.signing_secret,
                            process_before_response=True, logger=logging.getLogger("tierbot.slack.bolt"),
                            name="tierbot")
        self.counter = TodayCounter(bot.services["config"].tz if "config" in bot.services else None)
        self.commands = StaffCommands(bot, self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._identity: dict[str, str] = {}
        self._closing = False
        self._closed = False
        self.receives_events = False  # set by install(): this process serves /slack/events
        self._recovery: asyncio.Task[None] | None = None
        self._register()

    # -- wiring -----------------------------------------------------------------------------
    @property
    def handoffs(self) -> HandoffService | None:
        return self.bot.services.get("handoffs")  # type: ignore[return-value]

    def _register(self) -> None:
        app = self.app
        app.middleware(self._dedupe)
        app.event("message")(self._on_message_event)
        app.event("app_mention")(self._on_mention_event)
        app.action(TAKE_ACTION)(self._on_take)
        app.action(RESOLVE_ACTION)(self._on_resolve)
        app.command("/tierbot")(self._on_command)
        # Any other event the app is subscribed to: acknowledged and ignored, so Slack
        # does not see 404s, retry them and eventually disable the subscription.
        app.event(re.compile(".*"))(self._ignore)

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler for POST /slack/events: Bolt does verification and dispatch."""
        if self._closing:
            return web.Response(status=503, text="shutting down")
        stamp = request.headers.get("X-Slack-Request-Timestamp")
        if stamp is not None and not stamp.strip().isdigit():
            # Bolt's verifier calls int() on it and answers 500; it is simply not signed right.
            return web.json_response({"error": "invalid request"}, status=401)
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def start(self) -> None:
        """Start the outbox (it resumes what a previous run left), learn who the bot is,
        and queue a card for any open handoff that never got one."""
        self.outbox.start()
        await self.identity()
        if self.receives_events:
            self._recovery = asyncio.get_running_loop().create_task(self._recover(), name="slack-recover")
        if self.handoffs is None:
            return
        for handoff in await self.handoffs.open_handoffs():
            if not handoff.thread_ts:
                await self._enqueue(handoff.id, "open", {})

    async def stop_intake(self, timeout: float = 20.0) -> None:
        """Shutdown, step 1: refuse new Slack requests, finish the work already acked
        (it may still need the customer channels, which close after this)."""
        self._closing = True
        if self._recovery is not None:
            self._recovery.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                log.warning(kv(event="slack_task_abandoned", task=task.get_name()))
                task.cancel()

    async def aclose(self, flush_timeout: float = 5.0) -> None:
        """Shutdown, step 2 (after the customer side drained, which may still queue posts
        for staff): deliver what the outbox can in `flush_timeout`, keep the rest on disk."""
        if self._closed:
            return
        await self.stop_intake()
        self._closed = True
        await self.outbox.stop(flush_timeout=flush_timeout)
        self.store.close()
        self.seen.close()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run slow work after the ack; the task is kept until it ends (and awaited at shutdown)."""
        task = asyncio.get_running_loop().create_task(self._guard(coro, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("slack work %s failed", name)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for the work queued so far, including posts for staff (tests, tools)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.outbox.wait_idle(timeout)

    async def identity(self) -> dict[str, str]:
        """The bot's own user id and bot id (auth.test), cached once known."""
        if not self._identity:
            try:
                result = await self.client.auth_test()
                self._identity = {"user_id": result.get("user_id", ""), "bot_id": result.get("bot_id", "")}
            except SlackApiError as e:
                log.error(kv(event="slack_auth_test_failed", error=e.response.get("error")))
            except Exception as e:
                log.error(kv(event="slack_auth_test_failed", error=type(e).__name__))
        return self._identity

    async def _is_own(self, event: dict[str, Any]) -> bool:
        me = await self.identity()
        return bool(event.get("bot_id")) and event.get("bot_id") == me.get("bot_id") or (
            bool(event.get("user")) and event.get("user") == me.get("user_id"))

    # -- public: posting ----------------------------------------------------------------------
    async def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None) -> str:
        """Post a message (optionally Block Kit) to a channel; returns its ts."""
        kwargs: dict[str, Any] = {"channel": channel, "text": text}
        if blocks:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        return (await self._post(**kwargs))[1]

    async def _post(self, **kwargs: Any) -> tuple[str, str]:
        result = await self.client.chat_postMessage(**kwargs)
        # Slack answers with the channel's id even when it was given by name ("#support").
        return str(result.get("channel") or kwargs["channel"]), str(result["ts"])

    async def post_report(self, blocks: list[dict[str, Any]], text: str) -> str:
        """The daily report scheduler's poster: SLACK_REPORT_CHANNEL, else the staff channel."""
        return await self.post(self.settings.report_channel or self.settings.staff_channel, text, blocks)

    async def tell(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        """An ephemeral note only `user` sees; failures are logged, never raised."""
        try:
            kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
            if thread_ts:
                kwargs["thread_ts"] = thread_ts
            await self.client.chat_postEphemeral(**kwargs)
        except Exception as e:
            log.warning(kv(event="slack_ephemeral_failed", error=type(e).__name__))

    # -- StaffDesk (called by the handoff service; never makes the customer wait) -----------
    async def handoff_opened(self, handoff: Handoff, history: list[Turn]) -> None:
        turns = [[t.role, t.text, t.timestamp] for t in history[-HISTORY_TURNS:]]
        await self._enqueue(handoff.id, "open", {"history": turns})

    async def customer_wrote(self, handoff: Handoff, event: Event) -> None:
        line = customer_line(event.user_name or handoff.customer, event.text or "",
                             [a.kind for a in event.attachments])
        await self._enqueue(handoff.id, "forward", {"text": line})

    async def customer_picked(self, handoff: Handoff, event: Event) -> None:
        line = picked_line(event.user_name or handoff.customer, event.text or "", event.pick or "")
        await self._enqueue(handoff.id, "forward", {"text": line})

    async def handoff_changed(self, handoff: Handoff) -> None:
        await self._enqueue(handoff.id, "refresh", {})

    async def _enqueue(self, handoff_id: int, method: str, params: dict[str, Any]) -> None:
        # One outbox "chat" per handoff: its card exists before anything goes into its thread.
        await self.outbox.enqueue(OUTBOX_PLATFORM, f"handoff:{handoff_id}",
                                  [(method, {"handoff": handoff_id, **params})])

    async def _deliver(self, chat_id: str, method: str, params: dict[str, Any]) -> None:
        """Outbox sender: one queued post for staff, with Slack's errors classified."""
        try:
            handoff_id = int(params["handoff"])
            if method == "open":
                history = [Turn(r, t, ts) for r, t, ts in params["history"]] if "history" in params else None
                await self._ensure_thread(handoff_id, history)
            elif method == "forward":
                handoff = await self._ensure_thread(handoff_id, None)
                if handoff and handoff.thread_ts:
                    await self.post(handoff.channel or self.settings.staff_channel, params["text"],
                                    thread_ts=handoff.thread_ts)
            elif method == "refresh":
                await self._refresh(handoff_id)
            else:
                raise Permanent(f"unknown staff-desk call {method!r}")
        except SlackApiError as e:
            error = str(e.response.get("error", ""))
            if e.response.status_code == 429:
                raise RetryLater(float(e.response.headers.get("Retry-After", 1) or 1), error) from None
            if error in PERMANENT_ERRORS:
                raise Permanent(error) from None
            raise Transient(error or f"HTTP {e.response.status_code}") from None
        except (OSError, asyncio.TimeoutError) as e:
            raise Transient(type(e).__name__) from None

    async def _ensure_thread(self, handoff_id: int, history: list[Turn] | None) -> Handoff | None:
        service = self.handoffs
        handoff = await service.store.get(handoff_id) if service else None
        if handoff is None or handoff.thread_ts:
            return handoff
        if history is None:
            history = await self.bot.history.recent(handoff.conversation_id, HISTORY_TURNS)
        text, blocks = handoff_card(handoff, history[-HISTORY_TURNS:], off_hours=self._off_hours(handoff))
        channel, ts = await self._post(channel=self.settings.staff_channel, text=text, blocks=blocks)
        await service.store.set_thread(handoff.id, channel, ts)  # type: ignore[union-attr]
        log.info(kv(event="slack_handoff_posted", handoff=handoff.id, channel=channel, ts=ts))
        return await service.store.get(handoff_id)  # type: ignore[union-attr]

    async def _refresh(self, handoff_id: int) -> None:
        handoff = await self._ensure_thread(handoff_id, None)
        if not (handoff and handoff.thread_ts and handoff.channel):
            return
        text, blocks = handoff_card(handoff, await self._card_history(handoff), off_hours=self._off_hours(handoff))
        await self.client.chat_update(channel=handoff.channel, ts=handoff.thread_ts, text=text, blocks=blocks)
        await self.post(handoff.channel, thread_note(handoff), thread_ts=handoff.thread_ts)

    def _off_hours(self, handoff: Handoff) -> str | None:
        hours = self.handoffs.hours if self.handoffs else None
        if hours is None or hours.is_open(handoff.opened_at):
            return None
        return hours.describe_next(handoff.opened_at)

    async def _card_history(self, handoff: Handoff) -> list[Turn]:
        """The card keeps the history up to the handoff (what staff first saw)."""
        turns = await self.bot.history.recent(handoff.conversation_id, 50)
        before = [t for t in turns if t.timestamp <= handoff.opened_at + 1]
        return before[-HISTORY_TURNS:]

    # -- Bolt listeners (ack fast, work later) ---------------------------------------------------
    async def _dedupe(self, body: dict[str, Any], next: Any) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not await self.seen.claim(str(event_id), body.get("event")):
            log.info(kv(event="slack_redelivery_ignored", event_id=event_id))
            return BoltResponse(status=200, body="")
        return await next()

    async def _ignore(self, body: dict[str, Any]) -> None:
        if body.get("event_id"):
            await self.seen.done(str(body["event_id"]))

    async def _on_message_event(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        self.spawn(self._finish(body.get("event_id"), self._on_message(event)), f"message-{event.get('ts')}")

    async def _on_mention_event(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        self.spawn(self._finish(body.get("event_id"), self._on_mention(event)), f"mention-{event.get('ts')}")

    async def _on_mention(self, event: dict[str, Any]) -> None:
        if not await self._is_own(event):
            await self._answer_staff(event)

    async def _finish(self, event_id: str | None, work: Coroutine[Any, Any, Any]) -> None:
        """Run an event's work, then mark it done (a bug is logged and not retried forever)."""
        try:
            await work
        except Exception:
            log.exception(kv(event="slack_event_failed", event_id=event_id))
        if event_id:
            await self.seen.done(str(event_id))

    async def _recover(self) -> None:
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(RECOVER_AFTER_S)
            for event_id, event in await self.seen.take_stale(RECOVER_AFTER_S):
                log.warning(kv(event="slack_event_recovered", event_id=event_id, type=event.get("type")))
                handler = {"message": self._on_message, "app_mention": self._on_mention}.get(event.get("type", ""))
                if handler is None:
                    await self.seen.done(event_id)
                else:
                    self.spawn(self._finish(event_id, handler(event)), f"recovered-{event_id}")

    async def _on_take(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self.spawn(self._button(body, action, "take"), f"take-{action.get('value')}")

    async def _on_resolve(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self.spawn(self._button(body, action, "resolve"), f"resolve-{action.get('value')}")

    async def _on_command(self, ack: Any, command: dict[str, Any]) -> None:
        await self.commands.handle(ack, command)

    # -- the work --------------------------------------------------------------------------------
    async def _on_message(self, event: dict[str, Any]) -> None:
        if event.get("subtype") not in RELAYED_SUBTYPES or await self._is_own(event) or event.get("bot_id"):
            return  # edits, joins, other bots, and above all our own posts: never relayed
        if event.get("channel_type") == "im":
            await self._answer_staff(event)
            return
        thread_ts, channel, text = event.get("thread_ts"), event.get("channel", ""), event.get("text") or ""
        if not thread_ts or thread_ts == event.get("ts"):
            return  # top-level chatter in the channel
        me = (await self.identity()).get("user_id")
        if me and f"<@{me}>" in text:
            return  # a question to the bot in the thread: the app_mention listener answers it
        service = self.handoffs
        handoff = await service.store.by_thread(channel, thread_ts) if service else None
        if handoff is None:
            return
        if text.lstrip().lower().startswith("note:"):
            log.info(kv(event="staff_note", handoff=handoff.id))
            return
        staff = event.get("user", "")
        if not handoff.is_open:
            await self.tell(channel, staff, "This conversation was resolved, so your reply was not sent. "
                            "The customer is talking to the bot again.", thread_ts)
            return
        try:
            await service.staff_reply(handoff, to_plain(text), staff)  # type: ignore[union-attr]
        except LookupError as e:
            await self.tell(channel, staff, f"Could not send this to the customer: {e}", thread_ts)
            return
        log.info(kv(event="staff_reply_relayed", handoff=handoff.id, platform=handoff.platform))

    async def _button(self, body: dict[str, Any], action: dict[str, Any], what: str) -> None:
        service = self.handoffs
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or self.settings.staff_channel
        try:
            handoff_id = int(action.get("value", ""))
        except ValueError:
            return
        if service is None:
            return
        if what == "take":
            handoff, changed = await service.take(handoff_id, user)
        else:
            handoff, changed = await service.resolve(handoff_id, user)
        if handoff is None:
            await self.tell(channel, user, "That handoff no longer exists.")
        elif not changed:
            state = handoff.state.replace("_", " ")
            await self.tell(channel, user, f"Nothing to do: handoff #{handoff.id} is already {state}.",
                            handoff.thread_ts)

    async def _answer_staff(self, event: dict[str, Any]) -> None:
        """A staff member asked the bot something: answer in the thread, saying who answered and the cost."""
        text = to_plain(event.get("text") or "")  # the bot's own @mention drops out
        channel = event.get("channel", "")
        thread = event.get("thread_ts") or event.get("ts")
        if not text:
            await self.post(channel, "Ask me anything a customer might ask, "
                            "e.g. `@tierbot what is the refund policy?`", thread_ts=thread)
            return
        question = Event(
            platform="slack", conversation_id=f"slack:{channel}:{thread}", user_id=event.get("user", ""),
            text=text, message_id=event.get("ts"), route="staff", timestamp=self.clock())
        stream = StaffAnswerStream(self.client, channel=channel, thread_ts=thread, user=event.get("user"),
                                   team=event.get("team") or event.get("user_team"),
                                   buffer_chars=self.settings.stream_buffer_chars)
        reply: Reply | None = None
        async for item in self.bot.stream(question):
            if isinstance(item, Reply):
                reply = item
            elif isinstance(item, StreamReset):
                await stream.withdraw()  # appendStream cannot take text back: start afresh
            else:
                await stream.append(item)
        assert reply is not None  # the pipeline always ends with a Reply
        summary, blocks = answer_message(reply, describe(reply))
        # The chunks since the last reset add up to the reply's text: the streamed message
        # only needs the context line under it.
        if stream.text == reply.text and await stream.finish(blocks[1:]):
            return
        await stream.withdraw()
        await self.post(channel, summary, blocks, thread_ts=thread)


def attach_desk(bot: SupportBot, config: Config | None = None) -> SlackAdapter | None:
    """Slack as the staff desk only (posting cards and customer messages; no HTTP route):
    for processes that answer customers but do not serve Slack, e.g. `tierbot poll`.
    The caller runs `await desk.start()` and, after the customer side stopped,
    `await desk.aclose()`. None when Slack is not configured."""
    config = config or bot.services.get("config") or Config.from_env()  # type: ignore[assignment]
    settings = SlackSettings.from_config(config)  # type: ignore[arg-type]
    if settings is None:
        log.info(kv(event="slack_disabled", reason="SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET not set"))
        return None
    adapter = SlackAdapter(bot, settings, data_dir=config.data_dir)  # type: ignore[union-attr]
    bot.services["staff_desk"] = adapter
    bot.services["slack"] = adapter
    bot.listeners.append(adapter.counter)
    return adapter


def install(app: web.Application, bot: SupportBot, config: Config | None = None, *,
            path: str = EVENTS_PATH) -> SlackAdapter | None:
    """Mount Slack on an aiohttp app. None when Slack is not configured (see module doc)."""
    adapter = attach_desk(bot, config)
    if adapter is None:
        return None
    adapter.receives_events = True
    app.router.add_post(path, adapter.handle)

    async def on_startup(_: web.Application) -> None:
        await adapter.start()

    async def on_shutdown(_: web.Application) -> None:
        await adapter.stop_intake()

    async def on_cleanup(_: web.Application) -> None:
        await adapter.aclose()  # after the server's own cleanup drained the customer side

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return adapter
