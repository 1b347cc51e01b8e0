"""Groq through the official `groq.AsyncGroq` SDK (OpenAI-compatible chat completions).

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

import json
from collections.abc import AsyncIterator
from typing import Any

import groq

from .. import errors as E
from .base import CONTINUE_INSTRUCTION, Completion, Request, StreamState, finish_stream, image_data_url, with_progress
from .sdk_errors import http_module, translate

__all__ = ["GroqProvider", "openai_messages"]


def openai_messages(request: Request) -> list[dict[str, Any]]:
    """The OpenAI chat format: system first, images as image_url parts."""
    out: list[dict[str, Any]] = [{"role": "system", "content": request.system}]
    for m in request.messages:
        if m.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": m.text}]
            for img in m.images:
                url = image_data_url(img)
                if url:
                    parts.append({"type": "image_url", "image_url": {"url": url}})
            out.append({"role": m.role, "content": parts})
        else:
            out.append({"role": m.role, "content": m.text})
    if request.continue_from:
        out.append({"role": "assistant", "content": request.continue_from})
        out.append({"role": "user", "content": CONTINUE_INSTRUCTION})
    return out


def _http_client(transport: str, limits: Any) -> Any:
    """The SDK's aiohttp client when asked for and installed, else its httpx client."""
    if transport == "aiohttp":
        try:
            return groq.DefaultAioHttpClient(limits=limits)
        except RuntimeError:  # the httpx-aiohttp package is not installed
            pass
    return groq.DefaultAsyncHttpxClient(limits=limits)


async def sse_data(lines: AsyncIterator[str], request: Any) -> AsyncIterator[dict[str, Any]]:
    """Each server-sent event's JSON `data`, up to `[DONE]`. An error event (or a data
    object carrying `error`) raises `groq.APIError`, as the SDK's own stream does."""
    event: str | None = None
    buf: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            buf.append(line[5:].lstrip(" "))
            continue
        if line.startswith("event:"):
            event = line[6:].strip()
            continue
        if line or not buf:
            continue  # comments (":"), id/retry fields; or a blank line with nothing pending
        raw = "\n".join(buf)
        buf = []
        if raw.startswith("[DONE]"):
            return
        data = json.loads(raw)
        if isinstance(data, dict) and data.get("error") and event in (None, "error"):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise groq.APIError(message if isinstance(message, str) and message else
                                "An error occurred during streaming", request, body=error)
        event = None
        if isinstance(data, dict):
            yield data


# Groq models that accept `reasoning_effort` low|medium|high (the groq SDK's docs).
REASONING_EFFORT_MODELS = ("openai/gpt-oss-",)
REASONING_EFFORTS = ("low", "medium", "high")


class GroqProvider:
    """The conversation goes in `extra_body` (the SDK's documented way to send a body field
    as is; it takes precedence over the typed `messages=[]`): the SDK's typed request
    transform walks every message of every call, and with a 10-turn history that was about
    half of the LLM path's CPU (cProfile of bench/ledger_bench.py; bench/groq_stream_bench.py
    measures it side by side). The messages are plain JSON already (`openai_messages`)."""

    name = "groq"

    def __init__(self, api_key: str, base_url: str | None = None, *, pool: int = 100,
                 transport: str = "aiohttp", reasoning_effort: str = "low") -> None:
        # gpt-oss thinks before it answers, and its thinking tokens come out of max_tokens:
        # at the API's default ("medium") a support reply can be cut before its first word.
        self.reasoning_effort = reasoning_effort
        limits = http_module(groq).Limits(max_connections=pool, max_keepalive_connections=pool)
        self._http = _http_client(transport, limits)
        self.client = groq.AsyncGroq(api_key=api_key, base_url=base_url, max_retries=0,
                                     http_client=self._http)
        # The SDK imports its chat resources and types on first use (~200 ms of pydantic
        # models, measured): pay that at start-up, not inside the first customer's reply.
        self.client.chat.completions  # noqa: B018

    def _effort(self, model: str) -> Any:
        """Only the models that take `reasoning_effort` get it (others answer 400)."""
        return self.reasoning_effort if model.startswith(REASONING_EFFORT_MODELS) else groq.omit

    async def complete(self, model: str, request: Request, timeout: float) -> Completion:
        try:
            resp = await self.client.chat.completions.create(
                model=model, messages=[], extra_body={"messages": openai_messages(request)},
                max_tokens=request.max_tokens,
                reasoning_effort=self._effort(model), timeout=timeout)
            choice = resp.choices[0]
            text = choice.message.content or ""
            usage = resp.usage
            tokens_in = usage.prompt_tokens if usage else 0
            tokens_out = usage.completion_tokens if usage else 0
        except Exception as e:  # classified below; nothing escapes unclassified
            raise translate(e, groq) from e
        if choice.finish_reason == "content_filter":
            raise E.ProviderError(E.CONTENT_FILTERED, "finish_reason=content_filter",
                                  input_tokens=tokens_in, output_tokens=tokens_out)
        if not text.strip():
            raise E.ProviderError(E.EMPTY, f"finish_reason={choice.finish_reason}",
                                  input_tokens=tokens_in, output_tokens=tokens_out)
        return Completion(text, tokens_in, tokens_out, choice.finish_reason)

    async def stream(self, model: str, request: Request, timeout: float) -> AsyncIterator[str | Completion]:
        """The SDK builds, sends and checks the request; the chunks are read as plain JSON.

        `with_streaming_response` is the SDK's public raw-body API. Building one pydantic
        model per streamed chunk was 16 % of the server's CPU at 200 updates/s (py-spy,
        BENCHMARKS.md "Web server under load"), and a real answer has hundreds of chunks.
        """
        st = StreamState()
        try:
            async with self.client.chat.completions.with_streaming_response.create(
                    model=model, messages=[], extra_body={"messages": openai_messages(request)},
                    max_tokens=request.max_tokens,
                    reasoning_effort=self._effort(model), stream=True, timeout=timeout) as response:
                async for data in sse_data(response.iter_lines(), response.http_response.request):
                    usage = data.get("usage") or (data.get("x_groq") or {}).get("usage")
                    if usage:
                        st.input_tokens = usage.get("prompt_tokens", 0)
                        st.output_tokens = usage.get("completion_tokens", 0)
                        st.usage_seen = True
                    for choice in data.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            st.text.append(content)
                            yield content
                        if choice.get("finish_reason"):
                            st.finish_reason = choice["finish_reason"]
        except Exception as e:
            raise with_progress(translate(e, groq), st, request) from e
        finish_stream(st, request)
        yield Completion(st.partial, st.input_tokens, st.output_tokens, st.finish_reason,
                         usage_estimated=not st.usage_seen)

    async def aclose(self) -> None:
        await self.client.close()
