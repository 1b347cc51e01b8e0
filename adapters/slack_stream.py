"""A staff answer streamed into its Slack thread (chat.startStream/appendStream/stopStream).

Slack's streamed message is append-only: `chat.appendStream` cannot take text back.
So when the pipeline withdraws the text so far (`StreamReset`: a provider that took
over after a cut started the answer over), the message streamed so far is stopped and
deleted, and the answer streams again into a fresh message. Text is buffered
(slack_sdk's `AsyncChatStream`, `buffer_chars` at a time), so a short or quick answer
never starts a stream at all: it is posted whole, as before, and a reset before the
first flush costs no API call.
"""
from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from bot.logs import kv

__all__ = ["StaffAnswerStream"]

log = logging.getLogger("tierbot.slack")


class StaffAnswerStream:
    """One answer's stream in a thread; `append` text, `withdraw` it, then `finish` or
    `abandon`. Failures are logged and switch streaming off (the answer is then posted
    whole): a stream is a preview, never the only copy of an answer."""

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str, user: str | None,
                 team: str | None, buffer_chars: int) -> None:
        self.client = client
        self._args: dict[str, Any] = {"channel": channel, "thread_ts": thread_ts, "buffer_size": buffer_chars,
                                      "recipient_user_id": user or None, "recipient_team_id": team or None}
        self._stream: AsyncChatStream | None = None
        self.text = ""          # what this stream holds (sent or buffered) since the last withdraw
        self.broken = buffer_chars <= 0

    @property
    def started(self) -> bool:
        """Has Slack been sent anything (is there a message to finish or delete)?"""
        return self._stream is not None and self._stream.ts is not None

    async def append(self, text: str) -> None:
        if self.broken or not text:
            return
        try:
            if self._stream is None:
                self._stream = await self.client.chat_stream(**self._args)
            self.text += text
            await self._stream.append(markdown_text=text)
        except Exception as e:
            await self._break(e)

    async def withdraw(self) -> None:
        """The text so far is withdrawn: stop and delete what Slack shows; start afresh."""
        stream, self._stream, self.text = self._stream, None, ""
        if stream is None or stream.ts is None:
            return  # only buffered: nothing reached Slack
        try:
            await stream.stop()
            await self.client.chat_delete(channel=self._args["channel"], ts=stream.ts)
        except Exception as e:
            await self._break(e)

    async def finish(self, blocks: list[dict[str, Any]]) -> bool:
        """End the streamed message with `blocks` under it. False if nothing was streamed
        (or streaming broke): the caller posts the answer whole."""
        if self.broken or not self.started:
            return False
        try:
            assert self._stream is not None
            await self._stream.stop(blocks=blocks)
            return True
        except Exception as e:
            await self._break(e)
            return False

    async def _break(self, error: Exception) -> None:
        log.warning(kv(event="slack_stream_failed", error=type(error).__name__))
        self.broken = True
        stream, self._stream = self._stream, None
        if stream is not None and stream.ts is not None:
            try:  # the answer will be posted whole: leave no half-streamed copy beside it
                await self.client.chat_delete(channel=self._args["channel"], ts=stream.ts)
            except Exception:
                log.warning(kv(event="slack_stream_not_deleted"))
