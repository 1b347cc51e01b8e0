"""Telegram end to end: real-format Update JSON → our webhook → python-telegram-bot →
the fake Bot API on 127.0.0.1, asserting what the customer would see."""
from __future__ import annotations

import pytest

from fakes.telegram_api import (FakeTelegram, callback_update, photo_update, sticker_update, text_update,
                                voice_update)
from polling import until
from telegram_harness import (EchoTier, StreamingEcho, inbox_rows, make_bot, make_config, post_update, running,
                              settled)


@pytest.fixture
async def tg():
    async with FakeTelegram() as fake:
        yield fake


def sent_texts(fake: FakeTelegram, chat_id: int = 42) -> list[str]:
    return fake.texts(chat_id)


async def test_slow_answer_shows_typing_indicator_first(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false",
                         TELEGRAM_TYPING_DELAY_S="0.05")
    tier = EchoTier(delay=1.0)  # far past the typing delay, even when the loop runs late
    async with running(make_bot(config, tier), config) as (client, _):
        resp = await post_update(client, text_update(1, "where is my parcel?"))
        assert resp.status == 200
        await tg.wait_for(lambda f: f.texts(42))
    assert sent_texts(tg) == ["echo: where is my parcel?"]
    actions = tg.sent("sendChatAction")
    assert actions and actions[0]["action"] == "typing" and str(actions[0]["chat_id"]) == "42"
    # the typing indicator went out before the answer
    first_action = next(c.at for c in tg.calls if c.method == "sendChatAction")
    answer = next(c.at for c in tg.calls if c.method == "sendMessage")
    assert first_action < answer
    event = tier.calls[0]
    assert (event.platform, event.conversation_id, event.user_id, event.user_name) == ("telegram", "42", "42", "Ann")


async def test_instant_answer_skips_the_typing_indicator(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false")
    async with running(make_bot(config, EchoTier()), config) as (client, server):
        await post_update(client, text_update(1, "hi"))
        await tg.wait_for(lambda f: f.texts(42))
        await settled(server)
    assert tg.texts() == ["echo: hi"] and tg.sent("sendChatAction") == []


async def test_redelivered_update_is_answered_once(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    tier = EchoTier()
    async with running(make_bot(config, tier), config) as (client, server):
        update = text_update(7, "hello")
        statuses = [(await post_update(client, update)).status for _ in range(3)]
        await tg.wait_for(lambda f: f.texts(42))
        await settled(server)
    assert statuses == [200, 200, 200]
    assert sent_texts(tg) == ["echo: hello"]
    assert len(tier.calls) == 1


async def test_start_and_help_use_templates_without_the_pipeline(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    tier = EchoTier()
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, text_update(1, "/start"))
        await post_update(client, text_update(2, "/help"))
        await tg.wait_for(lambda f: len(f.texts(42)) == 2)
    start, help_ = sent_texts(tg)
    assert start.startswith("Hi Ann!") and "Example Shop" in start
    assert "talk to a human" in help_
    assert tier.calls == []


async def test_stickers_and_voice_get_a_polite_template(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    tier = EchoTier()
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, sticker_update(1))
        await post_update(client, voice_update(2))
        await tg.wait_for(lambda f: len(f.texts(42)) == 2)
    assert all("I can only read text and photos" in t for t in sent_texts(tg))
    assert tier.calls == []


async def test_photo_with_caption_reaches_the_pipeline_as_an_image(tg, tmp_path):
    tg.add_file("PHOTO1", b"\xff\xd8\xff\xe0fake-jpeg-bytes")
    config = make_config(tg.base_url, tmp_path / "data")
    tier = EchoTier()
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, photo_update(1, "PHOTO1", caption="is this damaged?"))
        await tg.wait_for(lambda f: f.texts(42))
    event = tier.calls[0]
    assert event.text == "is this damaged?"
    [image] = event.images
    assert image.file_id == "PHOTO1" and image.data == b"\xff\xd8\xff\xe0fake-jpeg-bytes"
    assert sent_texts(tg) == ["echo: is this damaged?"]


async def test_groups_answer_only_when_mentioned_or_replied_to(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    tier = EchoTier()
    group = -1001
    async with running(make_bot(config, tier), config) as (client, server):
        await post_update(client, text_update(1, "chatting among ourselves", chat_id=group, user_id=5,
                                              chat_type="supergroup"))
        await post_update(client, text_update(2, "@tierbot_test_bot where is my order?", chat_id=group,
                                              user_id=5, chat_type="supergroup"))
        await post_update(client, text_update(3, "and the refund?", chat_id=group, user_id=5,
                                              chat_type="supergroup", reply_to_bot=True))
        await tg.wait_for(lambda f: len(f.texts(group)) == 2)
        await settled(server)
    assert [e.text for e in tier.calls] == ["where is my order?", "and the refund?"]
    assert tg.texts(group) == ["echo: where is my order?", "echo: and the refund?"]
    # answers in a group quote the message they answer
    assert tg.sent()[0]["reply_parameters"]["message_id"] == 3
    assert ("telegram:1", "done") in inbox_rows(tmp_path / "data")


async def test_long_answer_is_split_on_paragraphs_under_4096(tg, tmp_path):
    paragraphs = [("Paragraph %d. " % i) + "word " * 300 for i in range(6)]  # ~1.5k chars each
    long_text = "\n\n".join(p.strip() for p in paragraphs)
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false")
    async with running(make_bot(config, EchoTier(text=long_text)), config) as (client, server):
        await post_update(client, text_update(1, "tell me everything"))
        await tg.wait_for(lambda f: len(f.texts(42)) >= 3)
        await settled(server)
    parts = sent_texts(tg)
    assert all(len(p) <= 4096 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts)  # cut at paragraph boundaries
    assert "\n\n".join(parts) == long_text


async def test_markup_characters_arrive_verbatim(tg, tmp_path):
    text = "Use *bold* or _x_ [link](http://a) <b>1 < 2</b> `code"
    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, EchoTier(text=text)), config) as (client, _):
        await post_update(client, text_update(1, "format?"))
        await tg.wait_for(lambda f: f.texts(42))
    [params] = tg.sent()
    assert params["text"] == text and "parse_mode" not in params


