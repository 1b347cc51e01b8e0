"""The whole handoff, as customer and staff live it, through the real server:
Telegram updates → our webhook → python-telegram-bot → the fake Bot API, and signed
Slack requests → slack-bolt → the fake Slack Web API. Then again with the server
restarted in the middle (all state from disk)."""
from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import pytest

from bot.app import build_bot
from fakes.slack_api import SIGNING_SECRET, STAFF_CHANNEL, TOKEN, FakeSlack
from fakes.telegram_api import FakeTelegram, callback_update, text_update
from telegram_harness import EchoTier, make_config, post_update, running


@pytest.fixture
async def tg():
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def slack():
    async with FakeSlack(echo_bot_posts=True) as fake:  # Slack echoes the bot's own posts, as it does
        yield fake


class World:
    """The server (bot + Telegram + Slack) that can be stopped and started again."""

    def __init__(self, tg: FakeTelegram, slack: FakeSlack, data_dir) -> None:
        self.tg, self.slack = tg, slack
        self.config = make_config(tg.base_url, data_dir, SLACK_BOT_TOKEN=TOKEN,
                                  SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_STAFF_CHANNEL=STAFF_CHANNEL,
                                  SLACK_API_URL=slack.base_url)
        self.llm = EchoTier()  # stands in for the LLM chain
        self.stack: AsyncExitStack | None = None
        self.update_id = 0

    async def start(self) -> None:
        self.bot = build_bot(self.config)
        self.bot.tiers.insert(len(self.bot.tiers) - 1, self.llm)  # just before the templates
        self.stack = AsyncExitStack()
        self.client, self.server = await self.stack.enter_async_context(running(self.bot, self.config))
        assert self.server.slack is not None
        self.slack.events_url = str(self.client.make_url("/slack/events"))

    async def stop(self) -> None:
        await self.stack.aclose()  # drains: Slack work and Telegram replies in flight finish
        await self.bot.aclose()

    async def customer_writes(self, text: str) -> None:
        self.update_id += 1
        resp = await post_update(self.client, text_update(self.update_id, text))
        assert resp.status == 200

    async def customer_taps(self, data: str) -> None:
        self.update_id += 1
        resp = await post_update(self.client, callback_update(self.update_id, data))
        assert resp.status == 200

    async def customer_sees(self, predicate, timeout: float = 5.0) -> None:
        await self.tg.wait_for(lambda f: predicate(f.texts(42)), timeout)

    def card(self) -> dict:
        cards = self.slack.top_level(STAFF_CHANNEL)
        assert len(cards) == 1
        return cards[0]

    def thread_texts(self) -> list[str]:
        return [m["text"] for m in self.slack.thread(STAFF_CHANNEL, self.card()["ts"])]

    async def staff_read_thread(self) -> list[str]:
        """What a staff member's Slack client shows: conversations.replies, through slack_sdk."""
        from slack_sdk.web.async_client import AsyncWebClient

        client = AsyncWebClient(token=TOKEN, base_url=self.slack.base_url)
        result = await client.conversations_replies(channel=STAFF_CHANNEL, ts=self.card()["ts"])
        return [m["text"] for m in result["messages"][1:]]

    async def quiet(self) -> None:
        await asyncio.sleep(0.3)  # long enough for a wrongly sent message to show up


@pytest.mark.parametrize("restart_at", [None, "after_staff_reply", "after_customer_follow_up"])
async def test_customer_on_telegram_staff_in_slack(tg, slack, tmp_path, restart_at):
    w = World(tg, slack, tmp_path / "data")
    await w.start()

    # 1. The customer writes on Telegram and the bot answers.
    await w.customer_writes("Hi, where is my order 1234?")
    await w.customer_sees(lambda t: "echo: Hi, where is my order 1234?" in t)

    # 2. They ask for a human: told so, and a handoff card appears in the staff channel.
    await w.customer_writes("Can I talk to a human please?")
    await w.customer_sees(lambda t: any("join this conversation" in x for x in t))
    await slack.wait_for(lambda: slack.top_level(STAFF_CHANNEL))
    card = json.dumps(w.card()["blocks"])
    assert "Ann" in card and "Telegram" in card and "where is my order 1234?" in card
    assert "handoff_take" in card and "handoff_resolve" in card

    # 3. Staff answer in the thread; 4. the customer receives it on Telegram.
    thread_ts = w.card()["ts"]
    status, _ = await slack.send_event(slack.user_message("Hi Ann, Bob here. Let me look at order 1234.",
                                                          user="U0BOB", thread_ts=thread_ts))
    assert status == 200
    await w.customer_sees(lambda t: "Hi Ann, Bob here. Let me look at order 1234." in t)
    await slack.send_event(slack.user_message("note: courier lost it, refund", user="U0BOB", thread_ts=thread_ts))

    if restart_at == "after_staff_reply":
        await w.stop()
        await w.start()

    # 5. The customer writes again: it appears in the thread, and the bot stays quiet.
    answered_before = len(w.llm.calls)
    sent_before = len(tg.texts(42))
    await w.customer_writes("Thanks! It was a blue jacket.")
    await slack.wait_for(lambda: any("It was a blue jacket." in t for t in w.thread_texts()))
    await w.quiet()
    assert len(w.llm.calls) == answered_before and len(tg.texts(42)) == sent_before

    if restart_at == "after_customer_follow_up":
        await w.stop()
        await w.start()

    # 6. Staff resolve: the customer is told and asked to rate 1-5 with inline buttons.
    status, _ = await slack.send_action("handoff_resolve", "1", user="U0BOB", message_ts=thread_ts)
    assert status == 200
    await w.customer_sees(lambda t: any("resolved" in x for x in t))
    keyboard = [p for p in tg.sent("sendMessage") if "reply_markup" in p][-1]["reply_markup"]
    keyboard = json.loads(keyboard) if isinstance(keyboard, str) else keyboard
    assert [b["callback_data"] for b in keyboard["inline_keyboard"][0]] == [f"rate:42:{n}" for n in range(1, 6)]
    await w.customer_taps("rate:42:5")
    await tg.wait_for(lambda f: any(p.get("text") for p in f.sent("answerCallbackQuery")))
    assert "5/5" in tg.sent("answerCallbackQuery")[-1]["text"]

    # 7. The bot answers the customer again.
    await w.customer_writes("One more question: do you ship to Norway?")
    await w.customer_sees(lambda t: "echo: One more question: do you ship to Norway?" in t)

    # Nothing leaked: notes, the bot's own (echoed) thread posts, and nothing twice.
    texts = tg.texts(42)
    assert not any("courier lost it" in t for t in texts)
    assert texts.count("Hi Ann, Bob here. Let me look at order 1234.") == 1
    thread = await w.staff_read_thread()
    assert thread[0] == "Hi Ann, Bob here. Let me look at order 1234."
    assert set(thread[1:3]) == {"note: courier lost it, refund", ":raising_hand: Taken by <@U0BOB>."}
    assert sum("It was a blue jacket." in t for t in thread) == 1
    assert any("Resolved by <@U0BOB>" in t for t in thread)
    handoff = await w.bot.services["handoffs"].store.get(1)
    assert (handoff.state, handoff.rating, handoff.taken_by) == ("resolved", 5, "U0BOB")
    kinds = await w.bot.services["ledger"].read(
        lambda c: [k for (k,) in c.execute("SELECT kind FROM events WHERE kind != 'rate_limited' ORDER BY ts")])
    assert kinds == ["handoff_opened", "staff_reply", "handoff_taken", "handoff_resolved", "rating"]
    await w.stop()
