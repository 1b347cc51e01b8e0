"""The last tier: rule-based Jinja templates. It always answers.

A rules file maps regex patterns to templates; when nothing matches, a generic
helpful reply is used. The customer's text is passed to the template as data
(`text`), never compiled as template source.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import yaml

from .config import ConfigError
from .models import Event, Reply
from .rendering import Renderer
from .turn import TurnContext

__all__ = ["Rule", "TemplateTier", "load_rules"]

log = logging.getLogger(__name__)

GENERIC_TEMPLATE = "replies/generic.j2"
# Used only if even the generic template fails to render (e.g. an operator's typo).
LAST_WORDS = "Thanks for your message. Our team will get back to you as soon as possible."


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    template: str
    patterns: tuple[re.Pattern[str], ...]
    handoff: bool = False

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in self.patterns)


def load_rules(renderer: Renderer, name: str = "rules.yaml") -> list[Rule]:
    """Parse the rules file; a bad pattern or template name is a clear startup error."""
    path = renderer.source_path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"rules file {path}: {e}") from None
    rules = []
    for i, item in enumerate(data.get("rules", []), 1):
        try:
            rule = Rule(
                name=str(item["name"]),
                template=str(item["template"]),
                patterns=tuple(re.compile(p, re.IGNORECASE) for p in item["patterns"]),
                handoff=bool(item.get("handoff", False)),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"rules file {path}: rule #{i} is missing {e}") from None
        except re.error as e:
            raise ConfigError(f"rules file {path}: rule #{i} has a bad pattern: {e}") from None
        if not renderer.has(rule.template):
            raise ConfigError(f"rules file {path}: rule {rule.name!r} names a missing template {rule.template!r}")
        rules.append(rule)
    return rules


class TemplateTier:
    """Always answers: the matching rule's template, or the generic reply."""

    name = "template"

    def __init__(self, renderer: Renderer, rules: list[Rule] | None = None) -> None:
        self.renderer = renderer
        self.rules = load_rules(renderer) if rules is None else rules

    def match(self, text: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(text)), None)

    async def answer(self, event: Event, turn: TurnContext) -> Reply:
        rule = self.match(event.text or "")
        template = rule.template if rule else GENERIC_TEMPLATE
        context = {"text": event.text, "user_name": event.user_name, "platform": event.platform}
        try:
            text = self.renderer.render(template, **context)
        except Exception:
            log.exception("template %s failed to render; using the generic reply", template)
            try:
                text = self.renderer.render(GENERIC_TEMPLATE, **context)
            except Exception:
                log.exception("generic template failed to render")
                text = LAST_WORDS
        meta = {"template": rule.name if rule else "generic"}
        if rule and rule.handoff:
            meta["handoff_requested"] = True
        return Reply(text=text, tier="template", meta=meta)
