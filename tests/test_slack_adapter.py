"""Slack for staff, through the real slack-bolt and slack_sdk code over real HTTP:
a local fake Slack Web API, and signed (or badly signed) requests to /slack/events."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.slack import SlackSettings, install
from bot import Event, Reply, SupportBot
from bot.channels import Channels
from bot.config import Config, ConfigError
from fakes.slack_api import BOT_ID, SIGNING_SECRET, STAFF_CHANNEL, TOKEN, FakeSlack
from polling import until


class RecordingChannel:
    platform = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, object]] = []

    async def send(self, conversation_id, text, *, buttons=None):
        self.sent.append((conversation_id, text, buttons))

    def texts(self) -> list[str]:
        return [t for _, t, _ in self.sent]


class Harness:
    def __init__(self, fake: FakeSlack, env: dict[str, str]) -> None:
        self.fake, self.env = fake, env
        self.channel = RecordingChannel()
        self.server: TestServer | None = None

    async def start(self) -> "Harness":
        self.bot = SupportBot.from_env(self.env)
        channels = Channels()
        channels.register(self.channel)
        self.bot.services["channels"] = channels
        app = web.Application()
        self.adapter = install(app, self.bot)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.fake.events_url = str(self.server.make_url("/slack/events"))
        return self

    async def stop(self) -> None:
        await self.server.close()  # runs on_shutdown: the adapter finishes its work
        await self.bot.aclose()

    async def customer(self, text: str, conv: str = "42") -> Reply:
        reply = await self.bot.handle(Event(platform="telegram", conversation_id=conv, user_id="u42",
                                            user_name="Ada Lovelace", text=text))
        await self.adapter.drain()
        return reply

    async def settle(self) -> None:
        """Until nothing moves: the adapter's work done, and the echoes of the bot's own
        posts (which come back to us as events, like real Slack's) delivered and handled."""
        await self.adapter.drain()
        while self.fake.echoing:
            await self.fake.echoes_delivered()
            await self.adapter.drain()

    def card(self) -> dict:
        cards = self.fake.top_level(STAFF_CHANNEL)
        assert len(cards) == 1, cards
        return cards[0]


@pytest.fixture
async def fake():
    async with FakeSlack() as f:
        yield f


@pytest.fixture
def slack_env(base_env, fake) -> dict[str, str]:
    return {**base_env, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_STAFF_CHANNEL": STAFF_CHANNEL, "SLACK_API_URL": fake.base_url}


@pytest.fixture
async def h(fake, slack_env):
    harness = await Harness(fake, slack_env).start()
    yield harness
    await harness.stop()


def button_ids(message: dict) -> list[str]:
    return [e["action_id"] for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def block_text(message: dict) -> str:
    return json.dumps(message.get("blocks", []))


# -- signatures ------------------------------------------------------------------------------
async def test_handoff_card_shows_customer_platform_history_and_buttons(h):
    await h.customer("Hi, my order 1234 has not arrived")
    await h.customer("I want to talk to a human")
    card = h.card()
    text = block_text(card)
    assert "Ada Lovelace" in text and "Telegram" in text
    assert "my order 1234 has not arrived" in text and "I want to talk to a human" in text
    assert button_ids(card) == ["handoff_take", "handoff_resolve"]


async def test_correctly_signed_staff_reply_reaches_the_customer(h, fake):
    await h.customer("agent please")
    event = fake.user_message("Hi Ada, I'm Bob. Let me check.", thread_ts=h.card()["ts"])
    status, _ = await fake.send_event(event)
    await h.settle()
    assert status == 200
    assert h.channel.texts() == ["Hi Ada, I'm Bob. Let me check."]


@pytest.mark.parametrize("how", ["wrong_secret", "missing", "stale", "tampered"])
async def test_badly_signed_requests_get_401_and_change_nothing(h, fake, how):
    await h.customer("agent please")
    calls_before = len(fake.calls)
    event = fake.user_message("this must never reach the customer", thread_ts=h.card()["ts"])
    body = json.dumps(fake.envelope(event))
    kw: dict = {}
    if how == "wrong_secret":
        kw = {"secret": "not-the-signing-secret"}
    elif how == "missing":
        kw = {"signed": False}
    elif how == "stale":  # a replay of a correctly signed request, 6 minutes later
        kw = {"timestamp": int(time.time()) - 6 * 60}
    if how == "tampered":
        from fakes.slack_api import sign

        headers = sign(body)
        body = body.replace("never", "NEVER")
        status, _ = await fake.post_to_app(body, "application/json", kind="x", headers=headers, signed=False)
    else:
        status, _ = await fake.post_to_app(body, "application/json", kind="x", **kw)
    await h.settle()
    assert status == 401
    assert h.channel.sent == []
    assert len(fake.calls) == calls_before  # not even auth.test: nothing ran
    # ...and the same event, correctly signed, still works: the bad one claimed nothing.
    status, _ = await fake.post_to_app(json.dumps(json.loads(body.replace("NEVER", "never"))),
                                       "application/json", kind="x")
    await h.settle()
    assert status == 200 and h.channel.texts() == ["this must never reach the customer"]


async def test_url_verification_challenge(h, fake):
    body = json.dumps({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"})
    status, text = await fake.post_to_app(body, "application/json", kind="url_verification")
    assert status == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in text
    status, _ = await fake.post_to_app(body, "application/json", kind="url_verification", signed=False)
    assert status == 401


# -- retries, echoes, notes ------------------------------------------------------------------
async def test_slack_retries_have_no_second_effect_even_across_a_restart(fake, slack_env):
    h1 = await Harness(fake, slack_env).start()
    await h1.customer("agent please")
    event = fake.user_message("Only once, please.", thread_ts=h1.card()["ts"])
    event_id = fake.next_event_id()
    assert (await fake.send_event(event, event_id=event_id))[0] == 200
    assert (await fake.send_event(event, event_id=event_id, retry_num=1))[0] == 200
    await h1.settle()
    sent_first = list(h1.channel.texts())
    await h1.stop()

    h2 = await Harness(fake, slack_env).start()  # the server restarted; Slack retries again
    assert (await fake.send_event(event, event_id=event_id, retry_num=2))[0] == 200
    await h2.settle()
    await h2.stop()
    assert sent_first == ["Only once, please."] and h2.channel.sent == []


async def test_notes_stay_internal_and_the_bots_own_posts_are_never_relayed(h, fake):
    fake.echo_bot_posts = True  # Slack sends the bot its own messages back as events
    await h.customer("I need a real person")
    await h.settle()
    thread = h.card()["ts"]
    await fake.send_event(fake.user_message("note: customer seems upset, be gentle", thread_ts=thread))
    await fake.send_event(fake.user_message("NOTE: VIP", thread_ts=thread))
    await h.customer("hello?? anyone")   # forwarded into the thread by the bot, echoed back
    await h.settle()
    await fake.send_event(fake.user_message("Sorry for the wait!", thread_ts=thread))
    await h.settle()
    assert h.channel.texts() == ["Sorry for the wait!"]
    forwarded = [m["text"] for m in fake.thread(STAFF_CHANNEL, thread) if m.get("bot_id") == BOT_ID]
    assert any("hello?? anyone" in t for t in forwarded)
    echoed = [k for k, s in fake.deliveries if k == "message" and s == 200]
    assert len(echoed) >= 3  # the echoes really arrived, and were ignored


async def test_a_customer_cannot_ping_the_staff_channel(h, fake):
    await h.customer("human please <!channel> <https://evil.example|click>")
    await h.customer("<@U0BOB> & <!here>")
    texts = block_text(h.card()) + "".join(m["text"] for m in fake.thread(STAFF_CHANNEL, h.card()["ts"]))
    assert "<!channel>" not in texts and "<!here>" not in texts and "<@U0BOB>" not in texts
    assert "&lt;!channel&gt;" in texts


# -- buttons -----------------------------------------------------------------------------------
async def test_take_and_resolve_buttons(h, fake):
    await h.customer("talk to a person")
    card = h.card()
    status, _ = await fake.send_action("handoff_take", "1", user="U0BOB", message_ts=card["ts"])
    await h.settle()
    assert status == 200
    assert await h.bot.services["handoffs"].state("telegram", "42") == "taken"
    assert "Taken by <@U0BOB>" in block_text(h.card()) and button_ids(h.card()) == ["handoff_resolve"]

    await fake.send_action("handoff_resolve", "1", user="U0BOB", message_ts=card["ts"])
    await h.settle()
    assert await h.bot.services["handoffs"].state("telegram", "42") == "bot"
    assert button_ids(h.card()) == []
    conv, text, buttons = h.channel.sent[-1]
    assert conv == "42" and "resolved" in text
    assert [[(b.text, b.data) for b in row] for row in buttons] == [[(str(n), f"rate:42:{n}") for n in range(1, 6)]]
    notes = [m["text"] for m in fake.thread(STAFF_CHANNEL, card["ts"])]
    assert any("Taken by" in n for n in notes) and any("Resolved by" in n for n in notes)

    # A second click (another staff member, a double click) changes nothing, says so.
    await fake.send_action("handoff_resolve", "1", user="U0EVE", message_ts=card["ts"])
    await h.settle()
    assert len([s for s in h.channel.sent if s[2]]) == 1
    assert fake.called("chat.postEphemeral")[-1]["user"] == "U0EVE"

    reply = await h.customer("what are your opening hours?")
    assert reply.tier == "template" and reply.text  # the bot answers again
    await fake.send_event(fake.user_message("one more thing", thread_ts=card["ts"]))
    await h.settle()
    assert "one more thing" not in h.channel.texts()  # resolved: not relayed, staff told
    assert "resolved" in fake.called("chat.postEphemeral")[-1]["text"]


# -- staff questions, ack time, shutdown ------------------------------------------------------
class SlowLlm:
    name = "llm"

    def __init__(self, delay: float, gate: asyncio.Event | None = None) -> None:
        self.delay = delay
        self.gate = gate  # when given, the answer also waits for it

    async def answer(self, event, turn):
        if turn.route != "staff":
            return None
        from bot.models import Attempt

        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay)
        turn.record(Attempt("groq", "llama-3.1-8b-instant", "ok", self.delay * 1000, input_tokens=120,
                            output_tokens=30, cost_usd=0.0000123))
        return Reply(text="Refunds take 5-10 business days.", tier="llm", provider="groq",
                     model="llama-3.1-8b-instant")


async def test_mention_is_acked_at_once_and_answered_with_tier_provider_and_cost(h, fake):
    answer_may_finish = asyncio.Event()
    h.bot.tiers.insert(1, SlowLlm(1.0, gate=answer_may_finish))
    t0 = time.perf_counter()
    status, _ = await fake.send_event(fake.mention("how long do refunds take?"))
    acked = time.perf_counter() - t0
    # Slack's limit is 3 s; the answer is held until after the ack, so it cannot be in it.
    assert status == 200 and acked < 2.0
    assert fake.called("chat.postMessage") == []
    answer_may_finish.set()
    await h.settle()
    (answer,) = fake.called("chat.postMessage")
    assert answer["thread_ts"]  # answered in a thread under the question
    assert "Refunds take 5-10 business days." in answer["text"]
    assert "tier=llm" in answer["text"] and "provider=groq" in answer["text"] and "$0.000012" in answer["text"]


async def test_direct_message_question_is_answered_by_the_whole_pipeline(h, fake):
    event = fake.user_message("what is your refund policy?", channel="D0STAFFDM", channel_type="im")
    await fake.send_event(event)
    await h.settle()
    (answer,) = fake.called("chat.postMessage")
    assert answer["channel"] == "D0STAFFDM" and "tier=template" in answer["text"]
    assert "refund" in answer["text"].lower()


async def test_shutdown_finishes_work_already_acked(fake, slack_env):
    h = await Harness(fake, slack_env).start()
    h.bot.tiers.insert(1, SlowLlm(0.5))
    status, _ = await fake.send_event(fake.mention("refunds?"))
    assert status == 200 and fake.called("chat.postMessage") == []
    await h.stop()  # SIGTERM path: on_shutdown waits for the answer in flight
    assert len(fake.called("chat.postMessage")) == 1


# -- Web API rate limits and outages ------------------------------------------------------------
async def test_web_api_429_is_retried_after_retry_after(h, fake):
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    await h.customer("human")
    posts = [c for c in fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in posts] == [429, 200]
    assert posts[1].at - posts[0].at >= 1.0
    assert h.card()["ts"]


async def test_posts_for_staff_wait_out_a_slack_outage_even_across_a_restart(fake, slack_env):
    h1 = await Harness(fake, slack_env).start()
    fake.fail_next("chat.postMessage", "internal_error", status=500, times=10_000)
    await h1.bot.handle(Event(platform="telegram", conversation_id="42", user_id="u42", user_name="Ada",
                              text="human please"))
    await h1.bot.handle(Event(platform="telegram", conversation_id="42", user_id="u42", user_name="Ada",
                              text="is anyone there?"))
    await until(lambda: any(c.method == "chat.postMessage" for c in fake.calls), what="a post tried")
    assert fake.top_level(STAFF_CHANNEL) == []  # Slack is down; we kept trying
    await h1.adapter.aclose(flush_timeout=0)  # the server stops with the posts still queued
    await h1.stop()

    fake._failures.clear()  # Slack is back; so is the server
    h2 = await Harness(fake, slack_env).start()
    await h2.settle()
    card = h2.card()
    assert "human please" in block_text(card)
    assert [m["text"] for m in fake.thread(STAFF_CHANNEL, card["ts"])] == ["*Ada:* is anyone there?"]
    await h2.stop()


# -- slash commands ------------------------------------------------------------------------------
async def test_slash_tierbot_handoffs_and_stats(h, fake):
    status, body = await fake.send_command("handoffs")
    assert status == 200 and "No open handoffs" in body
    await h.customer("speak to a person")
    await h.customer("hello?", conv="43")
    await h.customer("human!", conv="43")
    status, body = await fake.send_command("handoffs")
    assert "2 open handoffs" in body and "Ada Lovelace" in body
    status, body = await fake.send_command("stats")
    assert status == 200 and "Handoffs: 2 opened, 0 resolved, 2 open now" in body
    status, body = await fake.send_command("frobnicate")
    assert "Unknown subcommand" in body and "Usage" in body


async def test_slash_faq_add_list_remove_changes_what_customers_get(fake, slack_env):
    h = await Harness(fake, {**slack_env, "SLACK_FAQ_EDITORS": "U0ALICE, U0BOB"}).start()
    try:
        await _faq_add_list_remove(h, fake)
    finally:
        await h.stop()


async def _faq_add_list_remove(h, fake):
    question, answer = "Do you ship to Norway?", "Yes, we ship to Norway in 3-6 business days."
    _, body = await fake.send_command(f'faq add "{question}" "{answer}"', user="U0EVE")
    assert "Only FAQ editors" in body and "Nothing was changed" in body
    _, body = await fake.send_command("faq list", user="U0EVE")  # reading is for all staff
    assert "FAQ is empty" in body
    _, body = await fake.send_command(f'faq add "{question}" "{answer}"')
    assert "Added to FAQ entry" in body
    entry_id = body.split("`")[1]
    _, body = await fake.send_command("faq list")
    assert entry_id in body and question in body

    assert await h.bot.services["faq_tier"].ready(60)  # refitted in the background (no customer waits)
    reply = await h.customer("do you ship to norway?")
    assert (reply.tier, reply.text) == ("cache", answer)

    _, body = await fake.send_command("faq add only-a-question")
    assert "Usage" in body
    _, body = await fake.send_command(f"faq remove {entry_id}", user="U0EVE")
    assert "Only FAQ editors" in body
    assert (await h.customer("do you ship to norway?", conv="45")).tier == "cache"
    _, body = await fake.send_command(f"faq remove {entry_id}")
    assert "Removed" in body
    _, body = await fake.send_command(f"faq remove {entry_id}")
    assert "No FAQ entry" in body
    reply = await h.customer("do you ship to norway?", conv="44")
    assert reply.tier != "cache"


def test_half_configured_slack_is_a_clear_error():
    assert SlackSettings.from_config(Config(env={})) is None
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET, SLACK_STAFF_CHANNEL"):
        SlackSettings.from_config(Config(env={"SLACK_BOT_TOKEN": TOKEN}))
    with pytest.raises(ConfigError, match="SLACK_FAQ_EDITORS.*not a user ID: bob@example.com"):
        SlackSettings.from_config(Config(env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                                              "SLACK_STAFF_CHANNEL": "C1", "SLACK_FAQ_EDITORS": "U01,bob@example.com"}))
    with pytest.raises(ConfigError, match="SLACK_API_URL"):
        SlackSettings.from_config(Config(env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                                              "SLACK_STAFF_CHANNEL": "C1", "SLACK_API_URL": "ftp://x"}))


async def test_not_configured_means_no_route(base_env):
    bot = SupportBot.from_env(base_env)
    app = web.Application()
    assert install(app, bot) is None
    assert "staff_desk" not in bot.services
    await bot.aclose()



async def test_slash_report_is_acked_then_posted_from_the_ledger(h, fake):
    assert "reports" in h.bot.services  # the ledger plugin's ReportService
    await h.customer("what are your opening hours?")
    await h.customer("where is my order?", conv="43")
    status, body = await fake.send_command("stats")
    assert status == 200 and "Today so far:* 2 messages in 2 conversations" in body
    assert "By tier: template 2" in body

    status, body = await fake.send_command("report", channel="C0REPORTS")
    assert status == 200 and "Building the report" in body
    await h.settle()
    (posted,) = fake.called("chat.postMessage")
    assert posted["channel"] == "C0REPORTS" and posted["blocks"] and posted["text"]

    _, body = await fake.send_command("report 2026-02-30")
    assert "YYYY-MM-DD" in body
    await h.settle()
    assert len(fake.called("chat.postMessage")) == 1


async def test_report_scheduler_poster_posts_to_the_report_channel(fake, slack_env):
    h = await Harness(fake, {**slack_env, "SLACK_REPORT_CHANNEL": "C0REPORTS"}).start()
    ts = await h.adapter.post_report([{"type": "section", "text": {"type": "mrkdwn", "text": "*Daily*"}}], "Daily")
    await h.stop()
    (posted,) = fake.called("chat.postMessage")
    assert posted["channel"] == "C0REPORTS" and posted["text"] == "Daily" and ts


async def test_staff_slack_formatting_reaches_the_customer_as_plain_text(h, fake):
    await h.customer("human please")
    thread = h.card()["ts"]
    await fake.send_event(fake.user_message(
        "See <https://shop.example.com/returns|our returns page> &amp; ask <@U0EVE> or <mailto:a@b.c|a@b.c> 5 &lt; 6",
        thread_ts=thread))
    await h.settle()
    assert h.channel.texts() == [
        "See our returns page (https://shop.example.com/returns) & ask or a@b.c 5 < 6"]


async def test_mentioning_the_bot_in_a_handoff_thread_asks_it_and_is_not_relayed(h, fake):
    await h.customer("human please")
    thread = h.card()["ts"]
    mention = fake.mention("what is the refund policy?", thread_ts=thread)
    message = {**mention, "type": "message"}  # Slack sends both events for one post
    await fake.send_event(message)
    await fake.send_event(mention)
    await h.settle()
    assert h.channel.sent == []
    answers = [m for m in fake.thread(STAFF_CHANNEL, thread) if "tier=" in m["text"]]
    assert len(answers) == 1 and "refund" in answers[0]["text"].lower()


async def test_unhandled_event_types_are_acknowledged(h, fake):
    status, _ = await fake.send_event({"type": "reaction_added", "user": "U0BOB", "reaction": "thumbsup",
                                       "item": {"type": "message", "channel": STAFF_CHANNEL, "ts": "1.1"}})
    assert status == 200


async def test_staff_channel_given_by_name_still_relays_thread_replies(fake, slack_env):
    h = await Harness(fake, {**slack_env, "SLACK_STAFF_CHANNEL": "#staff"}).start()
    await h.customer("human please")
    card = h.card()  # posted to #staff, which Slack knows as C0STAFF
    await fake.send_event(fake.user_message("Hello from staff", channel=STAFF_CHANNEL, thread_ts=card["ts"]))
    await h.settle()
    await h.stop()
    assert h.channel.texts() == ["Hello from staff"]


async def test_a_staff_reply_acked_but_unfinished_before_a_crash_is_delivered_after_restart(fake, slack_env):
    import contextlib
    import sqlite3
    from pathlib import Path

    h1 = await Harness(fake, slack_env).start()
    await h1.customer("human please")
    thread = h1.card()["ts"]
    await h1.stop()
    # The process died right after acking this staff reply: the claim is on disk, pending.
    event = fake.user_message("Sorry for the wait, Ada!", thread_ts=thread)
    db = sqlite3.connect(Path(slack_env["TIERBOT_DATA_DIR"]) / "slack_events.sqlite3")
    with db:
        db.execute("INSERT INTO seen_events VALUES ('EvCRASHED', strftime('%s','now') - 60, ?, 'pending')",
                   (json.dumps(event),))
    db.close()

    h2 = await Harness(fake, slack_env).start()

    def recovered() -> bool:  # the start-up recovery took the claim and finished its work
        with contextlib.closing(sqlite3.connect(Path(slack_env["TIERBOT_DATA_DIR"]) / "slack_events.sqlite3")) as c:
            return c.execute("SELECT state FROM seen_events WHERE event_id = 'EvCRASHED'").fetchone() == ("done",)

    await until(recovered, what="the pending event recovered")
    await h2.settle()
    assert h2.channel.texts() == ["Sorry for the wait, Ada!"]
    status, _ = await fake.send_event(event, event_id="EvCRASHED", retry_num=1)  # Slack's late retry
    await h2.settle()
    await h2.stop()
    assert status == 200 and h2.channel.texts() == ["Sorry for the wait, Ada!"]


async def test_a_desk_only_worker_leaves_unfinished_events_to_the_web_process(fake, slack_env):
    import sqlite3
    from pathlib import Path

    from adapters.slack import attach_desk

    h1 = await Harness(fake, slack_env).start()
    await h1.customer("human please")
    thread = h1.card()["ts"]
    await h1.stop()
    event = fake.user_message("Sorry for the wait, Ada!", thread_ts=thread)
    path = Path(slack_env["TIERBOT_DATA_DIR"]) / "slack_events.sqlite3"
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO seen_events VALUES ('EvPENDING', strftime('%s','now') - 60, ?, 'pending')",
                   (json.dumps(event),))

    bot = SupportBot.from_env(slack_env)  # a `tierbot poll` worker: posts to Slack, serves no events
    channel = RecordingChannel()
    bot.services["channels"] = Channels()
    bot.services["channels"].register(channel)
    desk = attach_desk(bot)
    await desk.start()
    await asyncio.sleep(0.2)
    await desk.aclose()
    await bot.aclose()
    assert channel.sent == []
    assert db.execute("SELECT state FROM seen_events WHERE event_id = 'EvPENDING'").fetchone() == ("pending",)
    db.close()


async def test_card_says_when_a_handoff_came_in_outside_staff_hours(fake, slack_env):
    import datetime as dt

    env = {**slack_env, "TIERBOT_STAFF_HOURS": "mon-fri 09:00-17:00", "TIERBOT_STAFF_TZ": "UTC"}
    h = await Harness(fake, env).start()
    friday_evening = dt.datetime(2026, 11, 27, 20, 0, tzinfo=dt.timezone.utc).timestamp()
    h.bot.services["handoffs"].clock = lambda: friday_evening
    reply = await h.customer("human please")
    card = block_text(h.card())
    await h.stop()
    assert "outside staff hours" in card and "Monday at 09:00 (UTC)" in card
    assert "Monday at 09:00 (UTC)" in reply.text  # and the customer was told the same


async def test_a_long_rate_limit_delays_posts_for_staff_but_never_drops_them(h, fake):
    # More 429s in a row than slack_sdk retries: the outbox takes over and keeps the post.
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=0, times=5)
    await h.customer("human please")
    await h.settle()
    statuses = [c.status for c in fake.calls if c.method == "chat.postMessage"]
    assert statuses[:5] == [429] * 5 and statuses[5:] == [200]
    assert "human please" in block_text(h.card())


