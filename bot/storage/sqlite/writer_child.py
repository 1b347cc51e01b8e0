"""The program `bot.storage.sqlite.writer.SQLiteWriter` runs in its child process (stdlib only).

Why a process: threads in the bot's process (a writer, readers answering through
`call_soon_threadsafe`) hand the GIL back and forth with the event loop; measured on the
LLM path that cost the loop thread +184 µs of CPU per message under load (1-3 voluntary
context switches per message). Here the connections, the commits and their threads live
in another interpreter; the bot's process only pickles rows into a socket.

Run as `python -I -S writer_child.py FD`: isolated and without site, so it imports
nothing from the bot (no module of ours can shadow the stdlib). One such process serves
every writer of its parent (the ledger, the handoff store, every ledger a test suite
opens): FD is a control socket over which the parent passes one socket per writer
(SCM_RIGHTS); each gets its own session (a writer and a reader thread, its own
connections), so one database waiting for a lock never holds up another.

Protocol (frames: 4-byte big-endian length + pickle), parent → child:
  ("open", path, pragmas, statements, linked_tables, linger_s, batch_max)   first frame
  ("w", seq, name, params)                 one row through statement `name`
  ("link", seq, name, params, child, rows) a row whose new id (MAX(id)+1 of its table,
                                           assigned inside the write transaction) is
                                           prepended to it and to each child row
  ("q", seq, ordered, sql, params)         a read; ordered: after every write before it
                                           (on the writer), else on the reader (never
                                           held up by a writer waiting for a lock)
  ("sync", seq)                            commit now (no linger)
  ("stop", seq)                            commit everything, answer, exit
child → parent:
  ("ack", seq, errors)                     everything through seq is committed; errors:
                                           texts of writes that failed for good
  ("res", seq, ok, value)                  a read's rows, or the error text
A session ends when the parent's end of its socket closes (closed, garbage-collected,
or the parent exited or was killed: what arrived is committed first) or when the
process's parent changes (orphaned); the process ends with its control socket.
"""
from __future__ import annotations

import os
import pickle
import queue
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time

_LEN = struct.Struct(">I")
_URGENT = ("sync", "stop", "q")


