"""Fake Groq, Anthropic and Gemini servers on 127.0.0.1 that speak each provider's real
wire format — JSON shapes, SSE events, status codes, error bodies, Retry-After and
rate-limit headers — so tests and benchmarks run the real SDKs over real HTTP.

Behaviour per request is scriptable and every request is recorded:

    async with FakeProviders() as fp:
        fp.groq.script(rate_limited(retry_after=2), ok("second try"))  # next two requests
        fp.gemini.default = black_hole()                              # every other request
        env = fp.env()          # GROQ_BASE_URL, GEMINI_BASE_URL, ANTHROPIC_BASE_URL + keys
        ...
        assert fp.groq.requests[0].model == "llama-3.3-70b-versatile"

Connection refused cannot be a per-request behaviour (the socket must not exist):
point a provider at `fp.dead_url` (`fp.env(refused={"groq"})`).

Per model, as the real APIs answer (all off by default):

    fp.claude.retired.add("claude-sonnet-4-5")   # every request for it: the provider's "model gone"
    fp.groq.unknown.add("llama-9")                # an id the provider never had
    fp.claude.current_rules.add("claude-haiku-5-5")  # 400 for sampling params / a prefill, like
                                                  # Claude 4.6 and later (Haiku 5.5, Sonnet 5.5)
    fp.claude.default = ok("Hi", thinking="Let me see")  # a thinking block before the text

OpenRouter (`fp.openrouter`, `/api/v1/chat/completions`) adds its own failures and fields:

    fp.openrouter.script(upstream_error(502, provider="Groq"), out_of_credits())
    fp.openrouter.default = ok("Hi", answered_by="anthropic/claude-haiku-4.5", cost=0.00012)
    fp.openrouter.default = stream_error(cut_after=2)   # a 200, then an SSE error event

`FakeOpenAICompat` is a plain OpenAI-compatible server (`/v1/chat/completions`, as vLLM,
Ollama, Together or Fireworks serve it) for endpoints declared in the config file.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "Behaviour", "Recorded", "FakeServer", "FakeGroq", "FakeAnthropic", "FakeGemini", "FakeProviders",
    "ok", "rate_limited", "server_error", "overloaded", "black_hole", "reset", "malformed", "empty",
    "auth_error", "bad_request", "cut", "safety", "KEYS", "dead_url", "RemoteFakes", "spawn_fakes",
    "quota_none", "quota_exhausted", "QUOTA_SHAPES", "EXHAUSTED_WAIT",
    "FakeOpenRouter", "FakeOpenAICompat", "upstream_error", "out_of_credits", "stream_error",
]

KEYS = {"groq": "gsk_test_groq_key_0123456789", "gemini": "AIza_test_gemini_key_0123456789",
        "claude": "sk-ant-test-claude-key-0123456789", "openrouter": "sk-or-v1-test-openrouter-key-0123456789"}


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request."""

    kind: str = "ok"
    text: str = "Hello! How can I help you today?"
    latency: float = 0.0           # seconds before the response starts
    chunk_delay: float = 0.0       # seconds between streamed chunks
    retry_after: float | None = None
    cut_after: int = 2             # chunks sent before a "cut" stream breaks
    input_tokens: int = 20
    output_tokens: int | None = None  # default: the number of words in `text`
    # What a 429 says about quotas (see QUOTA_SHAPES): "" = the headers these fakes always
    # sent (kept for existing tests), "none" = no quota hint at all, "exhausted" = the
    # provider's real "a quota ran out" shape, with its own wait.
    quota: str = ""
    thinking: str = ""             # Claude: a thinking block before the text; Groq: the reasoning
                                   # field of gpt-oss (either's events count for cut_after)
    # OpenRouter: the model that answered (default: the one asked for), the upstream that
    # served or failed it (metadata.provider_name / the response's `provider`), the cost it
    # reports in usage (None: none reported), an upstream error's status (502 or 503).
    answered_by: str = ""
    upstream: str = "Groq"
    cost: float | None = None
    status: int = 0

    @property
    def out_tokens(self) -> int:
        return len(self.text.split()) if self.output_tokens is None else self.output_tokens

    def chunks(self) -> list[str]:
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


def ok(text: str = Behaviour.text, latency: float = 0.0, **kw: Any) -> Behaviour:
    return Behaviour("ok", text, latency, **kw)


def rate_limited(retry_after: float | None = 2.0, **kw: Any) -> Behaviour:
    return Behaviour("rate_limited", retry_after=retry_after, **kw)


