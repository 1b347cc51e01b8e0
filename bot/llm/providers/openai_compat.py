"""OpenRouter and any OpenAI-compatible endpoint (vLLM, Ollama, Together, Fireworks, ...)
through the official `openai.AsyncOpenAI` SDK: retries off, the SDK's aiohttp transport,
a pool sized for the bot's concurrency — as for Groq, whose wire format this is
(`openai_chat.ChatCompletionsProvider` holds the shared code).

OpenRouter specifics (openrouter.ai/docs: errors, usage accounting, streaming):
- 402 = the account or key is out of credits (`out_of_credits`, the provider is paused
  like a spent quota); 429 rate limited; 502 "your chosen model is down or we received
  an invalid response from it" and 503 "no available model provider that meets your
  routing requirements" are failures of the upstream (`upstream_error`), with the
  upstream's name in `error.metadata.provider_name`, kept in the attempt's detail.
- An error after routing started comes with a 200: in the body, or as an SSE data event
  with `error` (and `finish_reason: "error"`); classified by the code it carries.
- `usage.cost` (credits, i.e. USD) is taken as the call's cost; `model` names the model
  that answered, `provider` the upstream that served it.
- `HTTP-Referer` and `X-Title` attribute the app on openrouter.ai, when configured.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from ...secrets import redact
from .. import errors as E
from .openai_chat import ChatCompletionsProvider, http_client

__all__ = ["OpenAICompatProvider", "OpenRouterProvider", "OPENROUTER_BASE_URL", "NO_KEY"]

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
# Sent as the bearer token to an endpoint declared without a key variable (a local vLLM or
# Ollama ignores it); the SDK refuses to build a client with no key at all.
NO_KEY = "no-key"


class OpenAICompatProvider(ChatCompletionsProvider):
    """One OpenAI-compatible endpoint under the name the operator gave it."""

    sdk = openai

    def __init__(self, name: str, api_key: str | None, base_url: str, *, pool: int = 100,
                 transport: str = "aiohttp", headers: Mapping[str, str] | None = None) -> None:
        self.name = name
        self._http = http_client(openai, transport, pool)
        # The SDK adds OPENAI_ORG_ID / OPENAI_PROJECT_ID from the environment to every request:
        # OpenAI's identifiers, which OpenRouter or a third-party host has no business seeing.
        own = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit(), **(headers or {})}
        super().__init__(openai.AsyncOpenAI(api_key=api_key or NO_KEY, base_url=base_url, max_retries=0,
                                            default_headers=own, http_client=self._http))


# OpenRouter models that think before answering and take `reasoning.effort`: at the default
# effort their thinking can eat a support reply's whole max_tokens (as on Groq).
_LOW_EFFORT_MODELS = ("openai/gpt-oss-",)


def _error_object(body: Any) -> Mapping[str, Any]:
    """The `error` object, whether the SDK handed over the whole body or its `error` part."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        return inner if isinstance(inner, Mapping) else body
    return {}


def _short(value: Any) -> str | None:
    """A short identifier from an error's metadata (never free text or the raw body)."""
    if isinstance(value, str) and value and len(value) <= 64 and value.isprintable():
        return redact(value).replace(" ", "_")
    return None


class OpenRouterProvider(OpenAICompatProvider):
    def __init__(self, api_key: str, base_url: str | None = None, *, pool: int = 100, transport: str = "aiohttp",
                 referer: str | None = None, title: str | None = None, name: str = "openrouter") -> None:
        headers = {k: v for k, v in (("HTTP-Referer", referer), ("X-Title", title)) if v}
        super().__init__(name, api_key, base_url or OPENROUTER_BASE_URL, pool=pool, transport=transport,
                         headers=headers)

    def body_extras(self, model: str) -> dict[str, Any]:
        return {"reasoning": {"effort": "low"}} if model.startswith(_LOW_EFFORT_MODELS) else {}

    def classify(self, status: int, body: Any) -> str:
        if status in (502, 503):
            return E.UPSTREAM_ERROR
        return E.classify_status(status, body)

    def describe(self, err: E.ProviderError, body: Any) -> None:
        meta = _error_object(body).get("metadata")
        if not isinstance(meta, Mapping):
            return
        extra = [f"{key}={v}" for key, field in (("upstream", "provider_name"), ("limit", "limit_source"))
                 if (v := _short(meta.get(field)))]
        if extra:
            err.detail = " ".join([err.detail, *extra]).strip()
