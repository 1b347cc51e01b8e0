"""No sample facts in production: on the shipped sample business profile, `tierbot serve`
and `tierbot check` say so loudly, and a served customer is never handed the sample's
placeholder contacts (the console demo keeps them)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import pytest

from bot import Event
from bot.app import build_bot
from bot.config import Config
from bot.llm.check import run_check
from bot.profile import scrub
from fakes import llm_servers as F
from fakes.llm_bot import llm_env

PLACEHOLDERS = ("support@shop.example.com", "+49 30 0000 0000", "shop.example.com")
# Questions the shipped rules answer with templates that name the contacts or the website.
TEMPLATE_QUESTIONS = ("I forgot my password", "help", "there is a charge on my card I don't recognise",
                      "how do I return an item?", "asdf qwerty zxcv")

OWN_PROFILE = """\
company: Acme Bikes
products: "Bicycles and parts."
website: https://acme-bikes.example.org
hours: "Mon-Sat 8:00-20:00"
contact:
  email: help@acme-bikes.example.org
  phone: "+1 555 0100"
policies:
  returns: "Bikes can be returned within 14 days."
"""


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


def ev(text: str, conv: str = "c1") -> Event:
    return Event(platform="test", conversation_id=conv, user_id=conv, text=text)


def no_placeholders(text: str) -> bool:
    return not any(p in text for p in PLACEHOLDERS)


@pytest.mark.parametrize("question", TEMPLATE_QUESTIONS)
async def test_served_template_replies_leave_the_placeholders_out_the_console_keeps_them(base_env, question):
    async with build_bot(Config.from_env(base_env), serving=True) as bot:
        served = await bot.handle(ev(question))
    async with build_bot(Config.from_env(base_env)) as bot:
        console = await bot.handle(ev(question, "c2"))
    assert served.tier == console.tier == "template"
    assert no_placeholders(served.text), served.text
    assert "{" not in served.text and "  " not in served.text and served.text.strip()
    if question in ("I forgot my password", "help"):
        assert not no_placeholders(console.text)  # the demo still shows the sample's contacts


async def test_served_llm_never_gets_or_hands_out_the_placeholders(fp, tmp_path, capsys):
    # A model that makes them up anyway (from an old conversation, say) is scrubbed too.
    fp.groq.default = F.ok("Call us on +49 30 0000 0000 or write to support@shop.example.com, "
                           "or see https://shop.example.com/returns.")
    env = llm_env(fp, tmp_path / "data", chain="groq", deadline=5, attempt=3)
    async with build_bot(Config.from_env(env), serving=True) as bot:
        reply = await bot.handle(ev("can I talk to someone about my order?"))
        items = [i async for i in bot.stream(ev("can I phone you about the delivery?", "c2"))]
    system = fp.groq.requests[0].body["messages"][0]["content"]
    assert no_placeholders(system) and "never give one" in system
    assert "30 days" in system  # the rest of the profile is still there
    assert reply.tier == "llm" and no_placeholders(reply.text), reply.text
    assert reply.text == "Call us on our team or write to our team, or see our website."
    assert reply.meta["sample_contacts_removed"] is True
    assert no_placeholders(items[-1].text)
    err = capsys.readouterr().err
    assert "WARNING: the SAMPLE business profile is in use" in err and "TIERBOT_BUSINESS_PROFILE" in err


async def test_the_console_demo_keeps_the_sample_contacts_and_says_nothing(fp, tmp_path, capsys):
    env = llm_env(fp, tmp_path / "data", chain="groq", deadline=5, attempt=3)
    async with build_bot(Config.from_env(env)) as bot:
        await bot.handle(ev("can I talk to someone about my order?"))
    assert "support@shop.example.com" in fp.groq.requests[0].body["messages"][0]["content"]
    assert "SAMPLE" not in capsys.readouterr().err


async def test_an_operators_own_profile_is_served_as_is_without_a_warning(fp, tmp_path, capsys, caplog):
    profile = tmp_path / "business.yaml"
    profile.write_text(OWN_PROFILE, encoding="utf-8")
    env = llm_env(fp, tmp_path / "data", chain="groq", deadline=5, attempt=3,
                  TIERBOT_BUSINESS_PROFILE=str(profile))
    caplog.set_level(logging.WARNING)
    async with build_bot(Config.from_env(env), serving=True) as bot:
        await bot.handle(ev("can I talk to someone about my order?"))
        template = await bot.handle(ev("asdf qwerty zxcv", "c2"))
    system = fp.groq.requests[0].body["messages"][0]["content"]
    assert "help@acme-bikes.example.org, +1 555 0100" in system and "Website: https://acme-bikes.example.org" in system
    assert "SAMPLE" not in capsys.readouterr().err and not any("sample_profile" in r.getMessage() for r in caplog.records)
    assert template.tier in ("template", "llm")


def test_tierbot_check_says_when_the_sample_profile_is_in_use(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TIERBOT_CHAIN", "groq")
    args = argparse.Namespace(timeout=1.0)
    asyncio.run(run_check(args))
    out = capsys.readouterr().out
    assert out.startswith("WARNING: the SAMPLE business profile is in use")
    profile = tmp_path / "own.yaml"
    profile.write_text(OWN_PROFILE, encoding="utf-8")
    monkeypatch.setenv("TIERBOT_BUSINESS_PROFILE", str(profile))
    asyncio.run(run_check(args))
    assert "SAMPLE" not in capsys.readouterr().out


async def test_tierbot_serve_warns_at_start_up(tmp_path):
    """The real `tierbot serve` process: the warning is on stderr before it answers."""
    env = {"TIERBOT_DATA_DIR": str(tmp_path / "data"), "PORT": "0", "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", env=env, cwd=str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    seen = b""
    try:
        async with asyncio.timeout(60):
            while b"WARNING: the SAMPLE business profile" not in seen:
                line = await proc.stderr.readline()
                if not line:
                    break
                seen += line
    finally:
        proc.terminate()
        await proc.wait()
    assert b"WARNING: the SAMPLE business profile is in use" in seen


@pytest.mark.parametrize("text, expected", [
    ("Call +49 30 0000 0000 or email support@shop.example.com.", "Call our team or email our team."),
    ("Reach us at support@shop.example.com or +49 (30) 0000-0000.", "Reach us at our team."),
    ("Write to SUPPORT at shop dot example dot com", "Write to our team"),
    ("See https://shop.example.com/orders.", "See our website."),
    ("+49 30 1234 5678 and help@shop.example.org are someone else's", None),
])
def test_scrub_catches_the_placeholders_however_written(text, expected):
    assert scrub(text) == (expected or text)