# The 429 shapes the fakes can send, modelled on documented or reported real responses:
#   "none"      no quota hint: no Retry-After, no RetryInfo, no exhausted limit. Gemini and
#               Vertex send this for shared-capacity exhaustion ("Resource exhausted. Please
#               try again later.", google-gemini/gemini-cli#14811, googleapis/python-genai#2001).
#               Groq documents retry-after on every 429, so for Groq this is the worst case;
#               its x-ratelimit-* headers (always sent) show quota left, as in its docs' example.
#   "exhausted" a quota ran out and the provider says until when: Groq's TPM message with
#               retry-after and x-ratelimit-remaining-tokens: 0 (Aider-AI/aider#3265 shows the
#               message); Gemini's QuotaFailure + RetryInfo; Anthropic's retry-after with
#               anthropic-ratelimit-requests-remaining: 0.
QUOTA_SHAPES = ("", "none", "exhausted")
EXHAUSTED_WAIT = {"groq": 7.66, "gemini": 39.0, "claude": 20.0}  # when the Behaviour sets none


def quota_none(**kw: Any) -> Behaviour:
    """A 429 carrying no quota hint at all."""
    return Behaviour("rate_limited", retry_after=None, quota="none", **kw)


def quota_exhausted(retry_after: float | None = None, **kw: Any) -> Behaviour:
    """A 429 saying a quota ran out (wait: `retry_after`, else the provider's usual one)."""
    return Behaviour("rate_limited", retry_after=retry_after, quota="exhausted", **kw)


def server_error(**kw: Any) -> Behaviour:
    return Behaviour("server_error", **kw)


def overloaded(retry_after: float | None = None, **kw: Any) -> Behaviour:
    return Behaviour("overloaded", retry_after=retry_after, **kw)


def black_hole() -> Behaviour:
    """Accepts the request and never answers."""
    return Behaviour("black_hole")


def reset() -> Behaviour:
    """Closes the connection without a response."""
    return Behaviour("reset")


def malformed(**kw: Any) -> Behaviour:
    return Behaviour("malformed", **kw)


def empty(**kw: Any) -> Behaviour:
    return Behaviour("empty", **kw)


def auth_error() -> Behaviour:
    return Behaviour("auth")


def bad_request() -> Behaviour:
    return Behaviour("bad_request")


def cut(text: str = "The quick brown fox jumps over the lazy dog.", cut_after: int = 3, **kw: Any) -> Behaviour:
    """A stream that breaks after `cut_after` chunks (a non-stream request gets a truncated body)."""
    return Behaviour("cut", text, cut_after=cut_after, **kw)


def upstream_error(status: int = 502, provider: str = "Groq", retry_after: float | None = None,
                   **kw: Any) -> Behaviour:
    """OpenRouter: the upstream provider failed (502) or none is available (503)."""
    return Behaviour("upstream_error", status=status, upstream=provider, retry_after=retry_after, **kw)


def out_of_credits(**kw: Any) -> Behaviour:
    """OpenRouter: 402, the account or key has no credits left."""
    return Behaviour("out_of_credits", **kw)


def stream_error(text: str = "The quick brown fox jumps over the lazy dog.", cut_after: int = 2,
                 **kw: Any) -> Behaviour:
    """OpenRouter: 200, then the upstream fails mid-way — an SSE data event carrying `error`
    and `finish_reason: "error"` after `cut_after` chunks (a non-stream request: a 200
    whose body is the error)."""
    return Behaviour("stream_error", text, cut_after=cut_after, **kw)


def safety() -> Behaviour:
    """The provider's safety system refuses to answer."""
    return Behaviour("safety", text="")


@dataclass(frozen=True)
class Recorded:
    path: str
    model: str
    stream: bool
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    peer: str = ""  # client address:port, to tell connections apart (keep-alive reuse)


