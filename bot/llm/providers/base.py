"""The one small interface every provider implements, and the values it exchanges.

A provider knows its wire format and nothing else: no ordering, breakers or
deadlines (that is the chain's job). It turns a `Request` into a `Completion` or
raises a classified `ProviderError`.
"""
from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ...models import Attachment
from ...secrets import redact
from .. import errors as E

__all__ = ["Message", "Request", "Completion", "Provider", "StreamState", "image_data_url", "estimate_tokens",
           "with_progress", "finish_stream", "CONTINUE_INSTRUCTION", "shareable_url"]


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "user" or "assistant"
    text: str
    images: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """What to ask: a system prompt and the conversation, newest message last.

    `continue_from` is text an earlier (cut) stream already showed the customer: the
    provider must continue it, not start over.
    """

    system: str
    messages: tuple[Message, ...]
    max_tokens: int = 512
    continue_from: str = ""

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)


@dataclass(slots=True)
class Completion:
    """A finished answer. `model` is the model that actually answered when the provider
    says so (a gateway such as OpenRouter may route to another); `cost_usd` is the cost
    the provider reported for this call (OpenRouter's `usage.cost`), which wins over a
    price-table estimate; `upstream` names who served it behind a gateway."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    usage_estimated: bool = False
    model: str | None = None
    cost_usd: float | None = None
    upstream: str | None = None


CONTINUE_INSTRUCTION = ("Your previous answer was cut off after the text above. Continue it exactly "
                        "where it stopped, without repeating anything already written.")


@runtime_checkable
class Provider(Protocol):
    """`name` is the chain name ("groq", "gemini", "claude")."""

    name: str

    async def complete(self, model: str, request: Request, timeout: float) -> Completion: ...

    def stream(self, model: str, request: Request, timeout: float) -> AsyncIterator[str | Completion]:
        """Yield text deltas, then one `Completion` (full text + usage). Raise
        `ProviderError` (with partial text and tokens so far) if it breaks."""
        ...

    async def aclose(self) -> None: ...


def image_data_url(image: Attachment) -> str | None:
    """A data: URL for downloaded image bytes, else the image's public URL."""
    if image.data is not None:
        mime = image.mime_type or "image/jpeg"
        return f"data:{mime};base64,{base64.b64encode(image.data).decode()}"
    return shareable_url(image)


def shareable_url(image: Attachment) -> str | None:
    """The image's URL, unless it embeds a secret: a Telegram file URL carries the bot
    token (api.telegram.org/file/bot<token>/...), which must never reach a provider."""
    if not image.url or redact(image.url) != image.url:
        return None
    return image.url


def estimate_tokens(text: str) -> int:
    """A rough token count (≈4 characters a token) for when a provider died before it
    reported usage: better an estimate, flagged as such, than charging nothing."""
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass(slots=True)
class StreamState:
    """What a stream has produced so far, for charging and completing it if it breaks."""

    text: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    usage_seen: bool = False
    finish_reason: str | None = None
    model: str | None = None         # the model that answered, when the stream names it
    cost_usd: float | None = None    # the provider's reported cost, when it reports one
    upstream: str | None = None      # who served it behind a gateway

    @property
    def partial(self) -> str:
        return "".join(self.text)


def with_progress(err: E.ProviderError, st: StreamState, request: Request) -> E.ProviderError:
    """Attach what the broken stream had produced; text already shown makes it a cut."""
    err.partial = st.partial
    if st.text and err.outcome not in (E.AUTH, E.CONTENT_FILTERED):
        err.detail = f"{err.outcome}: {err.detail}".rstrip(": ")
        err.outcome = E.STREAM_CUT
    if st.usage_seen:
        err.input_tokens, err.output_tokens = st.input_tokens, st.output_tokens
    elif st.text:  # died before reporting usage: estimate, and say so
        err.input_tokens = estimate_request(request)
        err.output_tokens = estimate_tokens(st.partial)
        err.usage_estimated = True
    return err


def finish_stream(st: StreamState, request: Request) -> None:
    """A stream that ended cleanly must still have produced text, and must not be a refusal."""
    if st.finish_reason in ("content_filter", "SAFETY", "refusal"):
        raise E.ProviderError(E.CONTENT_FILTERED, f"finish_reason={st.finish_reason}",
                              input_tokens=st.input_tokens, output_tokens=st.output_tokens)
    if not st.partial.strip():
        raise E.ProviderError(E.EMPTY, f"finish_reason={st.finish_reason}",
                              input_tokens=st.input_tokens, output_tokens=st.output_tokens)
    if not st.usage_seen:
        st.input_tokens = estimate_request(request)
        st.output_tokens = estimate_tokens(st.partial)


def estimate_request(request: Request) -> int:
    return (estimate_tokens(request.system) + estimate_tokens(request.continue_from)
            + sum(estimate_tokens(m.text) for m in request.messages))
