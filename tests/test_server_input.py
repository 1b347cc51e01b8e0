"""Who gets in and what bad input does: the right 4xx, no crash, nothing recorded."""
from __future__ import annotations

import json

import pytest

from fakes.telegram_api import FakeTelegram, text_update
from telegram_harness import EchoTier, SECRET, inbox_rows, make_bot, make_config, post_update, running

API_TOKEN = "api-token-0123456789abcdef"


@pytest.fixture
async def tg():
    async with FakeTelegram() as fake:
        yield fake


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x", SECRET[:-1]])
async def test_wrong_or_missing_secret_is_403_and_nothing_recorded(tg, tmp_path, secret):
    config = make_config(tg.base_url, tmp_path / "data")
    tier = EchoTier()
    async with running(make_bot(config, tier), config) as (client, _):
        resp = await post_update(client, text_update(1, "let me in"), secret=secret)
        assert resp.status == 403
        assert SECRET not in await resp.text()
        ok = await post_update(client, text_update(2, "with the secret"))  # the server still works
        assert ok.status == 200
        await tg.wait_for(lambda f: f.texts())
    assert inbox_rows(tmp_path / "data") == [("telegram:2", "done")]
    assert [e.text for e in tier.calls] == ["with the secret"]


async def test_webhook_refuses_everything_when_no_secret_is_configured(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_WEBHOOK_SECRET="")
    async with running(make_bot(config, EchoTier()), config) as (client, _):
        assert (await post_update(client, text_update(1, "hi"), secret="")).status == 403
        assert (await post_update(client, text_update(1, "hi"), secret="anything")).status == 403
    assert inbox_rows(tmp_path / "data") == []


@pytest.mark.parametrize("body, why", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b'{"update_id": "7", "message": {}}', "update_id"),
    (b'{"update_id": -1, "message": {}}', "update_id"),
    (b'{"update_id": 7}', "no known update kind"),
    (b'{"update_id": 7, "frobnicate": {"x": 1}}', "no known update kind"),
    (b'{"update_id": 7, "message": "hello"}', "no known update kind"),
    (b'{"update_id": 7, "message": {"text": "no chat, no date"}}', "malformed"),
])
async def test_malformed_or_unknown_updates_are_400_and_nothing_recorded(tg, tmp_path, body, why):
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier()), config) as (client, _):
        resp = await post_update(client, body)
        assert resp.status == 400
        assert why in (await resp.json())["error"]
        assert (await client.get("/healthz")).status == 200
    assert inbox_rows(tmp_path / "data") == []
    assert tg.texts() == []


async def test_body_over_1_mib_is_413_and_nothing_recorded(tg, tmp_path):
    update = text_update(1, "x" * (1024 * 1024 + 10))
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier()), config) as (client, _):
        resp = await post_update(client, update)
        assert resp.status == 413

        async def chunks():  # no Content-Length: the limit still holds while reading
            body = json.dumps(update).encode()
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]
        resp = await client.post("/telegram/webhook", data=chunks(),
                                 headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
        assert resp.status == 413
        assert (await post_update(client, text_update(2, "small"))).status == 200
    assert [k for k, _ in inbox_rows(tmp_path / "data")] == ["telegram:2"]


async def test_healthz_and_draining(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier()), config) as (client, server):
        resp = await client.get("/healthz")
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
        await server.drain()
        assert (await client.get("/healthz")).status == 503
        resp = await post_update(client, text_update(1, "during shutdown"))
        assert resp.status == 503  # Telegram will deliver it again later
    assert inbox_rows(tmp_path / "data") == []


async def test_api_messages_is_off_without_a_token(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier()), config) as (client, _):
        resp = await client.post("/api/messages", json={"conversation_id": "c", "user_id": "u", "text": "hi"})
        assert resp.status == 404


async def test_api_messages_requires_the_bearer_token(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TIERBOT_API_TOKEN=API_TOKEN)
    tier = EchoTier()
    msg = {"conversation_id": "web-1", "user_id": "u-9", "text": "where is my order?"}
    async with running(make_bot(config, tier), config) as (client, _):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": API_TOKEN},
                        {"Authorization": f"Basic {API_TOKEN}"}):
            resp = await client.post("/api/messages", json=msg, headers=headers)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert tier.calls == []
        resp = await client.post("/api/messages", json=msg, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert resp.status == 200
        reply = await resp.json()
    assert reply["text"] == "echo: where is my order?"
    assert (reply["tier"], reply["provider"], reply["model"]) == ("llm", "fakeprov", "m1")
    assert {"attempts", "cost_usd", "input_tokens", "output_tokens", "latency_ms", "fallback"} <= reply.keys()
    assert tier.calls[0].platform == "api" and tier.calls[0].conversation_id == "web-1"


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"user_id": "u", "text": "hi"}',
                                  b'{"conversation_id": "c", "user_id": "u", "text": ""}',
                                  b'{"conversation_id": 5, "user_id": "u", "text": "hi"}'])
async def test_api_messages_rejects_bad_bodies(tg, tmp_path, body):
    config = make_config(tg.base_url, tmp_path / "data", TIERBOT_API_TOKEN=API_TOKEN)
    tier = EchoTier()
    async with running(make_bot(config, tier), config) as (client, _):
        resp = await client.post("/api/messages", data=body,
                                 headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
        assert resp.status == 400
    assert tier.calls == []


async def test_webhook_url_registers_with_the_secret(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_WEBHOOK_URL="https://bot.example.com/telegram/webhook")
    async with running(make_bot(config, EchoTier()), config):
        pass
    assert tg.webhook == {"url": "https://bot.example.com/telegram/webhook", "secret_token": SECRET}


def test_webhook_url_without_secret_is_a_config_error(tmp_path):
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        config = make_config("http://127.0.0.1:9", tmp_path / "data", TELEGRAM_WEBHOOK_SECRET="",
                             TELEGRAM_WEBHOOK_URL="https://bot.example.com/hook")
        from adapters.telegram import TelegramSettings
        TelegramSettings.from_config(config)
