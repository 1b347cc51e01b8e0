"""The off-loop SQLite writer process: nothing queued is lost when either side dies,
the child never outlives its parent, and reads are ordered (or not held up) as asked."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.storage.sqlite.writer import SQLiteWriter, WriterClosed, WriterError

REPO = Path(__file__).resolve().parent.parent
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=200")
STATEMENTS = {"parent": "INSERT INTO parent (id, name) VALUES (?, ?)",
              "child": "INSERT INTO child (parent_id, n) VALUES (?, ?)",
              "note": "INSERT INTO note (text) VALUES (?)"}


def make_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("""CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
                          CREATE TABLE child (parent_id INTEGER NOT NULL, n INTEGER);
                          CREATE TABLE note (text TEXT NOT NULL UNIQUE);""")
    conn.close()
    return path


def writer(path: Path, **kw) -> SQLiteWriter:
    return SQLiteWriter(path, pragmas=PRAGMAS, statements=STATEMENTS, linked={"parent": "parent"}, **kw)


def count(path: Path, sql: str):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child: reap it, or it lingers as a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


async def test_linked_rows_get_their_parents_id_and_committed_means_on_disk(tmp_path):
    db = make_db(tmp_path / "w.sqlite3")
    w = writer(db)
    try:
        for i in range(300):
            w.write_linked("parent", (f"p{i}",), "child", [(i,), (i + 1000,)])
        await w.committed()
        # Read by another connection, as another process would: it is all there.
        assert count(db, "SELECT COUNT(*) FROM parent") == [(300,)]
        assert count(db, "SELECT COUNT(*) FROM child c JOIN parent p ON p.id = c.parent_id "
                         "WHERE p.name = 'p' || c.n OR p.name = 'p' || (c.n - 1000)") == [(600,)]
    finally:
        await w.aclose()


async def test_a_killed_writer_process_is_replaced_and_loses_nothing(tmp_path):
    db = make_db(tmp_path / "w.sqlite3")
    w = writer(db)
    try:
        for i in range(200):
            w.write("note", (f"a{i}",))
        await asyncio.sleep(0)  # sent
        first = w.pid
        os.kill(first, signal.SIGKILL)
        for i in range(200):
            w.write("note", (f"b{i}",))
        assert await w.query("SELECT COUNT(*) FROM note", ordered=True) == [(400,)]
        assert w.pid != first and w.restarts == 1
    finally:
        await w.aclose()
    assert count(db, "SELECT COUNT(*) FROM note") == [(400,)]


async def test_a_write_that_fails_is_logged_and_the_rest_of_its_batch_is_kept(tmp_path, caplog):
    db = make_db(tmp_path / "w.sqlite3")
    w = writer(db)
    try:
        w.write("note", ("same",))
        w.write("note", ("same",))  # UNIQUE: fails for good
        w.write("note", ("other",))
        with caplog.at_level(logging.ERROR, logger="tierbot.sqlite_writer"):
            await asyncio.wait_for(w.committed(), 10)
    finally:
        await w.aclose()
    assert sorted(count(db, "SELECT text FROM note")) == [("other",), ("same",)]
    assert "UNIQUE" in caplog.text


async def test_a_locked_database_holds_commits_but_not_unordered_reads(tmp_path):
    db = make_db(tmp_path / "w.sqlite3")
    w = writer(db)
    try:
        w.write("note", ("before",))
        await w.flush()
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            w.write("note", ("during",))
            barrier = asyncio.ensure_future(w.committed())
            t0 = time.perf_counter()
            assert await w.query("SELECT text FROM note", ordered=False) == [("before",)]
            # Queued behind the held write it would wait as long as the lock is held (here:
            # until the end of this block); 10 s leaves a loaded machine its stalls.
            assert time.perf_counter() - t0 < 10.0
            await asyncio.sleep(0.3)
            assert not barrier.done()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(barrier, 10)
        # An ordered read comes after every write queued before it.
        w.write("note", ("after",))
        assert await w.query("SELECT text FROM note ORDER BY rowid", ordered=True) == [
            ("before",), ("during",), ("after",)]
        with pytest.raises(WriterError, match="no such table"):
            await w.query("SELECT * FROM missing", ordered=False)
    finally:
        await w.aclose()


async def test_close_commits_everything_and_a_closed_writer_refuses_writes(tmp_path):
    db = make_db(tmp_path / "w.sqlite3")
    w = writer(db, linger_s=0.5)
    for i in range(50):
        w.write("note", (f"n{i}",))
    await w.aclose()
    assert count(db, "SELECT COUNT(*) FROM note") == [(50,)]
    with pytest.raises(WriterClosed):
        w.write("note", ("late",))
    # Without a loop (e.g. CLI teardown): the same.
    w2 = writer(db)
    w2.write("note", ("sync",))
    w2.close_sync()
    assert count(db, "SELECT COUNT(*) FROM note WHERE text = 'sync'") == [(1,)]


def test_kill_9_of_the_parent_commits_what_was_sent_and_the_child_exits(tmp_path):
    db = make_db(tmp_path / "w.sqlite3")
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from bot.storage.sqlite.writer import SQLiteWriter

        async def main():
            w = SQLiteWriter({str(db)!r}, pragmas=("PRAGMA journal_mode=WAL",),
                             statements={{"note": "INSERT INTO note (text) VALUES (?)"}}, linger_s=0.2)
            for i in range(500):
                w.write("note", (f"n{{i}}",))
            await asyncio.sleep(0.05)  # sent, not yet committed (the linger is longer)
            print(w.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    child = int(proc.stdout.split()[0])
    assert gone(child, 10), "the writer process outlived its parent"
    assert count(db, "SELECT COUNT(*) FROM note") == [(500,)]


async def test_writers_share_one_process_and_a_locked_database_holds_up_only_its_own(tmp_path):
    a, b = make_db(tmp_path / "a.sqlite3"), make_db(tmp_path / "b.sqlite3")
    wa, wb = writer(a), writer(b)
    try:
        assert wa.pid == wb.pid  # one child process for every writer of this process
        blocker = sqlite3.connect(a, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            wa.write("note", ("a",))
            wb.write("note", ("b",))
            held = asyncio.ensure_future(wa.committed())
            await asyncio.wait_for(wb.committed(), 30)  # not held up by a: a would hold it forever
            assert count(b, "SELECT text FROM note") == [("b",)]
            assert not held.done()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(held, 10)
        os.kill(wa.pid, signal.SIGKILL)  # both lose their session: both come back, nothing lost
        wa.write("note", ("a2",))
        wb.write("note", ("b2",))
        await asyncio.wait_for(asyncio.gather(wa.flush(), wb.flush()), 10)
        assert wa.pid == wb.pid
    finally:
        await wa.aclose()
        await wb.aclose()
    assert count(a, "SELECT text FROM note ORDER BY rowid") == [("a",), ("a2",)]
    assert count(b, "SELECT text FROM note ORDER BY rowid") == [("b",), ("b2",)]