class Child:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self.writes: queue.SimpleQueue = queue.SimpleQueue()
        self.reads: queue.SimpleQueue = queue.SimpleQueue()

    # -- talking to the parent ---------------------------------------------------------
    def send(self, msg: tuple) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self.send_lock:
                self.sock.sendall(_LEN.pack(len(data)) + data)
        except OSError:  # the parent is gone: nobody to tell, the commit still stands
            pass

    def frames(self):
        """Yield frames until the parent's end closes or the parent process changes."""
        ppid = os.getppid()
        buf = bytearray()
        self.sock.settimeout(1.0)
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                if os.getppid() != ppid:
                    return
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 4:
                (n,) = _LEN.unpack_from(buf)
                if len(buf) < 4 + n:
                    break
                yield pickle.loads(bytes(buf[4:4 + n]))
                del buf[:4 + n]

    # -- main thread: dispatch -------------------------------------------------------------
    def run(self) -> None:
        frames = self.frames()
        first = next(frames, None)
        if not first:
            return
        _, path, pragmas, statements, linked, linger_s, batch_max = first[0]
        self.statements, self.linked = statements, linked
        self.linger_s, self.batch_max = linger_s, batch_max
        self.path, self.pragmas = path, pragmas
        writer = threading.Thread(target=self.write_loop, name="writer")
        reader = threading.Thread(target=self.read_loop, name="reader", daemon=True)
        writer.start()
        reader.start()
        last = 0
        stopped = False
        for ops in self.chain(first[1:], frames):
            for op in ops:
                last = op[1]
                if op[0] == "q" and not op[2]:
                    self.reads.put(op)
                else:
                    self.writes.put(op)
                if op[0] == "stop":
                    stopped = True
            if stopped:
                break
        if not stopped:  # the parent went away: commit what arrived, then leave
            self.writes.put(("stop", last))
        self.reads.put(None)
        writer.join()

    @staticmethod
    def chain(ops: list, frames):
        if ops:
            yield ops
        yield from frames

    def connect(self, readonly: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in self.pragmas:
            if readonly and "journal_mode" in pragma or readonly and "synchronous" in pragma:
                continue
            conn.execute(pragma)
        return conn

    # -- reader thread ----------------------------------------------------------------------
    def read_loop(self) -> None:
        conn = None
        while True:
            op = self.reads.get()
            if op is None:
                return
            try:
                if conn is None:
                    conn = self.connect(readonly=True)
                rows = conn.execute(op[3], op[4]).fetchall()
                self.send(("res", op[1], True, rows))
            except Exception as e:
                self.send(("res", op[1], False, f"{type(e).__name__}: {e}"))

    # -- writer thread -----------------------------------------------------------------------
    def write_loop(self) -> None:
        conn = self.connect(readonly=False)
        try:
            while True:
                batch = [self.writes.get()]
                if self.linger_s and batch[0][0] not in _URGENT:
                    deadline = time.monotonic() + self.linger_s
                    while len(batch) < self.batch_max:  # let a burst gather; a waiter cuts it short
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        try:
                            op = self.writes.get(timeout=left)
                        except queue.Empty:
                            break
                        batch.append(op)
                        if op[0] in _URGENT:
                            break
                while len(batch) < self.batch_max:
                    try:
                        batch.append(self.writes.get_nowait())
                    except queue.Empty:
                        break
                if self.commit(conn, batch):
                    return
        finally:
            conn.close()

    def commit(self, conn: sqlite3.Connection, batch: list[tuple]) -> bool:
        """Apply and commit a batch, answer its reads, ack it. True when told to stop."""
        results: list[tuple] = []
        errors: list[str] = []
        for wait in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, None):
            results = []
            try:
                # IMMEDIATE: the write lock from the start, so new ids can be assigned here.
                conn.execute("BEGIN IMMEDIATE")
                self.apply_batch(conn, batch, results)
                conn.execute("COMMIT")
                break
            except sqlite3.OperationalError as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if wait is None or "locked" not in str(e) and "busy" not in str(e):
                    results = self.one_by_one(conn, batch, e, errors)
                    break
                time.sleep(wait)  # another process holds the write lock: keep the batch
            except Exception as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                results = self.one_by_one(conn, batch, e, errors)
                break
        for res in results:
            self.send(res)
        self.send(("ack", batch[-1][1], errors))
        return any(op[0] == "stop" for op in batch)

    def one_by_one(self, conn, batch, error, errors) -> list[tuple]:
        """One bad write must not lose the batch: each in its own transaction."""
        errors.append(f"batch of {len(batch)} failed ({type(error).__name__}: {error}); retried one by one")
        results: list[tuple] = []
        for op in batch:
            try:
                conn.execute("BEGIN IMMEDIATE")
                self.apply_batch(conn, [op], results)
                conn.execute("COMMIT")
            except Exception as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                errors.append(f"{op[0]} {op[2] if op[0] in ('w', 'link') else ''} failed: {type(e).__name__}: {e}")
        return results

    def apply_batch(self, conn: sqlite3.Connection, batch: list[tuple], results: list) -> None:
        """Rows of one statement go in together (executemany), in order wherever it
        matters: a read sees every write before it."""
        rows: dict[str, list] = {}
        next_id: dict[str, int] = {}
        st = self.statements

        def flush() -> None:
            for name, params in rows.items():
                if params:
                    conn.executemany(st[name], params)
            rows.clear()

        for op in batch:
            kind = op[0]
            if kind == "w":
                rows.setdefault(op[2], []).append(op[3])
            elif kind == "link":
                _, _, name, params, child, child_rows = op
                table = self.linked[name]
                if table not in next_id:
                    next_id[table] = (conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0) + 1
                new_id = next_id[table]
                next_id[table] += 1
                rows.setdefault(name, []).append((new_id, *params))
                if child_rows:
                    rows.setdefault(child, []).extend((new_id, *r) for r in child_rows)
            elif kind == "q":
                flush()
                try:
                    results.append(("res", op[1], True, conn.execute(op[3], op[4]).fetchall()))
                except sqlite3.Error as e:
                    results.append(("res", op[1], False, f"{type(e).__name__}: {e}"))
        flush()


def main() -> None:
    """Host one session per socket the parent passes over the control socket."""
    # Ctrl+C or a service manager's SIGTERM reach the whole process group: the parent
    # decides when to stop (it closes its sockets); until then, keep committing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctl = socket.socket(fileno=int(sys.argv[1]))
    ctl.settimeout(1.0)
    ppid = os.getppid()
    sessions: list[threading.Thread] = []
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 64, 16)
        except socket.timeout:
            if os.getppid() != ppid:  # orphaned: every session ends on its own EOF
                break
            continue
        except OSError:
            break
        if not msg and not fds:
            break  # the parent exited or was killed
        for fd in fds:
            t = threading.Thread(target=Child(socket.socket(fileno=fd)).run, name=f"session-{fd}")
            t.start()
            sessions.append(t)
        sessions = [t for t in sessions if t.is_alive()]
    for t in sessions:  # what each session received is committed before we leave
        t.join()


if __name__ == "__main__":
    main()
