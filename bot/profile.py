"""The shipped sample business profile must never pass for a real one in production.

With no `TIERBOT_BUSINESS_PROFILE`, tierbot uses `bot/data/business.yaml`: "Example Shop",
its policies and placeholder contacts. That is right for the console demo and wrong for
customers, who would be handed another company's return policy and a fake phone number.
So when the bot serves customers (`tierbot serve`, `tierbot poll`) on the sample profile:
- it says so loudly at start-up (and `tierbot check` says so too);
- the profile's placeholder contacts and website are taken out before anything is
  rendered (system prompt, reply templates: the shipped templates leave a missing
  contact out), and
- every reply is scrubbed of them (`SampleContactScrubber`), whatever produced it (an
  LLM, an FAQ answer someone copied from the sample).
"""
from __future__ import annotations

import copy
import logging
import re
import sys
from typing import Any

from .config import Config
from .models import Event, Reply
from .rendering import DEFAULT_PROFILE_PATH
from .turn import TurnContext

__all__ = ["uses_sample_profile", "without_sample_contacts", "SampleContactScrubber", "SAMPLE_WARNING",
           "SAMPLE_CONTACT_PATTERN", "SAMPLE_WEBSITE_PATTERN", "announce_sample_profile", "scrub"]

log = logging.getLogger("tierbot")

SAMPLE_WARNING = (
    "the SAMPLE business profile is in use (Example Shop, bot/data/business.yaml): customers would be "
    "told another company's policies. Set TIERBOT_BUSINESS_PROFILE to your own profile (copy "
    "bot/data/business.yaml and edit it). Until then replies leave out the sample's placeholder "
    "contacts (support@shop.example.com, +49 30 0000 0000, shop.example.com).")

# The sample's placeholder contacts, however a model or a person might write them.
SAMPLE_CONTACT_PATTERN = re.compile(
    r"support\s*(?:@|\(at\)|\[at\]| at )\s*shop\s*(?:\.|dot)\s*example\s*(?:\.|dot)\s*com"
    r"|\+?\s*\(?\s*(?:00\s*)?49\s*\)?[\s./-]*\(?0?30\)?[\s./-]*0000[\s./-]*0000", re.I)
SAMPLE_WEBSITE_PATTERN = re.compile(r"(?:https?://)?(?:www\.)?shop\.example\.com(?:/[^\s)\]>\"']*[^\s)\]>\"'.,;:!?])?", re.I)
_CONTACT, _WEBSITE = "our team", "our website"
_REPEATS = re.compile(rf"{_CONTACT}(?:\s*(?:,|or|and|/)\s*{_CONTACT})+")


def uses_sample_profile(config: Config) -> bool:
    path = config.business_profile_path
    return path is None or path.resolve() == DEFAULT_PROFILE_PATH.resolve()


def without_sample_contacts(profile: dict[str, Any]) -> dict[str, Any]:
    """The profile with its contacts and website emptied (templates leave them out)."""
    out = copy.deepcopy(profile)
    contact = out.get("contact")
    out["contact"] = {k: None for k in contact} if isinstance(contact, dict) else {"email": None, "phone": None}
    out["contact"].setdefault("email", None)
    out["contact"].setdefault("phone", None)
    out["website"] = None
    return out


def scrub(text: str) -> str:
    """`text` without the sample's placeholder contacts."""
    if not text:
        return text
    cleaned = SAMPLE_WEBSITE_PATTERN.sub(_WEBSITE, SAMPLE_CONTACT_PATTERN.sub(_CONTACT, text))
    return cleaned if cleaned == text else _REPEATS.sub(_CONTACT, cleaned)


class SampleContactScrubber:
    """A reply amender: no customer is handed the sample's placeholder contacts."""

    async def amend(self, event: Event, reply: Reply, turn: TurnContext) -> None:
        cleaned = scrub(reply.text)
        if cleaned != reply.text:
            reply.text = cleaned
            reply.meta["sample_contacts_removed"] = True


def announce_sample_profile(where: str) -> None:
    """Say loudly (log and stderr) that the sample profile is in use."""
    log.warning(f"sample_profile=in_use where={where}: {SAMPLE_WARNING}")
    bar = "!" * 78
    print(f"{bar}\nWARNING: {SAMPLE_WARNING}\n{bar}", file=sys.stderr, flush=True)