async def test_private_chat_streams_drafts_then_sends_the_final_text(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    tier = StreamingEcho(["The ", "quick ", "brown ", "fox"], final="The quick brown fox jumps.")
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, text_update(1, "stream please"))
        await tg.wait_for(lambda f: f.texts(42))
    drafts = tg.sent("sendMessageDraft")
    assert [d["text"] for d in drafts][:2] == ["The ", "The quick "]
    assert len({d["draft_id"] for d in drafts}) == 1 and int(drafts[0]["draft_id"]) != 0
    assert sent_texts(tg) == ["The quick brown fox jumps."]  # the final Reply is authoritative
    last_draft = max(c.at for c in tg.calls if c.method == "sendMessageDraft")
    assert last_draft < next(c.at for c in tg.calls if c.method == "sendMessage")


async def test_a_withdrawn_stream_is_replaced_in_the_draft_never_appended_to(tg, tmp_path):
    from bot import StreamReset

    config = make_config(tg.base_url, tmp_path / "data")
    tier = StreamingEcho(["The ", "quick ", StreamReset("restarted"), "A fast ", "fox."], final="A fast fox.")
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, text_update(1, "stream please"))
        await tg.wait_for(lambda f: f.texts(42))
    drafts = [d["text"] for d in tg.sent("sendMessageDraft")]
    assert drafts and set(drafts) <= {"The ", "The quick ", "A fast ", "A fast fox."}  # never "The quick A fast"
    assert sent_texts(tg) == ["A fast fox."]


async def test_groups_do_not_get_drafts(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data")
    tier = StreamingEcho(["a ", "b"])
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, text_update(1, "@tierbot_test_bot hi", chat_id=-5, chat_type="group"))
        await tg.wait_for(lambda f: f.texts(-5))
    assert tg.sent("sendMessageDraft") == []
    assert tg.texts(-5) == ["a b"]


async def test_empty_reply_sends_nothing_but_marks_the_update_answered(tg, tmp_path):
    class HandedOff:
        name = "handoff"

        async def answer(self, event, turn):
            from bot.models import Reply
            return Reply(text="", tier="staff")

    config = make_config(tg.base_url, tmp_path / "data")
    async with running(make_bot(config, HandedOff()), config) as (client, server):
        await post_update(client, text_update(1, "are you there?"))
        await until(lambda: ("telegram:1", "done") in server.telegram.store.query("SELECT key, state FROM inbox"),
                    what="the update marked answered")
    assert tg.sent() == []
    assert inbox_rows(tmp_path / "data") == [("telegram:1", "done")]


async def test_callback_buttons_dispatch_to_registered_handler(tg, tmp_path):
    got = []

    async def rate(platform, conversation_id, user_id, rest):
        got.append((platform, conversation_id, user_id, rest))
        return "Thanks for rating us!"

    config = make_config(tg.base_url, tmp_path / "data")
    bot = make_bot(config, EchoTier(), services={"callback_handlers": {"rate": rate}})
    async with running(bot, config) as (client, _):
        await post_update(client, callback_update(1, "rate:5"))
        await post_update(client, callback_update(1, "rate:5"))  # redelivered: no second effect
        await post_update(client, callback_update(2, "unknown:zzz"))
        await tg.wait_for(lambda f: len(f.sent("answerCallbackQuery")) == 2)
    assert got == [("telegram", "42", "42", "5")]
    answers = tg.sent("answerCallbackQuery")
    assert answers[0]["callback_query_id"] == "cq1" and answers[0]["text"] == "Thanks for rating us!"
    edits = tg.sent("editMessageReplyMarkup")
    assert len(edits) == 1 and edits[0]["message_id"] == "1000"  # buttons removed after the press


async def test_staff_reply_through_the_customer_channel_with_buttons(tg, tmp_path):
    from bot.channels import Button

    config = make_config(tg.base_url, tmp_path / "data")
    bot = make_bot(config, EchoTier())
    async with running(bot, config) as (client, _):
        channels = bot.services["channels"]
        await channels.send_to_customer("telegram", "42", "Resolved! How did we do?",
                                        buttons=[[Button(str(n), f"rate:{n}") for n in range(1, 6)]])
        await tg.wait_for(lambda f: f.texts(42))
        with pytest.raises(ValueError):
            await channels.send_to_customer("telegram", "42", "x", buttons=[[Button("x", "y" * 65)]])
    [params] = tg.sent()
    assert params["text"] == "Resolved! How did we do?"
    keyboard = params["reply_markup"]["inline_keyboard"]
    assert [b["callback_data"] for b in keyboard[0]] == ["rate:1", "rate:2", "rate:3", "rate:4", "rate:5"]
