"""What keeps one process answering under load, through the real server and the fake Bot
API: indicators only for slow answers, an admission limit that follows the event loop,
replies sent without a claim round trip, and a stop that leaves no reply leased."""
from __future__ import annotations

import asyncio
import time

import pytest

from adapters.admission import AdaptiveSlots
from adapters.durable import DurableStore
from adapters.outbox import Outbox
from adapters.telegram import TelegramSettings
from bot.config import Config
from fakes.telegram_api import FakeTelegram, text_update
from polling import until
from telegram_harness import EchoTier, StreamingEcho, make_bot, make_config, post_update, running, settled


@pytest.fixture
async def tg():
    async with FakeTelegram() as fake:
        yield fake


def methods(fake: FakeTelegram) -> list[str]:
    return [c.method for c in fake.calls if c.method not in ("getMe", "setWebhook")]


def test_defaults_suit_a_bot_that_mostly_waits_on_providers():
    s = TelegramSettings.from_config(Config.from_env({"TELEGRAM_BOT_TOKEN": "1:x"}, dotenv=False))
    assert (s.concurrency, s.send_concurrency, s.typing_delay_s, s.draft_delay_s) == (512, 64, 1.0, 1.0)


async def test_a_prompt_private_answer_is_one_sendmessage_no_typing_no_draft(tg, tmp_path):
    # Shipped delays (1 s); a streamed answer ready in ~0.1 s
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_DRAFT_DELAY_S="1.0")
    tier = StreamingEcho(["Your ", "parcel ", "left ", "today."], chunk_delay=0.02)
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, text_update(1, "where is my parcel?"))
        await tg.wait_for(lambda f: f.texts(42))
        await asyncio.sleep(1.2)  # past both delays: nothing late may follow
    assert methods(tg) == ["sendMessage"]
    assert tg.texts(42) == ["Your parcel left today."]


async def test_drafts_start_only_once_the_answer_is_slow_and_replace_typing(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_DRAFT_DELAY_S="0.3",
                         TELEGRAM_TYPING_DELAY_S="0.45")
    words = [f"w{i} " for i in range(12)]
    tier = StreamingEcho(words, chunk_delay=0.05)  # ~0.6 s in all
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, text_update(1, "tell me everything"))
        await tg.wait_for(lambda f: f.texts(42), timeout=60)
    drafts = [c for c in tg.calls if c.method == "sendMessageDraft"]
    assert drafts, "a slow answer shows its progress"
    # nothing before the delay: the first draft already holds several words
    assert len(drafts[0].params["text"].split()) >= 4
    # drafts were on screen when the typing delay ran out, so no "typing…" was sent
    assert tg.sent("sendChatAction") == []
    assert max(c.at for c in drafts) < next(c.at for c in tg.calls if c.method == "sendMessage")
    assert tg.texts(42) == ["".join(words).strip()]


async def test_concurrency_caps_answers_in_flight_and_the_rest_wait_their_turn(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_CONCURRENCY="3",
                         TELEGRAM_STREAM_DRAFTS="false")
    in_flight, peak = 0, 0

    class Counting(EchoTier):
        async def answer(self, event, turn):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.1)
                return await super().answer(event, turn)
            finally:
                in_flight -= 1

    async with running(make_bot(config, Counting()), config) as (client, server):
        for i in range(10):
            assert (await post_update(client, text_update(i + 1, f"q{i}", chat_id=100 + i))).status == 200
        await tg.wait_for(lambda f: len(f.texts()) == 10, timeout=60)
        await settled(server)
        metrics = await (await client.get("/metrics")).text()
    assert peak == 3
    assert sorted(tg.texts()) == sorted(f"echo: q{i}" for i in range(10))  # each once
    assert 'tierbot_updates_admission_limit{platform="telegram"} 3.0' in metrics
    assert 'tierbot_updates_waiting{platform="telegram"} 0.0' in metrics


# -- the admission limit ---------------------------------------------------------------
async def test_slots_admit_in_arrival_order():
    slots = AdaptiveSlots(8, minimum=1, initial=1)
    order: list[int] = []

    async def one(i: int) -> None:
        async with slots:
            order.append(i)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one(i) for i in range(6)))
    assert order == list(range(6)) and slots.in_use == 0


async def test_limit_shrinks_when_the_loop_lags_and_grows_while_it_is_what_holds_work_back():
    slots = AdaptiveSlots(100, minimum=4, initial=40, target_lag_s=0.02)
    for _ in range(10):
        slots.observe(0.2, cpu_share=0.3)  # late timers, but other processes have the CPU
    assert slots.limit == 40 and slots.behind
    for _ in range(20):
        slots.observe(0.2, cpu_share=1.0)  # late timers, and it is this process that is busy
    assert slots.limit == 4
    # a prompt loop, but nobody waiting: no reason to grow
    for _ in range(10):
        slots.observe(0.0, cpu_share=1.0)
    assert slots.limit == 4
    held = [asyncio.create_task(slots.acquire()) for _ in range(10)]
    await asyncio.sleep(0)
    assert slots.in_use == 4 and slots.waiting == 6
    for _ in range(20):
        slots.observe(0.0, cpu_share=1.0)
    assert slots.in_use == 10 and slots.waiting == 0  # grew and admitted the waiters
    assert slots.limit <= 100
    for t in held:
        t.cancel()


