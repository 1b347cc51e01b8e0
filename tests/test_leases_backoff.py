"""Leases, backoffs and pauses of the inbox, the outbox and the Slack dedupe, on a clock
the test moves: what is due when, and what is never done twice — with no sleeps."""
from __future__ import annotations

import asyncio

import pytest

from adapters.durable import DurableStore
from adapters.inbox import MAX_ATTEMPTS, Inbox
from adapters.outbox import Outbox, RetryLater, Transient
from adapters.slack_dedupe import SeenEvents
from fake_clock import FakeClock


@pytest.fixture
def store(tmp_path):
    s = DurableStore.in_dir(tmp_path)
    yield s
    s.close()


class Recorder:
    """A sender that records each call; `script[text]` lists exceptions to raise first."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.script: dict[str, list[Exception]] = {}
        self.changed = asyncio.Condition()

    async def __call__(self, chat_id: str, method: str, params: dict) -> None:
        text = params["text"]
        self.calls.append(text)
        async with self.changed:
            self.changed.notify_all()
        failures = self.script.get(text)
        if failures:
            raise failures.pop(0)

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        async def _wait() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)
        await asyncio.wait_for(_wait(), timeout)


def msg(text: str, chat: int = 42) -> list:
    return [("sendMessage", {"chat_id": chat, "text": text})]


async def test_a_failed_update_is_retried_when_due_and_parked_after_max_attempts(store):
    clock = FakeClock()
    inbox = Inbox(store, lease_s=30, clock=clock)
    assert await inbox.record("telegram:1", "{}")
    clock.advance(30)
    assert [i.key for i in await inbox.claim_pending()] == ["telegram:1"]  # the lease ran out
    for attempt in range(1, MAX_ATTEMPTS):
        assert await inbox.failed("telegram:1", retry_in=5) is False
        clock.advance(4.9)
        assert await inbox.claim_pending() == []  # not before retry_in
        clock.advance(0.1)
        [item] = await inbox.claim_pending()
        assert item.attempts == attempt
    assert await inbox.failed("telegram:1", retry_in=5) is True  # parked, with its count
    clock.advance(3600)
    assert await inbox.claim_pending() == []
    assert inbox.counts() == {"failed": 1}


async def test_a_transient_failure_is_retried_after_its_backoff_not_before(store):
    clock = FakeClock()
    outbox = Outbox(store, backoff_base_s=10, clock=clock)
    sender = Recorder()
    sender.script["hello"] = [Transient("502 Bad Gateway")]
    outbox.register("telegram", sender)
    outbox.start()
    try:
        await outbox.enqueue("telegram", "42", msg("hello"))
        await sender.wait_for(lambda: sender.calls == ["hello"])
        await outbox_settles(store, "attempts = 1")
        [(next_at, error)] = store.query("SELECT next_at, last_error FROM outbox")
        assert 8 <= next_at - clock() <= 12  # base 10 s, ±20 % jitter
        assert "502" in error
        # A claim at the current time sends another chat's row but not the failed one.
        await outbox.enqueue("telegram", "7", msg("other", chat=7), send_now=False)
        outbox.wake()
        await sender.wait_for(lambda: "other" in sender.calls)
        assert sender.calls.count("hello") == 1
        clock.advance(12)
        outbox.wake()
        await sender.wait_for(lambda: sender.calls.count("hello") == 2)
        assert await outbox.wait_idle(10)
    finally:
        await outbox.stop()


async def test_the_backoff_doubles_with_each_failure_up_to_its_cap(store):
    clock = FakeClock()
    outbox = Outbox(store, backoff_base_s=10, backoff_max_s=35, clock=clock)
    sender = Recorder()
    sender.script["hello"] = [Transient("502"), Transient("500"), Transient("502")]
    outbox.register("telegram", sender)
    outbox.start()
    try:
        await outbox.enqueue("telegram", "42", msg("hello"))
        waits = []
        for attempt in (1, 2, 3):
            await sender.wait_for(lambda: len(sender.calls) == attempt)
            await outbox_settles(store, f"attempts = {attempt}")
            [(next_at,)] = store.query("SELECT next_at FROM outbox")
            waits.append(next_at - clock())
            clock.advance(waits[-1])
            outbox.wake()
        await sender.wait_for(lambda: len(sender.calls) == 4)
        assert await outbox.wait_idle(10)
    finally:
        await outbox.stop()
    base = [10, 20, 35]  # 10 s doubled, capped at 35 s; each ±20 % (jitter)
    assert all(0.8 * b <= w <= 1.2 * b for w, b in zip(waits, base)), waits


async def test_a_429_pauses_all_sending_until_its_retry_after_has_passed(store):
    clock = FakeClock()
    outbox = Outbox(store, clock=clock)
    sender = Recorder()
    sender.script["first"] = [RetryLater(30)]
    outbox.register("telegram", sender)
    outbox.start()
    try:
        await outbox.enqueue("telegram", "42", msg("first"))
        await sender.wait_for(lambda: sender.calls == ["first"])
        await outbox_settles(store, "attempts = 1")
        clock.advance(29)
        await outbox.enqueue("telegram", "7", msg("another chat", chat=7))
        outbox.wake()
        for _ in range(20):  # let the runner look a few times: still paused
            await asyncio.sleep(0)
        assert sender.calls == ["first"]
        clock.advance(1)
        outbox.wake()
        await sender.wait_for(lambda: sorted(sender.calls) == ["another chat", "first", "first"])
        assert await outbox.wait_idle(10)
    finally:
        await outbox.stop()


async def test_a_send_that_outlives_its_lease_is_not_sent_again_by_the_same_process(store):
    """Under load the commit after a send can take longer than the lease; the row is still
    this process's, and the claim must not hand it to a second send (seen as a duplicate
    reply in the kill -9 test before the outbox tracked its sends)."""
    clock = FakeClock()
    outbox = Outbox(store, lease_s=1, clock=clock)
    calls: list[str] = []
    other_sent = asyncio.Event()

    async def sender(chat_id: str, method: str, params: dict) -> None:
        calls.append(params["text"])
        if params["text"] == "slow" and calls.count("slow") == 1:
            clock.advance(5)  # the lease (1 s) runs out while this send is in flight
            await outbox.enqueue("telegram", "7", msg("other", chat=7), send_now=False)
            outbox.wake()
            await asyncio.wait_for(other_sent.wait(), 10)  # a claim has run meanwhile
        if params["text"] == "other":
            other_sent.set()

    outbox.register("telegram", sender)
    outbox.start()
    try:
        await outbox.enqueue("telegram", "42", msg("slow"))
        assert await outbox.wait_idle(10)
        assert sorted(calls) == ["other", "slow"]
    finally:
        await outbox.stop()


async def outbox_settles(store: DurableStore, condition: str, timeout: float = 10.0) -> None:
    """Wait until the one outbox row matches `condition` (its failure has been written)."""
    async def _poll() -> None:
        while not store.query(f"SELECT 1 FROM outbox WHERE {condition}"):
            await asyncio.sleep(0.01)
    await asyncio.wait_for(_poll(), timeout)


async def test_a_slack_event_acked_but_never_finished_is_taken_once_when_stale(tmp_path):
    clock = FakeClock()
    seen = SeenEvents(tmp_path / "events.sqlite3", clock=clock)
    try:
        assert await seen.claim("Ev1", {"type": "message", "text": "hi"})
        assert await seen.claim("Ev2", {"type": "message", "text": "done"})
        await seen.done("Ev2")
        assert not await seen.claim("Ev1")  # Slack's retry: dropped
        clock.advance(59)
        assert await seen.take_stale(60) == []  # may still be being handled
        clock.advance(2)
        assert await seen.take_stale(60) == [("Ev1", {"type": "message", "text": "hi"})]
        assert await seen.take_stale(60) == []  # taken: a second recoverer does not get it
        clock.advance(61)
        assert [e for e, _ in await seen.take_stale(60)] == ["Ev1"]  # its taker died too
    finally:
        seen.close()