# -- streamed staff answers ---------------------------------------------------------------------
def staff_saw(fake: FakeSlack, thread: str) -> list[str]:
    """The bot's messages in the thread as staff see them at the end (deleted ones gone)."""
    return [m["text"] for m in fake.thread(STAFF_CHANNEL, thread) if m.get("bot_id") == BOT_ID]


async def test_a_long_staff_answer_streams_into_the_thread_with_who_answered_under_it(fake, slack_env):
    from fakes.llm_servers import FakeProviders, ok
    from fakes.llm_bot import llm_env

    answer = "Refunds take five to ten business days once the parcel is back with us. " * 3
    async with FakeProviders() as fp:
        fp.groq.default = ok(answer.strip(), input_tokens=40)
        env = {**slack_env, **llm_env(fp, slack_env["TIERBOT_DATA_DIR"], chain="groq", deadline=8, attempt=4),
               "SLACK_STREAM_BUFFER_CHARS": "40"}
        h = await Harness(fake, env).start()
        try:
            mention = fake.mention("how long do refunds take?")
            await fake.send_event(mention)
            await h.settle()
            await fake.wait_for(lambda: fake.called("chat.stopStream"))
        finally:
            await h.stop()
    assert len(fake.called("chat.appendStream")) >= 1  # it grew in place
    assert fake.called("chat.postMessage") == []  # not posted a second time
    (msg,) = [m for m in fake.thread(STAFF_CHANNEL, mention["ts"]) if m.get("bot_id") == BOT_ID]
    assert msg["text"] == answer.strip()
    assert "provider=groq" in block_text(msg) and msg["blocks"][0]["type"] == "context"
    start = fake.called("chat.startStream")[0]
    assert (start["recipient_user_id"], start["recipient_team_id"]) == ("U0BOB", mention["team"])


