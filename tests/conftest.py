"""Shared fixtures. Every test runs with its own data dir and no API keys from the
developer's environment, so a real key can never be used (or leaked) by a test."""
from __future__ import annotations

import os

import pytest

_KEYS = ("GROQ_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "TELEGRAM_BOT_TOKEN",
         "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "TIERBOT_API_TOKEN", "TIERBOT_CONFIG",
         "DATABASE_URL", "REDIS_URL")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    for key in _KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TIERBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    yield


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    """A minimal environment for `SupportBot.from_env(env)`: no keys, private data dir."""
    return {"TIERBOT_DATA_DIR": str(tmp_path / "data"), "PATH": os.environ.get("PATH", "")}
