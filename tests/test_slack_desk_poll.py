"""A `tierbot poll` worker (no web server, so no Slack route) still hands conversations
to staff in Slack: the desk posts through the Web API from the worker."""
from __future__ import annotations

import asyncio
import json

from adapters.cli import run_polling
from fakes.slack_api import SIGNING_SECRET, STAFF_CHANNEL, TOKEN, FakeSlack
from fakes.telegram_api import FakeTelegram, text_update
from telegram_harness import make_config


async def test_polling_worker_posts_handoffs_and_forwards_messages_to_slack(tmp_path):
    async with FakeTelegram() as tg, FakeSlack() as slack:
        config = make_config(tg.base_url, tmp_path / "data", SLACK_BOT_TOKEN=TOKEN,
                             SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_STAFF_CHANNEL=STAFF_CHANNEL,
                             SLACK_API_URL=slack.base_url, TELEGRAM_POLL_TIMEOUT_S="1")
        stop = asyncio.Event()
        worker = asyncio.create_task(run_polling(config, stop))
        tg.push_update(text_update(1, "I want to speak to a human"))
        await slack.wait_for(lambda: slack.top_level(STAFF_CHANNEL), timeout=60)
        tg.push_update(text_update(2, "my order number is 1234"))
        await slack.wait_for(lambda: slack.thread(STAFF_CHANNEL, slack.top_level(STAFF_CHANNEL)[0]["ts"]),
                             timeout=10)
        await tg.wait_for(lambda f: f.texts(42))
        stop.set()
        assert await asyncio.wait_for(worker, 30) == 0
    card = slack.top_level(STAFF_CHANNEL)[0]
    assert "I want to speak to a human" in json.dumps(card["blocks"])
    assert [m["text"] for m in slack.thread(STAFF_CHANNEL, card["ts"])] == ["*Ann:* my order number is 1234"]
    assert len(tg.texts(42)) == 1  # told a person will answer; the follow-up got no bot answer
