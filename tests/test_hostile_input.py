"""Hostile input through the real server (adapters/server.py) and the whole bot (every
plugin, fake Telegram, fake Slack and fake LLM providers on 127.0.0.1).

The corpus lives in tests/hostile/ (see its README): each rejected request gets the
right status, the server keeps answering, and nothing is recorded for it (inbox,
outbox, ledger, FAQ store, Slack); each odd-but-legitimate customer text gets a safe
reply — data, never template code, never a secret or the system prompt.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.app import build_bot
from bot.config import Config
from fakes import llm_servers as F
from fakes.slack_api import SIGNING_SECRET, STAFF_CHANNEL, FakeSlack, sign
from fakes.telegram_api import TOKEN, FakeTelegram, text_update
from telegram_harness import SECRET, post_update, running

CORPUS = Path(__file__).parent / "hostile"
API_TOKEN = "api-token-hostile-0123456789"
SECRETS = [TOKEN, SECRET, SIGNING_SECRET, API_TOKEN, *F.KEYS.values()]


def corpus(kind: str) -> list[Path]:
    return sorted(p for p in (CORPUS / kind).iterdir() if p.is_file())


def expected_status(path: Path) -> int:
    return int(path.name.split("--", 1)[0])


@pytest.fixture
async def world(tmp_path):
    async with FakeTelegram() as tg, FakeSlack() as slack, F.FakeProviders() as fp:
        yield tg, slack, fp, tmp_path / "data"


def config_for(world, **extra: str) -> Config:
    tg, slack, fp, data = world
    env = {**fp.env(), "TIERBOT_DATA_DIR": str(data), "TIERBOT_CHAIN": "groq,gemini,claude",
           "TIERBOT_GROQ_MODELS": "llama-3.3-70b-versatile", "TIERBOT_GEMINI_MODELS": "gemini-2.5-flash",
           "TIERBOT_CLAUDE_MODELS": "claude-haiku-4-5", "TIERBOT_DEADLINE_S": "3",
           "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": tg.base_url, "TELEGRAM_WEBHOOK_SECRET": SECRET,
           "TELEGRAM_DRAFT_INTERVAL_S": "0", "TELEGRAM_STREAM_DRAFTS": "false",
           "SLACK_BOT_TOKEN": "xoxb-0000000000-fake-token-for-tests", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_STAFF_CHANNEL": STAFF_CHANNEL, "SLACK_API_URL": slack.base_url,
           "TIERBOT_API_TOKEN": API_TOKEN, "TIERBOT_RATE_LIMIT": "0", **extra}
    return Config.from_env(env, dotenv=False)


@asynccontextmanager
async def serving(world, **extra: str):
    config = config_for(world, **extra)
    async with build_bot(config) as bot:
        async with running(bot, config) as (client, server):
            yield client, server, bot


def ledger_counts(data: Path) -> dict[str, int]:
    path = data / "ledger.sqlite3"
    if not path.exists():
        return {"messages": 0, "events": 0}
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("messages", "events")}
    finally:
        db.close()


def inbox_keys(data: Path) -> list[str]:
    db = sqlite3.connect(data / "messages.db")
    try:
        return [k for (k,) in db.execute("SELECT key FROM inbox ORDER BY key")]
    finally:
        db.close()


def assert_no_secret(where: str, text: str) -> None:
    for s in SECRETS:
        assert s not in text, f"{where} contains a secret ({s[:6]}…)"


# -- Telegram webhook bodies -------------------------------------------------------------
@pytest.mark.parametrize("path", corpus("telegram"), ids=lambda p: p.name)
async def test_telegram_corpus_gets_its_status_and_rejects_leave_no_trace(world, path):
    tg, _, fp, data = world
    want = expected_status(path)
    async with serving(world) as (client, _, _):
        resp = await post_update(client, path.read_bytes())
        body = await resp.text()
        assert resp.status == want, body[:300]
        assert_no_secret("response", body)
        # The server still works: a normal update is taken and answered.
        ok = await post_update(client, text_update(900_001, "hello, where is my order?", chat_id=555))
        assert ok.status == 200
        await tg.wait_for(lambda f: f.texts(555))
        if want == 200:
            await until(lambda: len(inbox_done(data)) == 2)
    keys = inbox_keys(data)
    answered = path.stem.endswith("-answered") and not path.stem.endswith("-not-answered")
    if want == 200:
        assert len(keys) == 2  # this update and the normal one
    else:
        assert keys == ["telegram:900001"], f"a rejected body was recorded: {keys}"
    chats = {str(m["chat_id"]) for m in tg.sent()}
    assert chats == ({"555", "7001"} if answered else {"555"})
    assert ledger_counts(data)["messages"] == (2 if answered else 1)


async def until(predicate, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


def inbox_done(data: Path) -> list[str]:
    db = sqlite3.connect(data / "messages.db")
    try:
        return [k for (k,) in db.execute("SELECT key FROM inbox WHERE state = 'done'")]
    finally:
        db.close()


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET.upper(), SECRET[:-1], SECRET + "x", "🔑" * 8])
async def test_wrong_webhook_secret_is_403_and_records_nothing(world, secret):
    tg, _, _, data = world
    async with serving(world) as (client, _, _):
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        resp = await client.post("/telegram/webhook", data=json.dumps(text_update(1, "let me in")).encode("utf-8"),
                                 headers={k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()})
        assert resp.status == 403
        assert (await client.get("/healthz")).status == 200
    assert inbox_keys(data) == [] and tg.sent() == []
    assert ledger_counts(data) == {"messages": 0, "events": 0}


async def test_body_over_the_limit_is_413_and_records_nothing(world):
    tg, _, _, data = world
    big = json.dumps(text_update(1, "a" * (1024 * 1024))).encode()
    async with serving(world) as (client, _, _):
        assert (await post_update(client, big)).status == 413
        assert (await post_update(client, text_update(2, "still there?", chat_id=556))).status == 200
        await tg.wait_for(lambda f: f.texts(556))
    assert inbox_keys(data) == ["telegram:2"]


# -- customer texts that are odd but legitimate -------------------------------------------
def texts() -> list[tuple[str, str]]:
    cases = [(p.stem, p.read_bytes().decode("utf-8")) for p in corpus("texts")]
    # 100 KB in one message (more than Telegram would ever deliver; the webhook takes it).
    cases.append(("100kb-long", ("Where is my order #1234? It was due yesterday. " * 2200)[:100_000]))
    return cases


async def test_odd_customer_texts_get_safe_replies_from_the_llm_and_the_templates(world):
    tg, _, fp, data = world
    system_prompt_marker = None
    async with serving(world) as (client, _, bot):
        for phase in ("llm", "templates"):
            if phase == "templates":
                for s in fp.servers.values():
                    s.default = F.server_error()
            for i, (name, text) in enumerate(texts()):
                chat = 10_000 + i + (500 if phase == "templates" else 0)
                before = {p: len(s.requests) for p, s in fp.servers.items()}
                resp = await post_update(client, text_update(chat, text, chat_id=chat))
                assert resp.status == 200, (phase, name)
                await tg.wait_for(lambda f: f.texts(chat), timeout=60)
                reply = "\n".join(tg.texts(chat))
                assert reply.strip(), (phase, name)
                assert all(len(t.encode("utf-16-le")) // 2 <= 4096 for t in tg.texts(chat)), (phase, name)
                # Plain text: no parse mode, so no markup (theirs or the model's) can break a send.
                assert not any("parse_mode" in m for m in tg.sent() if str(m["chat_id"]) == str(chat)), name
                assert_no_secret(f"{phase} reply to {name}", reply)
                assert "1337" not in reply, f"{name}: customer text was rendered as a template"
                sent = [r for p, s in fp.servers.items() for r in s.requests[before[p]:]]
                if phase == "llm" and sent:  # (the FAQ cache may answer without the LLM)
                    assert len(sent) == 1 and reply == F.Behaviour().text, (name, len(sent), reply)
                    body = json.dumps(sent[0].body, ensure_ascii=False)
                    assert_no_secret(f"LLM request for {name}", body)
                    system, user = split_prompt(sent[0].body)
                    system_prompt_marker = system_prompt_marker or system[:60]
                    assert "{{" not in system and text[:40] not in system, f"{name} leaked into the system prompt"
                    if name.startswith(("jinja", "prompt-injection", "telegram-markup")):
                        assert text.strip() in user, f"{name} did not reach the LLM as plain data"
                elif phase == "templates":
                    assert not system_prompt_marker or system_prompt_marker not in reply, name
        assert (await client.get("/healthz")).status == 200
    assert ledger_counts(data)["messages"] == 2 * len(texts())


def split_prompt(body: dict) -> tuple[str, str]:
    """(system prompt, last user message) from a Groq (OpenAI-style) request body."""
    msgs = body["messages"]
    system = "".join(m["content"] for m in msgs if m["role"] == "system")
    user = [m["content"] for m in msgs if m["role"] == "user"][-1]
    return system, user if isinstance(user, str) else json.dumps(user, ensure_ascii=False)


# -- Slack: only Slack, with the signing secret, gets in ----------------------------------
def slack_cases() -> list[tuple[str, str, str]]:
    return [("faq-add-command", (CORPUS / "slack" / "faq-add-command.form").read_text(),
             "application/x-www-form-urlencoded"),
            ("staff-question-event", (CORPUS / "slack" / "staff-question-event.json").read_text(),
             "application/json")]


@pytest.mark.parametrize("how", ["unsigned", "wrong-secret", "tampered-body", "replayed-6-min-later",
                                 "timestamp-in-the-future", "timestamp-not-a-number", "signature-v1",
                                 "signature-truncated"])
@pytest.mark.parametrize("case", slack_cases(), ids=lambda c: c[0])
async def test_slack_requests_without_a_valid_signature_are_401_and_change_nothing(world, case, how):
    _, slack, _, data = world
    name, body, ctype = case
    async with serving(world) as (client, _, bot):
        faq_before = [e.id for e in bot.services["faq"].entries()]
        calls_before = len(slack.calls)
        headers = {"Content-Type": ctype}
        now = int(time.time())
        if how == "wrong-secret":
            headers.update(sign(body, secret="0" * len(SIGNING_SECRET)))
        elif how == "tampered-body":
            headers.update(sign(body))
            body = body.replace("mallory", "admin") if "mallory" in body else body.replace("ledger", "LEDGER")
        elif how == "replayed-6-min-later":
            headers.update(sign(body, timestamp=now - 360))
        elif how == "timestamp-in-the-future":
            headers.update(sign(body, timestamp=now + 3600))
        elif how == "timestamp-not-a-number":
            headers.update({**sign(body), "X-Slack-Request-Timestamp": "soon"})
        elif how == "signature-v1":
            sig = sign(body)
            headers.update({**sig, "X-Slack-Signature": sig["X-Slack-Signature"].replace("v0=", "v1=")})
        elif how == "signature-truncated":
            sig = sign(body)
            headers.update({**sig, "X-Slack-Signature": sig["X-Slack-Signature"][:-8]})
        resp = await client.post("/slack/events", data=body.encode(), headers=headers)
        assert resp.status == 401, (how, await resp.text())
        assert_no_secret("Slack 401 body", await resp.text())
        assert (await client.get("/healthz")).status == 200
        assert [e.id for e in bot.services["faq"].entries()] == faq_before
        assert [c.method for c in slack.calls[calls_before:]] == []
    assert ledger_counts(data) == {"messages": 0, "events": 0}


async def test_a_correctly_signed_slack_command_does_get_in(world):
    """The other side of the 401s: the same corpus request, signed, from an FAQ editor,
    has its effect."""
    body = (CORPUS / "slack" / "faq-add-command.form").read_text()
    async with serving(world, SLACK_FAQ_EDITORS="U0MALLORY") as (client, _, bot):
        before = len(bot.services["faq"].entries())
        resp = await client.post("/slack/events", data=body.encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body)})
        assert resp.status == 200
        await until(lambda: len(bot.services["faq"].entries()) > before)
        assert len(bot.services["faq"].entries()) == before + 1


async def test_a_signed_slack_command_from_a_non_editor_changes_no_faq(world):
    """Anyone in the workspace can send a signed slash command; only editors change the FAQ."""
    body = (CORPUS / "slack" / "faq-add-command.form").read_text()
    async with serving(world) as (client, _, bot):
        before = len(bot.services["faq"].entries())
        resp = await client.post("/slack/events", data=body.encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body)})
        assert resp.status == 200 and "Only FAQ editors" in await resp.text()
        assert len(bot.services["faq"].entries()) == before


# -- the JSON API --------------------------------------------------------------------------
@pytest.mark.parametrize("path", corpus("api"), ids=lambda p: p.name)
async def test_api_corpus_is_rejected_and_records_nothing(world, path):
    _, _, fp, data = world
    async with serving(world) as (client, _, _):
        resp = await client.post("/api/messages", data=path.read_bytes(),
                                 headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
        assert resp.status == expected_status(path), await resp.text()
        assert (await client.get("/healthz")).status == 200
    assert sum(len(s.requests) for s in fp.servers.values()) == 0
    assert ledger_counts(data) == {"messages": 0, "events": 0}
