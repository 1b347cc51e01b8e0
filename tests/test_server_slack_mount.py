"""The server mounts the Slack adapter (adapters.slack.install) on the same aiohttp app."""
from __future__ import annotations

import pytest

from bot.config import ConfigError
from fakes.slack_api import SIGNING_SECRET, STAFF_CHANNEL, TOKEN, FakeSlack
from fakes.telegram_api import FakeTelegram
from telegram_harness import EchoTier, make_bot, make_config, running


async def test_slack_events_are_served_and_signature_checked(tmp_path):
    async with FakeTelegram() as tg, FakeSlack() as slack:
        config = make_config(tg.base_url, tmp_path / "data", SLACK_BOT_TOKEN=TOKEN,
                             SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_STAFF_CHANNEL=STAFF_CHANNEL,
                             SLACK_API_URL=slack.base_url)
        async with running(make_bot(config, EchoTier()), config) as (client, server):
            slack.events_url = str(client.make_url("/slack/events"))
            status, _ = await slack.send_event(slack.mention("hello bot"), signed=False)
            assert status == 401
            status, _ = await slack.send_event(slack.mention("hello bot"), secret="not-the-secret-000000")
            assert status == 401
            status, _ = await slack.send_event(slack.mention("hello bot"))
            assert status == 200
            assert server.slack is not None and server.bot.services["slack"] is server.slack


def test_half_configured_slack_is_a_clear_config_error(tmp_path):
    from adapters.server import Server

    config = make_config("http://127.0.0.1:9", tmp_path / "data", SLACK_BOT_TOKEN=TOKEN)
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        Server(make_bot(config, EchoTier()), config)