async def test_a_cut_staff_stream_never_shows_the_answer_twice(fake, slack_env):
    from fakes.llm_servers import FakeProviders, cut, ok
    from fakes.llm_bot import llm_env

    words = "The quick brown fox jumps over the lazy dog and runs far away into the woods."
    async with FakeProviders() as fp:
        fp.groq.default = cut(f"[groq] {words}", cut_after=6)
        fp.gemini.default = ok(f"[gemini] {words}")
        env = {**slack_env, **llm_env(fp, slack_env["TIERBOT_DATA_DIR"], chain="groq,gemini", deadline=8, attempt=4,
                                      TIERBOT_GROQ_MODELS="llama-a,llama-b"),
               "SLACK_STREAM_BUFFER_CHARS": "1"}
        h = await Harness(fake, env).start()
        try:
            mention = fake.mention("tell me about the fox")
            await fake.send_event(mention)
            await h.settle()
            await fake.wait_for(lambda: staff_saw(fake, mention["ts"]) and not any(
                m.get("streaming") for m in fake.thread(STAFF_CHANNEL, mention["ts"])))
        finally:
            await h.stop()
    assert staff_saw(fake, mention["ts"]) == [f"[gemini] {words}"]  # no duplicated prefix
    # Groq's words were streamed, then withdrawn: stopped and deleted, not appended to.
    # (a tail that could begin a secret is held back by the redactor, so it may end short)
    (withdrawn,) = [m["text"] for m in fake.deleted]
    assert withdrawn.startswith("[groq] The quick brown") and "[groq] The quick brown fox jumps".startswith(withdrawn)
    assert len(fake.called("chat.startStream")) == 2


async def test_short_staff_answers_are_posted_whole_without_a_stream(h, fake):
    await fake.send_event(fake.mention("what is the refund policy?"))
    await h.settle()
    assert fake.called("chat.startStream") == [] and len(fake.called("chat.postMessage")) == 1
