"""LLM settings, read once from `Config` and validated: the chain, each provider's
models (tried in order), which models see images, and named routes.

Environment (wins over the config file):
  TIERBOT_CHAIN               groq,gemini,claude (any order, any subset; also openrouter
                              and any endpoint declared under [llm.endpoints])
  TIERBOT_GROQ_MODELS         comma list, tried in order (also TIERBOT_GEMINI_MODELS,
                              TIERBOT_CLAUDE_MODELS, TIERBOT_OPENROUTER_MODELS and
                              TIERBOT_<NAME>_MODELS for a declared endpoint)
  TIERBOT_<P>_VISION_MODELS   models of provider P that accept images ("*" = all, "none")
  TIERBOT_OPENROUTER_REFERER, TIERBOT_OPENROUTER_TITLE
                              OpenRouter's HTTP-Referer / X-Title attribution headers
  TIERBOT_ROUTE_<NAME>        a named chain, e.g. TIERBOT_ROUTE_STAFF=claude,gemini:gemini-2.5-pro
  TIERBOT_ATTEMPT_TIMEOUT_S   cap on one attempt (default 6); the deadline caps it further
  A 429 (or 503/529) moves the message to the next step at once. A Retry-After or reset
  header holds that model for everyone until it passes, then lets one probe through.
  TIERBOT_RATE_WAIT_MAX_S     when every step is held by such a wait, the soonest is waited out
                              if it is at most this (default 2) and fits the deadline
  TIERBOT_PAID_PROVIDERS      providers that cost money (default claude; "none"; plus endpoints
                              declared with paid = true): tried after
                              waiting up to TIERBOT_FREE_WAIT_S (default 0.5; 0 = speed first)
                              for a rate-limited free one
  TIERBOT_STALL_DETECTION     leave a provider that went silent before the attempt timeouts
                              (default on; TIERBOT_STALL_FACTOR 2 x its p95 latency, at least
                              TIERBOT_STALL_FLOOR_S 1 s); TIERBOT_SLOW_START (default 2)
                              attempts at most in flight on a provider that has not answered yet
  TIERBOT_PROBE_GUARD         no customer is a probe (default on): a breaker's probe, or an attempt
                              on a provider not heard from yet, gets the provider's p95 latency,
                              at least TIERBOT_PROBE_FLOOR_S (1 s); then the message goes on to
                              the next provider while the probe carries on and decides the breaker
  TIERBOT_MAX_TOKENS, TIERBOT_FILTER_FALLTHROUGH, TIERBOT_HEDGING, TIERBOT_HEDGE_BUDGET,
  TIERBOT_BREAKER_THRESHOLD, TIERBOT_BREAKER_COOLDOWN_S, TIERBOT_LLM_POOL
Config file: an [llm] table with the same settings in lower case (chain = [...],
[llm.models], [llm.vision], [llm.routes], attempt_timeout_s = ..., ...), and one
[llm.endpoints.<name>] table per OpenAI-compatible endpoint (see `Endpoint`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, ConfigError
from ..secrets import register_secrets
from .endpoints import Endpoint, parse_endpoints

__all__ = ["PROVIDERS", "BUILTIN", "Step", "LLMSettings", "KEY_VARS", "BASE_URL_VARS", "Endpoint", "models_var"]

PROVIDERS = ("groq", "gemini", "claude")  # the default chain
BUILTIN = (*PROVIDERS, "openrouter")       # every provider known without a declaration
KEY_VARS = {"groq": "GROQ_API_KEY", "gemini": "GEMINI_API_KEY", "claude": "ANTHROPIC_API_KEY",
            "openrouter": "OPENROUTER_API_KEY"}
BASE_URL_VARS = {"groq": "GROQ_BASE_URL", "gemini": "GEMINI_BASE_URL", "claude": "ANTHROPIC_BASE_URL",
                 "openrouter": "OPENROUTER_BASE_URL"}
ALIASES = {"anthropic": "claude", "google": "gemini"}

# Current, non-deprecated models as of 2026-11-25 (README "Models and prices"); the cheap,
# fast one first, a stronger one as fallback. Operators override freely.
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "groq": ("openai/gpt-oss-20b", "openai/gpt-oss-120b"),
    "gemini": ("gemini-3.5-flash-lite", "gemini-3.8-flash"),
    "claude": ("claude-haiku-5-5", "claude-sonnet-5-5"),
    # The same open-weight models as Groq's defaults, served on OpenRouter by several hosts.
    "openrouter": ("openai/gpt-oss-20b", "openai/gpt-oss-120b"),
}
# Groq's default models read text only; images go to Gemini and Claude, whose models all see them.
DEFAULT_VISION: dict[str, tuple[str, ...]] = {
    "groq": (),
    "gemini": ("*",),
    "claude": ("*",),
    "openrouter": (),
}


def models_var(provider: str) -> str:
    """The variable that lists a provider's models: TIERBOT_GROQ_MODELS, TIERBOT_MY_VLLM_MODELS."""
    return f"TIERBOT_{provider.upper().replace('-', '_')}_MODELS"


