"""The durable store under the inbox/outbox: group commit keeps each operation atomic."""
from __future__ import annotations

import asyncio

import pytest

from adapters.durable import DurableStore
from adapters.inbox import Inbox


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
