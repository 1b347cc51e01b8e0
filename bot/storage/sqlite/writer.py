"""SQLite writes off the event loop, in a child process: `SQLiteWriter`.

Why not threads: every hop between a thread and the event loop (a writer thread waking,
a read on a reader thread answering through `call_soon_threadsafe`) makes the two hand
the GIL back and forth. Measured on the LLM path (bench/ledger_bench.py --diagnose,
BENCHMARKS.md "Ledger and report"), the thread-based ledger cost the loop thread +184 µs
of CPU per message under load, most of it those hand-offs (history loads on reader
threads above all), not the ledger's own work. Here the connections live in
`bot/storage/sqlite/writer_child.py`, run as its own small interpreter; this side pickles the
queued rows into a socket once per loop iteration and reads acks and answers with the
loop's own selector: no thread of this process is involved.

What callers get:
  - `write`/`write_linked` never block and never wait for the disk;
  - `committed()` returns once everything written before it is committed (on disk);
    `flush()` is the same but asks for the commit now (no linger);
  - `query(sql, params, ordered=...)` reads through the child: ordered after every
    write queued before it, or on the child's reader connection (never held up by a
    writer waiting for another process's lock);
  - nothing is lost if the child dies: unacknowledged ops are kept and sent again to a
    new child; nothing queued is lost on close; the child commits what it received and
    exits when this process exits or is killed (its end of the socket closes), so it
    can never outlive its parent for more than a commit;
  - one child process serves every writer of this process (a session each), so opening
    a writer costs a socketpair, not a Python start.
Statements are registered by name at start, so each op carries only its parameters.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ...logs import kv
from ...secrets import redact

__all__ = ["SQLiteWriter", "WriterClosed", "WriterError"]

log = logging.getLogger("tierbot.sqlite_writer")
_LEN = struct.Struct(">I")
CHILD = Path(__file__).with_name("writer_child.py")
MAX_RESTARTS = 20  # a child that cannot even start must not make us spin


class WriterClosed(RuntimeError):
    pass


class WriterError(RuntimeError):
    """A read through the writer process failed (the text of the child's error)."""


class _Host:
    """The one child process that hosts every writer of this process: starting a Python
    for each ledger would cost ~10 ms of CPU each (a test suite opens hundreds); a new
    writer only passes its socket over the control socket (SCM_RIGHTS)."""

    proc: subprocess.Popen | None = None
    ctl: socket.socket | None = None
    owner = 0  # the pid that started it (a forked copy of this process must start its own)
    lock = threading.Lock()

    @classmethod
    def attach(cls, sock: socket.socket) -> subprocess.Popen:
        with cls.lock:
            for _ in range(2):
                if cls.proc is None or cls.proc.poll() is not None or cls.owner != os.getpid():
                    cls._start()
                try:
                    socket.send_fds(cls.ctl, [b"s"], [sock.fileno()])  # type: ignore[arg-type]
                    return cls.proc  # type: ignore[return-value]
                except OSError:
                    cls.proc = None  # it died just now: start another
            raise WriterError("cannot start the SQLite writer process")

    @classmethod
    def _start(cls) -> None:
        if cls.ctl is not None:
            cls.ctl.close()
        if cls.proc is not None and cls.owner == os.getpid() and cls.proc.poll() is None:
            cls.proc.kill()  # unreachable over its control socket: replace it
        if cls.proc is not None and cls.owner == os.getpid():
            cls.proc.wait()
        parent, child = socket.socketpair()
        try:
            cls.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(CHILD), str(child.fileno())], pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            child.close()
        cls.ctl, cls.owner = parent, os.getpid()