async def test_a_cancelled_waiter_gives_up_its_place_and_its_slot():
    slots = AdaptiveSlots(1, minimum=1, initial=1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    slots.release()
    assert slots.in_use == 0 and slots.waiting == 0
    await asyncio.wait_for(slots.acquire(), 1)  # free again


async def test_a_saturated_loop_lowers_the_limit_in_a_running_server(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false")
    async with running(make_bot(config, EchoTier()), config) as (client, server):
        slots = server.telegram._slots
        slots.busy_share = 0.0  # this test's CPU share depends on the machine's other work
        before = slots.limit
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # keep the loop busy computing, in 60 ms bursts
            burst = time.monotonic() + 0.06
            while time.monotonic() < burst:
                pass
            await asyncio.sleep(0)
        assert slots.limit < before
        # and it still answers
        await post_update(client, text_update(1, "still there?"))
        await tg.wait_for(lambda f: f.texts(42), timeout=60)


# -- the outbox ---------------------------------------------------------------------------
class SlowCommits(DurableStore):
    """While `hold` is set to an unset Event, every operation is answered only once it is
    set, after it committed (a disk that stalls); `held` is set when one is waiting."""

    hold: asyncio.Event | None = None

    async def run(self, fn):
        result = await super().run(fn)
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        return result


async def test_stopping_while_a_claim_commits_leaves_no_reply_leased(tmp_path):
    store = SlowCommits.in_dir(tmp_path)
    try:
        outbox = Outbox(store, lease_s=60)
        sent: list[str] = []

        async def sender(chat_id, method, params):
            sent.append(params["text"])

        outbox.register("telegram", sender)
        await outbox.enqueue("telegram", "42", [("sendMessage", {"chat_id": 42, "text": "hi"})])  # not started
        store.hold, store.held = asyncio.Event(), asyncio.Event()
        outbox.start()
        await asyncio.wait_for(store.held.wait(), 30)  # the runner's claim has committed, not returned
        stopping = asyncio.create_task(outbox.stop())
        await asyncio.sleep(0)  # stop() has asked the runner to stop and waits for it
        store.hold.set()
        await stopping
        assert sent == []
        [(lease,)] = store.query("SELECT lease_until FROM outbox")
        assert lease == 0  # the next start sends it at once, not after lease_s
    finally:
        store.close()


async def test_replies_to_one_chat_keep_their_order_when_sent_directly(tmp_path):
    store = DurableStore.in_dir(tmp_path)
    try:
        outbox = Outbox(store)
        sent: list[str] = []
        release = asyncio.Event()

        async def sender(chat_id, method, params):
            if params["text"] == "first":
                await release.wait()  # the first reply is slow to leave
            sent.append(params["text"])

        outbox.register("telegram", sender)
        outbox.start()
        await outbox.enqueue("telegram", "42", [("sendMessage", {"chat_id": 42, "text": "first"})])
        await outbox.enqueue("telegram", "42", [("sendMessage", {"chat_id": 42, "text": "second"})])
        await outbox.enqueue("telegram", "7", [("sendMessage", {"chat_id": 7, "text": "other chat"})])
        await until(lambda: sent, what="another chat's reply sent")
        assert sent == ["other chat"]  # another chat is not held up; "second" waits for "first"
        release.set()
        assert await outbox.wait_idle(5)
        assert sent == ["other chat", "first", "second"]
        await outbox.stop()
    finally:
        store.close()


async def test_while_updates_wait_for_a_slot_the_one_in_flight_shows_no_indicators(tg, tmp_path):
    config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_CONCURRENCY="1",
                         TELEGRAM_DRAFT_DELAY_S="0", TELEGRAM_TYPING_DELAY_S="0.05")
    tier = StreamingEcho([f"w{i} " for i in range(6)], chunk_delay=0.05)
    async with running(make_bot(config, tier), config) as (client, _):
        await post_update(client, text_update(1, "first", chat_id=1))
        await post_update(client, text_update(2, "second", chat_id=2))  # waits for the only slot
        await tg.wait_for(lambda f: f.texts(1) and f.texts(2), timeout=60)
    def to(chat: int, method: str) -> list:
        return [p for p in tg.sent(method) if str(p["chat_id"]) == str(chat)]
    # the first answer was made while another update waited: its CPU went to answering
    assert to(1, "sendMessageDraft") == [] and to(1, "sendChatAction") == []
    # the second had the process to itself: drafts as usual
    assert to(2, "sendMessageDraft")
    assert tg.texts(1) == ["w0 w1 w2 w3 w4 w5"] and tg.texts(2) == ["w0 w1 w2 w3 w4 w5"]
