"""Handoff at the pipeline level: who answers while a person has the conversation,
what staff see, what the customer is told, and what survives a restart."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot import Event, SupportBot
from bot.channels import Button, Channels
from bot.storage.sqlite.handoffs import HandoffStore


class RecordingChannel:
    platform = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, list[list[Button]] | None]] = []

    async def send(self, conversation_id, text, *, buttons=None):
        self.sent.append((conversation_id, text, buttons))


class RecordingDesk:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def handoff_opened(self, handoff, history):
        self.calls.append(("opened", handoff.id, [t.text for t in history]))

    async def customer_wrote(self, handoff, event):
        self.calls.append(("wrote", handoff.id, event.text))

    async def handoff_changed(self, handoff):
        self.calls.append(("changed", handoff.id, handoff.state))


class RecordingLedger:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    async def record_event(self, kind, conversation_id="", data=None, ts=None):
        self.events.append((kind, conversation_id, data or {}))


def msg(text: str, conv: str = "42") -> Event:
    return Event(platform="telegram", conversation_id=conv, user_id="u42", user_name="Ada", text=text)


def build(env: dict[str, str]) -> tuple[SupportBot, RecordingChannel, RecordingDesk, RecordingLedger]:
    bot = SupportBot.from_env(env)
    channel, desk, ledger = RecordingChannel(), RecordingDesk(), RecordingLedger()
    channels = Channels()
    channels.register(channel)
    bot.services.update(channels=channels, staff_desk=desk, ledger=ledger)
    return bot, channel, desk, ledger


async def test_asking_for_a_person_opens_one_handoff_and_the_bot_goes_quiet(base_env):
    bot, channel, desk, ledger = build(base_env)
    async with bot:
        first = await bot.handle(msg("I need to speak to a person please"))
        assert first.meta["handoff"] == "opened" and first.meta["handoff_reason"] == "customer_request"
        assert "person" in first.text  # the customer is told
        assert await bot.services["handoffs"].state("telegram", "42") == "handed_off"

        quiet = await bot.handle(msg("hello? my parcel is lost"))
        assert (quiet.tier, quiet.text, quiet.meta["handoff"]) == ("staff", "", "forwarded")
        again = await bot.handle(msg("human please"))  # asking again does not open a second one
        assert again.tier == "staff"
    opened = [c for c in desk.calls if c[0] == "opened"]
    assert len(opened) == 1 and "I need to speak to a person please" in opened[0][2]
    assert [c[2] for c in desk.calls if c[0] == "wrote"] == ["hello? my parcel is lost", "human please"]
    assert [e[0] for e in ledger.events] == ["handoff_opened"]


async def test_request_answered_by_an_earlier_tier_still_opens_a_handoff(base_env):
    from bot.models import Reply

    class Llm:
        name = "llm"

        async def answer(self, event, turn):
            return Reply(text="Sure, let me see.", tier="llm", provider="p", model="m")

    bot, channel, desk, ledger = build(base_env)
    bot.tiers.insert(1, Llm())  # after the handoff gate
    async with bot:
        reply = await bot.handle(msg("can I talk to a real person?"))
    assert reply.meta["handoff"] == "opened"
    assert reply.text.startswith("Sure, let me see.") and "join this conversation" in reply.text


async def test_two_template_answers_in_a_row_hand_off_but_one_does_not(base_env):
    from bot.models import Reply

    class SometimesLlm:
        name = "llm"

        async def answer(self, event, turn):
            if "llm" in event.text:
                return Reply(text="An LLM answer.", tier="llm", provider="p", model="m")
            return None

    bot, channel, desk, ledger = build(base_env)
    bot.tiers.insert(1, SometimesLlm())
    async with bot:
        assert "handoff" not in (await bot.handle(msg("blorp"))).meta           # template (1)
        assert "handoff" not in (await bot.handle(msg("llm question"))).meta    # resets the streak
        assert "handoff" not in (await bot.handle(msg("zzz"))).meta             # template (1)
        second = await bot.handle(msg("qqq"))                                   # template (2)
    assert second.meta["handoff_reason"] == "templates_twice"
    assert "join this conversation" in second.text


async def test_without_a_staff_desk_the_bot_never_goes_quiet(base_env):
    # `tierbot chat` with no Slack: nobody could take a handoff, so none is opened.
    async with SupportBot.from_env(base_env) as bot:
        for text in ("blorp", "zzz", "I want a human", "still there?"):
            reply = await bot.handle(msg(text))
            assert reply.tier == "template" and reply.text


async def test_staff_reply_resolve_and_rating(base_env):
    bot, channel, desk, ledger = build(base_env)
    async with bot:
        service = bot.services["handoffs"]
        opened = await bot.handle(msg("agent please"))
        hid = opened.meta["handoff_id"]
        handoff = await service.active("telegram", "42")
        await service.staff_reply(handoff, "Hi Ada, Bob here. Checking your order.", "U_BOB")
        assert channel.sent[-1][:2] == ("42", "Hi Ada, Bob here. Checking your order.")
        assert await service.state("telegram", "42") == "taken"  # answering is taking

        history = await bot.history.recent("42", 10)
        assert ("staff", "Hi Ada, Bob here. Checking your order.") in [(t.role, t.text) for t in history]

        _, changed = await service.resolve(hid, "U_BOB")
        assert changed
        _, again = await service.resolve(hid, "U_BOB")
        assert not again  # resolving twice does nothing twice
        text, buttons = channel.sent[-1][1], channel.sent[-1][2]
        assert "resolved" in text
        assert [[b.data for b in row] for row in buttons] == [[f"rate:42:{n}" for n in range(1, 6)]]
        assert len([s for s in channel.sent if s[2]]) == 1

        back = await bot.handle(msg("what are your opening hours?"))
        assert back.tier == "template" and back.text  # the bot answers again

        rate = bot.services["callback_handlers"]["rate"]
        assert "4/5" in await rate("telegram", "42", "u42", "42:4")
        assert "already" in await rate("telegram", "42", "u42", "42:5")   # once only
    kinds = [e[0] for e in ledger.events]
    assert kinds == ["handoff_opened", "staff_reply", "handoff_taken", "handoff_resolved", "rating"]
    assert ledger.events[-1][2]["rating"] == 4
    assert ("changed", hid, "resolved") in desk.calls


@pytest.mark.parametrize("rest", ["99:5", "42:0", "42:6", "42:five", ""])
async def test_forged_or_bad_ratings_change_nothing(base_env, rest):
    bot, channel, desk, ledger = build(base_env)
    async with bot:
        service = bot.services["handoffs"]
        hid = (await bot.handle(msg("human"))).meta["handoff_id"]
        await service.resolve(hid, "U1")
        answer = await bot.services["callback_handlers"]["rate"]("telegram", "42", "u42", rest)
        assert "already" in answer
        assert (await service.store.get(hid)).rating is None
    assert "rating" not in [e[0] for e in ledger.events]


async def test_handoff_state_survives_a_restart(base_env):
    bot, *_ = build(base_env)
    async with bot:
        await bot.handle(msg("talk to a person"))
    bot2, channel, desk, _ = build(base_env)
    async with bot2:
        reply = await bot2.handle(msg("are you still there?"))
        assert reply.tier == "staff" and reply.text == ""
        assert desk.calls == [("wrote", 1, "are you still there?")]


async def test_staff_route_is_never_gated(base_env):
    bot, *_ = build(base_env)
    async with bot:
        await bot.handle(msg("human please", conv="slack-q"))
        staff_q = Event(platform="telegram", conversation_id="slack-q", user_id="U1", text="refund policy?",
                        route="staff")
        reply = await bot.handle(staff_q)
    assert reply.tier == "template" and "refund" in reply.text.lower()


async def test_outside_staff_hours_the_customer_is_told_once_a_day(base_env):
    env = {**base_env, "TIERBOT_STAFF_HOURS": "mon-fri 09:00-17:00", "TIERBOT_STAFF_TZ": "Europe/Berlin"}
    bot, channel, desk, ledger = build(env)
    berlin = ZoneInfo("Europe/Berlin")
    now = [dt.datetime(2026, 11, 27, 20, 0, tzinfo=berlin).timestamp()]  # a Friday evening
    service = bot.services["handoffs"]
    service.clock = lambda: now[0]
    async with bot:
        opened = await bot.handle(msg("a human please"))
        assert "Monday at 09:00 (Europe/Berlin)" in opened.text
        later = await bot.handle(msg("anyone?"))
        assert later.text == ""  # not twice the same day
        now[0] = dt.datetime(2026, 11, 28, 10, 0, tzinfo=berlin).timestamp()  # Saturday
        sat = await bot.handle(msg("hello??"))
        assert "Monday at 09:00" in sat.text and sat.tier == "staff"
        now[0] = dt.datetime(2026, 11, 30, 10, 0, tzinfo=berlin).timestamp()  # Monday, open
        assert (await bot.handle(msg("good morning"))).text == ""


async def test_one_open_handoff_per_conversation_even_when_racing(tmp_path):
    import asyncio

    store = HandoffStore(tmp_path / "h.sqlite3")
    results = await asyncio.gather(*[store.open("telegram", "7", reason="r") for _ in range(10)])
    assert sum(created for _, created in results) == 1
    assert len({h.id for h, _ in results}) == 1
    await store.aclose()


async def test_rate_limit_notices_are_not_template_answers(base_env):
    env = {**base_env, "TIERBOT_RATE_LIMIT": "1"}
    bot, channel, desk, ledger = build(env)
    async with bot:
        first = await bot.handle(msg("blorp"))                 # template answer (streak 1)
        assert "handoff" not in first.meta
        for text in ("zzz", "qqq", "www"):                     # over the limit: notice, then silence
            reply = await bot.handle(msg(text))
        assert reply.meta.get("rate_limited") and "handoff" not in reply.meta
        assert await bot.services["handoffs"].state("telegram", "42") == "bot"


async def test_the_ledger_and_history_keep_the_reply_with_its_handoff_notice(base_env):
    """The notice is added before the reply is final: what the customer was sent is what
    the history (the staff thread, the next LLM prompt) and the ledger keep."""
    import json

    from bot.models import Reply

    class Llm:
        name = "llm"

        async def answer(self, event, turn):
            return Reply(text="Sure, let me see.", tier="llm", provider="p", model="m")

    bot, channel, desk, _ = build(base_env)
    bot.tiers.insert(1, Llm())
    async with bot:
        reply = await bot.handle(msg("can I talk to a real person?"))
        assert "join this conversation" in reply.text
        history = await bot.history.recent("42", 10)
        assert [t.text for t in history if t.role == "assistant"] == [reply.text]
    from bot.storage.sqlite.ledger import connect
    conn = connect(bot.services["config"].data_dir / "ledger.sqlite3", readonly=True)
    try:
        (meta,) = conn.execute("SELECT meta FROM messages").fetchone()
    finally:
        conn.close()
    assert json.loads(meta)["handoff"] == "opened"
