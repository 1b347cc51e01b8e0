"""The one Jinja environment every template goes through.

Sandboxed, because operators edit templates and customer text is passed into them:
customer text is always *data* (a variable), never template source, so a customer
typing `{{ 7*7 }}` gets those characters back, not 49.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from templates import TEMPLATES_DIR

from .config import Config, ConfigError

__all__ = ["Renderer", "load_business_profile", "DEFAULT_PROFILE_PATH"]

DEFAULT_PROFILE_PATH = Path(__file__).resolve().parent / "data" / "business.yaml"


def load_business_profile(path: Path | None) -> dict[str, Any]:
    """The operator's business profile (company, products, policies, hours, contact)."""
    path = path or DEFAULT_PROFILE_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"business profile {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"business profile {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"business profile {path} must be a mapping")
    return data


class Renderer:
    """Renders named templates with the business profile always available as `business`."""

    def __init__(self, operator_dir: Path | None = None, profile: dict[str, Any] | None = None,
                 *, autoescape: bool = False) -> None:
        loaders = [FileSystemLoader(str(operator_dir))] if operator_dir else []
        loaders.append(FileSystemLoader(str(TEMPLATES_DIR)))
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=autoescape,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.profile = profile or {}

    @classmethod
    def from_config(cls, config: Config) -> "Renderer":
        return cls(config.templates_dir, load_business_profile(config.business_profile_path))

    def has(self, name: str) -> bool:
        try:
            self.env.get_template(name)
            return True
        except TemplateNotFound:
            return False

    def render(self, name: str, **context: Any) -> str:
        context.setdefault("business", self.profile)
        return self.env.get_template(name).render(**context).strip()

    def source_path(self, name: str) -> Path:
        """Where a template or data file (e.g. rules.yaml) is read from: operator's first."""
        source, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        return Path(filename or name)
