"""A local fake of the Telegram Bot API on 127.0.0.1, speaking its real wire format.

- URLs `/bot<token>/<method>` (and `/file/bot<token>/<path>` for downloads), parameters
  as JSON, urlencoded or multipart form — the ways real clients send them;
- answers in Telegram's envelope: `{"ok": true, "result": ...}` or
  `{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3",
  "parameters": {"retry_after": 3}}`;
- records every call (`calls`), can be scripted to fail (`fail_next`) or be slow
  (`latency`), and serves `getUpdates` long polling with real offset semantics;
- inline keyboards as Telegram checks them (callback data 1-64 bytes, else
  `BUTTON_DATA_INVALID`), the messages it sent (`messages`, with their `reply_markup`,
  changed by `editMessageReplyMarkup`), and callback queries: `press()` builds the
  `callback_query` update a tap on a sent button produces, and `answerCallbackQuery`
  refuses a query id answered before, as Telegram does.

Helpers at the bottom build real-format `Update` JSON for tests and benchmarks.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeTelegram", "ApiCall", "text_update", "photo_update", "sticker_update",
           "voice_update", "callback_update", "TOKEN"]

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"
BOT_ID = 123456789
BOT_USERNAME = "tierbot_test_bot"
_JSON_FIELDS = {"reply_markup", "reply_parameters", "allowed_updates", "entities", "link_preview_options"}


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() when received
    status: int = 200


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None = None


@dataclass
class FakeTelegram:
    token: str = TOKEN
    calls: list[ApiCall] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)  # method -> seconds before answering
    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> content
    webhook: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._failures: dict[str, list[_Failure]] = {}
        self._updates: list[dict[str, Any]] = []
        self._new_update = asyncio.Event()
        self._message_ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self.base_url = ""
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat id, message id) -> sent message
        self._answered_queries: set[str] = set()
        self._query_ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeTelegram":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting ------------------------------------------------------------------
    def fail_next(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None,
                  description: str | None = None) -> None:
        """The next `times` calls of `method` fail with Telegram's error envelope."""
        if description is None:
            description = {429: f"Too Many Requests: retry after {retry_after}",
                           400: "Bad Request: message text is empty",
                           403: "Forbidden: bot was blocked by the user",
                           500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "Error")
        self._failures.setdefault(method, []).extend([_Failure(status, description, retry_after)] * times)

    def add_file(self, file_id: str, content: bytes) -> None:
        self.files[file_id] = content

    def press(self, update_id: int, chat_id: int, button: int | str = 0, *, message_id: int | None = None,
              user_id: int | None = None, first_name: str = "Ann") -> dict[str, Any]:
        """The `callback_query` update Telegram sends when the customer taps an inline button
        of a message this fake sent (the last one with buttons in `chat_id`, or `message_id`).
        `button`: its index (rows read in order) or its text. Every tap has a new query id."""
        if message_id is None:
            keyed = [m for (c, _), m in self.messages.items() if c == chat_id and m.get("reply_markup")]
            if not keyed:
                raise LookupError(f"no message with buttons was sent to chat {chat_id}")
            msg = keyed[-1]
        else:
            msg = self.messages[(chat_id, message_id)]
        buttons = [b for row in msg.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
        chosen = buttons[button] if isinstance(button, int) else next(b for b in buttons if b["text"] == button)
        query_id = f"{next(self._query_ids)}{update_id:06d}"  # Telegram's ids are long digit strings
        return {"update_id": update_id, "callback_query": {
            "id": query_id, "from": _user(user_id or abs(chat_id), first_name),
            "chat_instance": f"-{abs(chat_id)}7", "data": chosen["callback_data"],
            "message": {**msg, "from": self._bot_user()}}}

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates (polling mode)."""
        self._updates.append(update)
        self._new_update.set()

    # -- inspection -----------------------------------------------------------------
    def sent(self, method: str = "sendMessage", *, ok_only: bool = True) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    def texts(self, chat_id: int | str | None = None) -> list[str]:
        return [p["text"] for p in self.sent("sendMessage")
                if chat_id is None or str(p.get("chat_id")) == str(chat_id)]

    async def wait_for(self, predicate, timeout: float = 60.0) -> None:
        """Wait until `predicate(self)` holds (checked after every call)."""
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))
        await asyncio.wait_for(_wait(), timeout)

    # -- HTTP -----------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                form = await request.post()
                for k, v in form.items():
                    if isinstance(v, str):
                        params[k] = v
        for k in list(params):
            if k in _JSON_FIELDS and isinstance(params[k], str):
                try:
                    params[k] = json.loads(params[k])
                except ValueError:
                    pass
        return params

    @staticmethod
    def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        params = await self._params(request)
        call = ApiCall(method, params, time.monotonic())
        self.calls.append(call)
        if method in self.latency:
            await asyncio.sleep(self.latency[method])
        try:
            queue = self._failures.get(method)
            if queue:
                f = queue.pop(0)
                call.status = f.status
                return self._error(f.status, f.description, f.retry_after)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                call.status = 404
                return self._error(404, "Not Found: method not found")
            result = await handler(params)
            if isinstance(result, web.Response):
                call.status = result.status
                return result
            return web.json_response({"ok": True, "result": result})
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.rsplit("/", 1)[-1]
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="image/jpeg")

    # -- methods --------------------------------------------------------------------
    @staticmethod
    def _bot_user() -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Tierbot", "username": BOT_USERNAME,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self._bot_user()

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = {"url": params.get("url", ""), "secret_token": params.get("secret_token")}
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = {}
        return True

    async def _m_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        if self.webhook.get("url"):
            return web.json_response({"ok": False, "error_code": 409, "description":
                                      "Conflict: can't use getUpdates method while webhook is active; "
                                      "use deleteWebhook to delete the webhook first"}, status=409)
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        if offset:  # confirms every update with a smaller id
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        end = time.monotonic() + timeout
        while not self._updates and time.monotonic() < end:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), end - time.monotonic())
            except TimeoutError:
                break
        return self._updates[:limit]

    def _message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        msg: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                               "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                               "from": self._bot_user(), "text": params.get("text", "")}
        if "reply_markup" in params:
            msg["reply_markup"] = params["reply_markup"]
        return msg

    @staticmethod
    def _markup_problem(markup: Any) -> str | None:
        """What Telegram says about a bad inline keyboard (None: it is fine)."""
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None  # other keyboard kinds are not checked here
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            return "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must be an Object"
        for button in (b for row in rows for b in row):
            if not isinstance(button, dict) or not button.get("text"):
                return "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                return "Bad Request: BUTTON_DATA_INVALID"
        return None

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        if "chat_id" not in params:
            return self._error(400, "Bad Request: chat_id is empty")
        text = params.get("text", "")
        if not text:
            return self._error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self._error(400, "Bad Request: message is too long")
        problem = self._markup_problem(params.get("reply_markup"))
        if problem:
            return self._error(400, problem)
        msg = self._message(params)
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return msg

    async def _m_sendMessageDraft(self, params: dict[str, Any]) -> Any:
        if int(params.get("draft_id") or 0) == 0:
            return self._error(400, "Bad Request: draft_id must be non-zero")
        if int(params["chat_id"]) < 0:
            return self._error(400, "Bad Request: drafts can be sent only to private chats")
        return True

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if not query_id:
            return self._error(400, "Bad Request: QUERY_ID_INVALID")
        if query_id in self._answered_queries:
            return self._error(400, "Bad Request: query is too old and response timeout expired "
                                    "or query ID is invalid")
        if len(str(params.get("text") or "")) > 200:
            return self._error(400, "Bad Request: MESSAGE_TOO_LONG")
        self._answered_queries.add(query_id)
        return True

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        problem = self._markup_problem(params.get("reply_markup"))
        if problem:
            return self._error(400, problem)
        key = (int(params.get("chat_id", 1)), int(params.get("message_id", 0)))
        if key in self.messages:
            msg = self.messages[key]
            if params.get("reply_markup"):
                msg["reply_markup"] = params["reply_markup"]
            else:
                msg.pop("reply_markup", None)
            return msg
        return {**self._message({"chat_id": params.get("chat_id", 1), "text": "(edited)"}),
                "message_id": int(params.get("message_id", 0))}

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        file_id = params.get("file_id", "")
        if file_id not in self.files:
            return self._error(400, "Bad Request: invalid file_id")
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(self.files[file_id]),
                "file_path": f"photos/{file_id}"}


# -- real-format Update JSON -------------------------------------------------------------
def _user(user_id: int, first_name: str = "Ann") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}


def _chat(chat_id: int, user_id: int, chat_type: str, first_name: str) -> dict[str, Any]:
    if chat_type == "private":
        return {"id": chat_id, "type": "private", "first_name": first_name}
    return {"id": chat_id, "type": chat_type, "title": "Support group"}


def _message(update_id: int, chat_id: int, user_id: int, chat_type: str, first_name: str,
             **fields: Any) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id % 1_000_000 + 1, "date": int(time.time()),
        "from": _user(user_id, first_name), "chat": _chat(chat_id, user_id, chat_type, first_name), **fields}}


def text_update(update_id: int, text: str, *, chat_id: int = 42, user_id: int | None = None,
                chat_type: str = "private", first_name: str = "Ann",
                reply_to_bot: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {"text": text}
    if text.startswith("/"):
        cmd = text.split()[0]
        fields["entities"] = [{"type": "bot_command", "offset": 0, "length": len(cmd)}]
    at = text.find("@" + BOT_USERNAME)
    if at >= 0:
        fields["entities"] = [*fields.get("entities", []),
                              {"type": "mention", "offset": at, "length": len(BOT_USERNAME) + 1}]
    if reply_to_bot:
        fields["reply_to_message"] = {"message_id": 7, "date": int(time.time()) - 60,
                                      "chat": _chat(chat_id, 0, chat_type, first_name),
                                      "from": FakeTelegram._bot_user(), "text": "earlier answer"}
    return _message(update_id, chat_id, user_id or abs(chat_id), chat_type, first_name, **fields)


def photo_update(update_id: int, file_id: str, *, caption: str | None = None, chat_id: int = 42) -> dict[str, Any]:
    sizes = [{"file_id": f"{file_id}-small", "file_unique_id": "s1", "width": 90, "height": 90, "file_size": 900},
             {"file_id": file_id, "file_unique_id": "s2", "width": 800, "height": 800, "file_size": 50_000}]
    fields: dict[str, Any] = {"photo": sizes}
    if caption is not None:
        fields["caption"] = caption
    return _message(update_id, chat_id, abs(chat_id), "private", "Ann", **fields)


def sticker_update(update_id: int, *, chat_id: int = 42) -> dict[str, Any]:
    return _message(update_id, chat_id, abs(chat_id), "private", "Ann", sticker={
        "file_id": "STK1", "file_unique_id": "stk1", "type": "regular", "width": 512, "height": 512,
        "is_animated": False, "is_video": False, "emoji": "👍"})


def voice_update(update_id: int, *, chat_id: int = 42) -> dict[str, Any]:
    return _message(update_id, chat_id, abs(chat_id), "private", "Ann", voice={
        "file_id": "VOICE1", "file_unique_id": "v1", "duration": 3, "mime_type": "audio/ogg"})


def callback_update(update_id: int, data: str, *, chat_id: int = 42, message_id: int = 1000) -> dict[str, Any]:
    return {"update_id": update_id, "callback_query": {
        "id": f"cq{update_id}", "from": _user(abs(chat_id)), "chat_instance": "ci1", "data": data,
        "message": {"message_id": message_id, "date": int(time.time()), "chat": _chat(chat_id, abs(chat_id), "private", "Ann"),
                    "from": FakeTelegram._bot_user(), "text": "How did we do?"}}}
