"""DATABASE_URL as a user meets it: the backend it selects, migrations run once by many
processes, a newer schema refused, an unreachable or misnamed server reported once with
its password masked, and a bot whose replies and history land in PostgreSQL."""
from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from bot.cli import main
from bot.config import Config, ConfigError
from bot.models import Attempt, Event, Reply
from bot.pipeline import SupportBot
from bot.storage.backend import Storage
from bot.storage.postgres.database import PgDatabase
from bot.storage.postgres.migrations import LATEST_VERSION, SchemaError
from bot.storage.settings import StorageSettings, StorageUnavailable
from servers import fresh_pg_url, pg_session_url, pg_url  # noqa: F401 - fixtures

PASSWORD = "s3cret-Pa55word"


def _settings(**env: str) -> StorageSettings:
    return StorageSettings.from_config(Config.from_env(env, dotenv=False))


def test_neither_url_set_means_embedded_and_both_schemes_are_accepted():
    assert _settings().kind == "embedded"
    for scheme in ("postgres", "postgresql"):
        s = _settings(DATABASE_URL=f"{scheme}://u:{PASSWORD}@db.example:5432/app?sslmode=require")
        assert s.kind == "server" and s.database.sslmode == "require"  # type: ignore[union-attr]
        assert PASSWORD not in " ".join(s.describe()) and "u:***@db.example:5432/app" in " ".join(s.describe())


@pytest.mark.parametrize("url, says", [
    (f"mysql://u:{PASSWORD}@h/db", "must start with postgres:// or postgresql://"),
    (f"postgres://u:{PASSWORD}@h/db?sslmode=sometimes", "sslmode must be one of"),
    (f"postgres://u:{PASSWORD}@h:notaport/db", "not a valid URL"),
])
def test_a_bad_database_url_is_a_clear_configuration_error_without_the_password(url, says):
    with pytest.raises(ConfigError) as e:
        _settings(DATABASE_URL=url)
    assert says in str(e.value) and PASSWORD not in str(e.value)


async def test_an_unreachable_database_stops_the_start_naming_the_masked_url(tmp_path):
    url = f"postgresql://tierbot:{PASSWORD}@127.0.0.1:1/tierbot"
    storage = Storage(Config.from_env({"TIERBOT_DATA_DIR": str(tmp_path), "DATABASE_URL": url}, dotenv=False))
    with pytest.raises(StorageUnavailable) as e:
        await storage.astart()
    assert "postgresql://tierbot:***@127.0.0.1:1/tierbot" in str(e.value) and PASSWORD not in str(e.value)


def test_the_command_line_exits_non_zero_with_one_masked_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"postgres://tierbot:{PASSWORD}@127.0.0.1:1/tierbot")
    assert main(["ask", "hello"]) == 1
    err = capsys.readouterr().err
    assert "postgres://tierbot:***@127.0.0.1:1/tierbot" in err and PASSWORD not in err
    assert "Traceback" not in err


async def test_sslmode_in_the_url_is_honoured(pg_url):
    # The local server speaks no TLS: sslmode=require must refuse it rather than fall back.
    db = PgDatabase(_settings(DATABASE_URL=pg_url + "?sslmode=require").database)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailable):
        await db.start()
    db = PgDatabase(_settings(DATABASE_URL=pg_url + "?sslmode=disable").database)  # type: ignore[arg-type]
    try:
        assert await db.ping() is None
    finally:
        await db.aclose()


async def test_processes_starting_together_migrate_once(fresh_pg_url):
    url = _settings(DATABASE_URL=fresh_pg_url).database
    dbs = [PgDatabase(url, max_size=1) for _ in range(5)]  # type: ignore[arg-type]
    try:
        await asyncio.gather(*(db.start() for db in dbs))
        befores = sorted(db.schema_before for db in dbs)  # type: ignore[type-var]
        assert befores == [0] + [LATEST_VERSION] * 4  # one migrated, the others found it done
    finally:
        for db in dbs:
            await db.aclose()


