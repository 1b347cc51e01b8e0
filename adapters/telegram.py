"""Telegram ↔ tierbot, through python-telegram-bot.

PTB's `Application` is built with no updater (`.updater(None)`): updates arrive from our
own aiohttp webhook or our own polling loop, because each must be durably recorded in the
inbox *before* Telegram is told it was received. PTB does the wire work — parsing
`Update` JSON, every Bot API call, error classification (`RetryAfter`, `BadRequest`, ...).
Dispatch is a small table over the update's kind; it lives here rather than in PTB
handlers because the inbox must know when (and whether) an update was fully answered.

Replies leave through the durable outbox (`adapters/outbox.py`); typing indicators,
drafts and callback answers are ephemeral and sent directly, best-effort.

Indicators only when they help: "typing…" and drafts start after `typing_delay_s` /
`draft_delay_s` (1 s) without an answer, and not while the process is behind on its work
(updates waiting for a slot, or a lagging event loop). A reply ready sooner — the cache,
templates, a fast model — goes out as one sendMessage; under the load bench the old 0.3 s
typing delay and immediate drafts cost two extra Bot API calls per LLM answer of 300 ms.

Concurrency: an update holds a slot while it is answered, which is mostly waiting on a
provider. A fixed 64 slots capped one process below 150 updates/s with CPU to spare; the
number of slots now follows the event loop's lag, up to `concurrency` (512), so the
process takes on as much as its CPU keeps up with (`adapters/admission.py`).
"""
from __future__ import annotations

import asyncio
import datetime as dtm
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import Bot, CallbackQuery, InlineKeyboardMarkup, Message, MessageEntity, ReplyParameters, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application

from bot.channels import Button, Channels
from bot.config import Config, ConfigError
from bot.logs import kv
from bot.models import Attachment, Event, Reply, StreamReset, Suggestion
from bot.pipeline import SupportBot
from bot.rendering import Renderer

from .admission import AdaptiveSlots
from .claims import Claims
from .durable import Clock, DurableStore
from .inbox import Inbox
from .outbox import Call, Outbox, Permanent, RetryLater, Transient
from .telegram_http import AiohttpRequest
from .textsplit import split_text

__all__ = ["TelegramAdapter", "TelegramSettings", "BadUpdate", "PLATFORM"]

log = logging.getLogger("tierbot.telegram")

PLATFORM = "telegram"
DEFAULT_API = "https://api.telegram.org"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64  # bytes, Telegram's limit for inline button data
PICK_PREFIX = "faq"  # callback data "faq:<entry id>": a "Did you mean…?" button
MAX_BUTTON_TEXT = 60  # longer questions are clipped on the button (the answer names no question)
MAX_IMAGE_BYTES = 10 * 1024 * 1024
RECOVER_BATCH = 500
# Update kinds worth recording; anything else is valid Telegram but not ours to answer.
HANDLED_KINDS = ("message", "callback_query")


class BadUpdate(ValueError):
    """The body is not a Telegram update we accept; the message says why (no user data)."""


