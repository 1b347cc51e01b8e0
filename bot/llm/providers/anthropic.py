"""Claude through the official `anthropic.AsyncAnthropic` SDK (Messages API).

SDK retries off; httpx pool sized for concurrency. A cut stream is continued with
Claude's assistant prefill (the partial text becomes the start of its answer) on the
models that still accept one; Claude 4.6 and later (Haiku 5.5, Sonnet 5.5, ...) answer a
prefill with 400, so there the partial answer is sent as an assistant turn followed by a
user turn asking to continue, as for the other providers.

Requests carry no sampling parameters (temperature/top_p/top_k: a 400 on the current
models) and no thinking settings (each model's default); replies are read by block type,
so a thinking block before the text is skipped, never shown.
"""
from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from .. import errors as E
from .base import CONTINUE_INSTRUCTION, Completion, Request, StreamState, finish_stream, shareable_url, with_progress
from .sdk_errors import http_module, translate

__all__ = ["AnthropicProvider", "anthropic_messages", "accepts_prefill"]

# Model ids (and their dated snapshots) that still accept an assistant prefill: Claude 4.5
# and earlier. Every other id, including ones not yet released, gets the user-turn form,
# which every model accepts ("Prefilling assistant messages returns a 400 error on Claude
# 4.6 models", platform.claude.com/docs/en/about-claude/models/migration-guide; the Haiku 5.5
# migration guide: end messages with a user turn instead).
_PREFILL_MODELS = ("claude-3", "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5", "claude-opus-4-1",
                   "claude-opus-4-0", "claude-sonnet-4-0", "claude-opus-4-2025", "claude-sonnet-4-2025")


def accepts_prefill(model: str) -> bool:
    return model.startswith(_PREFILL_MODELS)


def _image_block(img) -> dict[str, Any] | None:
    if img.data is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": img.mime_type or "image/jpeg",
                                            "data": base64.b64encode(img.data).decode()}}
    url = shareable_url(img)
    if url:
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def anthropic_messages(request: Request, prefill: bool = True) -> list[dict[str, Any]]:
    """Claude's format: alternating user/assistant turns (same-role neighbours merged),
    starting with a user turn; images as image blocks; a cut answer as prefill, or (with
    `prefill=False`) as an assistant turn plus a user turn asking to continue."""
    out: list[dict[str, Any]] = []
    for m in request.messages:
        blocks: list[dict[str, Any]] = [b for b in (_image_block(i) for i in m.images) if b]
        blocks.append({"type": "text", "text": m.text or "."})
        if out and out[-1]["role"] == m.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": m.role, "content": blocks})
    while out and out[0]["role"] != "user":
        out.pop(0)
    if request.continue_from:
        # Sent without trailing whitespace (a prefill may not end with any); `_rejoin` puts
        # it back before the continuation.
        partial = request.continue_from.rstrip()
        if out and out[-1]["role"] == "assistant":
            out[-1]["content"].append({"type": "text", "text": partial})
        else:
            out.append({"role": "assistant", "content": partial if prefill else [{"type": "text", "text": partial}]})
        if not prefill:
            out.append({"role": "user", "content": [{"type": "text", "text": CONTINUE_INSTRUCTION}]})
    return out


class AnthropicProvider:
    name = "claude"

    def __init__(self, api_key: str, base_url: str | None = None, *, pool: int = 100) -> None:
        limits = http_module(anthropic).Limits(max_connections=pool, max_keepalive_connections=pool)
        self._http = anthropic.DefaultAsyncHttpxClient(limits=limits)
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0,
                                               http_client=self._http)
        self.client.messages  # noqa: B018  (imported lazily by the SDK: at start-up, not in a reply)

    async def complete(self, model: str, request: Request, timeout: float) -> Completion:
        try:
            msg = await self.client.messages.create(
                model=model, system=request.system, messages=anthropic_messages(request, accepts_prefill(model)),
                max_tokens=request.max_tokens, timeout=timeout)
            text = "".join(b.text for b in msg.content if b.type == "text")
            tokens_in, tokens_out = msg.usage.input_tokens, msg.usage.output_tokens
        except Exception as e:
            raise translate(e, anthropic) from e
        if msg.stop_reason == "refusal":
            raise E.ProviderError(E.CONTENT_FILTERED, "stop_reason=refusal",
                                  input_tokens=tokens_in, output_tokens=tokens_out)
        if not text.strip():
            raise E.ProviderError(E.EMPTY, f"stop_reason={msg.stop_reason}",
                                  input_tokens=tokens_in, output_tokens=tokens_out)
        return Completion(_rejoin(request, text), tokens_in, tokens_out, msg.stop_reason)

    async def stream(self, model: str, request: Request, timeout: float) -> AsyncIterator[str | Completion]:
        st = StreamState()
        first = True
        try:
            events = await self.client.messages.create(
                model=model, system=request.system, messages=anthropic_messages(request, accepts_prefill(model)),
                max_tokens=request.max_tokens, stream=True, timeout=timeout)
            async with events:
                async for ev in events:
                    if ev.type == "message_start":
                        st.input_tokens = ev.message.usage.input_tokens
                        st.output_tokens = ev.message.usage.output_tokens
                        st.usage_seen = True
                    elif ev.type == "content_block_delta" and ev.delta.type == "text_delta" and ev.delta.text:
                        text = _rejoin(request, ev.delta.text) if first else ev.delta.text
                        first = False
                        st.text.append(text)
                        yield text
                    elif ev.type == "message_delta":
                        st.output_tokens = ev.usage.output_tokens
                        if ev.usage.input_tokens is not None:
                            st.input_tokens = ev.usage.input_tokens
                        st.finish_reason = ev.delta.stop_reason
        except Exception as e:
            raise with_progress(translate(e, anthropic), st, request) from e
        finish_stream(st, request)
        yield Completion(st.partial, st.input_tokens, st.output_tokens, st.finish_reason,
                         usage_estimated=not st.usage_seen)

    async def aclose(self) -> None:
        await self.client.close()


def _rejoin(request: Request, text: str) -> str:
    """The prefill was sent without its trailing whitespace; put it back before the continuation."""
    if request.continue_from:
        stripped = request.continue_from[len(request.continue_from.rstrip()):]
        if stripped and not text[:1].isspace():
            return stripped + text
    return text