@dataclass(frozen=True, slots=True)
class Step:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


def _split(raw: Any, name: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, (list, tuple)):
        items = [str(p).strip() for p in raw]
    else:
        raise ConfigError(f"{name} must be a comma-separated list, got {raw!r}")
    items = [p for p in items if p]
    if not items:
        raise ConfigError(f"{name} must name at least one entry")
    return tuple(items)


def _provider(name: str, setting: str, known: tuple[str, ...] = BUILTIN) -> str:
    p = ALIASES.get(name.lower(), name.lower())
    if p not in known:
        raise ConfigError(f"{setting}: unknown provider {name!r} (known: {', '.join(known)}; "
                          f"declare an OpenAI-compatible endpoint under [llm.endpoints.{p}])")
    return p


@dataclass(frozen=True)
class LLMSettings:
    chain: tuple[str, ...] = PROVIDERS
    models: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    vision: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {p: frozenset(v) for p, v in DEFAULT_VISION.items()})
    routes: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)
    attempt_timeout_s: float = 6.0
    reserve_s: float = 0.1          # kept back for the templates tier (on top of the pipeline's own)
    min_attempt_s: float = 0.15     # no attempt is started with less time than this
    max_tokens: int = 512
    filter_fallthrough: bool = True
    rate_wait_max_s: float = 2.0    # all steps rate-limited: wait out the soonest if at most this
    free_wait_s: float = 0.5        # seconds of waiting on a limited free provider worth avoiding a paid one
    hedging: bool = False
    hedge_budget: float = 0.05
    hedge_min_samples: int = 20
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 10.0
    breaker_max_cooldown_s: float = 300.0
    pool: int = 100
    # Stall detection and slow start (stalls.py): leave a silent host before its timeouts.
    stall_detection: bool = True
    stall_factor: float = 2.0
    stall_floor_s: float = 1.0
    slow_start: int = 2             # 0 = off
    # No customer is a probe (chain.py): a probe, or an attempt on a host not heard from yet,
    # gets the host's p95 latency (at least this floor) before its message goes on without it.
    probe_guard: bool = True
    probe_floor_s: float = 1.0
    # The groq SDK's HTTP backend: "aiohttp" (about a third of the CPU per call of "httpx",
    # BENCHMARKS.md) or "httpx", the SDK's default, kept as a fallback and for comparison.
    groq_transport: str = "aiohttp"
    # OpenAI-compatible endpoints declared in the config file, by the name the chain uses.
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    # OpenRouter's attribution headers (HTTP-Referer, X-Title); not sent when unset.
    openrouter_referer: str | None = None
    openrouter_title: str | None = None

    # Providers that cost money per message, the one set the chain reads: TIERBOT_PAID_PROVIDERS
    # (default claude; seed 004: "only used if others fail") and endpoints declared `paid = true`.
    paid: frozenset[str] = frozenset({"claude"})

    @property
    def in_use(self) -> tuple[str, ...]:
        """Every provider a route can send to: the chain's, then those only a named route names."""
        extra = (s.provider for steps in self.routes.values() for s in steps)
        return tuple(dict.fromkeys((*self.chain, *extra)))

    def key_var(self, provider: str) -> str | None:
        """The variable holding the provider's key (None: a declared endpoint with no key)."""
        if provider in self.endpoints:
            return self.endpoints[provider].key_env
        return KEY_VARS.get(provider)

    def is_vision(self, step: Step) -> bool:
        v = self.vision.get(step.provider, frozenset())
        return "*" in v or step.model in v

    def route(self, name: str) -> tuple[Step, ...]:
        return self.routes.get(name) or self.routes["customer"]

    @classmethod
    def from_config(cls, config: Config) -> "LLMSettings":
        sec = config.section("llm")

        def pick(env: str, key: str, default: Any) -> Any:
            value = config.get(env)
            return value if value is not None else sec.get(key, default)

        endpoints = parse_endpoints(sec.get("endpoints", {}), reserved=(*BUILTIN, *ALIASES))
        # A declared endpoint's key is a secret like the built-in ones: redacted everywhere.
        register_secrets(config.get(e.key_env) for e in endpoints.values() if e.key_env)
        known = (*BUILTIN, *endpoints)
        chain = tuple(_provider(p, "TIERBOT_CHAIN", known)
                      for p in _split(pick("TIERBOT_CHAIN", "chain", ",".join(PROVIDERS)), "TIERBOT_CHAIN"))
        if len(set(chain)) != len(chain):
            raise ConfigError(f"TIERBOT_CHAIN names a provider twice: {','.join(chain)}")
        file_models = sec.get("models", {}) or {}
        file_vision = sec.get("vision", {}) or {}
        if not isinstance(file_models, Mapping) or not isinstance(file_vision, Mapping):
            raise ConfigError("config [llm.models] and [llm.vision] must be tables")
        default_models = {**DEFAULT_MODELS, **{n: e.models for n, e in endpoints.items()}}
        default_vision = {**DEFAULT_VISION, **{n: tuple(e.vision) for n, e in endpoints.items()}}
        models, vision = {}, {}
        for p in known:
            env = models_var(p)
            alt = "TIERBOT_ANTHROPIC_MODELS" if p == "claude" else env
            raw = config.get(env) or config.get(alt) or file_models.get(p) or default_models[p]
            models[p] = _split(raw, env)
            venv = f"TIERBOT_{p.upper().replace('-', '_')}_VISION_MODELS"
            vraw = config.get(venv) if config.get(venv) is not None else file_vision.get(p, default_vision[p])
            none = vraw in ((), []) or (isinstance(vraw, str) and vraw.strip().lower() == "none")
            vision[p] = frozenset() if none else frozenset(_split(vraw, venv))

        def expand(entries: tuple[str, ...], setting: str) -> tuple[Step, ...]:
            steps: list[Step] = []
            for entry in entries:
                prov, _, model = entry.partition(":")
                prov = _provider(prov.strip(), setting, known)
                for m in ([model.strip()] if model else models[prov]):
                    if Step(prov, m) not in steps:
                        steps.append(Step(prov, m))
            return tuple(steps)

        routes: dict[str, tuple[Step, ...]] = {"customer": expand(chain, "TIERBOT_CHAIN")}
        # Images: the same chain, plus each provider's vision models it would otherwise lack.
        image: list[str] = []
        for p in chain:
            image.append(p)
            image += [f"{p}:{m}" for m in sorted(vision[p]) if m != "*" and m not in models[p]]
        routes["image"] = expand(tuple(image), "image route")
        routes["staff"] = routes["customer"]
        file_routes = sec.get("routes", {}) or {}
        if not isinstance(file_routes, Mapping):
            raise ConfigError("config [llm.routes] must be a table of name = [entries]")
        for name, entries in file_routes.items():
            routes[str(name)] = expand(_split(entries, f"[llm.routes] {name}"), f"[llm.routes] {name}")
        for var, value in config.env.items():
            if var.startswith("TIERBOT_ROUTE_") and value:
                routes[var[len("TIERBOT_ROUTE_"):].lower()] = expand(_split(value, var), var)

        def num(env: str, key: str, default: float, minimum: float) -> float:
            if config.get(env) is not None:
                return config.get_float(env, default, minimum=minimum)
            raw = sec.get(key, default)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"[llm] {key} must be a number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"[llm] {key} must be at least {minimum}, got {value}")
            return value

        def flag(env: str, key: str, default: bool) -> bool:
            if config.get(env) is not None:
                return config.get_bool(env, default)
            raw = sec.get(key, default)
            if not isinstance(raw, bool):
                raise ConfigError(f"[llm] {key} must be true or false, got {raw!r}")
            return raw

        def text(env: str, key: str) -> str | None:
            raw = pick(env, key, None)
            if raw is not None and (not isinstance(raw, str) or "\n" in raw or "\r" in raw):
                raise ConfigError(f"{env} ([llm] {key}) must be one line of text, got {raw!r}")
            return raw.strip() or None if raw is not None else None

        # A declared endpoint's `paid = true` makes it a paid provider (joining any set elsewhere).
        endpoint_paid = frozenset(name for name, e in endpoints.items() if e.paid)
        budget = num("TIERBOT_HEDGE_BUDGET", "hedge_budget", 0.05, 0.0)
        if budget > 1:
            raise ConfigError(f"TIERBOT_HEDGE_BUDGET is a fraction of traffic (0..1), got {budget}")
        paid_raw = pick("TIERBOT_PAID_PROVIDERS", "paid_providers", "claude")
        none = isinstance(paid_raw, str) and paid_raw.strip().lower() in ("", "none")
        none = none or paid_raw in ((), [])
        paid = frozenset() if none else frozenset(
            _provider(p, "TIERBOT_PAID_PROVIDERS", known) for p in _split(paid_raw, "TIERBOT_PAID_PROVIDERS"))
        groq_transport = str(pick("TIERBOT_GROQ_TRANSPORT", "groq_transport", "aiohttp")).strip().lower()
        if groq_transport not in ("aiohttp", "httpx"):
            raise ConfigError(f"TIERBOT_GROQ_TRANSPORT must be aiohttp or httpx, got {groq_transport!r}")
        return cls(
            chain=chain, models=models, vision=vision, routes=routes,
            attempt_timeout_s=num("TIERBOT_ATTEMPT_TIMEOUT_S", "attempt_timeout_s", 6.0, 0.05),
            max_tokens=int(num("TIERBOT_MAX_TOKENS", "max_tokens", 512, 1)),
            filter_fallthrough=flag("TIERBOT_FILTER_FALLTHROUGH", "filter_fallthrough", True),
            rate_wait_max_s=num("TIERBOT_RATE_WAIT_MAX_S", "rate_wait_max_s", 2.0, 0.0),
            free_wait_s=num("TIERBOT_FREE_WAIT_S", "free_wait_s", 0.5, 0.0),
            hedging=flag("TIERBOT_HEDGING", "hedging", False),
            hedge_budget=budget,
            breaker_threshold=int(num("TIERBOT_BREAKER_THRESHOLD", "breaker_threshold", 3, 1)),
            breaker_cooldown_s=num("TIERBOT_BREAKER_COOLDOWN_S", "breaker_cooldown_s", 10.0, 0.01),
            pool=int(num("TIERBOT_LLM_POOL", "pool", 100, 1)),
            stall_detection=flag("TIERBOT_STALL_DETECTION", "stall_detection", True),
            stall_factor=num("TIERBOT_STALL_FACTOR", "stall_factor", 2.0, 1.0),
            stall_floor_s=num("TIERBOT_STALL_FLOOR_S", "stall_floor_s", 1.0, 0.01),
            slow_start=int(num("TIERBOT_SLOW_START", "slow_start", 2, 0)),
            probe_guard=flag("TIERBOT_PROBE_GUARD", "probe_guard", True),
            probe_floor_s=num("TIERBOT_PROBE_FLOOR_S", "probe_floor_s", 1.0, 0.01),
            groq_transport=groq_transport,
            endpoints=endpoints,
            paid=paid | endpoint_paid,
            openrouter_referer=text("TIERBOT_OPENROUTER_REFERER", "openrouter_referer"),
            openrouter_title=text("TIERBOT_OPENROUTER_TITLE", "openrouter_title"),
        )
