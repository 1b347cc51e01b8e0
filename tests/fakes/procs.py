"""Helpers for tests and benchmarks that run tierbot as a real process."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from pathlib import Path

import aiohttp

__all__ = ["free_port", "wait_http", "wait_settled"]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a child process that must be told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_http(url: str, timeout: float = 120.0) -> None:
    """Poll `url` until it answers 200; AssertionError after `timeout` seconds (generous:
    a Python process with its imports takes many seconds to start on a loaded machine)."""
    end = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not come up within {timeout} s")


async def wait_settled(data_dir: Path, timeout: float = 120.0) -> None:
    """Poll a running process's inbox/outbox (`messages.db`) until nothing is pending in
    either: from then on it sends nothing more, so a duplicate, if any, has been sent."""
    end = time.monotonic() + timeout
    while True:
        with contextlib.closing(sqlite3.connect(Path(data_dir) / "messages.db", timeout=10)) as db:
            pending = db.execute("SELECT (SELECT COUNT(*) FROM inbox WHERE state='pending') + "
                                 "(SELECT COUNT(*) FROM outbox WHERE state='pending')").fetchone()[0]
        if pending == 0:
            return
        if time.monotonic() > end:
            raise AssertionError(f"{pending} updates/replies still pending after {timeout} s")
        await asyncio.sleep(0.05)
