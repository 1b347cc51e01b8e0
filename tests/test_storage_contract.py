"""Each store's contract, run against every implementation: embedded (SQLite files) and
server (a real PostgreSQL). Two `Storage` objects on one configuration stand for two
processes of one install: what one commits, the other sees."""
from __future__ import annotations

import asyncio

import pytest

from bot.config import Config
from bot.models import Attempt, Event, Reply
from bot.storage.backend import Storage
from bot.turn import Turn
from servers import fresh_pg_url, pg_session_url, pg_url  # noqa: F401 - fixtures

DAY_START, DAY_END = 0.0, 4e9


@pytest.fixture(params=["embedded", "postgres"])
def config(request, tmp_path) -> Config:
    env = {"TIERBOT_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("pg_url")
    return Config.from_env(env, dotenv=False)


class Install:
    """Opens stores the way the bot does, and closes them all at the end."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.storages: list[Storage] = []
        self.closers: list = []

    async def storage(self) -> Storage:
        storage = Storage(self.config)
        await storage.astart()
        self.storages.append(storage)
        return storage

    async def ledger(self):
        ledger = (await self.storage()).ledger()
        self.closers.append(ledger)
        return ledger

    async def handoffs(self):
        store = (await self.storage()).handoffs()
        self.closers.append(store)
        return store

    async def close(self) -> None:
        for obj in self.closers:
            await obj.aclose()
        for storage in self.storages:
            await storage.aclose()


@pytest.fixture
async def install(config):
    inst = Install(config)
    yield inst
    await inst.close()


def _reply(cost: float | None, provider: str = "groq", tier: str = "llm") -> Reply:
    attempts = [Attempt(provider="gemini", model="g", outcome="timeout", latency_ms=5.0),
                Attempt(provider=provider, model="m", outcome="ok", latency_ms=9.0, input_tokens=10,
                        output_tokens=5, cost_usd=cost)]
    return Reply(text="answer", tier=tier, provider=provider, model="m", input_tokens=10, output_tokens=5,
                 cost_usd=cost, attempts=attempts)


def _event(text: str = "hello", conv: str = "c1") -> Event:
    return Event(platform="telegram", conversation_id=conv, user_id="u1", text=text)


# -- ledger sink ---------------------------------------------------------------------------
async def test_committed_replies_and_their_spend_are_seen_by_another_process(install):
    writer, reader = await install.ledger(), await install.ledger()
    writer.record_reply(_event(), _reply(0.002))
    writer.record_reply(_event(), _reply(0.003, provider="claude"))
    writer.record_reply(_event(), _reply(None))  # unknown price: never counted as $0 spend
    await writer.committed()
    assert await reader.spend_between(DAY_START, DAY_END) == pytest.approx({"groq": 0.002, "claude": 0.003, "gemini": 0.0})


async def test_events_round_trip_and_bad_events_change_nothing(install):
    ledger = await install.ledger()
    await ledger.record_event("budget_alert", data={"scope": "overall", "cap_usd": 1.0}, ts=100.0)
    await ledger.record_event("rating", "c9", {"rating": 5}, ts=101.0)
    for kind, data in (("", None), ("x", ["not", "a", "dict"]), ("x", {"f": object()})):
        with pytest.raises(ValueError):
            await ledger.record_event(kind, data=data)  # type: ignore[arg-type]
    await ledger.flush()
    assert await ledger.events_between("budget_alert", 0, 1000) == [(100.0, {"scope": "overall", "cap_usd": 1.0})]
    assert await ledger.events_between("x", 0, 1000) == []


async def test_hostile_text_is_recorded_as_sent(install):
    ledger = await install.ledger()
    text = "drop table messages; -- \u202e\U0001F600 'quotes' \"double\" \\ back"
    ledger.append_turn("c-hostile", "user", text, 1.0)
    ledger.record_reply(_event(text, "c-hostile"), _reply(0.001))
    await ledger.committed()
    other = await install.ledger()
    assert await other.recent_turns("c-hostile", 5) == [("user", text, 1.0)]


async def test_history_is_in_order_before_and_after_commit_and_shared(install):
    ledger = await install.ledger()
    for i in range(4):
        await ledger.history.append("c1", Turn("user" if i % 2 == 0 else "assistant", f"t{i}", float(i)))
    assert [t.text for t in await ledger.history.recent("c1", 3)] == ["t1", "t2", "t3"]
    await ledger.committed()
    other = await install.ledger()  # a second process: reads the database, not our memory
    assert [t.text for t in await other.history.recent("c1", 10)] == ["t0", "t1", "t2", "t3"]
    assert await other.history.recent("nobody", 10) == []


async def test_a_report_date_is_claimed_once_across_processes(install):
    a, b = await install.ledger(), await install.ledger()
    assert await a.claim_report("2026-12-01", 1.0) == "first start"
    assert await b.claim_report("2026-12-01", 2.0) == "done"
    results = await asyncio.gather(a.claim_report("2026-12-02", 3.0), b.claim_report("2026-12-02", 3.0))
    assert sorted(results) == ["claimed", "done"]
    await a.release_report("2026-12-02")  # the post failed: someone may claim it again
    assert await b.claim_report("2026-12-02", 4.0) == "claimed"
    await b.report_posted("2026-12-02", 5.0)
    await b.release_report("2026-12-02")  # a posted day is never released
    assert await a.claim_report("2026-12-02", 6.0) == "done"


# -- handoff repository ----------------------------------------------------------------------
async def test_racing_opens_create_one_handoff(install):
    a, b = await install.handoffs(), await install.handoffs()
    results = await asyncio.gather(*(s.open("telegram", "c1", user_id="u1", reason="asked", now=10.0)
                                     for s in (a, b, a, b)))
    assert len({h.id for h, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert (await b.active("telegram", "c1")).state == "handed_off"  # type: ignore[union-attr]


async def test_take_resolve_and_rate_are_compare_and_set(install):
    a, b = await install.handoffs(), await install.handoffs()
    h, _ = await a.open("telegram", "c1", user_name="Ann", now=10.0)
    assert await a.rate("telegram", "c1", 5) is None  # not resolved yet: no rating
    takes = await asyncio.gather(a.take(h.id, "alice", now=11.0), b.take(h.id, "bob", now=11.0))
    assert sorted(changed for _, changed in takes) == [False, True]
    taken = await b.get(h.id)
    assert taken.state == "taken" and taken.taken_by in ("alice", "bob")  # type: ignore[union-attr]
    await b.set_thread(h.id, "C1", "123.456")
    assert (await a.by_thread("C1", "123.456")).id == h.id  # type: ignore[union-attr]
    assert (await a.resolve(h.id, "alice", now=12.0))[1] is True
    assert (await b.resolve(h.id, "bob", now=13.0))[1] is False
    assert await a.active("telegram", "c1") is None
    rated = await b.rate("telegram", "c1", 4, now=14.0)
    assert rated is not None and rated.rating == 4
    assert await a.rate("telegram", "c1", 1, now=15.0) is None  # rated once
    counts = await a.count_since(0.0)
    assert counts == {"opened": 1, "resolved": 1, "ratings": 1, "rating_avg_x100": 400, "open": 0}
    again, created = await b.open("telegram", "c1", now=20.0)  # a new handoff after the old one
    assert created and again.id != h.id and [x.id for x in await a.open_handoffs()] == [again.id]


async def test_template_streak_and_the_daily_hours_notice(install):
    a, b = await install.handoffs(), await install.handoffs()
    assert await a.template_streak("telegram", "c1", True) == 1
    assert await b.template_streak("telegram", "c1", True) == 2
    assert await a.template_streak("telegram", "c1", False) == 0  # (embedded: queued, ordered per process)
    assert await a.template_streak("telegram", "c1", True) == 1
    claims = await asyncio.gather(a.claim_hours_notice("telegram", "c1", "2026-12-03"),
                                  b.claim_hours_notice("telegram", "c1", "2026-12-03"))
    assert sorted(claims) == [False, True]
    assert await a.claim_hours_notice("telegram", "c1", "2026-12-04") is True
    assert await b.claim_hours_notice("telegram", "c2", "2026-12-04") is True