def dead_url() -> str:
    """A base URL where nothing listens: connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class FakeServer:
    """One provider. Scripted behaviours are used first (in order), then
    `per_model[model]`, then `default`."""

    name = "fake"

    def __init__(self) -> None:
        self.default: Behaviour = ok()
        self.per_model: dict[str, Behaviour] = {}
        self._script: deque[Behaviour] = deque()
        self.requests: list[Recorded] = []
        self.retired: set[str] = set()   # models the provider has retired (decommissioned)
        self.unknown: set[str] = set()   # model ids the provider never had
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.url = ""

    # -- scripting ----------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> None:
        self._script.extend(behaviours)

    def reset_state(self) -> None:
        self.default, self.per_model = ok(), {}
        self._script.clear()
        self.requests.clear()
        self.retired.clear()
        self.unknown.clear()

    def _next(self, model: str) -> Behaviour:
        if self._script:
            return self._script.popleft()
        return self.per_model.get(model, self.default)

    # -- lifecycle ----------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> "FakeServer":
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.add_routes(self.routes())
        app.add_routes(self._control_routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- remote control (for a server running in another process) -----------------
    def _control_routes(self) -> list[web.RouteDef]:
        async def set_default(request: web.Request) -> web.Response:
            self.default = Behaviour(**await request.json())
            return web.json_response({"ok": True})

        async def script(request: web.Request) -> web.Response:
            self.script(*(Behaviour(**b) for b in await request.json()))
            return web.json_response({"ok": True})

        async def reset(request: web.Request) -> web.Response:
            self.reset_state()
            return web.json_response({"ok": True})

        async def requests(request: web.Request) -> web.Response:
            return web.json_response({"count": len(self.requests)})

        return [web.post("/_fake/default", set_default), web.post("/_fake/script", script),
                web.post("/_fake/reset", reset), web.get("/_fake/requests", requests)]

    # -- shared response machinery --------------------------------------------------
    async def _handle(self, request: web.Request, model: str, stream: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Recorded(request.path_qs, model, stream, dict(request.headers), body,
                                      peer=f"{peer[0]}:{peer[1]}" if peer else ""))
        if not self._authorised(request):
            return self.error(401)
        if model in self.retired or model in self.unknown:
            return self.model_gone(model, retired=model in self.retired)
        refused = self.reject(model, body)
        if refused is not None:
            return refused
        b = self._next(model)
        if b.latency:
            await asyncio.sleep(b.latency)
        special = await self.special(request, model, stream, b)
        if special is not None:
            return special
        if b.kind == "black_hole":
            await self._closing.wait()  # released (and dropped) when the server stops
            _abort(request)
            return web.Response()
        if b.kind == "reset":
            _abort(request)
            return web.Response()
        status = {"rate_limited": 429, "server_error": 500, "overloaded": self.overload_status,
                  "auth": 401, "bad_request": 400}.get(b.kind)
        if status == 429 and b.quota:
            return self.rate_error(b.quota, b.retry_after)
        if status:
            return self.error(status, b.retry_after)
        if b.kind == "malformed" and stream:
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(self.malformed_sse)
            await resp.write_eof()
            return resp
        if b.kind == "malformed":
            return web.Response(status=200, text='{"id": "x", "choices": [{"mess', content_type="application/json")
        if stream:
            return await self._stream(request, model, b)
        if b.kind == "cut":
            return await self._truncated(request, self.completion(model, b))
        return web.json_response(self.completion(model, b))

    async def _stream(self, request: web.Request, model: str, b: Behaviour) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        for i, event in enumerate(self.sse_events(model, b)):
            if b.kind == "cut" and i >= b.cut_after + self.preamble_events:
                await asyncio.sleep(0.01)  # let the client read what was sent before the break
                _abort(request)
                return resp
            await resp.write(event.encode())
            if b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
        await resp.write_eof()
        return resp

    async def _truncated(self, request: web.Request, payload: dict) -> web.StreamResponse:
        data = json.dumps(payload).encode()
        resp = web.StreamResponse(headers={"content-type": "application/json", "content-length": str(len(data))})
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        await asyncio.sleep(0.01)
        _abort(request)
        return resp

    # -- provider-specific ------------------------------------------------------------
    overload_status = 503
    preamble_events = 0  # SSE events before the first text chunk
    malformed_sse = b'data: {"candidates": [{"content": {"parts": [{"tex\n\n'

    def _authorised(self, request: web.Request) -> bool:
        raise NotImplementedError

    def error(self, status: int, retry_after: float | None = None) -> web.Response:
        raise NotImplementedError

    def rate_error(self, quota: str, retry_after: float | None) -> web.Response:
        """A 429 of one of the QUOTA_SHAPES ("none" or "exhausted")."""
        raise NotImplementedError

    def model_gone(self, model: str, retired: bool) -> web.Response:
        """The provider's answer for a retired or unknown model id."""
        raise NotImplementedError

    async def special(self, request: web.Request, model: str, stream: bool,
                      b: Behaviour) -> web.StreamResponse | None:
        """A provider's own behaviour kinds (OpenRouter's 402, upstream errors), or None."""
        return None

    def reject(self, model: str, body: Any) -> web.Response | None:
        """A 400 the real API gives this model for this request body, or None."""
        return None

    def completion(self, model: str, b: Behaviour) -> dict:
        raise NotImplementedError

    def sse_events(self, model: str, b: Behaviour) -> list[str]:
        raise NotImplementedError


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _retry_headers(retry_after: float | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(extra or {})
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return headers


class FakeGroq(FakeServer):
    """OpenAI-compatible `/openai/v1/chat/completions`, as Groq serves it."""

    name = "groq"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/openai/v1/chat/completions", self._route)]

    async def _route(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = {}
        return await self._handle(request, str(body.get("model", "")), bool(body.get("stream")))

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("authorization", "").startswith("Bearer ")

    def error(self, status: int, retry_after: float | None = None) -> web.Response:
        kinds = {429: ("rate_limit_exceeded", "tokens", "Rate limit reached for model. Please try again in 2s."),
                 401: ("invalid_api_key", "invalid_request_error", "Invalid API Key"),
                 400: ("bad_request", "invalid_request_error", "messages: bad request"),
                 500: ("internal_server_error", "internal_server_error", "Internal Server Error"),
                 503: ("service_unavailable", "internal_server_error", "Service Unavailable: over capacity")}
        code, typ, msg = kinds.get(status, kinds[500])
        headers = {"x-request-id": "req_" + uuid.uuid4().hex[:12]}
        if status == 429:
            headers.update({"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "0",
                            "x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-reset-tokens": "7.66s"})
        return web.json_response({"error": {"message": msg, "type": typ, "code": code}}, status=status,
                                 headers=_retry_headers(retry_after, headers))

    def rate_error(self, quota: str, retry_after: float | None) -> web.Response:
        headers = {"x-request-id": "req_" + uuid.uuid4().hex[:12], "x-ratelimit-limit-requests": "14400",
                   "x-ratelimit-limit-tokens": "18000", "x-ratelimit-remaining-requests": "14370",
                   "x-ratelimit-reset-requests": "2m59.56s"}
        if quota == "exhausted":
            wait = EXHAUSTED_WAIT["groq"] if retry_after is None else retry_after
            headers.update({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": f"{wait:g}s",
                            "retry-after": str(max(1, round(wait)))})
            msg = ("Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_fake` service "
                   "tier `on_demand` on tokens per minute (TPM): Limit 18000, Used 17990, Requested 120. "
                   f"Please try again in {wait:g}s. Visit https://console.groq.com/docs/rate-limits for more "
                   "information.")
            typ = "tokens"
        else:
            headers.update({"x-ratelimit-remaining-tokens": "17997", "x-ratelimit-reset-tokens": "7.66s"})
            msg, typ = "Rate limit reached for model. Please try again later.", "requests"
        return web.json_response({"error": {"message": msg, "type": typ, "code": "rate_limit_exceeded"}},
                                 status=429, headers=headers)

    def model_gone(self, model: str, retired: bool) -> web.Response:
        # Real bodies: 400 model_decommissioned (a retired model), 404 model_not_found (an unknown id).
        if retired:
            status, code = 400, "model_decommissioned"
            msg = (f"The model `{model}` has been decommissioned and is no longer supported. Please refer to "
                   "https://console.groq.com/docs/deprecations for a recommendation on which model to use instead.")
        else:
            status, code = 404, "model_not_found"
            msg = f"The model `{model}` does not exist or you do not have access to it."
        return web.json_response({"error": {"message": msg, "type": "invalid_request_error", "code": code}},
                                 status=status, headers={"x-request-id": "req_" + uuid.uuid4().hex[:12]})

    def _usage(self, b: Behaviour) -> dict:
        return {"prompt_tokens": b.input_tokens, "completion_tokens": b.out_tokens,
                "total_tokens": b.input_tokens + b.out_tokens, "queue_time": 0.01,
                "prompt_time": 0.001, "completion_time": 0.01, "total_time": 0.011}

    def completion(self, model: str, b: Behaviour) -> dict:
        text = "" if b.kind in ("empty", "safety") else b.text
        finish = "content_filter" if b.kind == "safety" else "stop"
        usage = self._usage(b if b.kind != "empty" else Behaviour(output_tokens=0))
        return {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "message": {
                    "role": "assistant", "content": text, **({"reasoning": b.thinking} if b.thinking else {})},
                    "logprobs": None, "finish_reason": finish}],
                "usage": usage, "system_fingerprint": "fp_fake", "x_groq": {"id": "req_fake"}}

    def sse_events(self, model: str, b: Behaviour) -> list[str]:
        cid, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_fake",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(c)}\n\n"

        events = [chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_fake"})]
        if b.thinking:  # a reasoning model (gpt-oss) streams its reasoning first, in its own field
            events.append(chunk({"reasoning": b.thinking}))
        pieces = [] if b.kind in ("empty", "safety") else b.chunks()
        events += [chunk({"content": p}) for p in pieces]
        usage = self._usage(b if pieces else Behaviour(output_tokens=0))
        finish = "content_filter" if b.kind == "safety" else "stop"
        events.append(chunk({}, finish, usage=usage, x_groq={"id": "req_fake", "usage": usage}))
        events.append("data: [DONE]\n\n")
        return events

    preamble_events = 1
    malformed_sse = b'data: {"id": "chatcmpl-x", "choices": [{"del\n\n'


class FakeOpenAICompat(FakeGroq):
    """A plain OpenAI-compatible server, `/v1/chat/completions` (vLLM, Ollama, Together,
    Fireworks): the OpenAI chunk and error shapes, no Groq or OpenRouter extras."""

    name = "openai-compat"
    path = "/v1/chat/completions"

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self._route)]

    def completion(self, model: str, b: Behaviour) -> dict:
        body = super().completion(model, b)
        body.pop("x_groq", None)
        return body


