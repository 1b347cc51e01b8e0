"""The durable store under the inbox/outbox: group commit keeps each operation atomic."""
from __future__ import annotations

import asyncio

import pytest

from adapters.durable import DurableStore
from adapters.inbox import Inbox
from fake_clock import FakeClock


async def test_concurrent_records_share_commits_and_all_survive_a_reopen(tmp_path):
    store = DurableStore.in_dir(tmp_path)
    inbox = Inbox(store)
    results = await asyncio.gather(*(inbox.record(f"telegram:{i}", "{}") for i in range(200)))
    assert all(results)
    assert store.operations == 200 and store.commits < 200  # batched: fewer fsyncs than writes
    store.close()
    reopened = DurableStore.in_dir(tmp_path)
    try:
        assert reopened.query("SELECT COUNT(*) FROM inbox") == [(200,)]
        assert await Inbox(reopened).record("telegram:5", "{}") is False  # still known after restart
    finally:
        reopened.close()


async def test_a_failing_operation_rolls_back_only_itself(tmp_path):
    store = DurableStore.in_dir(tmp_path)

    def good(i):
        return lambda db: db.execute("INSERT INTO inbox(key, body, received, state) VALUES (?, '{}', 0, 'pending')",
                                     (f"k{i}",))

    def bad(db):
        db.execute("INSERT INTO inbox(key, body, received, state) VALUES ('half', '{}', 0, 'pending')")
        raise ValueError("boom")

    try:
        outcomes = await asyncio.gather(store.run(good(1)), store.run(bad), store.run(good(2)),
                                        return_exceptions=True)
        assert isinstance(outcomes[1], ValueError)
        assert sorted(r[0] for r in store.query("SELECT key FROM inbox")) == ["k1", "k2"]
    finally:
        store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.run(good(3))


async def test_leases_have_owners_so_two_processes_never_both_answer(tmp_path):
    store = DurableStore.in_dir(tmp_path)
    clock = FakeClock()
    web = Inbox(store, lease_s=30, owner="web", clock=clock)
    worker = Inbox(store, lease_s=30, owner="worker", clock=clock)
    try:
        assert await web.record("telegram:1", "{}")
        clock.advance(29.9)
        assert await worker.claim_pending() == []  # web's lease is live
        assert await worker.take("telegram:1") is False
        clock.advance(0.1)  # web stalled past its lease: the worker takes over
        assert [i.key for i in await worker.claim_pending()] == ["telegram:1"]
        assert await web.take("telegram:1") is False  # web must not answer it now
        assert await worker.take("telegram:1") is True
        await worker.done("telegram:1")
        assert await worker.take("telegram:1") is False  # answered: nobody takes it again
    finally:
        store.close()


def test_an_older_inbox_without_lease_owners_is_upgraded_in_place(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "messages.db")
    old.execute("CREATE TABLE inbox (key TEXT PRIMARY KEY, body TEXT NOT NULL, received REAL NOT NULL, "
                "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL NOT NULL DEFAULT 0, "
                "done_at REAL)")
    old.execute("INSERT INTO inbox(key, body, received, state) VALUES ('telegram:9', '{}', 0, 'pending')")
    old.commit()
    old.close()
    store = DurableStore.in_dir(tmp_path)
    try:
        assert store.query("SELECT key, state, owner FROM inbox") == [("telegram:9", "pending", None)]
    finally:
        store.close()
