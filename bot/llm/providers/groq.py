"""Groq through the official `groq.AsyncGroq` SDK (OpenAI-compatible chat completions).

The wire format (messages, streamed chunks, usage) is `openai_chat.ChatCompletionsProvider`,
shared with OpenRouter and declared OpenAI-compatible endpoints; this module only builds
the Groq client and says which models take `reasoning_effort`.

SDK retries are off (`max_retries=0`): the chain is the only retry loop. The pool is
sized for the bot's concurrency (the SDK default keeps 20 connections, which made
almost every call open a new TCP connection at 50 in flight).

Transport: the SDK's own aiohttp backend (`groq.DefaultAioHttpClient`, the `groq[aiohttp]`
extra, package httpx-aiohttp) instead of httpx/httpcore. Under the load bench the httpx
path (httpcore's pool bookkeeping, anyio streams) was about a third of the server's CPU;
side by side against the local fake, a streamed call cost 7.6 ms of CPU with httpx and
2.6 ms with aiohttp, a plain call 5.6 vs 1.2 ms (fake included; BENCHMARKS.md, "Web
server under load"). `TIERBOT_GROQ_TRANSPORT=httpx` switches back; so does a missing
httpx-aiohttp package.
"""
from __future__ import annotations

from typing import Any

import groq

from .openai_chat import ChatCompletionsProvider, http_client, openai_messages, sse_data

__all__ = ["GroqProvider", "openai_messages", "sse_data", "REASONING_EFFORTS"]

# Groq models that accept `reasoning_effort` low|medium|high (the groq SDK's docs).
REASONING_EFFORT_MODELS = ("openai/gpt-oss-",)
REASONING_EFFORTS = ("low", "medium", "high")


class GroqProvider(ChatCompletionsProvider):
    name = "groq"
    sdk = groq

    def __init__(self, api_key: str, base_url: str | None = None, *, pool: int = 100,
                 transport: str = "aiohttp", reasoning_effort: str = "low") -> None:
        # gpt-oss thinks before it answers, and its thinking tokens come out of max_tokens:
        # at the API's default ("medium") a support reply can be cut before its first word.
        self.reasoning_effort = reasoning_effort
        self._http = http_client(groq, transport, pool)
        super().__init__(groq.AsyncGroq(api_key=api_key, base_url=base_url, max_retries=0,
                                        http_client=self._http))

    def options(self, model: str) -> dict[str, Any]:
        """Only the models that take `reasoning_effort` get it (others answer 400)."""
        return {"reasoning_effort": self.reasoning_effort} if model.startswith(REASONING_EFFORT_MODELS) else {}
