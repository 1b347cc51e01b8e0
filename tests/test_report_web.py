"""GET /report: the HTML report, only for holders of TIERBOT_API_TOKEN."""
from __future__ import annotations

import json

import pytest
from aiohttp import web

from bot import Event
from bot.app import build_bot
from bot.config import Config
from bot.report.web import add_routes

TOKEN = "report-token-0123456789abcdef"


async def client_for(aiohttp_client, env):
    bot = build_bot(Config.from_env(env, dotenv=False), plugins=("bot.ledger.plugin:install",))
    for text in ("I want a refund", "<script>alert(1)</script> where is my order", "hello"):
        await bot.handle(Event("telegram", "c1", "u1", text))
    app = web.Application()
    add_routes(app, bot)

    async def close(_app):
        await bot.aclose()

    app.on_cleanup.append(close)
    return await aiohttp_client(app)


async def test_report_needs_the_token(aiohttp_client, base_env):
    client = await client_for(aiohttp_client, base_env | {"TIERBOT_API_TOKEN": TOKEN})
    for kwargs in ({}, {"headers": {"Authorization": "Bearer wrong-token-0123456789"}},
                   {"params": {"token": "nope"}}, {"headers": {"Authorization": "Basic " + TOKEN}}):
        resp = await client.get("/report", **kwargs)
        assert resp.status == 401
        body = await resp.text()
        assert "refund" not in body and TOKEN not in body
    resp = await client.get("/report", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    assert '<svg id="cost-chart"' in html and "<script" not in html  # customer text is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt; where is my order" in html
    resp = await client.get("/report", params={"token": TOKEN, "format": "json"})
    assert resp.status == 200
    assert json.loads(await resp.text())["totals"]["messages"] == 3


async def test_without_a_configured_token_the_report_is_closed(aiohttp_client, base_env):
    client = await client_for(aiohttp_client, base_env)
    resp = await client.get("/report", params={"token": ""})
    assert resp.status == 503 and "TIERBOT_API_TOKEN" in await resp.text()


@pytest.mark.parametrize("params, message", [
    ({"date": "yesterday"}, "YYYY-MM-DD"),
    ({"date": "2026-02-30"}, "YYYY-MM-DD"),
    ({"format": "pdf"}, "format must be one of"),
])
async def test_bad_parameters_are_clear_400s(aiohttp_client, base_env, params, message):
    client = await client_for(aiohttp_client, base_env | {"TIERBOT_API_TOKEN": TOKEN})
    resp = await client.get("/report", params={"token": TOKEN, **params})
    assert resp.status == 400 and message in await resp.text()


async def test_a_given_date_is_reported(aiohttp_client, base_env):
    client = await client_for(aiohttp_client, base_env | {"TIERBOT_API_TOKEN": TOKEN})
    resp = await client.get("/report", params={"token": TOKEN, "date": "2020-01-01", "format": "json"})
    report = json.loads(await resp.text())
    assert report["date"] == "2020-01-01" and report["totals"]["messages"] == 0