class FakeOpenRouter(FakeOpenAICompat):
    """OpenRouter's `/api/v1/chat/completions` (openrouter.ai/docs: errors, streaming, usage
    accounting): errors as `{"error": {"code": <int>, "message", "metadata"}}` — 402 out of
    credits, 429, 502/503 with the upstream's name and raw answer in `metadata` — `: OPENROUTER
    PROCESSING` comments in streams, `provider` and the answering `model` in every response,
    `usage.cost` in credits, errors after the 200 as an SSE data event with `error`."""

    name = "openrouter"
    path = "/api/v1/chat/completions"
    preamble_events = 2  # the processing comment, the role chunk

    def _error(self, status: int, message: str, metadata: dict | None = None,
               retry_after: float | None = None) -> web.Response:
        err: dict[str, Any] = {"code": status, "message": message}
        if metadata is not None:
            err["metadata"] = metadata
        return web.json_response({"error": err}, status=status, headers=_retry_headers(retry_after))

    def error(self, status: int, retry_after: float | None = None) -> web.Response:
        messages = {401: "No auth credentials found", 400: "Invalid request: messages is required",
                    429: "Rate limit exceeded: limit_rpm/openai/gpt-oss-20b. High demand for this model.",
                    500: "Internal Server Error",
                    503: "No allowed providers are available for the selected model."}
        return self._error(status, messages.get(status, messages[500]), retry_after=retry_after)

    def rate_error(self, quota: str, retry_after: float | None) -> web.Response:
        if quota == "exhausted":  # the key's own limit, with its reset (ms since the epoch)
            wait = 60.0 if retry_after is None else retry_after
            reset = str(int((time.time() + wait) * 1000))
            return self._error(429, "Rate limit exceeded: free-models-per-min.",
                               {"headers": {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0",
                                            "X-RateLimit-Reset": reset}}, retry_after=retry_after)
        return self._error(429, "Provider returned error", {  # the upstream was rate limited
            "raw": "openai/gpt-oss-20b is temporarily rate-limited upstream. Please retry shortly.",
            "provider_name": "Chutes"})

    def model_gone(self, model: str, retired: bool) -> web.Response:
        if retired:
            return self._error(404, f"No endpoints found for {model}.")
        return self._error(400, f"{model} is not a valid model ID")

    async def special(self, request: web.Request, model: str, stream: bool,
                      b: Behaviour) -> web.StreamResponse | None:
        if b.kind == "out_of_credits":
            return self._error(402, "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                               {"limit_source": "openrouter_credits"}, retry_after=b.retry_after)
        if b.kind == "upstream_error":
            status = b.status or 502
            if status == 503:
                return self._error(503, "No allowed providers are available for the selected model.",
                                   {"provider_name": b.upstream, "raw": None}, retry_after=b.retry_after)
            raw = json.dumps({"error": {"message": "Internal server error", "type": "internal_server_error"}})
            return self._error(status, "Provider returned error", {"provider_name": b.upstream, "raw": raw},
                               retry_after=b.retry_after)
        if b.kind == "stream_error" and not stream:
            return web.json_response({"error": {"code": 502, "message": "Provider returned error",
                                                "metadata": {"provider_name": b.upstream, "raw": "upstream reset"}}})
        return None

    def _usage(self, b: Behaviour) -> dict:
        usage: dict[str, Any] = {"prompt_tokens": b.input_tokens, "completion_tokens": b.out_tokens,
                                 "total_tokens": b.input_tokens + b.out_tokens,
                                 "prompt_tokens_details": {"cached_tokens": 0},
                                 "completion_tokens_details": {"reasoning_tokens": 0}}
        if b.cost is not None:
            usage.update(cost=b.cost, is_byok=False, cost_details={"upstream_inference_cost": None})
        return usage

    def completion(self, model: str, b: Behaviour) -> dict:
        body = super().completion(model, b)
        body.pop("system_fingerprint", None)
        body.update(id="gen-" + uuid.uuid4().hex[:24], provider=b.upstream, model=b.answered_by or model)
        for choice in body["choices"]:
            choice["native_finish_reason"] = choice["finish_reason"]
        return body

    def sse_events(self, model: str, b: Behaviour) -> list[str]:
        gid, created, served = "gen-" + uuid.uuid4().hex[:24], int(time.time()), b.answered_by or model

        def chunk(delta: dict | None, finish: str | None = None, **extra: Any) -> str:
            c = {"id": gid, "provider": b.upstream, "model": served, "object": "chat.completion.chunk",
                 "created": created, **extra,
                 "choices": [] if delta is None else
                 [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish}]}
            return f"data: {json.dumps(c)}\n\n"

        events = [": OPENROUTER PROCESSING\n\n", chunk({"role": "assistant", "content": ""})]
        pieces = [] if b.kind in ("empty", "safety") else b.chunks()
        if b.kind == "stream_error":
            events += [chunk({"content": p}) for p in pieces[:b.cut_after]]
            events.append(chunk({"content": ""}, "error", error={
                "code": 502, "message": "Provider returned error",
                "metadata": {"provider_name": b.upstream, "raw": "upstream connection reset"}}))
            return events
        events += [chunk({"content": p}) for p in pieces]
        events.append(chunk({}, "content_filter" if b.kind == "safety" else "stop"))
        events.append(chunk(None, usage=self._usage(b if pieces else Behaviour(output_tokens=0, cost=b.cost))))
        events.append("data: [DONE]\n\n")
        return events


