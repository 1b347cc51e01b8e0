"""Failure classification from status codes, error bodies and rate-limit headers."""
from __future__ import annotations

import pytest

from bot.llm.errors import classify_status, retry_after_from


@pytest.mark.parametrize("status, body, expected", [
    (429, {"error": {"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"}}, "rate_limited"),
    (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}}, "rate_limited"),
    (400, {"error": {"code": 400, "status": "FAILED_PRECONDITION", "message": "quota exceeded for this project"}}, "rate_limited"),
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "overloaded"),
    (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded."}}, "overloaded"),
    (500, {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}, "server_error"),
    (502, None, "server_error"),
    (504, None, "timeout"),
    (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, "auth"),
    (403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}}, "auth"),
    # Gemini answers a bad key with 400 API_KEY_INVALID, not 401.
    (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid. Please pass a valid API key."}}, "auth"),
    (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}, "bad_request"),
    (400, {"error": {"message": "blocked by safety settings", "type": "invalid_request_error"}}, "content_filtered"),
])
def test_classify(status, body, expected):
    assert classify_status(status, body) == expected


NOW = 1_700_000_000.0


@pytest.mark.parametrize("headers, body, expected", [
    ({"Retry-After": "2"}, None, 2.0),
    ({"retry-after-ms": "1500"}, None, 1.5),
    ({"x-ratelimit-reset-tokens": "7.66s"}, None, 7.66),
    ({"x-ratelimit-reset-requests": "2m59.56s"}, None, 179.56),
    ({"anthropic-ratelimit-requests-reset": "2023-11-14T22:13:30Z"}, None, 10.0),
    ({"Retry-After": "Tue, 14 Nov 2023 22:13:25 GMT"}, None, 5.0),
    ({}, {"error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31s"}]}}, 31.0),
    ({}, None, None),
    ({"Retry-After": "soon"}, None, None),
    # Only the limit that ran out decides how long to wait:
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m59.56s",
      "x-ratelimit-remaining-tokens": "4100", "x-ratelimit-reset-tokens": "7.66s"}, None, 179.56),
    ({"x-ratelimit-remaining-requests": "14370", "x-ratelimit-reset-requests": "2m59.56s",
      "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "7.66s"}, None, 7.66),
    # ...and when the headers don't say which, the soonest reset (a probe finds out).
    ({"x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-reset-tokens": "7.66s"}, None, 7.66),
    # An explicit Retry-After always wins over reset headers.
    ({"Retry-After": "3", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m"}, None, 3.0),
])
def test_retry_after(headers, body, expected):
    got = retry_after_from(headers, body, now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)
