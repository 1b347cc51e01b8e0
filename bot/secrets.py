"""Keeping secrets out of logs, metrics, reports and error messages.

Every secret the bot is configured with is registered here; a logging filter
replaces any occurrence of one in any log line, and `redact()` does the same for
text that leaves the process some other way (error messages, reports).
"""
from __future__ import annotations

import logging
import threading
from typing import Iterable

__all__ = ["mask", "register_secrets", "redact", "StreamRedactor", "RedactingFilter", "install_log_redaction"]

_lock = threading.Lock()
_secrets: set[str] = set()
_MIN_LEN = 6  # shorter values are not secrets worth matching (and would redact ordinary words)


def mask(secret: str | None) -> str:
    """A form safe to print: enough to tell two keys apart, never the key."""
    if not secret:
        return "(not set)"
    if len(secret) < 12:
        return "***"
    return f"{secret[:4]}…{secret[-2:]} ({len(secret)} chars)"


def register_secrets(values: Iterable[str | None]) -> None:
    with _lock:
        for v in values:
            if v and len(v) >= _MIN_LEN:
                _secrets.add(v)


def redact(text: str) -> str:
    """Replace every registered secret in `text` by a mask."""
    if not _secrets or not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, "[REDACTED]")
    return text


class StreamRedactor:
    """Redacts text that arrives in pieces (a streamed answer), where a secret may be
    split across two chunks: redacting each chunk alone would let it through.

    It holds back only a tail that could be the start of a secret (normally nothing, so
    chunks flow as they come), and never cuts through a secret it can already see.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, chunk: str) -> str:
        """Add a chunk; return what is now safe to show (possibly empty)."""
        buf = self._buffer + chunk
        with _lock:
            secrets = list(_secrets)
        cut = len(buf)
        for secret in secrets:  # hold back a tail that a secret could begin with
            i = buf.find(secret[0], max(0, len(buf) - len(secret) + 1))
            while i != -1:
                if secret.startswith(buf[i:]):
                    cut = min(cut, i)
                    break
                i = buf.find(secret[0], i + 1)
        for secret in secrets:  # never cut through a secret already in full view
            i = buf.find(secret, max(0, cut - len(secret) + 1))
            while i != -1 and i < cut:
                cut = max(cut, i + len(secret))
                i = buf.find(secret, i + 1)
        out, self._buffer = buf[:cut], buf[cut:]
        return redact(out)

    def flush(self) -> str:
        """The stream ended: release what was held back."""
        out, self._buffer = self._buffer, ""
        return redact(out)


class RedactingFilter(logging.Filter):
    """Rewrites the formatted message of every record so no secret reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string is not our problem to crash on
            return True
        clean = redact(msg)
        if record.exc_info and record.exc_info[1] is not None:
            # Exception texts (e.g. an SDK echoing a request) are redacted too.
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default), once."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
