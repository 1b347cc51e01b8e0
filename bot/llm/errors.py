"""Failure classification: every way a provider call can fail gets one short reason.

The reason goes into `Attempt.outcome`, the logs and the breaker. Classification is
done from what is on the wire (status code, error body, headers), so the three
providers — two SDKs and one raw REST client — speak one vocabulary.
"""
from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ProviderError", "classify_status", "retry_after_from", "OK", "RATE_LIMITED", "OVERLOADED",
    "SERVER_ERROR", "TIMEOUT", "CONNECTION", "AUTH", "BAD_REQUEST", "MALFORMED", "EMPTY",
    "CONTENT_FILTERED", "STREAM_CUT", "STALLED", "HEALTH_FAILURES", "TRANSPORT_FAILURES", "MODEL_GONE",
    "MODEL_GONE_PAUSE_S", "OUT_OF_CREDITS", "UPSTREAM_ERROR", "CREDITS_PAUSE_S",
]

OK = "ok"
RATE_LIMITED = "rate_limited"      # 429, RESOURCE_EXHAUSTED, quota: a rate signal, not an outage
OVERLOADED = "overloaded"          # 503, 529 overloaded_error, UNAVAILABLE
SERVER_ERROR = "server_error"      # other 5xx
TIMEOUT = "timeout"                # no (complete) answer within the attempt's budget
CONNECTION = "connection"          # refused / reset / DNS: the host is unreachable
AUTH = "auth"                      # 401/403: the key is wrong; the provider is switched off
BAD_REQUEST = "bad_request"        # 400/404/422: our request (or the input) is at fault
MALFORMED = "malformed"            # 200 with a body we cannot read
EMPTY = "empty"                    # 200 with no text
CONTENT_FILTERED = "content_filtered"  # the provider's safety system refused
STREAM_CUT = "stream_cut"          # a stream broke after text had been produced
STALLED = "stalled"                # left before its timeout: the host had gone silent (stalls.py)
MODEL_GONE = "model_gone"          # the provider no longer serves this model (retired / unknown id)
OUT_OF_CREDITS = "out_of_credits"  # 402: the account or key has no credit left; like a spent quota
UPSTREAM_ERROR = "upstream_error"  # a gateway's (OpenRouter's) upstream provider failed: 502/503

# A gone model is skipped (its siblings are not) for this long: a retired model does not
# come back, but a typo fixed by a redeploy restarts the process anyway, and a provider's
# passing mistake should not cost the model until restart.
MODEL_GONE_PAUSE_S = 3600.0

# An account out of credits stays so until someone pays: the whole provider (every model,
# one key) is skipped this long unless the provider says when to come back; then one
# quick 402 finds out. Short enough that a top-up is noticed within a minute.
CREDITS_PAUSE_S = 60.0

# Outcomes that say something about the provider's health (feed its breaker).
HEALTH_FAILURES = frozenset({OVERLOADED, SERVER_ERROR, TIMEOUT, CONNECTION, MALFORMED, EMPTY, STREAM_CUT,
                             STALLED, UPSTREAM_ERROR})
# Outcomes that say the host itself is unreachable (feed the provider-wide breaker).
TRANSPORT_FAILURES = frozenset({TIMEOUT, CONNECTION, STALLED})


class ProviderError(Exception):
    """A classified failure of one attempt. Tokens consumed before the failure (a stream
    cut half-way) and the text produced so far are kept, so they can be charged and
    completed."""

    def __init__(self, outcome: str, detail: str = "", *, retry_after: float | None = None,
                 status: int | None = None, input_tokens: int = 0, output_tokens: int = 0,
                 partial: str = "", usage_estimated: bool = False) -> None:
        super().__init__(f"{outcome}: {detail}" if detail else outcome)
        self.outcome = outcome
        self.detail = detail
        self.retry_after = retry_after
        self.status = status
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.partial = partial
        self.usage_estimated = usage_estimated


_OVERLOAD_WORDS = ("overloaded", "unavailable")
_RATE_WORDS = ("rate_limit", "resource_exhausted", "quota", "rate limit")
# OpenRouter 402 "Insufficient credits"; Anthropic's 400 "Your credit balance is too low".
_CREDIT_WORDS = ("insufficient credits", "credit balance is too low")
_FILTER_WORDS = ("safety", "content_filter", "content_policy", "blocked")


def _error_words(body: Any) -> str:
    """The error's type/status/code/message, lower-cased, from any of the three shapes:
    Anthropic {"type":"error","error":{"type":...}}, OpenAI/Groq {"error":{"type","code"}},
    Gemini {"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}."""
    if not isinstance(body, Mapping):
        return str(body or "").lower()[:500]
    err = body.get("error", body)
    if not isinstance(err, Mapping):
        return str(err).lower()[:500]
    return " ".join(str(err.get(k, "")) for k in ("type", "status", "code", "message")).lower()