class SQLiteWriter:
    """One SQLite file's writer process. Use from one event loop (or none, blocking)."""

    def __init__(self, path: Path | str, *, pragmas: tuple[str, ...] = (), statements: dict[str, str],
                 linked: dict[str, str] | None = None, linger_s: float = 0.005, batch_max: int = 2000,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.path = str(path)
        self._open = ("open", self.path, tuple(pragmas), dict(statements), dict(linked or {}),
                      float(linger_s), int(batch_max))
        self._on_error = on_error or (lambda text: log.error(kv(event="sqlite_writer_failed", path=self.path,
                                                                error=redact(text))))
        self._seq = 0
        self._acked = 0
        self._last_write = 0
        self._unacked: deque[tuple] = deque()  # sent to the writer, not yet committed
        self._reads: dict[int, tuple] = {}  # unordered reads awaiting an answer
        self._out: list[tuple] = []  # queued, not yet sent
        self._wbuf = bytearray()
        self._rbuf = bytearray()
        self._waiters: list[tuple[int, asyncio.Future]] = []  # (seq, future) for commits
        self._results: dict[int, asyncio.Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._send_scheduled = False
        self._closed = False
        self.restarts = 0
        self._spawn()

    # -- the child -----------------------------------------------------------------------------
    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        try:
            self.proc = _Host.attach(child)
        finally:
            child.close()
        parent.setblocking(False)
        self.sock = parent
        self._wbuf = bytearray(self._frame([self._open]))
        self._rbuf = bytearray()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _respawn(self) -> None:
        """The child died (killed, crashed): start another and send it what is unacked."""
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            self._give_up()
            return
        log.error(kv(event="sqlite_writer_restarted", path=self.path, host_returncode=self.proc.poll(),
                     unacked=len(self._unacked) + len(self._reads)))
        self._detach()
        self.sock.close()
        self._spawn()  # on the same host process if it is alive, else on a new one
        # Everything not yet acked (including what was queued but not sent yet) goes once.
        self._out = []
        again = sorted([*self._unacked, *self._reads.values()], key=lambda op: op[1])
        self._wbuf += self._frame(again)
        self._attach()
        self._pump(blocking=self._loop is None)

    def _give_up(self) -> None:
        log.critical(kv(event="sqlite_writer_gave_up", path=self.path, restarts=self.restarts,
                        lost=len(self._unacked)))
        self._closed = True
        self._detach()
        err = WriterError(f"the writer process for {self.path} keeps dying")
        for _, fut in self._waiters:
            _settle(fut, err, None)
        for fut in self._results.values():
            _settle(fut, err, None)
        self._waiters, self._results = [], {}
        self._unacked.clear()
        self._reads.clear()
        self._wbuf.clear()

    @staticmethod
    def _frame(ops: list[tuple]) -> bytes:
        data = pickle.dumps(ops, protocol=pickle.HIGHEST_PROTOCOL)
        return _LEN.pack(len(data)) + data

    # -- queueing (never blocks) ---------------------------------------------------------------
    def _next(self) -> int:
        if self._closed:
            raise WriterClosed(f"the writer for {self.path} is closed")
        self._seq += 1
        return self._seq

    def _queue(self, op: tuple, *, keep: bool = True) -> None:
        if keep:
            self._unacked.append(op)
        self._out.append(op)
        if self._send_scheduled and self._loop is not None and not self._loop.is_closed():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._send(blocking=True)
            return
        self._use_loop(loop)
        self._send_scheduled = True
        loop.call_soon(self._send)  # everything queued in this loop iteration: one frame

    def write(self, name: str, params: tuple) -> None:
        seq = self._last_write = self._next()
        self._queue(("w", seq, name, params))

    def write_linked(self, name: str, params: tuple, child: str, child_rows: list[tuple]) -> None:
        """A row whose new id the child assigns, prepended to it and to each child row."""
        seq = self._last_write = self._next()
        self._queue(("link", seq, name, params, child, child_rows))

    @property
    def last_write(self) -> int:
        """The sequence number of the latest write (compare with `acked`)."""
        return self._last_write

    @property
    def acked(self) -> int:
        return self._acked

    # -- waiting (on the loop; never blocks it) -----------------------------------------------
    async def committed(self) -> None:
        """Returns once every write queued before it is committed (after the linger)."""
        target = self._last_write
        if target <= self._acked:
            return
        await self._wait_ack(target)

    async def flush(self) -> None:
        """Like `committed`, but asks for the commit now."""
        seq = self._next()
        self._queue(("sync", seq))
        await self._wait_ack(seq)

    async def query(self, sql: str, params: tuple = (), *, ordered: bool) -> list[tuple]:
        seq = self._next()
        fut = asyncio.get_running_loop().create_future()
        self._results[seq] = fut
        op = ("q", seq, ordered, sql, tuple(params))
        if ordered:
            self._queue(op)
        else:
            self._reads[seq] = op
            self._queue(op, keep=False)
        return await fut

    async def _wait_ack(self, seq: int) -> None:
        loop = asyncio.get_running_loop()
        self._use_loop(loop)
        fut = loop.create_future()
        self._waiters.append((seq, fut))
        await fut

    # -- the socket ---------------------------------------------------------------------------
    def _use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        self._detach()
        self._loop = loop
        self._attach()

    def _attach(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.add_reader(self.sock.fileno(), self._on_readable)
            if self._wbuf:
                self._loop.add_writer(self.sock.fileno(), self._on_writable)

    def _detach(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.sock.fileno())
            loop.remove_writer(self.sock.fileno())
        if loop is not None and loop.is_closed():
            self._loop = None

    def _send(self, blocking: bool = False) -> None:
        self._send_scheduled = False
        if self._out:
            self._wbuf += self._frame(self._out)
            self._out = []
        self._pump(blocking)

    def _pump(self, blocking: bool) -> None:
        """Write what is buffered; on a loop, the rest when the socket is writable again."""
        while self._wbuf:
            try:
                n = self.sock.send(self._wbuf)
            except BlockingIOError:
                n = 0
            except OSError:  # the child is gone
                self._respawn()
                return
            del self._wbuf[:n]
            if not self._wbuf:
                break
            if not blocking and self._loop is not None and not self._loop.is_closed():
                self._loop.add_writer(self.sock.fileno(), self._on_writable)
                return
            # No loop: wait until writable, reading acks meanwhile (the child may be
            # waiting for us to take them before it reads on).
            readable, _, _ = select.select([self.sock], [self.sock], [], 1.0)[:3]
            if readable:
                self._on_readable()
        if blocking or self._loop is None:
            self._on_readable()  # take whatever acks are there (keeps `_unacked` short)

    def _on_writable(self) -> None:
        if self._loop is not None:
            self._loop.remove_writer(self.sock.fileno())
        self._pump(blocking=False)

    def _on_readable(self) -> None:
        eof = False
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                eof = True
                break
            self._rbuf += chunk
        buf = self._rbuf
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf)
            if len(buf) < 4 + n:
                break
            self._handle(pickle.loads(bytes(buf[4:4 + n])))
            del buf[:4 + n]
        if eof:
            if self._closed and not self._unacked and not self._reads:
                self._detach()  # the child finished after its last ack
            else:
                self._respawn()

    def _handle(self, msg: tuple) -> None:
        if msg[0] == "ack":
            _, seq, errors = msg
            self._acked = max(self._acked, seq)
            while self._unacked and self._unacked[0][1] <= seq:
                self._unacked.popleft()
            for text in errors:
                self._on_error(text)
            if self._waiters:
                still = []
                for wseq, fut in self._waiters:
                    if wseq <= seq:
                        _settle(fut, None, None)
                    else:
                        still.append((wseq, fut))
                self._waiters = still
        else:
            _, seq, ok, value = msg
            self._reads.pop(seq, None)
            fut = self._results.pop(seq, None)
            if fut is not None:
                _settle(fut, None if ok else WriterError(value), value if ok else None)

    # -- closing ----------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Commit everything queued, then end this writer's session."""
        if self._closed:
            return
        seq = self._next()
        self._queue(("stop", seq))
        self._closed = True
        try:
            await self._wait_ack(seq)
        finally:
            self._detach()
            self.sock.close()

    def close_sync(self) -> None:
        """For callers without a loop (e.g. CLI teardown after asyncio.run)."""
        if self._closed:
            return
        seq = self._next()
        self._closed = True
        self._out.append(("stop", seq))
        self._unacked.append(("stop", seq))
        self._detach()
        self._loop = None
        self._send(blocking=True)
        deadline = time.monotonic() + 60
        while self._acked < seq and time.monotonic() < deadline:
            select.select([self.sock], [], [], 0.5)
            self._on_readable()
        self.sock.close()


def _settle(fut: asyncio.Future, err: BaseException | None, value: Any) -> None:
    if fut.done():
        return
    loop = fut.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fut.set_exception(err) if err is not None else fut.set_result(value)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_settle, fut, err, value)