@dataclass(frozen=True)
class TelegramSettings:
    token: str
    api_base_url: str = DEFAULT_API
    webhook_url: str | None = None
    webhook_secret: str | None = None
    stream_drafts: bool = True
    draft_interval_s: float = 0.4
    typing_interval_s: float = 4.0  # Telegram shows "typing…" for 5 s per call
    # Answers ready sooner skip the indicator and the drafts: Bot API calls saved per
    # message, and Telegram's per-bot limits are counted in calls.
    typing_delay_s: float = 1.0
    draft_delay_s: float = 1.0
    concurrency: int = 512  # most updates answered at once; the limit in use adapts below it
    send_concurrency: int = 64  # outbox calls to Telegram in flight
    lease_s: float = 30.0  # > the reply deadline; a crashed process's work is retaken after this
    poll_timeout_s: int = 25

    @classmethod
    def from_config(cls, config: Config) -> "TelegramSettings":
        token = config.get("TELEGRAM_BOT_TOKEN")
        if not token:
            raise ConfigError("TELEGRAM_BOT_TOKEN is not set (get one from @BotFather)")
        secret = config.get("TELEGRAM_WEBHOOK_SECRET")
        if secret is not None and not (1 <= len(secret) <= 256
                                       and all(c.isascii() and (c.isalnum() or c in "_-") for c in secret)):
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        url = config.get("TELEGRAM_WEBHOOK_URL")
        if url and not secret:
            raise ConfigError("TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not: "
                              "a webhook without a secret would accept anyone's updates")
        return cls(
            token=token,
            api_base_url=(config.get("TELEGRAM_API_BASE_URL") or DEFAULT_API).rstrip("/"),
            webhook_url=url,
            webhook_secret=secret,
            stream_drafts=config.get_bool("TELEGRAM_STREAM_DRAFTS", True),
            draft_interval_s=config.get_float("TELEGRAM_DRAFT_INTERVAL_S", 0.4, minimum=0.0),
            typing_delay_s=config.get_float("TELEGRAM_TYPING_DELAY_S", 1.0, minimum=0.0),
            draft_delay_s=config.get_float("TELEGRAM_DRAFT_DELAY_S", 1.0, minimum=0.0),
            concurrency=config.get_int("TELEGRAM_CONCURRENCY", 512, minimum=1),
            send_concurrency=config.get_int("TELEGRAM_SEND_CONCURRENCY", 64, minimum=1),
            lease_s=config.get_float("TELEGRAM_LEASE_S", 30.0, minimum=0.1),
            poll_timeout_s=config.get_int("TELEGRAM_POLL_TIMEOUT_S", 25, minimum=0),
        )

    def urls(self) -> tuple[str, str]:
        """PTB's base_url/base_file_url; `{token}` is filled in by PTB."""
        base = self.api_base_url
        if "{token}" in base:
            return base, base.replace("/bot{token}", "/file/bot{token}")
        return f"{base}/bot{{token}}", f"{base}/file/bot{{token}}"


def _pool_size(settings: TelegramSettings) -> int:
    """Connections to the Bot API: the outbox's sends plus indicators, not one per slot."""
    return max(16, min(settings.concurrency, 2 * settings.send_concurrency))


def _seconds(retry_after: int | dtm.timedelta) -> float:
    return retry_after.total_seconds() if isinstance(retry_after, dtm.timedelta) else float(retry_after)


@dataclass
class _Progress:
    """What the customer has been shown while an answer is being made."""

    started: float  # time.monotonic() when answering began
    last_draft: float = float("-inf")  # when a draft was last shown


