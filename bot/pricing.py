"""What a reply cost: per-model token prices, shipped with their date and source and
overridable by the operator (config section [prices]).

An unknown model has an unknown price: `cost()` returns None, never 0, so a report
can say "unknown" instead of silently under-counting.
"""
from __future__ import annotations

import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .config import Config, ConfigError

__all__ = ["Price", "PriceBook", "DEFAULT_PRICES_PATH"]

DEFAULT_PRICES_PATH = Path(__file__).resolve().parent / "data" / "prices.toml"


@dataclass(frozen=True, slots=True)
class Price:
    input_per_m: float   # USD per million input tokens
    output_per_m: float  # USD per million output tokens
    date: str = ""
    source: str = ""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1_000_000


def _parse(table: Mapping[str, Any], where: str) -> dict[tuple[str, str], Price]:
    out: dict[tuple[str, str], Price] = {}
    for provider, models in table.items():
        if not isinstance(models, Mapping):
            raise ConfigError(f"{where}: [{provider}] must be a table of models")
        for model, entry in models.items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where}: {provider}.{model} must be a table with input and output")
            try:
                inp, outp = float(entry["input"]), float(entry["output"])
            except KeyError as e:
                raise ConfigError(f"{where}: {provider}.{model} is missing {e.args[0]!r}") from None
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {provider}.{model}: input/output must be numbers") from None
            if inp < 0 or outp < 0:
                raise ConfigError(f"{where}: {provider}.{model}: prices cannot be negative")
            out[(provider, model)] = Price(inp, outp, str(entry.get("date", "")), str(entry.get("source", "")))
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
