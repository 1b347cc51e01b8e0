"""What the handoff says to customers. Operators can reword each text in the
`[handoff]` section of the config file (`{when}` and `{rating}` are filled in)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HandoffMessages"]


@dataclass(frozen=True)
class HandoffMessages:
    auto_handoff: str = ("I've asked a person from our team to join this conversation; "
                         "they will answer you here.")
    hours_notice: str = "Our team is offline right now; a person will answer you {when}."
    resolved: str = ("Our team has marked this conversation as resolved, and I'm back to help with "
                     "anything else. How would you rate the help you got? (1 = poor, 5 = excellent)")
    rating_thanks: str = "Thank you for rating the help {rating}/5!"
    rating_ignored: str = "Thanks — this conversation has already been rated."

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "HandoffMessages":
        fields = {k: str(v) for k, v in section.items() if k in cls.__dataclass_fields__}
        return cls(**fields)

    @staticmethod
    def fill(text: str, **values: object) -> str:
        """Plain placeholder replacement: operator text is never a format/template program."""
        for key, value in values.items():
            text = text.replace("{" + key + "}", str(value))
        return text