class _ChatLocks:
    """One lock per chat, so a customer's messages are answered in the order sent."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def run(self, chat: str, fn: Callable[[], Awaitable[None]]) -> None:
        lock, users = self._locks.get(chat) or (asyncio.Lock(), 0)
        self._locks[chat] = (lock, users + 1)
        try:
            async with lock:
                await fn()
        finally:
            lock, users = self._locks[chat]
            if users <= 1:
                del self._locks[chat]
            else:
                self._locks[chat] = (lock, users - 1)


class TelegramAdapter:
    """Receives updates (webhook or polling), answers them through the bot, and is the
    "telegram" customer channel for staff replies and rating buttons."""

    platform = PLATFORM

    def __init__(self, bot: SupportBot, settings: TelegramSettings, store: DurableStore, *,
                 renderer: Renderer | None = None, clock: Clock = time.time) -> None:
        self.bot = bot
        self.settings = settings
        self.store = store
        self.renderer = renderer or bot.services.get("renderer")  # type: ignore[assignment]
        base_url, file_url = settings.urls()
        self.application = (Application.builder().token(settings.token).base_url(base_url)
                            .base_file_url(file_url).updater(None)
                            .request(AiohttpRequest(connection_pool_size=_pool_size(settings)))
                            .get_updates_request(AiohttpRequest(connection_pool_size=1))
                            .build())
        self.clock = clock  # wall clock of the inbox, the outbox and arrival times
        self.inbox = Inbox(store, lease_s=settings.lease_s, clock=clock)
        self.claims = Claims(store, clock=clock)
        self.outbox = Outbox(store, lease_s=settings.lease_s, concurrency=settings.send_concurrency, clock=clock)
        self.outbox.register(PLATFORM, self._deliver)
        self.accepting = False
        self._tasks: dict[str, asyncio.Task[None]] = {}  # inbox key -> task answering it
        self._received: dict[str, float] = {}  # inbox key -> when it arrived (for latency metrics)
        self._slots = AdaptiveSlots(settings.concurrency)
        self._chats = _ChatLocks()
        self._background: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._started = False
        channels = bot.services.get("channels")
        if not isinstance(channels, Channels):
            channels = Channels()
            bot.services["channels"] = channels
        channels.register(self)

    @classmethod
    def from_config(cls, bot: SupportBot, config: Config, store: DurableStore) -> "TelegramAdapter":
        return cls(bot, TelegramSettings.from_config(config), store)

    @property
    def in_progress(self) -> int:
        """Updates recorded and being (or waiting to be) answered by this process."""
        return len(self._tasks)

    @property
    def slots(self) -> AdaptiveSlots:
        """The admission limit (for metrics)."""
        return self._slots

    @property
    def tg(self) -> Bot:
        return self.application.bot

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, *, recover: bool = True) -> None:
        """Connect (getMe), start sending, and answer anything recorded but unanswered.

        If Telegram cannot be reached yet, updates are still accepted and recorded (the
        server must not refuse to start, Slack may be served by it too); answering waits
        until a background retry connects. A rejected token is a configuration error."""
        self._started = True
        self.accepting = True
        try:
            await self._connect()
        except InvalidToken:
            raise ConfigError("TELEGRAM_BOT_TOKEN was rejected by the Telegram Bot API") from None
        except TelegramError as e:
            log.warning(kv(telegram="connect_failed", error=type(e).__name__, retrying=True))
            self._background.append(asyncio.create_task(self._connect_loop(recover), name="telegram-connect"))
            return
        self._on_connected(recover)

    async def _connect(self) -> None:
        await self.application.initialize()

    async def _connect_loop(self, recover: bool) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except TelegramError as e:
                delay = min(60.0, delay * 2)
                log.warning(kv(telegram="connect_failed", error=type(e).__name__, retry_in=delay))
                continue
            self._on_connected(recover)
            return

    def _on_connected(self, recover: bool) -> None:
        self.outbox.start()
        self._slots.start()
        self._ready.set()
        if recover:
            self._background.append(asyncio.create_task(self._recover_loop(), name="telegram-recover"))
        log.info(kv(telegram="started", bot=self.tg.username))

    async def stop(self, *, timeout: float = 30.0, flush_timeout: float | None = None) -> None:
        """Stop taking updates, finish the answers in flight (up to `timeout`), try to
        deliver what is queued, then disconnect. Unfinished work stays in the inbox/outbox."""
        self.accepting = False
        for t in self._background:
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self._slots.stop()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks.values()), timeout=timeout)
            if pending:
                keys = [k for k, t in self._tasks.items() if t in pending]
                log.warning(kv(telegram="stop", unfinished=len(pending)))
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await self.inbox.release(keys)  # answered first thing after the restart
        if self._started:
            if self._ready.is_set():
                await self.outbox.stop(flush_timeout=min(5.0, timeout) if flush_timeout is None else flush_timeout)
                await self.application.shutdown()
            self._started = False

    async def set_webhook(self) -> None:
        s = self.settings
        if not s.webhook_url:
            return
        await self.tg.set_webhook(url=s.webhook_url, secret_token=s.webhook_secret,
                                  allowed_updates=list(HANDLED_KINDS))
        log.info(kv(telegram="webhook_set", url=s.webhook_url))

    # -- receiving --------------------------------------------------------------------
    def parse(self, body: bytes) -> tuple[str, str, Update]:
        """Validate a webhook body: (inbox key, JSON text, parsed Update) or BadUpdate."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: RecursionError
            raise BadUpdate("body is not valid JSON") from None
        try:  # kept as received (it parsed, so it is JSON): no second serialisation
            raw: str | None = body.decode("utf-8")
        except UnicodeDecodeError:  # UTF-16/32 JSON, which json.loads also accepts
            raw = None
        return self._check(data, raw)

    def _check(self, data: Any, raw: str | None = None) -> tuple[str, str, Update]:
        if not isinstance(data, dict):
            raise BadUpdate("an update must be a JSON object")
        update_id = data.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
            raise BadUpdate("update_id must be a non-negative integer")
        kinds = [k for k in Update.ALL_TYPES if k in data]
        if len(kinds) != 1 or not isinstance(data[kinds[0]], dict):
            raise BadUpdate("the update carries no known update kind")
        try:
            update = Update.de_json(data, self.tg)
        except Exception as e:
            raise BadUpdate(f"the {kinds[0]} is malformed ({type(e).__name__})") from None
        payload = getattr(update, kinds[0], None)
        if isinstance(payload, Message) and payload.chat is None:  # PTB parses it; answering would crash
            raise BadUpdate(f"the {kinds[0]} is malformed (no chat)")
        body = raw if raw is not None else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return f"{PLATFORM}:{update_id}", body, update

    async def accept(self, key: str, body: str, update: Update | None = None) -> bool:
        """Durably record an update, then start answering it. False for a redelivery.
        `update`: the body already parsed (the webhook has it), so it is not parsed twice."""
        received = self.clock()
        new = await self.inbox.record(key, body)
        if new:
            self._received[key] = received
            self._spawn(key, body, update)
        else:
            log.info(kv(telegram="duplicate", key=key))
        return new

    def _spawn(self, key: str, body: str, update: Update | None = None) -> None:
        if key in self._tasks:
            return
        task = asyncio.create_task(self._process(key, body, update), name=f"telegram-{key}")
        self._tasks[key] = task
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        key = task.get_name().removeprefix("telegram-")
        self._tasks.pop(key, None)
        self._received.pop(key, None)

    async def _recover_loop(self) -> None:
        """Answer updates recorded but not answered (after a crash, or a failed try)."""
        interval = max(0.2, min(30.0, self.settings.lease_s / 2))
        while True:
            try:
                while True:  # all of them now: a restart after a crash may find thousands
                    items = await self.inbox.claim_pending(RECOVER_BATCH)
                    for item in items:
                        if item.key not in self._tasks:
                            log.info(kv(telegram="recovered", key=item.key, attempts=item.attempts))
                            self._spawn(item.key, item.body)
                    if len(items) < RECOVER_BATCH:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbox recovery failed")
            await asyncio.sleep(interval)

    async def _process(self, key: str, body: str, update: Update | None = None) -> None:
        if not self._ready.is_set():
            await self._ready.wait()  # connected to Telegram (getMe done)
        async with self._slots:
            try:
                if not await self.inbox.take(key):  # answered, or another process has it
                    return
                if update is None:
                    update = Update.de_json(json.loads(body), self.tg)
                chat = update.effective_chat
                await self._chats.run(str(chat.id) if chat else key, lambda: self._dispatch(update, key))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                parked = await self.inbox.failed(key)
                log.exception(kv(telegram="update_failed", key=key, error=type(e).__name__, parked=parked))

    # -- dispatch ---------------------------------------------------------------------
    async def _dispatch(self, update: Update, key: str) -> None:
        if update.callback_query is not None:
            await self._on_callback(update.callback_query, key)
        elif update.message is not None:
            await self._on_message(update.message, key)
        else:
            await self.inbox.done(key)  # a kind we do not answer

    def _addressed(self, msg: Message) -> bool:
        """Private chats always; groups only when the bot is mentioned or replied to."""
        if msg.chat.type == "private":
            return True
        me = self.tg
        reply_to = msg.reply_to_message
        if reply_to is not None and reply_to.from_user is not None and reply_to.from_user.id == me.id:
            return True
        handle = f"@{me.username}".lower()
        for entity, text in {**msg.parse_entities(), **msg.parse_caption_entities()}.items():
            if entity.type == MessageEntity.MENTION and text.lower() == handle:
                return True
            if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == me.id:
                return True
            if entity.type == MessageEntity.BOT_COMMAND and text.lower().endswith(handle):
                return True
        return False

    def _command(self, msg: Message) -> str | None:
        text = msg.text or ""
        if not text.startswith("/"):
            return None
        word = text.split(maxsplit=1)[0][1:]
        name, _, target = word.partition("@")
        if target and target.lower() != (self.tg.username or "").lower():
            return None
        return name.lower()

    def _strip_mention(self, text: str) -> str:
        handle = f"@{self.tg.username}"
        return " ".join(w for w in text.split(" ") if w.lower() != handle.lower()).strip()

    async def _on_message(self, msg: Message, key: str) -> None:
        if not self._addressed(msg):
            await self.inbox.done(key)
            return
        chat_id = msg.chat.id
        user = msg.from_user
        user_name = (user.full_name if user else None) or None
        command = self._command(msg)
        if command in ("start", "help"):
            text = self._render(f"replies/{command}.j2", user_name=user.first_name if user else None)
            await self._enqueue_reply(chat_id, text, key, msg)
            return
        image = await self._image(msg)
        text = self._strip_mention(msg.text or msg.caption or "")
        if not text and image is None:  # stickers, voice, video, locations, ...
            reply = self._render("replies/unsupported.j2", images_ok=True)
            await self._enqueue_reply(chat_id, reply, key, msg)
            return
        event = Event(platform=PLATFORM, conversation_id=str(chat_id),
                      user_id=str(user.id) if user else str(chat_id), user_name=user_name,
                      text=text, message_id=str(msg.message_id),
                      attachments=(image,) if image else (), timestamp=msg.date.timestamp(), raw=msg)
        reply = await self._answer(event, chat_id, private=msg.chat.type == "private")
        await self._enqueue_reply(chat_id, reply.text, key, msg, markup=_suggestion_markup(reply.suggestions))

    async def _image(self, msg: Message) -> Attachment | None:
        """The photo (largest size) or image document, downloaded so vision routes can see it."""
        file_id, mime = None, "image/jpeg"
        if msg.photo:
            file_id = msg.photo[-1].file_id
        elif msg.document and (msg.document.mime_type or "").startswith("image/"):
            file_id, mime = msg.document.file_id, msg.document.mime_type or mime
        if file_id is None:
            return None
        data: bytes | None = None
        try:
            file = await self.tg.get_file(file_id)
            if not file.file_size or file.file_size <= MAX_IMAGE_BYTES:
                data = bytes(await file.download_as_bytearray())
        except TelegramError as e:
            log.warning(kv(telegram="image_download_failed", error=type(e).__name__))
        return Attachment(kind="image", mime_type=mime, file_id=file_id, data=data)

    def _render(self, template: str, **context: Any) -> str:
        try:
            return self.renderer.render(template, **context)
        except Exception:
            log.exception("template %s failed to render", template)
            return "Thanks for your message! Please type your question and I'll help."

    async def _answer(self, event: Event, chat_id: int, *, private: bool) -> Reply:
        """Run the pipeline; "typing…" only if no answer within typing_delay_s; drafts in
        private chats (which then stand in for "typing…")."""
        progress = _Progress(time.monotonic())
        typing: list[asyncio.Task[None]] = []
        # A timer, not a sleeping task: most answers never need one, and then cost nothing.
        timer = asyncio.get_running_loop().call_later(
            self.settings.typing_delay_s,
            lambda: typing.append(asyncio.create_task(self._typing(chat_id, progress))))
        try:
            if private and self.settings.stream_drafts:
                return await self._streamed(event, chat_id, progress)
            return await self.bot.handle(event)
        finally:
            timer.cancel()
            for task in typing:
                task.cancel()

    async def _typing(self, chat_id: int, progress: "_Progress") -> None:
        interval = self.settings.typing_interval_s
        while True:
            # A fresh draft shows progress itself; a process behind on its work spends its
            # CPU and Bot API calls on answers, not indicators.
            if time.monotonic() - progress.last_draft >= interval and not self._slots.behind:
                try:
                    await self.tg.send_chat_action(chat_id=chat_id, action="typing")
                except RetryAfter as e:
                    await asyncio.sleep(_seconds(e.retry_after))
                    continue
                except TelegramError as e:
                    log.debug(kv(telegram="typing_failed", error=type(e).__name__))
            await asyncio.sleep(interval)

    async def _streamed(self, event: Event, chat_id: int, progress: "_Progress") -> Reply:
        """Show the answer growing as a draft once it has taken longer than draft_delay_s;
        the final Reply is what gets sent for real."""
        s = self.settings
        draft_id = random.randint(1, 2**31 - 1)
        drafts_from = progress.started + s.draft_delay_s
        pieces: list[str] = []
        shown_len, last_sent, drafting = 0, 0.0, True
        reply: Reply | None = None
        async for item in self.bot.stream(event):
            if isinstance(item, Reply):
                reply = item
                break
            if isinstance(item, StreamReset):
                # The text so far is withdrawn: the next draft (same id) replaces it.
                pieces.clear()
                shown_len = -1
                continue
            if not item:
                continue
            pieces.append(item)
            if not drafting:
                continue
            now = time.monotonic()
            if now >= drafts_from and now - last_sent >= s.draft_interval_s and not self._slots.behind:
                text = "".join(pieces)
                if len(text) == shown_len:
                    continue
                preview = split_text(text, MAX_TEXT)[0] if len(text) > MAX_TEXT // 2 else text
                try:
                    await self.tg.send_message_draft(chat_id=chat_id, draft_id=draft_id, text=preview)
                    shown_len, last_sent = len(text), now
                    progress.last_draft = time.monotonic()
                except TelegramError as e:  # drafts are a nicety: stop drafting, keep answering
                    drafting = False
                    log.info(kv(telegram="draft_off", error=type(e).__name__))
        if reply is None:  # the pipeline always ends with a Reply; be safe anyway
            reply = Reply(text="".join(pieces), tier="template")
        return reply

    async def _enqueue_reply(self, chat_id: int, text: str, key: str, msg: Message | None = None, *,
                             markup: dict[str, Any] | None = None) -> None:
        """Queue the reply (nothing for an empty one) and mark the update answered, atomically."""
        calls = self._message_calls(chat_id, text, markup)
        if calls and msg is not None and msg.chat.type != "private":
            calls[0][1]["reply_parameters"] = {"message_id": msg.message_id, "allow_sending_without_reply": True}
        await self._records_committed()
        await self.outbox.enqueue(PLATFORM, str(chat_id), calls, done_key=key, origin=self._received.get(key))

    async def _records_committed(self) -> None:
        """The ledger's record of this answer is committed before the update is marked
        answered (another file): a kill -9 between the two must not lose the record."""
        barrier = getattr(self.bot.services.get("ledger"), "committed", None)
        if barrier is not None:
            await barrier()

    @staticmethod
    def _message_calls(chat_id: int | str, text: str, markup: dict[str, Any] | None = None) -> list[Call]:
        # Plain text (no parse_mode): nothing a model or a customer writes can break it.
        parts = split_text(text or "", MAX_TEXT)
        calls: list[Call] = [("sendMessage", {"chat_id": chat_id, "text": p}) for p in parts]
        if calls and markup:
            calls[-1][1]["reply_markup"] = markup
        return calls

    # -- inline buttons ---------------------------------------------------------------
    async def _on_callback(self, query: CallbackQuery, key: str) -> None:
        prefix, _, rest = (query.data or "").partition(":")
        if prefix == PICK_PREFIX:
            await self._on_pick(query, key, rest)
            return
        handlers = self.bot.services.get("callback_handlers") or {}
        handler = handlers.get(prefix) if isinstance(handlers, dict) else None
        chat = query.message.chat if query.message is not None else None
        conversation_id = str(chat.id) if chat else str(query.from_user.id)
        notice: str | None = None
        if handler is None:
            log.info(kv(telegram="callback_unhandled", prefix=prefix))
        else:
            result = await handler(PLATFORM, conversation_id, str(query.from_user.id), rest)
            notice = result if isinstance(result, str) and result else None
            if query.message is not None:  # a pressed choice cannot be pressed again
                await self._best_effort(self.tg.edit_message_reply_markup(
                    chat_id=query.message.chat.id, message_id=query.message.message_id, reply_markup=None))
        await self._best_effort(self.tg.answer_callback_query(query.id, text=notice))
        await self._records_committed()  # e.g. the rating the handler recorded
        await self.inbox.done(key)

    async def _on_pick(self, query: CallbackQuery, key: str, entry_id: str) -> None:
        """A "Did you mean…?" button: answer that FAQ entry through the pipeline (so it is
        recorded as a cache answer, with its question), once per message and entry even
        when pressed twice. Callback data comes from the client: an id that is not a
        current entry gets a polite notice and changes nothing."""
        message = query.message
        chat = message.chat if message is not None else None
        suggestions = self.bot.services.get("faq_suggestions")
        picked: Suggestion | None = suggestions.lookup(entry_id) if suggestions is not None else None  # type: ignore[attr-defined]
        if chat is None or picked is None:
            log.info(kv(telegram="pick_rejected", known=picked is not None))
            await self._best_effort(self.tg.answer_callback_query(query.id, text=self._render(
                "replies/pick_expired.j2")))
            await self.inbox.done(key)
            return
        once = f"{PLATFORM}:pick:{chat.id}:{message.message_id}:{picked.entry_id}"  # type: ignore[union-attr]
        if not await self.claims.claim(once, key):  # pressed again: it was answered already
            log.info(kv(telegram="pick_repeated", key=key))
            await self._best_effort(self.tg.answer_callback_query(query.id))
            await self.inbox.done(key)
            return
        # Answered at once, so the button stops spinning while the pipeline runs.
        await self._best_effort(self.tg.answer_callback_query(query.id))
        user = query.from_user
        event = Event(platform=PLATFORM, conversation_id=str(chat.id), user_id=str(user.id),
                      user_name=user.full_name or None, text=picked.question, pick=picked.entry_id,
                      raw=query)
        reply = await self._answer(event, chat.id, private=chat.type == "private")
        await self._enqueue_reply(chat.id, reply.text, key, markup=_suggestion_markup(reply.suggestions))

    @staticmethod
    async def _best_effort(call: Awaitable[Any]) -> None:
        try:
            await call
        except TelegramError as e:
            log.info(kv(telegram="best_effort_failed", error=type(e).__name__))

    # -- CustomerChannel --------------------------------------------------------------
    async def send(self, conversation_id: str, text: str, *,
                   buttons: list[list[Button]] | None = None) -> None:
        """Durably send `text` (and inline buttons) to a customer's chat."""
        markup = None
        if buttons:
            for row in buttons:
                for b in row:
                    if len(b.data.encode()) > MAX_CALLBACK_DATA:
                        raise ValueError(f"button data longer than {MAX_CALLBACK_DATA} bytes: {b.data[:20]!r}…")
            markup = {"inline_keyboard": [[{"text": b.text, "callback_data": b.data} for b in row]
                                          for row in buttons]}
        calls = self._message_calls(int(conversation_id), text, markup)
        if calls:
            await self.outbox.enqueue(PLATFORM, conversation_id, calls)

    # -- sending (called by the outbox) -----------------------------------------------
    async def _deliver(self, chat_id: str, method: str, params: dict[str, Any]) -> None:
        try:
            if method == "sendMessage":
                markup, quote = params.get("reply_markup"), params.get("reply_parameters")
                await self.tg.send_message(
                    chat_id=params["chat_id"], text=params["text"],
                    reply_markup=InlineKeyboardMarkup.de_json(markup, self.tg) if markup else None,
                    reply_parameters=ReplyParameters.de_json(quote, self.tg) if quote else None)
            else:
                await self.tg.do_api_request(method, api_kwargs=params)
        except RetryAfter as e:
            raise RetryLater(_seconds(e.retry_after)) from None
        except (BadRequest, Forbidden, ChatMigrated) as e:
            raise Permanent(f"{type(e).__name__}: {e}") from None
        except TelegramError as e:  # NetworkError (5xx), TimedOut, InvalidToken...: retry
            raise Transient(f"{type(e).__name__}: {e}") from None

    # -- polling ------------------------------------------------------------------------
    async def poll(self, stop: asyncio.Event) -> None:
        """Long-poll getUpdates until `stop` is set. The offset only moves past updates
        that are already recorded in the inbox."""
        await self.tg.delete_webhook(drop_pending_updates=False)
        offset: int | None = None
        timeout = self.settings.poll_timeout_s
        backoff = 1.0
        while not stop.is_set():
            fetch = asyncio.ensure_future(self.tg.get_updates(
                offset=offset, timeout=timeout, allowed_updates=list(HANDLED_KINDS),
                read_timeout=timeout + 10))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({fetch, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if fetch not in done:
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
                break
            try:
                updates = fetch.result()
                backoff = 1.0
            except RetryAfter as e:
                await asyncio.sleep(_seconds(e.retry_after))
                continue
            except TelegramError as e:
                log.warning(kv(telegram="poll_failed", error=type(e).__name__, retry_in=backoff))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            for update in updates:
                data = update.to_dict()
                try:
                    key, body, parsed = self._check(data)
                except BadUpdate as e:
                    log.warning(kv(telegram="bad_update", update_id=update.update_id, error=str(e)))
                else:
                    await self.accept(key, body, parsed)
                offset = update.update_id + 1


def _suggestion_markup(suggestions: tuple[Suggestion, ...]) -> dict[str, Any] | None:
    """"Did you mean…?" as inline buttons, one a row. The amender offers only ids that fit
    Telegram's 64 bytes of callback data; one that does not is left out rather than cut
    (a cut id would name another entry, or none)."""
    rows = []
    for s in suggestions:
        data = f"{PICK_PREFIX}:{s.entry_id}"
        if len(data.encode()) > MAX_CALLBACK_DATA:
            log.warning(kv(telegram="suggestion_skipped", reason="entry id too long for callback data"))
            continue
        text = s.question if len(s.question) <= MAX_BUTTON_TEXT else s.question[:MAX_BUTTON_TEXT - 1] + "…"
        rows.append([{"text": text, "callback_data": data}])
    return {"inline_keyboard": rows} if rows else None
