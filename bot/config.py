"""Configuration, read once and passed in.

Sources, later wins: built-in defaults < the config file named by `TIERBOT_CONFIG`
(TOML or YAML) < environment variables (a `.env` file in the working directory is
loaded into them first, without overriding what is already set).

Each subsystem reads its own section through `Config.section(name)` and its own
variables through `Config.get(...)`, so adding a setting never means editing a
central god-object.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .secrets import mask, register_secrets

__all__ = ["Config", "ConfigError", "SECRET_VARS"]

# Every variable that holds a secret: registered for redaction, masked when shown.
SECRET_VARS = (
    "GROQ_API_KEY",
    "GEMINI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENROUTER_API_KEY",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "TIERBOT_API_TOKEN",
)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it (never its secret value)."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tierbot"


def _load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"TIERBOT_CONFIG: cannot read {path}: {e.strerror}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"TIERBOT_CONFIG: {path} is not valid: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"TIERBOT_CONFIG: {path} must hold a table/mapping at the top level")
    return data


@dataclass(frozen=True)
class Config:
    """Environment plus config file, validated for the settings the core owns."""

    env: Mapping[str, str]
    file: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> "Config":
        if environ is None:
            if dotenv:
                from dotenv import load_dotenv

                load_dotenv(Path.cwd() / ".env", override=False)
            environ = os.environ
        env = dict(environ)
        path = env.get("TIERBOT_CONFIG")
        file = _load_file(Path(path)) if path else {}
        cfg = cls(env=env, file=file)
        register_secrets(cfg.get(name) for name in SECRET_VARS)
        cfg.validate()
        return cfg

    # -- raw access -----------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        """An environment variable; empty strings count as unset."""
        value = self.env.get(name)
        return value if value not in (None, "") else default

    def section(self, name: str) -> dict[str, Any]:
        value = self.file.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"config section [{name}] must be a table")
        return value

    def get_float(self, name: str, default: float, *, minimum: float | None = None) -> float:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def get_int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        return int(self.get_float(name, default, minimum=minimum))

    def get_bool(self, name: str, default: bool) -> bool:
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    # -- core settings ----------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return Path(self.get("TIERBOT_DATA_DIR") or _default_data_dir())

    @property
    def deadline_s(self) -> float:
        return self.get_float("TIERBOT_DEADLINE_S", 12.0, minimum=0.05)

    @property
    def tz(self) -> ZoneInfo:
        name = self.get("TIERBOT_TZ", "UTC")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"TIERBOT_TZ: unknown time zone {name!r}") from None

    @property
    def business_profile_path(self) -> Path | None:
        p = self.get("TIERBOT_BUSINESS_PROFILE") or self.section("bot").get("business_profile")
        return Path(p) if p else None

    @property
    def templates_dir(self) -> Path | None:
        """Operator's template folder, searched before the shipped templates."""
        p = self.get("TIERBOT_TEMPLATES_DIR") or self.section("bot").get("templates_dir")
        return Path(p) if p else None

    def validate(self) -> None:
        self.deadline_s
        self.tz

    def masked(self, name: str) -> str:
        return mask(self.get(name))

    def __repr__(self) -> str:  # never print the environment (it holds keys)
        return f"Config(file_sections={sorted(self.file)}, data_dir={str(self.data_dir)!r})"
