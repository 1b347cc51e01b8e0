"""Building a bot whose LLM chain points at `FakeProviders`, for tests and benchmarks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.app import build_bot
from bot.config import Config
from bot.pipeline import SupportBot

from .llm_servers import FakeProviders

__all__ = ["llm_env", "make_bot", "RecordingLedger", "LEDGER", "install_recording_ledger"]

MODELS = {"groq": "llama-3.3-70b-versatile", "gemini": "gemini-2.5-flash", "claude": "claude-haiku-4-5"}


def llm_env(fp: FakeProviders, data_dir: Path | str, *, chain: str = "groq,gemini,claude",
            deadline: float = 1.5, attempt: float = 0.5, refused: set[str] | frozenset[str] = frozenset(),
            one_model: bool = True, **extra: str) -> dict[str, str]:
    env = {**fp.env(refused=refused), "TIERBOT_DATA_DIR": str(data_dir), "TIERBOT_CHAIN": chain,
           "TIERBOT_DEADLINE_S": str(deadline), "TIERBOT_ATTEMPT_TIMEOUT_S": str(attempt)}
    if one_model:
        env.update(TIERBOT_GROQ_MODELS=MODELS["groq"], TIERBOT_GEMINI_MODELS=MODELS["gemini"],
                   TIERBOT_CLAUDE_MODELS=MODELS["claude"])
    env.update(extra)
    return env


class RecordingLedger:
    """Stands in for the ledger's `record_event` (services["ledger"])."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any] | None]] = []

    async def record_event(self, kind: str, conversation_id: str = "", data: dict | None = None,
                           ts: float | None = None) -> None:
        self.events.append((kind, conversation_id, data))


LEDGER: dict[str, RecordingLedger] = {}


def install_recording_ledger(parts: Any) -> None:
    """A plugin (listed before the LLM plugin) that provides services["ledger"]."""
    parts.services["ledger"] = LEDGER.setdefault("current", RecordingLedger())


def make_bot(env: dict[str, str], *extra_plugins: str, ledger: bool = False) -> SupportBot:
    plugins = (*(("fakes.llm_bot:install_recording_ledger",) if ledger else ()), *extra_plugins,
               "bot.llm.plugin:install")
    if ledger:
        LEDGER["current"] = RecordingLedger()
    return build_bot(Config.from_env(env), plugins=plugins)
