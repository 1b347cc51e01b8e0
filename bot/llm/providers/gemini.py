"""Gemini through its REST API (`generateContent` / `streamGenerateContent?alt=sse`) with
aiohttp. The key travels in the `x-goog-api-key` header, never in the URL (URLs end up
in logs and proxies)."""
from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .. import errors as E
from .base import CONTINUE_INSTRUCTION, Completion, Request, StreamState, finish_stream, shareable_url, with_progress

__all__ = ["GeminiProvider", "gemini_body", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
_BLOCKED = ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY")


def gemini_body(request: Request) -> dict[str, Any]:
    contents: list[dict[str, Any]] = []
    for m in request.messages:
        parts: list[dict[str, Any]] = [{"text": m.text}]
        for img in m.images:
            if img.data is not None:
                parts.append({"inlineData": {"mimeType": img.mime_type or "image/jpeg",
                                             "data": base64.b64encode(img.data).decode()}})
            elif shareable_url(img):
                parts.append({"fileData": {"mimeType": img.mime_type or "image/jpeg", "fileUri": img.url}})
        contents.append({"role": "model" if m.role == "assistant" else "user", "parts": parts})
    if request.continue_from:
        contents.append({"role": "model", "parts": [{"text": request.continue_from}]})
        contents.append({"role": "user", "parts": [{"text": CONTINUE_INSTRUCTION}]})
    return {"systemInstruction": {"parts": [{"text": request.system}]}, "contents": contents,
            "generationConfig": {"maxOutputTokens": request.max_tokens}}


def _read(data: Any, st: StreamState) -> str:
    """Text of one GenerateContentResponse; updates usage and finish reason in `st`."""
    if not isinstance(data, dict):
        raise E.ProviderError(E.MALFORMED, "response is not an object")
    usage = data.get("usageMetadata")
    if isinstance(usage, dict):
        st.input_tokens = int(usage.get("promptTokenCount", 0) or 0)
        st.output_tokens = int(usage.get("candidatesTokenCount", 0) or 0) + int(usage.get("thoughtsTokenCount", 0) or 0)
        st.usage_seen = True
    feedback = data.get("promptFeedback") or {}
    if feedback.get("blockReason"):
        st.finish_reason = "SAFETY"
        return ""
    candidates = data.get("candidates")
    if candidates is None:
        if usage is None:
            raise E.ProviderError(E.MALFORMED, "no candidates and no usage")
        return ""
    if not isinstance(candidates, list):
        raise E.ProviderError(E.MALFORMED, "candidates is not a list")
    if not candidates:
        return ""
    cand = candidates[0]
    reason = cand.get("finishReason")
    if reason:
        st.finish_reason = "SAFETY" if reason in _BLOCKED else reason
    parts = (cand.get("content") or {}).get("parts") or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and not p.get("thought"))


class GeminiProvider:
    name = "gemini"

    def __init__(self, api_key: str, base_url: str | None = None, *, pool: int = 100) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"x-goog-api-key": api_key, "content-type": "application/json"}
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool, limit_per_host=self._pool),
                headers=self._headers)
        return self._session

    def _url(self, model: str, stream: bool) -> str:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.base_url}/v1beta/models/{model}:{action}"

    async def _fail(self, resp: aiohttp.ClientResponse) -> E.ProviderError:
        try:
            body: Any = json.loads(await resp.text())
        except (ValueError, aiohttp.ClientError, asyncio.TimeoutError):
            body = None
        outcome = E.classify_status(resp.status, body)
        return E.ProviderError(outcome, f"HTTP {resp.status}", status=resp.status,
                               retry_after=E.retry_after_from(resp.headers, body))

    async def complete(self, model: str, request: Request, timeout: float) -> Completion:
        st = StreamState()
        try:
            async with self._http().post(self._url(model, False), json=gemini_body(request),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status != 200:
                    raise await self._fail(resp)
                raw = await resp.read()
            try:
                data = json.loads(raw)
            except ValueError:
                raise E.ProviderError(E.MALFORMED, "body is not JSON") from None
            st.text.append(_read(data, st))
        except E.ProviderError:
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise E.ProviderError(E.TIMEOUT, type(e).__name__) from e
        except (aiohttp.ClientError, OSError) as e:
            raise E.ProviderError(E.CONNECTION, type(e).__name__) from e
        finish_stream(st, request)
        return Completion(st.partial, st.input_tokens, st.output_tokens, st.finish_reason,
                          usage_estimated=not st.usage_seen)

    async def stream(self, model: str, request: Request, timeout: float) -> AsyncIterator[str | Completion]:
        st = StreamState()
        try:
            async with self._http().post(self._url(model, True), json=gemini_body(request),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status != 200:
                    raise await self._fail(resp)
                async for line in resp.content:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    try:
                        data = json.loads(line[5:])
                    except ValueError:
                        raise E.ProviderError(E.MALFORMED, "SSE event is not JSON") from None
                    text = _read(data, st)
                    if text:
                        st.text.append(text)
                        yield text
        except E.ProviderError as e:
            raise with_progress(e, st, request) from e
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise with_progress(E.ProviderError(E.TIMEOUT, type(e).__name__), st, request) from e
        except (aiohttp.ClientError, OSError) as e:
            raise with_progress(E.ProviderError(E.CONNECTION, type(e).__name__), st, request) from e
        finish_stream(st, request)
        yield Completion(st.partial, st.input_tokens, st.output_tokens, st.finish_reason,
                         usage_estimated=not st.usage_seen)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
