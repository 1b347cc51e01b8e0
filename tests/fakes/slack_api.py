"""A local fake of Slack on 127.0.0.1: its Web API, and its side of the Events API.

Web API (`/api/<method>`, what slack_sdk's `AsyncWebClient(base_url=...)` calls):
- parameters as JSON, urlencoded form or query string, the ways slack_sdk sends them;
- `Authorization: Bearer <token>` checked (`not_authed` / `invalid_auth`);
- Slack's envelope: HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": "..."}`,
  and HTTP 429 with a `Retry-After` header when rate limited (`fail_next`);
- auth.test, chat.postMessage, chat.update, chat.delete, chat.postEphemeral,
  chat.startStream/appendStream/stopStream (append-only until stopped), conversations.history,
  conversations.replies, users.info; messages are kept per channel with threads;
- every call is recorded (`calls`).

Events side: `send_event`, `send_action`, `send_command` POST real-format, correctly
signed requests (v0 HMAC-SHA256 of `v0:{ts}:{body}`) to the app's `/slack/events`, as
Slack does; with `echo_bot_posts` every message the bot posts comes back to the app
as a `message` event carrying the bot's `bot_id`, like real Slack (echo-loop tests).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["FakeSlack", "ApiCall", "sign", "TOKEN", "SIGNING_SECRET", "BOT_USER_ID", "BOT_ID",
           "TEAM_ID", "STAFF_CHANNEL"]

TOKEN = "xoxb-0000000000-fake-token-for-tests"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_USER_ID = "U0TIERBOT"
BOT_ID = "B0TIERBOT"
TEAM_ID = "T0FAKE"
API_APP_ID = "A0TIERBOT"
STAFF_CHANNEL = "C0STAFF"


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends: X-Slack-Request-Timestamp and X-Slack-Signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    error: str | None = None


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int | None = None


@dataclass
class FakeSlack:
    token: str = TOKEN
    signing_secret: str = SIGNING_SECRET
    channels: set[str] = field(default_factory=lambda: {STAFF_CHANNEL, "C0REPORTS", "D0STAFFDM"})
    users: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "U0BOB": {"name": "bob", "real_name": "Bob Staff"},
        "U0EVE": {"name": "eve", "real_name": "Eve Staff"},
    })
    names: dict[str, str] = field(default_factory=lambda: {"staff": STAFF_CHANNEL, "reports": "C0REPORTS"})
    echo_bot_posts: bool = False
    events_url: str = ""  # the app's /slack/events, for send_* and echoes
    calls: list[ApiCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.deleted: list[dict[str, Any]] = []  # messages removed by chat.delete
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._echoes: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self.base_url = ""
        self.deliveries: list[tuple[str, int]] = []  # (kind, HTTP status) of every request sent to the app

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/api/"
        return self.base_url

    @property
    def echoing(self) -> bool:
        """Echoes of bot posts are still on their way to the app."""
        return bool(self._echoes)

    async def echoes_delivered(self) -> None:
        """Wait until every echo of a bot post so far has been delivered to the app."""
        while self._echoes:
            await asyncio.gather(*list(self._echoes), return_exceptions=True)

    async def stop(self) -> None:
        if self._echoes:
            await asyncio.gather(*self._echoes, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> "FakeSlack":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting and inspection ----------------------------------------------------------
    def fail_next(self, method: str, error: str = "ratelimited", *, status: int = 200,
                  times: int = 1, retry_after: int | None = None) -> None:
        """Answer the next `times` calls of `method` with an error (429 + Retry-After when given)."""
        if retry_after is not None and status == 200:
            status = 429
        self._failures.setdefault(method, []).extend([_Failure(status, error, retry_after)] * times)

    def called(self, method: str, *, ok_only: bool = True) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method and (c.error is None or not ok_only)]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in a thread (parent excluded), oldest first."""
        return [m for m in self.messages.get(channel, [])
                if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts]

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.get(channel, []) if m.get("thread_ts") in (None, m["ts"])]

    async def wait_for(self, predicate: Any, timeout: float = 60.0) -> None:
        """Wait until `predicate()` is true (checked after every API call)."""
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)

    # -- the Events API side: Slack calling the app -----------------------------------------
    def next_event_id(self) -> str:
        return f"Ev{next(self._event_ids):08d}"

    def envelope(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {"token": "legacy-verification-token", "team_id": TEAM_ID, "api_app_id": API_APP_ID,
                "event": event, "type": "event_callback", "event_id": event_id or self.next_event_id(),
                "event_time": int(time.time()), "authorizations": [
                    {"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}]}

    async def post_to_app(self, body: str, content_type: str, *, kind: str,
                          headers: dict[str, str] | None = None, signed: bool = True,
                          timestamp: int | None = None, secret: str | None = None) -> tuple[int, str]:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if signed:
            all_headers.update(sign(body, secret or self.signing_secret, timestamp))
        async with aiohttp.ClientSession() as s:
            async with s.post(self.events_url, data=body.encode(), headers=all_headers) as r:
                text = await r.text()
                self.deliveries.append((kind, r.status))
                return r.status, text

    async def send_event(self, event: dict[str, Any], *, event_id: str | None = None,
                         retry_num: int | None = None, **kw: Any) -> tuple[int, str]:
        """Deliver an Events API `event_callback` (a retry carries X-Slack-Retry-Num)."""
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else {}
        body = json.dumps(self.envelope(event, event_id))
        return await self.post_to_app(body, "application/json", kind=event.get("type", "event"),
                                      headers=headers, **kw)

    async def send_action(self, action_id: str, value: str, *, user: str = "U0BOB",
                          channel: str = STAFF_CHANNEL, message_ts: str = "", **kw: Any) -> tuple[int, str]:
        """Deliver a `block_actions` interactivity payload (a button click)."""
        payload = {
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "fake"},
            "user": {"id": user, "username": self.users.get(user, {}).get("name", user), "team_id": TEAM_ID},
            "api_app_id": API_APP_ID, "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": False},
            "trigger_id": "1.2.3", "channel": {"id": channel, "name": "staff"},
            "message": {"type": "message", "ts": message_ts, "bot_id": BOT_ID, "user": BOT_USER_ID},
            "response_url": f"{self.base_url}response_url",
            "actions": [{"action_id": action_id, "block_id": "handoff", "value": value, "type": "button",
                         "text": {"type": "plain_text", "text": action_id}, "action_ts": str(time.time())}],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return await self.post_to_app(body, "application/x-www-form-urlencoded", kind="block_actions", **kw)

    async def send_command(self, text: str, *, command: str = "/tierbot", user: str = "U0BOB",
                           channel: str = STAFF_CHANNEL, **kw: Any) -> tuple[int, str]:
        """Deliver a slash command, form-encoded as Slack sends it."""
        body = urllib.parse.urlencode({
            "token": "legacy-verification-token", "team_id": TEAM_ID, "team_domain": "fake",
            "channel_id": channel, "channel_name": "staff", "user_id": user,
            "user_name": self.users.get(user, {}).get("name", user), "command": command, "text": text,
            "api_app_id": API_APP_ID, "response_url": f"{self.base_url}response_url", "trigger_id": "1.2.3",
        })
        return await self.post_to_app(body, "application/x-www-form-urlencoded", kind="command", **kw)

    def user_message(self, text: str, *, user: str = "U0BOB", channel: str = STAFF_CHANNEL,
                     thread_ts: str | None = None, channel_type: str = "channel") -> dict[str, Any]:
        """A `message` event as a person's post appears, also stored in the channel."""
        ts = self._next_ts()
        event = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
                 "channel_type": channel_type, "event_ts": ts, "team": TEAM_ID}
        if thread_ts:
            event["thread_ts"] = thread_ts
        self.messages.setdefault(channel, []).append(dict(event))
        return event

    def mention(self, text: str, *, user: str = "U0BOB", channel: str = STAFF_CHANNEL,
                thread_ts: str | None = None) -> dict[str, Any]:
        event = self.user_message(f"<@{BOT_USER_ID}> {text}", user=user, channel=channel, thread_ts=thread_ts)
        return {**event, "type": "app_mention"}

    # -- Web API ---------------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        for key in ("blocks", "attachments"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        call = ApiCall(method, params, time.monotonic())
        self.calls.append(call)
        try:
            auth = request.headers.get("Authorization", "")
            if not auth:
                return self._error(call, "not_authed")
            if auth != f"Bearer {self.token}":
                return self._error(call, "invalid_auth")
            pending = self._failures.get(method)
            if pending:
                f = pending.pop(0)
                return self._error(call, f.error, status=f.status, retry_after=f.retry_after)
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                return self._error(call, "unknown_method", status=404)
            result = handler(params)
            if "error" in result:
                return self._error(call, result["error"])
            return web.json_response({"ok": True, **result})
        finally:
            async with self._changed:
                self._changed.notify_all()

    @staticmethod
    def _error(call: ApiCall, error: str, *, status: int = 200, retry_after: int | None = None) -> web.Response:
        call.status, call.error = status, error
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response({"ok": False, "error": error}, status=status, headers=headers)

    def _m_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://fake.slack.com/", "team": "Fake Team", "user": "tierbot", "team_id": TEAM_ID,
                "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _bot_post(self, p: dict[str, Any], ts: str) -> dict[str, Any]:
        msg = {"type": "message", "ts": ts, "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": API_APP_ID,
               "text": p.get("text", ""), "team": TEAM_ID}
        if p.get("blocks"):
            msg["blocks"] = p["blocks"]
        if p.get("thread_ts"):
            msg["thread_ts"] = str(p["thread_ts"])
        return msg

    def _channel_id(self, channel: Any) -> Any:
        """Slack accepts a channel's name ("#staff" or "staff") and answers with its id."""
        name = str(channel or "").lstrip("#")
        return self.names.get(name, channel)

    def _m_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(p.get("channel"))
        if channel not in self.channels:
            return {"error": "channel_not_found"}
        if not p.get("text") and not p.get("blocks"):
            return {"error": "no_text"}
        msg = self._bot_post(p, self._next_ts())
        self.messages.setdefault(channel, []).append(msg)
        if self.echo_bot_posts and self.events_url:
            event = {**msg, "channel": channel, "channel_type": "channel", "event_ts": msg["ts"]}
            task = asyncio.get_running_loop().create_task(self.send_event(event))
            self._echoes.add(task)
            task.add_done_callback(self._echoes.discard)
        return {"channel": channel, "ts": msg["ts"], "message": msg}

    def _m_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = p.get("channel"), str(p.get("ts", ""))
        if channel not in self.channels:
            return {"error": "channel_not_found"}
        for msg in self.messages.get(channel, []):
            if msg["ts"] == ts:
                if msg.get("bot_id") != BOT_ID:
                    return {"error": "cant_update_message"}
                msg["text"] = p.get("text", msg["text"])
                if "blocks" in p:
                    msg["blocks"] = p["blocks"]
                return {"channel": channel, "ts": ts, "text": msg["text"], "message": msg}
        return {"error": "message_not_found"}

    # chat.startStream / appendStream / stopStream: a streamed reply in a thread, append-only
    # until stopped (https://docs.slack.dev/reference/methods/chat.startStream).
    def _streamed(self, p: dict[str, Any]) -> str:
        text = p.get("markdown_text") or ""
        for chunk in p.get("chunks") or ():
            if chunk.get("type") == "markdown_text":
                text += chunk.get("text", "")
        return text

    def _m_chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(p.get("channel"))
        if channel not in self.channels:
            return {"error": "channel_not_found"}
        if not p.get("thread_ts"):
            return {"error": "invalid_arguments"}
        if not str(channel).startswith("D") and not (p.get("recipient_user_id") and p.get("recipient_team_id")):
            return {"error": "invalid_arguments"}  # required when streaming to channels
        msg = self._bot_post({"thread_ts": p["thread_ts"]}, self._next_ts())
        msg["text"], msg["streaming"] = self._streamed(p), True
        self.messages.setdefault(channel, []).append(msg)
        return {"channel": channel, "ts": msg["ts"]}

    def _stream_message(self, p: dict[str, Any]) -> dict[str, Any]:
        for msg in self.messages.get(self._channel_id(p.get("channel")), []):
            if msg["ts"] == str(p.get("ts", "")):
                return msg if msg.get("streaming") else {"error": "message_not_in_streaming_state"}
        return {"error": "message_not_found"}

    def _m_chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._stream_message(p)
        if "error" not in msg:
            msg["text"] += self._streamed(p)
        return msg if "error" in msg else {"channel": p["channel"], "ts": msg["ts"]}

    def _m_chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._stream_message(p)
        if "error" in msg:
            return msg
        msg["text"] += self._streamed(p)
        msg["streaming"] = False
        if p.get("blocks"):
            msg["blocks"] = p["blocks"]
        return {"channel": p["channel"], "ts": msg["ts"], "message": msg}

    def _m_chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._channel_id(p.get("channel")), str(p.get("ts", ""))
        for msg in self.messages.get(channel, []):
            if msg["ts"] == ts:
                if msg.get("bot_id") != BOT_ID:
                    return {"error": "cant_delete_message"}
                self.messages[channel].remove(msg)
                self.deleted.append(msg)
                return {"channel": channel, "ts": ts}
        return {"error": "message_not_found"}

    def _m_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("channel") not in self.channels:
            return {"error": "channel_not_found"}
        if p.get("user") not in self.users:
            return {"error": "user_not_in_channel"}
        return {"message_ts": self._next_ts()}

    def _m_conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("channel") not in self.channels:
            return {"error": "channel_not_found"}
        return {"messages": list(reversed(self.top_level(p["channel"]))), "has_more": False}

    def _m_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = p.get("channel"), str(p.get("ts", ""))
        if channel not in self.channels:
            return {"error": "channel_not_found"}
        parent = [m for m in self.messages.get(channel, []) if m["ts"] == ts]
        if not parent:
            return {"error": "thread_not_found"}
        return {"messages": parent + self.thread(channel, ts), "has_more": False}

    def _m_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(p.get("user")))
        if user is None:
            return {"error": "user_not_found"}
        return {"user": {"id": p["user"], "name": user["name"], "real_name": user["real_name"],
                         "profile": {"real_name": user["real_name"], "display_name": user["name"]}}}
