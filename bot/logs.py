"""Structured one-line logs: `provider=groq outcome=rate_limited retry_after=2.0 next=gemini`."""
from __future__ import annotations

import logging
import os
import sys

from .secrets import install_log_redaction

__all__ = ["kv", "setup_logging"]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def kv(**fields: object) -> str:
    """Format fields as `key=value` pairs, skipping None values."""
    return " ".join(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)


def setup_logging(level: str | None = None) -> None:
    """Log to stderr with secret redaction on every handler."""
    level = (level or os.environ.get("TIERBOT_LOG_LEVEL") or "INFO").upper()
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "telegram", "slack_bolt", "slack_sdk", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    install_log_redaction(root)