class FakeAnthropic(FakeServer):
    """`/v1/messages`, as Anthropic serves it (529 overloaded_error included)."""

    name = "claude"
    overload_status = 529
    preamble_events = 3  # message_start, content_block_start, ping
    malformed_sse = b'event: message_start\ndata: {"type": "message_start", "mess\n\n'

    def __init__(self) -> None:
        super().__init__()
        # Models that answer like Claude 4.6 and later (Haiku 5.5, Sonnet 5.5): 400 for sampling
        # parameters and for an assistant prefill (a last turn from the assistant).
        self.current_rules: set[str] = set()

    def reset_state(self) -> None:
        super().reset_state()
        self.current_rules.clear()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self._route)]

    def _invalid(self, message: str) -> web.Response:
        return web.json_response({"type": "error", "error": {"type": "invalid_request_error", "message": message},
                                  "request_id": "req_" + uuid.uuid4().hex[:24]}, status=400)

    def model_gone(self, model: str, retired: bool) -> web.Response:
        # Retired and unknown ids get the same answer from the Messages API.
        return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": f"model: {model}"},
                                  "request_id": "req_" + uuid.uuid4().hex[:24]}, status=404)

    def reject(self, model: str, body: Any) -> web.Response | None:
        if model not in self.current_rules or not isinstance(body, dict):
            return None
        for param in ("temperature", "top_p", "top_k"):
            if param in body:
                return self._invalid(f"`{param}` is deprecated for this model.")
        messages = body.get("messages") or []
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
            return self._invalid("This model does not support assistant message prefill. "
                                 "The conversation must end with a user message.")
        return None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = {}
        return await self._handle(request, str(body.get("model", "")), bool(body.get("stream")))

    def _authorised(self, request: web.Request) -> bool:
        # anthropic SDKs send the key as x-api-key, recent ones as a Bearer token.
        has_key = bool(request.headers.get("x-api-key")) or request.headers.get("authorization", "").startswith("Bearer ")
        return has_key and "anthropic-version" in request.headers

    def error(self, status: int, retry_after: float | None = None) -> web.Response:
        kinds = {429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
                 401: ("authentication_error", "invalid x-api-key"),
                 400: ("invalid_request_error", "messages: at least one message is required"),
                 500: ("api_error", "Internal server error"),
                 529: ("overloaded_error", "Overloaded")}
        typ, msg = kinds.get(status, kinds[500])
        headers = {"request-id": "req_" + uuid.uuid4().hex[:12]}
        if status == 429:
            headers["anthropic-ratelimit-requests-remaining"] = "0"
        return web.json_response({"type": "error", "error": {"type": typ, "message": msg}}, status=status,
                                 headers=_retry_headers(retry_after, headers))

    def rate_error(self, quota: str, retry_after: float | None) -> web.Response:
        headers = {"request-id": "req_" + uuid.uuid4().hex[:12]}
        msg = "Request rejected: temporarily over capacity. Please try again."
        if quota == "exhausted":
            wait = EXHAUSTED_WAIT["claude"] if retry_after is None else retry_after
            reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + wait))
            headers.update({"retry-after": str(max(1, round(wait))), "anthropic-ratelimit-requests-limit": "50",
                            "anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": reset,
                            "anthropic-ratelimit-tokens-limit": "50000", "anthropic-ratelimit-tokens-remaining": "48200"})
            msg = ("This request would exceed the rate limit for your organization of 50 requests per minute. "
                   "For details, refer to: https://docs.claude.com/en/api/rate-limits.")
        return web.json_response({"type": "error", "error": {"type": "rate_limit_error", "message": msg}},
                                 status=429, headers=headers)

    def _message(self, model: str, b: Behaviour, text: str, stop: str | None, out: int,
                 thinking: bool = False) -> dict:
        content: list[dict] = []
        if thinking and b.thinking:
            content.append({"type": "thinking", "thinking": b.thinking, "signature": "sig_" + uuid.uuid4().hex})
        if text:
            content.append({"type": "text", "text": text})
        return {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop,
                "stop_sequence": None, "usage": {"input_tokens": b.input_tokens, "output_tokens": out}}

    def completion(self, model: str, b: Behaviour) -> dict:
        if b.kind in ("empty", "safety"):
            return self._message(model, b, "", "refusal" if b.kind == "safety" else "end_turn", 0)
        return self._message(model, b, b.text, "end_turn", b.out_tokens, thinking=True)

    def sse_events(self, model: str, b: Behaviour) -> list[str]:
        def ev(kind: str, data: dict) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        start = self._message(model, b, "", None, 1)
        events = [ev("message_start", {"message": start})]
        ti = 0  # the text block's index: 1 after a thinking block
        if b.thinking and b.kind not in ("empty", "safety"):
            events += [ev("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                                 "signature": ""}}),
                       ev("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta",
                                                                        "thinking": b.thinking}}),
                       ev("content_block_delta", {"index": 0, "delta": {"type": "signature_delta",
                                                                        "signature": "sig_fake"}}),
                       ev("content_block_stop", {"index": 0})]
            ti = 1
        events += [ev("content_block_start", {"index": ti, "content_block": {"type": "text", "text": ""}}),
                   ev("ping", {})]
        pieces = [] if b.kind in ("empty", "safety") else b.chunks()
        events += [ev("content_block_delta", {"index": ti, "delta": {"type": "text_delta", "text": p}}) for p in pieces]
        stop = "refusal" if b.kind == "safety" else "end_turn"
        events += [ev("content_block_stop", {"index": ti}),
                   ev("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                        "usage": {"output_tokens": b.out_tokens if pieces else 0}}),
                   ev("message_stop", {})]
        return events


class FakeGemini(FakeServer):
    """`/v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`."""

    name = "gemini"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1beta/models/{spec}", self._route)]

    async def _route(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["spec"].partition(":")
        if action not in ("generateContent", "streamGenerateContent"):
            return self.error(404)
        stream = action == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            return self.error(400)
        return await self._handle(request, model, stream)

    def _authorised(self, request: web.Request) -> bool:
        return bool(request.headers.get("x-goog-api-key"))

    def error(self, status: int, retry_after: float | None = None) -> web.Response:
        kinds = {429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
                 401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
                 400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
                 404: ("NOT_FOUND", "Method not found."),
                 500: ("INTERNAL", "An internal error has occurred."),
                 503: ("UNAVAILABLE", "The model is overloaded. Please try again later.")}
        st, msg = kinds.get(status, kinds[500])
        err: dict[str, Any] = {"code": status, "message": msg, "status": st}
        if status == 429 and retry_after is not None:
            err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
        return web.json_response({"error": err}, status=status)

    def rate_error(self, quota: str, retry_after: float | None) -> web.Response:
        err: dict[str, Any] = {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": (
            "Resource exhausted. Please try again later. Please refer to "
            "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.")}
        if quota == "exhausted":
            wait = EXHAUSTED_WAIT["gemini"] if retry_after is None else retry_after
            err["message"] = ("You exceeded your current quota, please check your plan and billing details. "
                              f"Please retry in {wait:g}s.")
            err["details"] = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "10"}]},
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{round(wait)}s"}]
        return web.json_response({"error": err}, status=429)

    def model_gone(self, model: str, retired: bool) -> web.Response:
        msg = (f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
               "Call ListModels to see the list of available models and their supported methods.")
        return web.json_response({"error": {"code": 404, "message": msg, "status": "NOT_FOUND"}}, status=404)

    def _response(self, model: str, b: Behaviour, text: str, finish: str | None, out: int) -> dict:
        resp: dict[str, Any] = {"modelVersion": model, "responseId": uuid.uuid4().hex[:16],
                                "usageMetadata": {"promptTokenCount": b.input_tokens, "candidatesTokenCount": out,
                                                  "totalTokenCount": b.input_tokens + out}}
        if b.kind == "safety":
            resp["promptFeedback"] = {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]}
            return resp
        cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        resp["candidates"] = [cand]
        return resp

    def completion(self, model: str, b: Behaviour) -> dict:
        if b.kind == "empty":
            return self._response(model, b, "", "STOP", 0)
        return self._response(model, b, b.text, "STOP", b.out_tokens)

    def sse_events(self, model: str, b: Behaviour) -> list[str]:
        if b.kind in ("empty", "safety"):
            return [f"data: {json.dumps(self._response(model, b, '', 'STOP', 0))}\r\n\r\n"]
        pieces = b.chunks()
        events, done = [], 0
        for i, p in enumerate(pieces):
            done += len(p.split())
            last = i == len(pieces) - 1
            events.append(f"data: {json.dumps(self._response(model, b, p, 'STOP' if last else None, done))}\r\n\r\n")
        return events