def _model_gone(status: int, words: str) -> bool:
    """The provider says the requested model does not exist (any more). Wire formats:
    Anthropic 404 {"type":"error","error":{"type":"not_found_error","message":"model: <id>"}};
    Groq 400 code "model_decommissioned" / 404 code "model_not_found"; Gemini 404
    {"error":{"code":404,"status":"NOT_FOUND","message":"models/<id> is not found for API
    version v1beta, or is not supported for generateContent. ..."}}; OpenRouter's below. A 404 that does not
    name a model (a wrong base URL or path) is not this."""
    if "model_decommissioned" in words or "model_not_found" in words:
        return True
    # OpenRouter: 400 "<id> is not a valid model ID", 404 "No endpoints found for <id>."
    if "is not a valid model id" in words or "no endpoints found for" in words:
        return True
    return status == 404 and "not_found" in words and "model" in words


def classify_status(status: int, body: Any = None) -> str:
    """The outcome for an HTTP error status (and its error body)."""
    words = _error_words(body)
    if status == 402 or any(w in words for w in _CREDIT_WORDS):
        return OUT_OF_CREDITS
    if status == 429 or any(w in words for w in _RATE_WORDS):
        return RATE_LIMITED
    if (status in (401, 403) or "authentication" in words or "permission_denied" in words
            or "api key not valid" in words or "api_key_invalid" in words):
        return AUTH
    if status in (400, 404) and _model_gone(status, words):
        return MODEL_GONE
    if status in (503, 529) or any(w in words for w in _OVERLOAD_WORDS):
        return OVERLOADED
    if status == 408 or status == 504:
        return TIMEOUT
    if status >= 500:
        return SERVER_ERROR
    if any(w in words for w in _FILTER_WORDS):
        return CONTENT_FILTERED
    return BAD_REQUEST


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def _parse_seconds(value: str, now: float) -> float | None:
    """'2', '2.5', '1m30s', '250ms', '30s', an HTTP date or an RFC 3339 timestamp."""
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    m = _DURATION.match(value)
    if m and any(m.groups()):
        h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
        return h * 3600 + mi * 60 + s + ms / 1000
    try:  # HTTP date (Retry-After may be one)
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        pass
    try:  # RFC 3339 (anthropic-ratelimit-*-reset)
        from datetime import datetime

        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - now)
    except ValueError:
        return None


# Explicit waits, honoured as given.
_RETRY_AFTER = "retry-after"
# Reset headers paired with the "remaining" header of the same limit. Groq:
# x-ratelimit-{remaining,reset}-{requests,tokens} ("7.66s", "2m59.56s"); Anthropic:
# anthropic-ratelimit-{requests,tokens,...}-{remaining,reset} (RFC 3339).
_RESET_PAIRS = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"),
    ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-reset"),
    ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-reset"),
)


def _reset_wait(lower: Mapping[str, str], now: float) -> float | None:
    """The wait the rate-limit reset headers imply.

    Only the limit that actually ran out matters: a 429 on tokens-per-minute must not pause
    a provider until its *daily request* window resets. When the headers say which limit is
    exhausted (remaining == 0), its reset wins (the longest, if several are); when they
    don't, the soonest reset is taken — a probe after it finds out, where guessing long
    would push traffic to a costlier provider for minutes.
    """
    exhausted, unknown = [], []
    for remaining, reset in _RESET_PAIRS:
        if reset not in lower:
            continue
        seconds = _parse_seconds(str(lower[reset]), now)
        if seconds is None:
            continue
        left = str(lower.get(remaining, "")).strip()
        if left == "0":
            exhausted.append(seconds)
        elif not left:
            unknown.append(seconds)
    if exhausted:
        return max(exhausted)
    return min(unknown) if unknown else None


def retry_after_from(headers: Mapping[str, str] | None, body: Any = None,
                     now: float | None = None) -> float | None:
    """Seconds the provider asked us to wait, from headers or (Gemini) the error body's
    RetryInfo detail; None when it did not say."""
    now = time.time() if now is None else now
    if headers:
        lower = {k.lower(): v for k, v in headers.items()}
        if "retry-after-ms" in lower:
            try:
                return max(0.0, float(lower["retry-after-ms"]) / 1000)
            except ValueError:
                pass
        if _RETRY_AFTER in lower:
            seconds = _parse_seconds(str(lower[_RETRY_AFTER]), now)
            if seconds is not None:
                return seconds
        seconds = _reset_wait(lower, now)
        if seconds is not None:
            return seconds
    if isinstance(body, Mapping):
        err = body.get("error")
        details = err.get("details") if isinstance(err, Mapping) else None
        for d in details or ():
            if isinstance(d, Mapping) and "retryDelay" in d:
                seconds = _parse_seconds(str(d["retryDelay"]), now)
                if seconds is not None:
                    return seconds
    return None
