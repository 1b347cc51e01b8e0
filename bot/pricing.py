"""What a reply cost: per-model token prices, shipped with their date and source and
overridable by the operator (config section [prices]).

An unknown model has an unknown price: `cost()` returns None, never 0, so a report
can say "unknown" instead of silently under-counting. A model whose price depends on the
prompt's length carries both rates and the threshold (`above_tokens`), so a long prompt is
not charged at the short-prompt rate.
"""
from __future__ import annotations

import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .config import Config, ConfigError

__all__ = ["Price", "PriceBook", "DEFAULT_PRICES_PATH", "STATUSES"]

DEFAULT_PRICES_PATH = Path(__file__).resolve().parent / "data" / "prices.toml"


STATUSES = ("active", "preview", "legacy", "deprecated", "retired")


@dataclass(frozen=True, slots=True)
class Price:
    """One model's price. Some providers price a whole request higher when its prompt is
    long (Claude Haiku 5.5 above 100,000 prompt tokens, Gemini Pro above 200,000): then
    `above_tokens` is that threshold and a request whose prompt has MORE input tokens than
    it pays `input_above`/`output_above` for every token, output included."""

    input_per_m: float   # USD per million input tokens
    output_per_m: float  # USD per million output tokens
    date: str = ""
    source: str = ""
    above_tokens: int | None = None
    input_above_per_m: float | None = None
    output_above_per_m: float | None = None
    status: str = ""     # one of STATUSES, or "" when not stated
    note: str = ""

    def rates(self, input_tokens: int) -> tuple[float, float]:
        """(input, output) USD per million tokens for a request with this many prompt tokens."""
        if self.above_tokens is not None and input_tokens > self.above_tokens:
            assert self.input_above_per_m is not None and self.output_above_per_m is not None
            return self.input_above_per_m, self.output_above_per_m
        return self.input_per_m, self.output_per_m

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        inp, outp = self.rates(input_tokens)
        return (input_tokens * inp + output_tokens * outp) / 1_000_000


def _number(entry: Mapping[str, Any], key: str, name: str) -> float:
    raw = entry[key]
    if isinstance(raw, bool):
        raise ConfigError(f"{name}: {key} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {key} must be a number, got {raw!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name}: {key} must be a finite price of 0 or more, got {raw!r}")
    return value


def _entry(entry: Mapping[str, Any], name: str) -> Price:
    for key in ("input", "output"):
        if key not in entry:
            raise ConfigError(f"{name} is missing {key!r}")
    inp, outp = _number(entry, "input", name), _number(entry, "output", name)
    tier = [k for k in ("above_tokens", "input_above", "output_above") if k in entry]
    above = inp_above = out_above = None
    if tier:
        if len(tier) != 3:
            raise ConfigError(f"{name}: a long-prompt tier needs above_tokens, input_above and output_above "
                              f"together (got only {', '.join(tier)})")
        raw = entry["above_tokens"]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            raise ConfigError(f"{name}: above_tokens must be a whole number of tokens above 0, got {raw!r}")
        above = raw
        inp_above, out_above = _number(entry, "input_above", name), _number(entry, "output_above", name)
    status = str(entry.get("status", "")).strip().lower()
    if status and status not in STATUSES:
        raise ConfigError(f"{name}: status must be one of {', '.join(STATUSES)}, got {entry['status']!r}")
    return Price(inp, outp, str(entry.get("date", "")), str(entry.get("source", "")),
                 above, inp_above, out_above, status, str(entry.get("note", "")))


def _parse(table: Mapping[str, Any], where: str) -> dict[tuple[str, str], Price]:
    """All entries of a prices table, or a ConfigError naming the first bad one (so a bad
    operator file changes nothing)."""
    out: dict[tuple[str, str], Price] = {}
    for provider, models in table.items():
        if not isinstance(models, Mapping):
            raise ConfigError(f"{where}: [{provider}] must be a table of models")
        for model, entry in models.items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where}: {provider}.{model} must be a table with input and output")
            out[(provider, model)] = _entry(entry, f"{where}: {provider}.{model}")
    return out


class PriceBook:
    """`services["prices"]`: per-model prices plus a running average cost per message."""

    def __init__(self, prices: Mapping[tuple[str, str], Price]) -> None:
        self.prices = dict(prices)
        self._spent: dict[str, float] = defaultdict(float)
        self._messages: dict[str, int] = defaultdict(int)

    @classmethod
    def load(cls, config: Config | None = None, path: Path = DEFAULT_PRICES_PATH) -> "PriceBook":
        prices = _parse(tomllib.loads(path.read_text(encoding="utf-8")), str(path))
        if config is not None:
            prices.update(_parse(config.section("prices"), "config [prices]"))
        return cls(prices)

    def price(self, provider: str, model: str) -> Price | None:
        return self.prices.get((provider, model))

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD for these tokens, or None when the model's price is unknown."""
        if not input_tokens and not output_tokens:
            return 0.0
        p = self.prices.get((provider, model))
        return None if p is None else p.cost(input_tokens, output_tokens)

    def observe(self, provider: str, cost_usd: float | None) -> None:
        """Remember what one answered message cost (for budget forecasts)."""
        if cost_usd is not None:
            self._spent[provider] += cost_usd
            self._messages[provider] += 1

    def average_cost_per_message(self, provider: str | None = None) -> float | None:
        """Mean observed cost of an answered message (all providers when None)."""
        keys = [provider] if provider else list(self._messages)
        n = sum(self._messages[k] for k in keys)
        return None if n == 0 else sum(self._spent[k] for k in keys) / n
