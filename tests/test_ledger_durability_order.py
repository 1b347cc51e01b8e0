"""The ledger's record of an answer is committed before its update is marked answered.

The inbox/outbox and the ledger are two SQLite files. If "answered" were committed first,
a kill -9 before the ledger's writer committed would leave a customer answered and the
ledger without the reply (the crash test caught this). Here the ledger's writer is held
by an exclusive lock from another connection (as another process vacuuming would):
the update must stay pending, and the reply unsent, until the ledger can commit."""
from __future__ import annotations

import asyncio
import sqlite3

from bot.ledger import Ledger, LedgerListener
from bot.pipeline import SupportBot
from bot.rendering import Renderer
from bot.templates_tier import TemplateTier
from fakes.telegram_api import FakeTelegram, callback_update, text_update
from polling import until
from telegram_harness import EchoTier, inbox_rows, make_config, post_update, running


def ledger_bot(config, ledger: Ledger, services: dict | None = None) -> SupportBot:
    renderer = Renderer.from_config(config)
    return SupportBot([EchoTier(), TemplateTier(renderer)], history=ledger.history,  # type: ignore[list-item]
                      listeners=[LedgerListener(ledger)], resources=[ledger],
                      services={"config": config, "renderer": renderer, "ledger": ledger, **(services or {})})


def count(db, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


async def test_committed_waits_for_the_commit_that_holds_earlier_writes(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    ledger = Ledger(db)
    try:
        await ledger.record_event("rating", "c1", {"rating": 5})
        await ledger.committed()
        assert count(db, "SELECT COUNT(*) FROM events") == 1
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            await ledger.record_event("rating", "c2", {"rating": 4})
            barrier = asyncio.ensure_future(ledger.committed())
            await asyncio.sleep(0.3)
            assert not barrier.done(), "the barrier returned before its write could be committed"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(barrier, 10)
        assert count(db, "SELECT COUNT(*) FROM events") == 2
    finally:
        await ledger.aclose()
    await ledger.committed()  # closed: nothing left to wait for


async def test_an_update_is_not_marked_answered_before_its_ledger_record_is_committed(tmp_path):
    data = tmp_path / "data"
    db = tmp_path / "ledger.sqlite3"
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, data, TELEGRAM_STREAM_DRAFTS="false")
        ledger = Ledger(db)
        async with running(ledger_bot(config, ledger), config) as (client, _):
            await post_update(client, text_update(1, "warm up", chat_id=41))
            await tg.wait_for(lambda f: f.texts(41))
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # the ledger's writer cannot commit
            try:
                assert (await post_update(client, text_update(2, "where is my parcel?"))).status == 200
                await asyncio.sleep(0.6)  # ample for an answer from an instant tier
                assert dict(inbox_rows(data))["telegram:2"] == "pending"
                assert tg.texts(42) == []
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            await tg.wait_for(lambda f: f.texts(42), timeout=60)
            assert dict(inbox_rows(data))["telegram:2"] == "done"
            assert count(db, "SELECT COUNT(*) FROM messages WHERE conversation_id = '42'") == 1
    assert tg.texts(42) == ["echo: where is my parcel?"]


async def test_a_button_press_is_marked_answered_only_after_what_it_recorded(tmp_path):
    data = tmp_path / "data"
    db = tmp_path / "ledger.sqlite3"
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, data, TELEGRAM_STREAM_DRAFTS="false")
        ledger = Ledger(db)

        async def rate(platform: str, conversation_id: str, user_id: str, value: str) -> str:
            await ledger.record_event("rating", conversation_id, {"rating": int(value)})
            return "Thanks!"

        bot = ledger_bot(config, ledger, {"callback_handlers": {"rate": rate}})
        async with running(bot, config) as (client, _):
            await post_update(client, text_update(1, "warm up", chat_id=41))
            await tg.wait_for(lambda f: f.texts(41))
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                assert (await post_update(client, callback_update(2, "rate:5"))).status == 200
                await tg.wait_for(lambda f: f.sent("answerCallbackQuery"), timeout=60)
                await asyncio.sleep(0.3)
                assert dict(inbox_rows(data))["telegram:2"] == "pending"
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            await until(lambda: dict(inbox_rows(data))["telegram:2"] == "done", what="the press marked answered")
            assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'rating'") == 1