async def test_a_schema_newer_than_this_tierbot_is_refused(fresh_pg_url, capsys, monkeypatch):
    url = _settings(DATABASE_URL=fresh_pg_url).database
    db = PgDatabase(url)  # type: ignore[arg-type]
    await db.start()
    await db.aclose()
    conn = await asyncpg.connect(fresh_pg_url)
    await conn.execute("UPDATE tierbot_schema SET version = $1", LATEST_VERSION + 1)
    await conn.close()
    with pytest.raises(SchemaError, match=f"version {LATEST_VERSION + 1}, newer than this tierbot knows"):
        await PgDatabase(url).start()  # type: ignore[arg-type]


def test_db_upgrade_migrates_the_configured_database(fresh_pg_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", fresh_pg_url)
    assert main(["db", "upgrade"]) == 0
    assert f"schema version 0 -> {LATEST_VERSION}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"schema version {LATEST_VERSION} -> {LATEST_VERSION}" in capsys.readouterr().out


async def test_two_bots_on_one_database_share_the_ledger_and_the_conversation(pg_url, tmp_path):
    env = {"DATABASE_URL": pg_url, "PATH": ""}
    event = Event(platform="telegram", conversation_id="c42", user_id="u42", text="hello there")
    async with SupportBot.from_env({**env, "TIERBOT_DATA_DIR": str(tmp_path / "a")}) as first:
        reply = await first.handle(event)
        assert reply.text
    # Another process with an empty data dir of its own: the conversation is in PostgreSQL.
    async with SupportBot.from_env({**env, "TIERBOT_DATA_DIR": str(tmp_path / "b")}) as second:
        turns = await second.history.recent("c42", 10)
        assert [(t.role, t.text) for t in turns][:1] == [("user", "hello there")]
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM messages WHERE conversation_id = 'c42'") == 1
    finally:
        await conn.close()


async def _embedded_install(tmp_path):
    """An install that ran on one machine: replies, a conversation, a handoff, an alert."""
    storage = Storage(Config.from_env({"TIERBOT_DATA_DIR": str(tmp_path / "data")}, dotenv=False))
    ledger, handoffs = storage.ledger(), storage.handoffs()
    for i in range(5):
        event = Event(platform="telegram", conversation_id="c1", user_id="u1", text=f"q{i} \x00 nul")
        ledger.record_reply(event, Reply(text="a", tier="llm", provider="groq", model="m", cost_usd=0.01,
                                         attempts=[Attempt("groq", "m", "ok", cost_usd=0.01)]))
        ledger.append_turn("c1", "user", f"q{i}", float(i))
    await ledger.record_event("budget_alert", data={"scope": "groq"}, ts=50.0)
    assert await ledger.claim_report("2026-12-01", 1.0) == "first start"
    h, _ = await handoffs.open("telegram", "c1", user_name="Ann", now=5.0)
    await handoffs.set_thread(h.id, "C1", "1.2")
    await handoffs.template_streak("telegram", "c1", True)
    await ledger.aclose()
    await handoffs.aclose()
    return h


async def test_db_copy_moves_an_embedded_install_without_loss(tmp_path, fresh_pg_url, monkeypatch, capsys):
    handoff = await _embedded_install(tmp_path)
    monkeypatch.setenv("TIERBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", fresh_pg_url)
    assert await asyncio.to_thread(main, ["db", "copy"]) == 0
    out = capsys.readouterr().out
    assert "5 messages, 5 attempts, 1 events, 5 turns, 1 report_runs, 1 handoffs, 1 conversation_flags" in out
    # The server backend now serves what the embedded one held.
    storage = Storage(Config.from_env({"TIERBOT_DATA_DIR": str(tmp_path / "new"), "DATABASE_URL": fresh_pg_url},
                                      dotenv=False))
    ledger, handoffs = storage.ledger(), storage.handoffs()
    try:
        assert await ledger.spend_between(0, 4e9) == pytest.approx({"groq": 0.05})
        assert [t.text for t in await ledger.history.recent("c1", 10)] == [f"q{i}" for i in range(5)]
        copied = await handoffs.by_thread("C1", "1.2")
        assert copied is not None and (copied.id, copied.user_name, copied.state) == (handoff.id, "Ann", "handed_off")
        assert await handoffs.template_streak("telegram", "c1", True) == 2
        assert await ledger.claim_report("2026-12-01", 2.0) == "done"
        ledger.record_reply(Event(platform="telegram", conversation_id="c2", user_id="u2", text="new"),
                            Reply(text="x", tier="cache"))
        await ledger.committed()  # new ids continue after the copied ones
    finally:
        await ledger.aclose()
        await storage.aclose()
    # Copying again would duplicate: refused, nothing changed.
    assert await asyncio.to_thread(main, ["db", "copy"]) == 1
    assert "already has rows in messages" in capsys.readouterr().err
    conn = await asyncpg.connect(fresh_pg_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM messages") == 6
        assert await conn.fetchval("SELECT question FROM messages WHERE id = 1") == "q0 \ufffd nul"
    finally:
        await conn.close()


async def test_the_report_over_postgresql_matches_the_embedded_report(tmp_path, fresh_pg_url, monkeypatch, capsys):
    await _embedded_install(tmp_path)
    monkeypatch.setenv("TIERBOT_DATA_DIR", str(tmp_path / "data"))
    assert await asyncio.to_thread(main, ["report", "--format", "json"]) == 0
    embedded = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("DATABASE_URL", fresh_pg_url)
    assert await asyncio.to_thread(main, ["db", "copy"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("TIERBOT_DATA_DIR", str(tmp_path / "elsewhere"))  # nothing local: all from PostgreSQL
    assert await asyncio.to_thread(main, ["report", "--format", "json"]) == 0
    server = json.loads(capsys.readouterr().out)
    assert embedded["by_tier"] == [{"count": 5, "share": 1.0, "tier": "llm"}]
    assert embedded["spend"] and server == embedded  # every figure the same, to the cent


async def test_a_database_lost_while_running_loses_no_queued_row_and_resumes(pg_url, caplog):
    """The ledger keeps what it queued while PostgreSQL is unreachable and commits it when
    the server is back, without a restart; one error line when it goes, one when it is back."""
    import logging

    from test_storage_redis import Proxy

    proxy = Proxy(5432)
    await proxy.start()
    through_proxy = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    storage = Storage(Config.from_env({"TIERBOT_DATA_DIR": "unused", "DATABASE_URL": through_proxy}, dotenv=False))
    await storage.astart()
    ledger = storage.ledger()
    try:
        ledger.record_reply(Event(platform="telegram", conversation_id="c", user_id="u", text="before"),
                            Reply(text="a", tier="cache"))
        await ledger.committed()
        await proxy.cut()
        with caplog.at_level(logging.WARNING, logger="tierbot.ledger"):
            for i in range(3):
                ledger.record_reply(Event(platform="telegram", conversation_id="c", user_id="u", text=f"lost {i}"),
                                    Reply(text="a", tier="cache"))
            barrier = asyncio.ensure_future(ledger.committed())
            async with asyncio.timeout(30):  # the writer tries, fails and keeps the rows
                while not any("ledger_database_unreachable" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.01)
            assert not barrier.done()
            await proxy.start()
            await asyncio.wait_for(barrier, timeout=30)
        messages = [r.getMessage() for r in caplog.records]
        assert sum("ledger_database_unreachable" in m for m in messages) == 1
        assert sum("ledger_database_back" in m for m in messages) == 1
    finally:
        await ledger.aclose()
        await storage.aclose()
        await proxy.cut()
    conn = await asyncpg.connect(pg_url)
    try:
        rows = [r["question"] for r in await conn.fetch("SELECT question FROM messages ORDER BY id")]
    finally:
        await conn.close()
    assert rows == ["before", "lost 0", "lost 1", "lost 2"]


class _Desk:
    """A staff desk that takes everything: with one, the handoff trigger counts the
    template streak in PostgreSQL for every reply (one more reply-path statement)."""

    def __getattr__(self, name: str):
        async def noop(*args: object) -> None:
            return None

        return noop


async def test_a_black_holed_database_holds_no_reply_and_loses_nothing(pg_url, tmp_path, caplog):
    """PostgreSQL stops answering without closing anything (the relay keeps every socket
    open and forwards nothing): replies still come within the deadline (the bug: ~60 s),
    the outage is logged once with the password masked, and when the path heals the
    same process commits every queued ledger row and sees handoffs again."""
    import logging
    import time

    from test_storage_redis import Proxy

    proxy = Proxy(5432)
    await proxy.start()
    user, rest = pg_url.split("://", 1)[1].split("@", 1)
    through_proxy = f"postgresql://{user}:{PASSWORD}@127.0.0.1:{proxy.port}/{rest.split('/', 1)[1]}"
    deadline = 2.0
    env = {"DATABASE_URL": through_proxy, "TIERBOT_DATA_DIR": str(tmp_path), "PATH": "",
           "TIERBOT_DEADLINE_S": str(deadline), "TIERBOT_PG_COMMAND_TIMEOUT_S": "2"}

    def ask(conversation: str, text: str) -> Event:
        return Event(platform="telegram", conversation_id=conversation, user_id=conversation, text=text)

    try:
        async with SupportBot.from_env(env) as bot:
            bot.services["staff_desk"] = _Desk()
            ledger = bot.services["ledger"]
            assert (await bot.handle(ask("c1", "hello"))).text
            await ledger.committed()
            proxy.blackhole()
            with caplog.at_level(logging.INFO):
                # c2 is new (its history must be loaded), c1's is in memory (only the
                # open-handoff lookup and the streak go to the database).
                for conversation, text in [("c2", "hello, I am new"), ("c1", "still there?"), ("c2", "and again")]:
                    started = time.monotonic()
                    reply = await bot.handle(ask(conversation, text))
                    took = time.monotonic() - started
                    assert reply.text and reply.tier != "staff", reply
                    assert took < deadline + 3, f"{text!r} answered after {took:.1f} s"
                barrier = asyncio.ensure_future(ledger.committed())
                await asyncio.sleep(0.5)
                assert not barrier.done() and proxy.dropped_bytes > 0  # the database really was unreachable
                proxy.forward()
                await asyncio.wait_for(barrier, timeout=60)  # the rows queued meanwhile are committed
                # The same process uses the database again: a handoff opened elsewhere is honoured.
                handoff, _ = await bot.services["handoffs"].store.open("telegram", "c3", user_id="c3")
                reply = await bot.handle(ask("c3", "anyone?"))
                assert reply.tier == "staff" and reply.meta["handoff_id"] == handoff.id
                await ledger.committed()
            messages = [r.getMessage() for r in caplog.records]
            assert sum("event=database_unreachable" in m for m in messages) == 1, messages
            assert sum("event=database_back" in m for m in messages) == 1, messages
            assert sum("ledger_database_unreachable" in m for m in messages) <= 1, messages
            assert f"{user}:***@127.0.0.1:{proxy.port}" in caplog.text and PASSWORD not in caplog.text
            assert not [r for r in caplog.records if r.exc_info], "a traceback per message"
    finally:
        await proxy.cut()
    conn = await asyncpg.connect(pg_url)
    try:
        rows = [r["question"] for r in await conn.fetch("SELECT question FROM messages ORDER BY id")]
    finally:
        await conn.close()
    assert rows == ["hello", "hello, I am new", "still there?", "and again", "anyone?"]