class FakeProviders:
    """All three fake providers on ephemeral ports, as one async context manager."""

    def __init__(self) -> None:
        self.groq, self.claude, self.gemini = FakeGroq(), FakeAnthropic(), FakeGemini()
        self.openrouter = FakeOpenRouter()
        self.dead_url = ""

    @property
    def servers(self) -> dict[str, FakeServer]:
        return {"groq": self.groq, "gemini": self.gemini, "claude": self.claude, "openrouter": self.openrouter}

    async def __aenter__(self) -> "FakeProviders":
        for s in self.servers.values():
            await s.start()
        self.dead_url = dead_url()
        await self._warm_sdks_once()
        return self

    _warmed = False

    async def _warm_sdks_once(self) -> None:
        """The first call through each SDK in a process imports its resources and builds its
        pydantic schemas: 0.5-1 s of CPU on a loaded machine (measured: groq 0.8 s, claude
        1.1 s, against 0.04 s for the next calls). Paid here once per process, so it does
        not land in the first test's half-second attempt timeout."""
        if FakeProviders._warmed:
            return
        FakeProviders._warmed = True
        from bot.llm.providers.anthropic import AnthropicProvider
        from bot.llm.providers.base import Message, Request
        from bot.llm.providers.groq import GroqProvider

        request = Request(system="warm-up", messages=(Message("user", "hello"),))
        groq, claude = FakeGroq(), FakeAnthropic()  # not this instance's: its scripts stay untouched
        await groq.start()
        await claude.start()
        try:
            for provider, model in ((GroqProvider(KEYS["groq"], groq.url), "llama-3.3-70b-versatile"),
                                    (AnthropicProvider(KEYS["claude"], claude.url), "claude-haiku-4-5")):
                try:
                    await provider.complete(model, request, timeout=60)
                    async for _ in provider.stream(model, request, timeout=60):
                        pass
                finally:
                    await provider.aclose()
        finally:
            await groq.stop()
            await claude.stop()

    async def __aexit__(self, *exc: object) -> None:
        for s in self.servers.values():
            await s.stop()

    def env(self, *, keys: bool = True, refused: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
        """Variables pointing the bot at these servers (`refused`: providers pointed at a dead port)."""
        url = {name: (self.dead_url if name in refused else s.url) for name, s in self.servers.items()}
        env = {"GROQ_BASE_URL": url["groq"], "GEMINI_BASE_URL": url["gemini"], "ANTHROPIC_BASE_URL": url["claude"],
               "OPENROUTER_BASE_URL": url["openrouter"] + "/api/v1"}
        if keys:
            env.update(GROQ_API_KEY=KEYS["groq"], GEMINI_API_KEY=KEYS["gemini"], ANTHROPIC_API_KEY=KEYS["claude"],
                       OPENROUTER_API_KEY=KEYS["openrouter"])
        return env

    def reset_state(self) -> None:
        for s in self.servers.values():
            s.reset_state()


class RemoteFakes:
    """Controls fake servers running in another process (see `spawn_fakes`), so a
    benchmark's client and servers do not share one CPU."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.urls = {"groq": env["GROQ_BASE_URL"], "gemini": env["GEMINI_BASE_URL"],
                     "claude": env["ANTHROPIC_BASE_URL"]}
        if "OPENROUTER_BASE_URL" in env:
            self.urls["openrouter"] = env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")

    async def _call(self, provider: str, path: str, payload: Any = None) -> Any:
        import aiohttp

        async with aiohttp.ClientSession() as s:
            if payload is None and path == "requests":
                async with s.get(f"{self.urls[provider]}/_fake/requests") as r:
                    return await r.json()
            async with s.post(f"{self.urls[provider]}/_fake/{path}", json=payload or {}) as r:
                return await r.json()

    async def set_default(self, provider: str, b: Behaviour) -> None:
        await self._call(provider, "default", _as_dict(b))

    async def script(self, provider: str, *bs: Behaviour) -> None:
        await self._call(provider, "script", [_as_dict(b) for b in bs])

    async def reset(self) -> None:
        for p in self.urls:
            await self._call(p, "reset")

    async def count(self, provider: str) -> int:
        return int((await self._call(provider, "requests"))["count"])


def _as_dict(b: Behaviour) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(b)


def spawn_fakes():
    """Start `python -m fakes.llm_servers` in a subprocess; returns (process, env)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests_dir = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen([sys.executable, "-m", "fakes.llm_servers"], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, cwd=tests_dir, text=True,
                            env={**os.environ, "PYTHONPATH": tests_dir})
    line = proc.stdout.readline()
    return proc, json.loads(line)


async def _serve() -> None:
    """Serve all three fakes until stdin closes; print the env (one JSON line) first."""
    import sys

    async with FakeProviders() as fp:
        print(json.dumps(fp.env()), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(_serve())
