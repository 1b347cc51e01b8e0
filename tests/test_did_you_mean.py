""""Did you mean…?": when only the templates answer, likely FAQ entries are offered —
Telegram inline buttons (real-format updates → our webhook/poller → python-telegram-bot →
the fake Bot API), numbered lists in the console and the API — and a pick is answered
from the FAQ once, recorded as a cache answer, and shown to staff in Slack."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.durable import DurableStore
from adapters.telegram import TelegramAdapter
from bot.app import build_bot
from bot.config import Config
from faq_cache.entries import parse_yaml
from faq_cache.store import FaqStore
from fakes.slack_api import SIGNING_SECRET, STAFF_CHANNEL, FakeSlack
from fakes.slack_api import TOKEN as SLACK_TOKEN
from fakes.telegram_api import FakeTelegram, callback_update, text_update
from faq_helpers import SHOP_FAQ_YAML
from telegram_harness import inbox_rows, make_config, post_update, running, settled

ENTRIES = {e.questions[0]: e for e in parse_yaml(SHOP_FAQ_YAML)}
PASSWORD = ENTRIES["How do I reset my password?"]
UNSURE = "password trouble"  # close to PASSWORD, below the cache's threshold
NOWHERE = "xylophone quantum zebra"  # near no entry at all
HEADING = "Did you mean one of these?"
# The suggestion floor was chosen on the lexical matcher's scores, and UNSURE is "unsure" for it:
# the semantic matcher answers "password trouble" outright (bench/suggest_eval.py not re-run).
LEXICAL = {"TIERBOT_FAQ_MATCHER": "lexical"}
EXPIRED = "Sorry, that suggestion is no longer available. Please ask your question in your own words."
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fitted_faq(tmp_path_factory) -> Path:
    """A data dir with the shop FAQ imported and its model fitted and stored (fitting
    takes seconds on a loaded machine; each test copies the result)."""
    data = tmp_path_factory.mktemp("dym") / "data"
    with FaqStore(data / "faq" / "store", semantic=False) as store:
        store.import_entries(ENTRIES.values())
        store.matcher()
    return data


@pytest.fixture
def data_dir(fitted_faq, tmp_path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(fitted_faq, target)
    return target


@pytest.fixture
async def tg():
    async with FakeTelegram() as fake:
        yield fake


def whole_bot(config):
    """The bot as `tierbot serve` builds it, with no LLM keys (so the templates answer),
    its FAQ model loaded before the first message."""
    bot = build_bot(config)
    bot.services["faq"].matcher()
    return bot


async def ledger_rows(bot) -> list[tuple]:
    ledger = bot.services["ledger"]
    await ledger.flush()
    return await ledger.read(lambda c: c.execute(
        "SELECT tier, faq_entry, question, meta FROM messages ORDER BY id").fetchall())


def keyboard(params: dict) -> list[dict]:
    return [b for row in params.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


# -- Telegram --------------------------------------------------------------------------------
async def test_buttons_come_with_a_template_reply_only_when_entries_are_likely(tg, data_dir):
    config = make_config(tg.base_url, data_dir, **LEXICAL)
    bot = whole_bot(config)
    async with running(bot, config) as (client, _):
        await post_update(client, text_update(1, UNSURE))
        await tg.wait_for(lambda f: len(f.texts()) == 1)
        await post_update(client, text_update(2, NOWHERE))
        await tg.wait_for(lambda f: len(f.texts()) == 2)
        rows = await ledger_rows(bot)
    await bot.aclose()
    offered, plain = tg.sent()
    assert offered["text"].endswith(HEADING)
    buttons = keyboard(offered)
    assert buttons[0] == {"text": PASSWORD.questions[0], "callback_data": f"faq:{PASSWORD.id}"}
    assert all(len(b["callback_data"].encode()) <= 64 for b in buttons) and len(buttons) <= 3
    assert "reply_markup" not in plain and HEADING not in plain["text"]
    assert [r[0] for r in rows] == ["template", "template"]
    assert json.loads(rows[0][3])["suggested"][0] == PASSWORD.id


async def test_a_press_answers_that_entry_once_even_pressed_twice(tg, data_dir):
    config = make_config(tg.base_url, data_dir, **LEXICAL)
    bot = whole_bot(config)
    async with running(bot, config) as (client, server):
        await post_update(client, text_update(1, UNSURE))
        await tg.wait_for(lambda f: len(f.texts()) == 1)
        first, second = tg.press(2, 42, 0), tg.press(3, 42, 0)  # two taps: two updates, two query ids
        for update in (first, first, second):  # and the first one redelivered by Telegram
            assert (await post_update(client, update)).status == 200
        await tg.wait_for(lambda f: len(f.sent("answerCallbackQuery")) == 2 and len(f.texts()) == 2)
        await settled(server)  # nothing being answered or sent: a wrong answer would be out
        rows = await ledger_rows(bot)
    await bot.aclose()
    assert tg.texts()[1] == PASSWORD.answer and len(tg.texts()) == 2
    answered = tg.sent("answerCallbackQuery")
    assert {a["callback_query_id"] for a in answered} == {first["callback_query"]["id"],
                                                         second["callback_query"]["id"]}
    assert [(r[0], r[1], r[2]) for r in rows] == [("template", None, UNSURE),
                                                  ("cache", PASSWORD.id, PASSWORD.questions[0])]
    assert json.loads(rows[1][3])["kind"] == "suggestion"
    assert {state for _, state in inbox_rows(data_dir)} == {"done"}


async def test_polling_takes_button_presses_through_the_same_inbox(tg, data_dir):
    config = make_config(tg.base_url, data_dir, **LEXICAL, TELEGRAM_POLL_TIMEOUT_S="1")
    bot = whole_bot(config)
    store = DurableStore.in_dir(config.data_dir)
    adapter = TelegramAdapter.from_config(bot, config, store)
    stop = asyncio.Event()
    await adapter.start()
    poller = asyncio.create_task(adapter.poll(stop))
    try:
        tg.push_update(text_update(1, UNSURE))
        await tg.wait_for(lambda f: len(f.texts()) == 1)
        press = tg.press(2, 42, 0)
        tg.push_update(press)
        tg.push_update(tg.press(3, 42, 0))
        await tg.wait_for(lambda f: len(f.sent("answerCallbackQuery")) == 2 and len(f.texts()) == 2)
    finally:
        stop.set()
        await poller
        await adapter.stop(timeout=2)
        store.close()
        await bot.aclose()
    assert tg.texts() == [tg.texts()[0], PASSWORD.answer]
    assert inbox_rows(data_dir) == [("telegram:1", "done"), ("telegram:2", "done"), ("telegram:3", "done")]


@pytest.mark.parametrize("data", ["faq:no-such-entry", "faq:", "faq:" + "x" * 59, "faq:../../etc/passwd",
                                  "faq:" + "é" * 30])
async def test_bad_callback_data_gets_a_polite_answer_and_changes_nothing(tg, data_dir, data):
    config = make_config(tg.base_url, data_dir, **LEXICAL)
    bot = whole_bot(config)
    async with running(bot, config) as (client, server):
        await post_update(client, callback_update(5, data))
        await tg.wait_for(lambda f: f.sent("answerCallbackQuery"))
        await settled(server)  # nothing being answered or sent: a wrong answer would be out
        rows = await ledger_rows(bot)
    await bot.aclose()
    [answer] = tg.sent("answerCallbackQuery")
    assert answer["text"] == EXPIRED
    assert tg.sent() == [] and rows == []
    assert inbox_rows(data_dir) == [("telegram:5", "done")]


async def test_an_entry_removed_since_it_was_offered_is_not_answered(tg, data_dir):
    config = make_config(tg.base_url, data_dir, **LEXICAL)
    bot = whole_bot(config)
    async with running(bot, config) as (client, server):
        await post_update(client, text_update(1, UNSURE))
        await tg.wait_for(lambda f: len(f.texts()) == 1)
        assert bot.services["faq"].remove(PASSWORD.id)
        await post_update(client, tg.press(2, 42, 0))
        await tg.wait_for(lambda f: f.sent("answerCallbackQuery"))
        await settled(server)  # nothing being answered or sent: a wrong answer would be out
        rows = await ledger_rows(bot)
    await bot.aclose()
    assert tg.sent("answerCallbackQuery")[0]["text"] == EXPIRED
    assert len(tg.texts()) == 1 and [r[0] for r in rows] == ["template"]


async def test_fake_telegram_refuses_callback_data_over_64_bytes(tg):
    from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.error import BadRequest

    from fakes.telegram_api import TOKEN

    async with Bot(TOKEN, base_url=f"{tg.base_url}/bot") as api:
        with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
            await api.send_message(42, "x", reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("b", callback_data="y" * 65)]]))
        await api.answer_callback_query("77")
        with pytest.raises(BadRequest, match="(?i)query is too old"):
            await api.answer_callback_query("77")


# -- Slack ---------------------------------------------------------------------------------------
async def test_staff_see_in_slack_which_suggestion_the_customer_picked(tg, data_dir):
    async with FakeSlack(echo_bot_posts=True) as slack:
        config = make_config(tg.base_url, data_dir, **LEXICAL, SLACK_BOT_TOKEN=SLACK_TOKEN,
                             SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_STAFF_CHANNEL=STAFF_CHANNEL,
                             SLACK_API_URL=slack.base_url)
        bot = whole_bot(config)
        async with running(bot, config) as (client, server):
            slack.events_url = str(client.make_url("/slack/events"))
            # Two template answers in a row hand the conversation to staff; the second
            # reply still offers the likely entries.
            await post_update(client, text_update(1, UNSURE))
            await post_update(client, text_update(2, UNSURE + " again"))
            await tg.wait_for(lambda f: len(f.texts()) == 2)
            await slack.wait_for(lambda: slack.top_level(STAFF_CHANNEL))
            await post_update(client, tg.press(3, 42, 0))
            await tg.wait_for(lambda f: len(f.texts()) == 3)
            card = slack.top_level(STAFF_CHANNEL)[0]

            def picked() -> bool:
                return any("picked the suggestion" in m["text"] for m in slack.thread(STAFF_CHANNEL, card["ts"]))

            await slack.wait_for(picked)
            thread = [m["text"] for m in slack.thread(STAFF_CHANNEL, card["ts"])]
        await bot.aclose()
    assert keyboard(tg.sent()[1]) and tg.texts()[2] == PASSWORD.answer  # the customer got the answer
    [line] = [t for t in thread if "picked the suggestion" in t]
    assert PASSWORD.questions[0] in line and PASSWORD.id in line


# -- API and console -------------------------------------------------------------------------------
async def test_api_returns_the_list_and_answers_a_pick(data_dir):
    config = Config.from_env({"TIERBOT_DATA_DIR": str(data_dir), "TIERBOT_API_TOKEN": "t0ken", **LEXICAL}, dotenv=False)
    bot = whole_bot(config)
    auth = {"Authorization": "Bearer t0ken"}
    base = {"conversation_id": "c1", "user_id": "u1"}
    async with running(bot, config) as (client, _):
        offered = await (await client.post("/api/messages", json={**base, "text": UNSURE}, headers=auth)).json()
        plain = await (await client.post("/api/messages", json={**base, "text": NOWHERE}, headers=auth)).json()
        pick = offered["suggestions"][0]["entry_id"]
        picked = await client.post("/api/messages", json={**base, "pick": pick}, headers=auth)
        answer = await picked.json()
        bad = [await client.post("/api/messages", json={**base, **body}, headers=auth)
               for body in ({"pick": "no-such-entry"}, {"pick": 7}, {"pick": pick, "text": "hi"})]
        bad_bodies = [await r.json() for r in bad]
        rows = await ledger_rows(bot)
    await bot.aclose()
    assert offered["tier"] == "template" and offered["text"].endswith(HEADING)
    assert offered["suggestions"][0] == {"entry_id": PASSWORD.id, "question": PASSWORD.questions[0]}
    assert plain["suggestions"] == []
    assert picked.status == 200
    assert (answer["tier"], answer["text"], answer["suggestions"]) == ("cache", PASSWORD.answer, [])
    assert [r.status for r in bad] == [400, 400, 400]
    assert "pick" in bad_bodies[0]["error"]
    assert [r[0] for r in rows] == ["template", "template", "cache"]  # the bad picks changed nothing


def test_console_lists_suggestions_and_a_number_picks_one(data_dir):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(TIERBOT_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), **LEXICAL)
    session = f"{UNSURE}\n1\n{NOWHERE}\n1\n/quit\n"
    out = subprocess.run([sys.executable, "-m", "bot", "chat"], input=session, capture_output=True,
                         text=True, env=env, cwd=data_dir.parent, timeout=120).stdout
    turns = out.split("you> ")[1:]
    assert f"{HEADING}\n     1. {PASSWORD.questions[0]}\n" in turns[0]
    assert PASSWORD.answer in turns[1] and "tier=cache" in turns[1]
    assert "1. " not in turns[2]  # nothing offered: the next "1" is an ordinary message
    assert PASSWORD.answer not in turns[3] and "tier=template" in turns[3]


# -- pieces ---------------------------------------------------------------------------------------
async def test_a_claim_belongs_to_its_first_update_and_survives_a_restart(tmp_path):
    from adapters.claims import Claims

    store = DurableStore.in_dir(tmp_path)
    claims = Claims(store)
    assert await claims.claim("telegram:pick:42:1000:abc", "telegram:2")
    assert not await claims.claim("telegram:pick:42:1000:abc", "telegram:3")  # the second tap
    assert await claims.claim("telegram:pick:42:1001:abc", "telegram:3")  # another message's button
    store.close()
    store = DurableStore.in_dir(tmp_path)  # after a crash, the first update is retried: still its own
    try:
        claims = Claims(store)
        assert await claims.claim("telegram:pick:42:1000:abc", "telegram:2")
        assert not await claims.claim("telegram:pick:42:1000:abc", "telegram:3")
    finally:
        store.close()


async def test_suggestions_can_be_turned_off_and_bad_settings_are_refused(data_dir):
    from bot.config import ConfigError
    from bot.models import Event
    from faq_cache.settings import FaqSettings

    config = Config.from_env({"TIERBOT_DATA_DIR": str(data_dir), "TIERBOT_SUGGESTIONS": "0", **LEXICAL}, dotenv=False)
    bot = whole_bot(config)
    try:
        reply = await bot.handle(Event(platform="console", conversation_id="c", user_id="u", text=UNSURE))
    finally:
        await bot.aclose()
    assert reply.tier == "template" and reply.suggestions == () and HEADING not in reply.text
    with pytest.raises(ConfigError, match="TIERBOT_SUGGESTIONS"):
        FaqSettings.from_config(Config.from_env({"TIERBOT_DATA_DIR": str(data_dir), "TIERBOT_SUGGESTIONS": "50"},
                                                dotenv=False))


def test_an_entry_whose_id_would_not_fit_a_button_is_not_offered():
    from faq_cache.entries import FaqEntry
    from faq_cache.matcher import Matcher
    from faq_cache.suggestions import Suggestions

    long_id = "password-" + "x" * 60
    entries = [FaqEntry(long_id, "Reset it on the login page.", PASSWORD.questions),
               FaqEntry("ship", "2-5 days.", ENTRIES["How long does shipping take?"].questions)]

    class Store:  # the two reads Suggestions makes of a FaqStore
        matcher = Matcher.fit(entries, background=["what is the weather tomorrow", "play some music"])

        def current_matcher(self):
            return self.matcher

        def get(self, entry_id):
            return next((e for e in entries if e.id == entry_id), None)

    suggestions = Suggestions(Store())  # type: ignore[arg-type]
    assert [s.entry_id for s in suggestions.suggest("shipping time please")] == ["ship"]
    assert suggestions.suggest(UNSURE) == ()  # its best entry has the long id
    assert suggestions.lookup(long_id) is not None  # a pick of it would still be honoured


async def test_an_operator_floor_replaces_the_one_shipped_for_the_matcher(data_dir):
    from bot.models import Event

    async def offered(**env) -> tuple:
        # UNSURE is unsure for the lexical matcher (the semantic one answers it outright)
        config = Config.from_env({"TIERBOT_DATA_DIR": str(data_dir), "TIERBOT_FAQ_MATCHER": "lexical", **env},
                                 dotenv=False)
        bot = whole_bot(config)
        try:
            reply = await bot.handle(Event(platform="console", conversation_id="c", user_id="u", text=UNSURE))
        finally:
            await bot.aclose()
        return reply.suggestions

    assert (await offered())[0].entry_id == PASSWORD.id  # the shipped floor for the lexical matcher
    assert await offered(TIERBOT_SUGGEST_FLOOR="5") == ()  # no entry scores that high
