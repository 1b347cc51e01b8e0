"""OpenAI-compatible endpoints declared by the operator in the config file, each under a
name of their choosing that `TIERBOT_CHAIN` and routes then use like a built-in provider:

    [llm.endpoints.local]                  # YAML: llm: {endpoints: {local: {...}}}
    base_url = "http://127.0.0.1:8000/v1"  # where /chat/completions lives
    key_env = "LOCAL_VLLM_KEY"             # the variable holding its key; omit for none
    models = ["Qwen/Qwen3-8B"]             # tried in order (TIERBOT_LOCAL_MODELS overrides)
    vision = false                         # true: every model sees images; or a list of models
    paid = false                           # a provider that costs money per message
    headers = {}                           # extra request headers, sent as they are

Every declaration is checked before anything is built: a bad one is refused with an
error naming the entry and the setting, and nothing starts.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import ConfigError

__all__ = ["Endpoint", "parse_endpoints"]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS = ("base_url", "key_env", "models", "vision", "paid", "headers")
# Names the bot uses for its own tiers in replies and reports.
_RESERVED = ("cache", "faq", "llm", "template", "templates", "handoff")


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    base_url: str
    key_env: str | None
    models: tuple[str, ...]
    vision: frozenset[str] = frozenset()   # "*" = every model
    paid: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


def _fail(name: str, message: str) -> ConfigError:
    return ConfigError(f"config [llm.endpoints.{name}]: {message}")


def _models(name: str, raw: Any) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(m, str) for m in items):
        raise _fail(name, f"models must be a list of model names, got {raw!r}")
    models = tuple(dict.fromkeys(m.strip() for m in items if m.strip()))
    if not models:
        raise _fail(name, "models must name at least one model")
    return models


def _one(name: str, entry: Any, reserved: tuple[str, ...]) -> Endpoint:
    if not _NAME.fullmatch(name):
        raise _fail(name, "the name must be 1-32 lower-case letters, digits, '-' or '_', starting with a letter")
    if name in reserved or name in _RESERVED:
        raise _fail(name, f"{name!r} is already a provider or tier name; choose another name")
    if not isinstance(entry, Mapping):
        raise _fail(name, "must be a table with base_url and models")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise _fail(name, f"unknown setting {unknown[0]!r} (known: {', '.join(_KEYS)})")
    url = entry.get("base_url")
    if not isinstance(url, str) or not url.strip():
        raise _fail(name, "base_url is required (e.g. \"http://127.0.0.1:8000/v1\")")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(name, f"base_url must be an http:// or https:// URL, got {url!r}")
    if parts.username or parts.password:
        # A key in the URL would end up in logs and in `tierbot check`'s output.
        raise _fail(name, "base_url must not carry credentials; name the key's variable in key_env")
    key_env = entry.get("key_env")
    if key_env is not None and (not isinstance(key_env, str) or not _VAR.fullmatch(key_env)):
        raise _fail(name, f"key_env must be the name of an environment variable (e.g. TOGETHER_API_KEY), "
                          f"got {key_env!r}")
    if "models" not in entry:
        raise _fail(name, "models is required (the model names to try, in order)")
    models = _models(name, entry["models"])
    raw_vision = entry.get("vision", False)
    if isinstance(raw_vision, bool):
        vision = frozenset({"*"}) if raw_vision else frozenset()
    elif isinstance(raw_vision, (list, tuple)) and all(isinstance(m, str) and m.strip() for m in raw_vision):
        vision = frozenset(m.strip() for m in raw_vision)
    else:
        raise _fail(name, f"vision must be true, false or a list of model names, got {raw_vision!r}")
    paid = entry.get("paid", False)
    if not isinstance(paid, bool):
        raise _fail(name, f"paid must be true or false, got {paid!r}")
    headers = entry.get("headers", {}) or {}
    if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and "\n" not in k + v for k, v in headers.items()):
        raise _fail(name, "headers must be a table of header names to text values")
    return Endpoint(name, url.strip().rstrip("/"), key_env, models, vision, paid, dict(headers))


def parse_endpoints(raw: Any, reserved: tuple[str, ...] = ()) -> dict[str, Endpoint]:
    """All declared endpoints, or a ConfigError naming the first bad one."""
    if raw in (None, {}):
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("config [llm.endpoints] must be a table of named endpoints")
    endpoints = {str(name): _one(str(name), entry, tuple(reserved)) for name, entry in raw.items()}
    by_var: dict[str, str] = {}
    for name in endpoints:  # "my-vllm" and "my_vllm" would share TIERBOT_MY_VLLM_MODELS
        var = name.upper().replace("-", "_")
        if var in by_var:
            raise _fail(name, f"its settings variables (TIERBOT_{var}_MODELS) are those of {by_var[var]!r}; "
                              "choose another name")
        by_var[var] = name
    return endpoints
