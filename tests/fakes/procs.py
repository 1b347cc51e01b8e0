"""Helpers for tests and benchmarks that run tierbot as a real process."""
from __future__ import annotations

import asyncio
import socket
import time

import aiohttp

__all__ = ["free_port", "wait_http"]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a child process that must be told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_http(url: str, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; AssertionError after `timeout` seconds."""
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
