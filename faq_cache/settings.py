"""The FAQ cache's settings, read from `bot.config.Config` (env wins over the [faq] section)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.config import Config, ConfigError

from .suggestions import SUGGEST_MAX, SuggestionSettings


__all__ = ["FaqSettings", "MATCHERS", "describe_matcher"]

MATCHERS = ("auto", "lexical", "semantic")


@dataclass(frozen=True)
class FaqSettings:
    directory: Path
    threshold: float | None = None  # None: shipped threshold for the FAQ's size
    greetings: bool = True
    learned: bool = True
    learned_ttl_s: float = 3600.0
    learned_max_entries: int = 1000
    suggestions: SuggestionSettings = SuggestionSettings()
    matcher: str = "auto"  # auto: semantic when the extra is installed; lexical; semantic (required)

    @classmethod
    def from_config(cls, config: Config) -> "FaqSettings":
        """TIERBOT_FAQ_THRESHOLD, TIERBOT_GREETINGS, TIERBOT_LEARNED_CACHE (on/off),
        TIERBOT_LEARNED_CACHE_TTL_S, TIERBOT_LEARNED_CACHE_MAX, TIERBOT_SUGGESTIONS (how many "Did you
        mean…?" entries to offer, 0 = off), TIERBOT_SUGGEST_FLOOR, TIERBOT_FAQ_MATCHER; same keys in [faq]
        without prefix."""
        section = config.section("faq")
        # The config file's [faq] values act as defaults for the environment variables.
        env = dict(config.env)
        for key, name in (("threshold", "TIERBOT_FAQ_THRESHOLD"), ("greetings", "TIERBOT_GREETINGS"),
                          ("learned_cache", "TIERBOT_LEARNED_CACHE"), ("learned_ttl_s", "TIERBOT_LEARNED_CACHE_TTL_S"),
                          ("learned_max", "TIERBOT_LEARNED_CACHE_MAX"), ("suggestions", "TIERBOT_SUGGESTIONS"),
                          ("suggest_floor", "TIERBOT_SUGGEST_FLOOR"), ("matcher", "TIERBOT_FAQ_MATCHER")):
            if key in section and not config.get(name):
                value = section[key]
                env[name] = ("on" if value else "off") if isinstance(value, bool) else str(value)
        cfg = Config(env=env, file=config.file)
        threshold = cfg.get_float("TIERBOT_FAQ_THRESHOLD", -1.0) if cfg.get("TIERBOT_FAQ_THRESHOLD") else None
        if threshold is not None and threshold < 0:
            raise ConfigError(f"TIERBOT_FAQ_THRESHOLD must be at least 0, got {threshold}")
        matcher = (cfg.get("TIERBOT_FAQ_MATCHER") or "auto").strip().lower()
        if matcher not in MATCHERS:
            raise ConfigError(f"TIERBOT_FAQ_MATCHER must be one of {', '.join(MATCHERS)}, got {matcher!r}")
        if matcher == "semantic":
            from .encoder import load_encoder, encoder_status

            if load_encoder() is None:
                raise ConfigError(f"TIERBOT_FAQ_MATCHER=semantic but the encoder is not available: {encoder_status()}")
        return cls(
            matcher=matcher,
            directory=config.data_dir / "faq",
            threshold=threshold,
            greetings=cfg.get_bool("TIERBOT_GREETINGS", True),
            learned=cfg.get_bool("TIERBOT_LEARNED_CACHE", True),
            learned_ttl_s=cfg.get_float("TIERBOT_LEARNED_CACHE_TTL_S", 3600.0, minimum=1.0),
            learned_max_entries=cfg.get_int("TIERBOT_LEARNED_CACHE_MAX", 1000, minimum=1),
            suggestions=_suggestion_settings(cfg),
        )


def _suggestion_settings(cfg: Config) -> SuggestionSettings:
    count = cfg.get_int("TIERBOT_SUGGESTIONS", SUGGEST_MAX, minimum=0)
    if count > 10:  # a list longer than that is no help (and Telegram shows one button a row)
        raise ConfigError(f"TIERBOT_SUGGESTIONS must be between 0 and 10, got {count}")
    floor = cfg.get_float("TIERBOT_SUGGEST_FLOOR", 0.0) if cfg.get("TIERBOT_SUGGEST_FLOOR") else None
    return SuggestionSettings(enabled=count > 0, max_suggestions=count, floor=floor)


def describe_matcher(settings: FaqSettings) -> str:
    """One line for `tierbot check`: which FAQ matcher this configuration uses, and why."""
    if settings.matcher == "lexical":
        return "lexical (TIERBOT_FAQ_MATCHER=lexical)"
    from .encoder import encoder_status

    return encoder_status()
